"""SpeechBrain's losses (`speechbrain.nnet.losses`, v1.1.2) in JAX.

Same arguments, reductions (with SpeechBrain's quirks, documented per function), label
smoothing and relative-length masking as the reference; all usable under `jax.jit` and
`jax.grad`. Layouts follow SpeechBrain's, which is already channels-last for sequences
(`[batch, time, features]`).
"""

# sequence losses: ctc.py, transducer.py, distillation.py
from .ctc import ctc_loss as ctc_loss
from .distillation import ce_kd as ce_kd
from .distillation import ctc_loss_kd as ctc_loss_kd
from .distillation import nll_loss_kd as nll_loss_kd
from .transducer import transducer_loss as transducer_loss
