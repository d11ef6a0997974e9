"""The AntixK/PyTorch-VAE model family in Flax NNX (channels-last).

`BaseVAE` and VanillaVAE, BetaVAE ('H' and 'B'), ConditionalVAE, WAE_MMD (IMQ and RBF) and
VQVAE, numerically equal to the originals (https://github.com/AntixK/PyTorch-VAE, commit
a6896b9) through `converters.pytorch_vae`. Each model takes a frozen config
(`VanillaVAEConfig`, `BetaVAEConfig`, `ConditionalVAEConfig`, `WAEMMDConfig`, `VQVAEConfig`)
whose presets are the original's ``configs/*.yaml`` and whose options name the original's
quirks; each class documents where it deliberately differs.
"""

from jaxlatent.models.pytorch_vae.base import BaseVAE as BaseVAE
from jaxlatent.models.pytorch_vae.base import VAELoss as VAELoss
from jaxlatent.models.pytorch_vae.base import VAEOutput as VAEOutput
from jaxlatent.models.pytorch_vae.beta_vae import BetaVAE as BetaVAE
from jaxlatent.models.pytorch_vae.beta_vae import IterationCounter as IterationCounter
from jaxlatent.models.pytorch_vae.config import BetaVAEConfig as BetaVAEConfig
from jaxlatent.models.pytorch_vae.config import ConditionalVAEConfig as ConditionalVAEConfig
from jaxlatent.models.pytorch_vae.config import ConvVAEConfig as ConvVAEConfig
from jaxlatent.models.pytorch_vae.config import VanillaVAEConfig as VanillaVAEConfig
from jaxlatent.models.pytorch_vae.config import VQVAEConfig as VQVAEConfig
from jaxlatent.models.pytorch_vae.config import WAEMMDConfig as WAEMMDConfig
from jaxlatent.models.pytorch_vae.conv_vae import ConvVAEBackbone as ConvVAEBackbone
from jaxlatent.models.pytorch_vae.cvae import ConditionalVAE as ConditionalVAE
from jaxlatent.models.pytorch_vae.vanilla_vae import VanillaVAE as VanillaVAE
from jaxlatent.models.pytorch_vae.vq_vae import NUM_RESIDUAL_LAYERS as NUM_RESIDUAL_LAYERS
from jaxlatent.models.pytorch_vae.vq_vae import VQVAE as VQVAE
from jaxlatent.models.pytorch_vae.vq_vae import VQVAELoss as VQVAELoss
from jaxlatent.models.pytorch_vae.vq_vae import VQVAEOutput as VQVAEOutput
from jaxlatent.models.pytorch_vae.vq_vae import VQVAEQuantizer as VQVAEQuantizer
from jaxlatent.models.pytorch_vae.vq_vae import VQVAEQuantizerOutput as VQVAEQuantizerOutput
from jaxlatent.models.pytorch_vae.wae_mmd import WAE_MMD as WAE_MMD
from jaxlatent.models.pytorch_vae.wae_mmd import WAELoss as WAELoss
from jaxlatent.models.pytorch_vae.wae_mmd import WAEOutput as WAEOutput
