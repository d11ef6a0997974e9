"""Autoencoder models (Flax NNX), channels-last.

The DAC codec lives in `jaxlatent.models.dac`, the PIQ models in `jaxlatent.models.piq`.
"""

# autoencoders.py, normalizing_autoencoder.py, padding.py (SpeechBrain's nnet.autoencoders)
from jaxlatent.models.autoencoders import Autoencoder as Autoencoder
from jaxlatent.models.autoencoders import AutoencoderOutput as AutoencoderOutput
from jaxlatent.models.autoencoders import VariationalAutoencoder as VariationalAutoencoder
from jaxlatent.models.autoencoders import (
    VariationalAutoencoderOutput as VariationalAutoencoderOutput,
)
from jaxlatent.models.normalizing_autoencoder import (
    NormalizingAutoencoder as NormalizingAutoencoder,
)
from jaxlatent.models.padding import DownsamplingPadding as DownsamplingPadding
from jaxlatent.models.padding import pad_divisible as pad_divisible
from jaxlatent.models.padding import trim_as as trim_as
