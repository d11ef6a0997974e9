"""Autoencoder models (Flax NNX), channels-last."""

# pytorch_vae/ (AntixK/PyTorch-VAE: BaseVAE, VanillaVAE, BetaVAE, ConditionalVAE, WAE_MMD, VQVAE)
from jaxlatent.models.pytorch_vae import VQVAE as VQVAE
from jaxlatent.models.pytorch_vae import WAE_MMD as WAE_MMD
from jaxlatent.models.pytorch_vae import BaseVAE as BaseVAE
from jaxlatent.models.pytorch_vae import BetaVAE as BetaVAE
from jaxlatent.models.pytorch_vae import ConditionalVAE as ConditionalVAE
from jaxlatent.models.pytorch_vae import VAELoss as VAELoss
from jaxlatent.models.pytorch_vae import VAEOutput as VAEOutput
from jaxlatent.models.pytorch_vae import VanillaVAE as VanillaVAE
from jaxlatent.models.pytorch_vae import VectorQuantizer as VectorQuantizer
from jaxlatent.models.pytorch_vae import VQOutput as VQOutput
from jaxlatent.models.pytorch_vae import VQVAELoss as VQVAELoss
from jaxlatent.models.pytorch_vae import VQVAEOutput as VQVAEOutput
from jaxlatent.models.pytorch_vae import WAELoss as WAELoss
from jaxlatent.models.pytorch_vae import WAEOutput as WAEOutput
