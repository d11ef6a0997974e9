"""SpeechBrain's losses (`speechbrain.nnet.losses`, v1.1.2) in JAX.

Same arguments, reductions (with SpeechBrain's quirks, documented per function), label
smoothing and relative-length masking as the reference; all usable under `jax.jit` and
`jax.grad`. Layouts follow SpeechBrain's, which is already channels-last for sequences
(`[batch, time, features]`).
"""

# autoencoder.py (VariationalAutoencoderLoss, AutoencoderLoss)
from jaxlatent.losses.autoencoder import AutoencoderLoss as AutoencoderLoss
from jaxlatent.losses.autoencoder import AutoencoderLossDetails as AutoencoderLossDetails
from jaxlatent.losses.autoencoder import VariationalAutoencoderLoss as VariationalAutoencoderLoss
from jaxlatent.losses.autoencoder import (
    VariationalAutoencoderLossDetails as VariationalAutoencoderLossDetails,
)
from jaxlatent.losses.autoencoder import reduce_autoencoder_loss as reduce_autoencoder_loss
