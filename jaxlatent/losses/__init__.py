"""SpeechBrain's losses (`speechbrain.nnet.losses`, v1.1.2) in JAX.

Same arguments, reductions (with SpeechBrain's quirks, documented per function), label
smoothing and relative-length masking as the reference; all usable under `jax.jit` and
`jax.grad`. Layouts follow SpeechBrain's, which is already channels-last for sequences
(`[batch, time, features]`).
"""

# reduction.py, regression.py, classification.py, binary.py, distance.py (masked losses)
from .binary import bce_loss as bce_loss
from .classification import classification_error as classification_error
from .classification import kldiv_loss as kldiv_loss
from .classification import nll_loss as nll_loss
from .distance import distance_diff_loss as distance_diff_loss
from .reduction import REDUCTIONS as REDUCTIONS
from .reduction import Truncated as Truncated
from .reduction import compute_length_mask as compute_length_mask
from .reduction import compute_masked_loss as compute_masked_loss
from .reduction import reduce_loss as reduce_loss
from .reduction import truncate as truncate
from .regression import l1_loss as l1_loss
from .regression import mse_loss as mse_loss
