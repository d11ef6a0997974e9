"""VanillaVAE of AntixK/PyTorch-VAE (``models/vanilla_vae.py``) in Flax NNX, channels-last."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from jaxlatent.models.pytorch_vae.base import (
    VAELoss,
    VAEOutput,
    check_vectors,
    gaussian_kld,
    mse_loss,
)
from jaxlatent.models.pytorch_vae.config import VanillaVAEConfig
from jaxlatent.models.pytorch_vae.conv_vae import GaussianConvVAE
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

Array = jax.Array


class VanillaVAE(GaussianConvVAE):
    """Gaussian VAE with a convolutional encoder/decoder (Kingma & Welling, arXiv:1312.6114).

    Source: AntixK/PyTorch-VAE ``models/vanilla_vae.py`` (commit a6896b9). Architecture,
    BatchNorm behaviour (torch semantics: batch statistics and an unbiased running-variance
    update in train mode, running statistics in eval mode), LeakyReLU placements and the loss
    are the original's, so a converted checkpoint gives the original's numbers
    (`converters.pytorch_vae`). Images are channels-last ``[batch, H, W, C]``.

    Differences from the original, each reproduced by default and correctable by an option of
    `VanillaVAEConfig`:

    * 64×64 inputs only (``view(-1, 512, 2, 2)`` and ``hidden_dims[-1]*4``): here the bottleneck
      follows `img_size` (any multiple of ``2**len(hidden_dims)``) and ``hidden_dims[-1]``.
      Inputs of another size than `img_size` raise ValueError (the original fails or
      mis-reshapes).
    * 3 output channels whatever `in_channels`: `out_channels` (default 3).
    * Tanh output although the data are in [0, 1]: `output_activation` ("sigmoid").
    * the loss dict logs ``KLD = -kld_loss`` (a positive KL shows as negative):
      `negate_logged_kld=False` logs +KL. The total loss uses +KL either way.

    Other API differences: the hyper-parameters come as a frozen `VanillaVAEConfig`
    (``VanillaVAEConfig.from_model_params`` reads the original's ``model_params``; the
    original's in-place ``hidden_dims.reverse()`` of the caller's list has no counterpart);
    `__call__` (``forward``) needs the reparameterisation noise explicitly (``rngs=`` or
    ``eps=``) and also returns z; ``sample`` takes an `nnx.Rngs`; the mode is the ``train``
    keyword (default False: torch's eval mode; a new torch module is in train mode). The
    bottleneck is flattened in torch's channel-major order (see
    `jaxlatent.models.pytorch_vae.conv_vae`), so converted Linear weights are used unpermuted.

    Args:
      config: a `VanillaVAEConfig` (for `BetaVAE`, a `BetaVAEConfig`).
      precision: precision of every conv and matmul (:mod:`jaxlatent.precision`;
        default ``"highest"``).
      rngs: parameter initialisation (torch's default initialisers).

    Raises:
      ValueError: if `config` is not a config of this class.

    Example:
      >>> import jax.numpy as jnp
      >>> config = VanillaVAEConfig(in_channels=3, latent_dim=4, hidden_dims=[8], img_size=2)
      >>> vae = VanillaVAE(config, rngs=nnx.Rngs(0))
      >>> out = vae(jnp.ones((2, 2, 2, 3)), train=True, rngs=nnx.Rngs(1))
      >>> out.recons.shape, out.mu.shape
      ((2, 2, 2, 3), (2, 4))
      >>> sorted(vae.loss_function(*out, M_N=0.00025)._asdict())
      ['KLD', 'Reconstruction_Loss', 'loss']
    """

    CONFIG = VanillaVAEConfig

    def __init__(
        self,
        config: VanillaVAEConfig,
        *,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        super().__init__(config, precision=precision, rngs=rngs)
        self._add_gaussian_heads(precision=precision, rngs=rngs)

    def decode(self, z: Array, *, train: bool = False) -> Array:
        """Images ``[batch, H, W, out_channels]`` of latents ``[batch, latent_dim]`` (`train` as
        for `encode`).

        Raises:
          ValueError: if `z` is not ``[batch, latent_dim]``.
        """
        check_vectors("z", z, self.latent_dim, type(self).__name__)
        return self.decode_features(z, train=train)

    def __call__(
        self,
        x: Array,
        *,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
        eps: Array | None = None,
    ) -> VAEOutput:
        """The original's ``forward``: encode, reparameterise, decode.

        Args:
          x: images ``[batch, H, W, in_channels]``.
          train: torch's train mode (BatchNorm batch statistics, running statistics updated)
            if True, its eval mode (running statistics) if False.
          rngs: draws the reparameterisation noise; or
          eps: the noise ``[batch, latent_dim]`` itself.

        Returns:
          `VAEOutput` ``(recons, input, mu, log_var, z)``.

        Raises:
          ValueError: for a wrong image shape or unless exactly one of `rngs`/`eps` is given.
        """
        mu, log_var = self.encode(x, train=train)
        z = self.reparameterize(mu, log_var, rngs=rngs, eps=eps)
        return VAEOutput(self.decode(z, train=train), x, mu, log_var, z)

    def loss_function(
        self, recons: Array, input: Array, mu: Array, log_var: Array, *_: Any, M_N: Any
    ) -> VAELoss:
        """``mse(recons, input) + M_N · KL`` (call as ``loss_function(*outputs, M_N=...)``).

        Args:
          recons, input, mu, log_var: the first four `VAEOutput` fields (extra positional
            arguments, such as z, are ignored).
          M_N: KL weight (experiment.py: ``kld_weight`` = 0.00025 in training, 1.0 in
            validation).

        Returns:
          `VAELoss` with the total `loss`, `Reconstruction_Loss` and `KLD` (-KL unless
          ``negate_logged_kld=False``; both logged terms are gradient-stopped, as the
          original detaches them).
        """
        recons_loss = mse_loss(recons, input)
        kld = gaussian_kld(mu, log_var)
        loss = recons_loss + M_N * kld
        logged = -kld if self.config.negate_logged_kld else kld
        return VAELoss(loss, jax.lax.stop_gradient(recons_loss), jax.lax.stop_gradient(logged))

    def sample(self, num_samples: int, *, rngs: nnx.Rngs, train: bool = False) -> Array:
        """Decode ``num_samples`` latents drawn from N(0, I): ``[num_samples, H, W, C_out]``."""
        z = jax.random.normal(rngs.noise(), (num_samples, self.latent_dim))
        return self.decode(z, train=train)
