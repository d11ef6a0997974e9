"""BetaVAE of AntixK/PyTorch-VAE (``models/beta_vae.py``) in Flax NNX, channels-last."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent.models.pytorch_vae.base import VAELoss, gaussian_kld, mse_loss
from jaxlatent.models.pytorch_vae.config import BetaVAEConfig
from jaxlatent.models.pytorch_vae.vanilla_vae import VanillaVAE
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

Array = jax.Array


class IterationCounter(nnx.Variable):
    """BetaVAE's loss-call counter (``num_iter``): not a parameter, not in torch state_dicts."""


class BetaVAE(VanillaVAE):
    """β-VAE (Higgins et al. 2017, loss 'H') and capacity-annealed β-VAE (Burgess et al. 2018,
    arXiv:1804.03599, loss 'B').

    Source: AntixK/PyTorch-VAE ``models/beta_vae.py`` (commit a6896b9). The network is
    VanillaVAE's (same state_dict keys); only the loss differs:

    * 'H': ``mse + beta · M_N · KL``;
    * 'B': ``mse + gamma · M_N · |KL - C|`` with the capacity
      ``C = clamp(max_capacity / Capacity_max_iter · num_iter, 0, max_capacity)`` (float32).

    The logged ``KLD`` is +KL (unlike VanillaVAE). Differences from the original:

    * **Capacity counter.** The original increments an instance counter ``num_iter`` at the top
      of every ``loss_function`` call (validation calls included, and also for loss 'H'), so
      the first training call uses 1. That is the default here: the counter is the
      `IterationCounter` variable ``num_iter`` (advanced in place, also under `nnx.jit`). It is
      not in torch checkpoints (a loaded model keeps its counter, as a resumed original
      restarts at 0). Passing ``step=`` uses that value instead and leaves the counter alone
      (e.g. the optimiser step, unaffected by validation).
    * The original's loss 'B' has shape [1] (the capacity is a 1-element tensor); here every
      loss is a scalar (`jax.grad` needs one). The value is the same.
    * An unknown `loss_type` raises ValueError when the config is made, not at the first loss
      call.
    * The `VanillaVAE` options (`img_size`, `out_channels`, `output_activation`,
      `negate_logged_kld`) apply, as fields of `BetaVAEConfig`.

    Args:
      config: a `BetaVAEConfig` (`beta`, `gamma`, `max_capacity`, `Capacity_max_iter`,
        `loss_type` and the network's sizes).
      precision, rngs: as `VanillaVAE`.

    Example:
      >>> import jax.numpy as jnp
      >>> config = BetaVAEConfig(in_channels=3, latent_dim=4, hidden_dims=[8], img_size=2,
      ...                        gamma=10.0, max_capacity=25, Capacity_max_iter=10000)
      >>> vae = BetaVAE(config, rngs=nnx.Rngs(0))
      >>> vae.capacity(2500)
      Array(6.25, dtype=float32)
      >>> out = vae(jnp.ones((2, 2, 2, 3)), rngs=nnx.Rngs(1))
      >>> loss = vae.loss_function(*out, M_N=0.00025)  # advances the counter, as the original
      >>> int(vae.num_iter[...])
      1
    """

    CONFIG = BetaVAEConfig

    def __init__(
        self, config: BetaVAEConfig, *, precision: PrecisionLike = DEFAULT_PRECISION, rngs: nnx.Rngs
    ):
        super().__init__(config, precision=precision, rngs=rngs)
        self.num_iter = IterationCounter(jnp.zeros((), jnp.int32))

    def capacity(self, num_iter: Any) -> Array:
        """``clamp(max_capacity / Capacity_max_iter · num_iter, 0, max_capacity)``, float32."""
        c_max = jnp.float32(self.config.max_capacity)
        rate = c_max / jnp.float32(self.config.Capacity_max_iter)
        return jnp.clip(rate * jnp.asarray(num_iter).astype(jnp.float32), 0.0, c_max)

    def loss_function(
        self,
        recons: Array,
        input: Array,
        mu: Array,
        log_var: Array,
        *_: Any,
        M_N: Any,
        step: Any = None,
    ) -> VAELoss:
        """The 'H' or 'B' loss (call as ``loss_function(*outputs, M_N=..., step=...)``).

        Args:
          recons, input, mu, log_var: the first four `VAEOutput` fields.
          M_N: KL weight (experiment.py: 0.00025 in training, 1.0 in validation).
          step: the iteration used for the capacity; None advances and uses the model's
            counter ``num_iter`` as the original does.

        Returns:
          `VAELoss` ``(loss, Reconstruction_Loss, KLD)`` with KLD = +KL, all scalars.
        """
        if step is None:
            num_iter = self.num_iter[...] + 1
            self.num_iter[...] = num_iter
        else:
            num_iter = step
        recons_loss = mse_loss(recons, input)
        kld = gaussian_kld(mu, log_var)
        if self.config.loss_type == "H":
            loss = recons_loss + self.config.beta * M_N * kld
        else:
            gap = jnp.abs(kld - self.capacity(num_iter))
            loss = recons_loss + self.config.gamma * M_N * gap
        return VAELoss(loss, recons_loss, kld)
