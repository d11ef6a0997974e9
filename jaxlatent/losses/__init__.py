"""Losses in JAX: SpeechBrain's (`speechbrain.nnet.losses`, v1.1.2) and two training objectives.

SpeechBrain's: same arguments, reductions (with SpeechBrain's quirks, documented per function),
label smoothing and relative-length masking as the reference; all usable under `jax.jit` and
`jax.grad`. Layouts follow SpeechBrain's, which is already channels-last for sequences (`[batch,
time, features]`).

descript-audio-codec's training losses (``dac.nn.loss``: L1, SI-SDR, multi-scale STFT, mel,
GAN) are the subpackage `jaxlatent.losses.dac`.

Training objectives of ``jaxlatent train``: `multiscale_stft_l1` (spectral.py, the STFT part
of DAC's reconstruction loss) and `piq_loss` (piq.py, SpeechBrain's PIQ recipe).
"""

# sequence losses: ctc.py, transducer.py, distillation.py
# --- misc losses: pit.py, separation.py, margin.py, contrastive.py, laplacian.py ---
# reduction.py, regression.py, classification.py, binary.py, distance.py (masked losses)
# autoencoder.py (VariationalAutoencoderLoss, AutoencoderLoss); spectral.py, piq.py (objectives)
from jaxlatent.losses.autoencoder import AutoencoderLoss as AutoencoderLoss
from jaxlatent.losses.autoencoder import AutoencoderLossDetails as AutoencoderLossDetails
from jaxlatent.losses.autoencoder import VariationalAutoencoderLoss as VariationalAutoencoderLoss
from jaxlatent.losses.autoencoder import (
    VariationalAutoencoderLossDetails as VariationalAutoencoderLossDetails,
)
from jaxlatent.losses.autoencoder import reduce_autoencoder_loss as reduce_autoencoder_loss

from .binary import bce_loss as bce_loss
from .classification import classification_error as classification_error
from .classification import kldiv_loss as kldiv_loss
from .classification import nll_loss as nll_loss
from .contrastive import ContrastiveLoss as ContrastiveLoss
from .contrastive import ContrastiveOutput as ContrastiveOutput
from .ctc import ctc_loss as ctc_loss
from .distance import distance_diff_loss as distance_diff_loss
from .distillation import ce_kd as ce_kd
from .distillation import ctc_loss_kd as ctc_loss_kd
from .distillation import nll_loss_kd as nll_loss_kd
from .laplacian import Laplacian as Laplacian
from .laplacian import LaplacianVarianceLoss as LaplacianVarianceLoss
from .margin import AdditiveAngularMargin as AdditiveAngularMargin
from .margin import AngularMargin as AngularMargin
from .margin import LogSoftmaxWrapper as LogSoftmaxWrapper
from .piq import PIQLossDetails as PIQLossDetails
from .piq import mask_target as mask_target
from .piq import piq_loss as piq_loss
from .pit import PitOutput as PitOutput
from .pit import PitWrapper as PitWrapper
from .reduction import REDUCTIONS as REDUCTIONS
from .reduction import Truncated as Truncated
from .reduction import compute_length_mask as compute_length_mask
from .reduction import compute_masked_loss as compute_masked_loss
from .reduction import reduce_loss as reduce_loss
from .reduction import truncate as truncate
from .regression import l1_loss as l1_loss
from .regression import mse_loss as mse_loss
from .separation import cal_si_snr as cal_si_snr
from .separation import cal_snr as cal_snr
from .separation import get_mask as get_mask
from .separation import get_si_snr_with_pitwrapper as get_si_snr_with_pitwrapper
from .separation import get_snr_with_pitwrapper as get_snr_with_pitwrapper
from .spectral import multiscale_stft_l1 as multiscale_stft_l1
from .spectral import unpadded_stft_magnitude as unpadded_stft_magnitude
from .transducer import transducer_loss as transducer_loss
