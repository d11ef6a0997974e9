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

# conv_audio.py, conv_vqvae.py (the small audio models of `jaxlatent train`)
from jaxlatent.models.conv_audio import ConvAutoencoder as ConvAutoencoder
from jaxlatent.models.conv_audio import conv_encoder_decoder as conv_encoder_decoder
from jaxlatent.models.conv_audio import (
    conv_variational_autoencoder as conv_variational_autoencoder,
)
from jaxlatent.models.conv_vqvae import ConvVQVAE as ConvVQVAE
from jaxlatent.models.conv_vqvae import ConvVQVAEOutput as ConvVQVAEOutput
from jaxlatent.models.normalizing_autoencoder import (
    NormalizingAutoencoder as NormalizingAutoencoder,
)
from jaxlatent.models.padding import DownsamplingPadding as DownsamplingPadding
from jaxlatent.models.padding import pad_divisible as pad_divisible
from jaxlatent.models.padding import trim_as as trim_as

# pytorch_vae/ (AntixK/PyTorch-VAE: BaseVAE, VanillaVAE, BetaVAE, ConditionalVAE, WAE_MMD, VQVAE)
from jaxlatent.models.pytorch_vae import VQVAE as VQVAE
from jaxlatent.models.pytorch_vae import WAE_MMD as WAE_MMD
from jaxlatent.models.pytorch_vae import BaseVAE as BaseVAE
from jaxlatent.models.pytorch_vae import BetaVAE as BetaVAE
from jaxlatent.models.pytorch_vae import BetaVAEConfig as BetaVAEConfig
from jaxlatent.models.pytorch_vae import ConditionalVAE as ConditionalVAE
from jaxlatent.models.pytorch_vae import ConditionalVAEConfig as ConditionalVAEConfig
from jaxlatent.models.pytorch_vae import VAELoss as VAELoss
from jaxlatent.models.pytorch_vae import VAEOutput as VAEOutput
from jaxlatent.models.pytorch_vae import VanillaVAE as VanillaVAE
from jaxlatent.models.pytorch_vae import VanillaVAEConfig as VanillaVAEConfig
from jaxlatent.models.pytorch_vae import VQVAEConfig as VQVAEConfig
from jaxlatent.models.pytorch_vae import VQVAELoss as VQVAELoss
from jaxlatent.models.pytorch_vae import VQVAEOutput as VQVAEOutput
from jaxlatent.models.pytorch_vae import VQVAEQuantizer as VQVAEQuantizer
from jaxlatent.models.pytorch_vae import VQVAEQuantizerOutput as VQVAEQuantizerOutput
from jaxlatent.models.pytorch_vae import WAELoss as WAELoss
from jaxlatent.models.pytorch_vae import WAEMMDConfig as WAEMMDConfig
from jaxlatent.models.pytorch_vae import WAEOutput as WAEOutput
