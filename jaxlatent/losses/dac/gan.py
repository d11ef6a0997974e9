"""Least-squares GAN and feature-matching losses of descript-audio-codec 1.0.0
(``dac.nn.loss.GANLoss``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxlatent.losses.dac.waveform import abs_torch

Array = jax.Array
FeatureMaps = Sequence[Sequence[Array]]
"""One sequence per sub-discriminator of its feature maps, the last one being its logits."""


class GANLoss:
    """Discriminator and generator losses of a multi-discriminator GAN (LSGAN + feature
    matching), as ``dac.nn.loss.GANLoss``.

    Args:
      discriminator: maps audio (as given to the losses, e.g. ``[batch, time, channels]``)
        to a sequence over sub-discriminators of sequences of feature maps (any shapes),
        the last map of each being its score; e.g. ``jaxlatent.models.dac``'s discriminator,
        or any callable, closed over the parameters to differentiate.
    """

    def __init__(self, discriminator: Callable[[Array], FeatureMaps]):
        self.discriminator = discriminator

    def __call__(self, fake: Array, real: Array) -> tuple[FeatureMaps, FeatureMaps]:
        """``(discriminator(fake), discriminator(real))``."""
        return self.discriminator(fake), self.discriminator(real)

    def discriminator_loss(self, fake: Array, real: Array) -> Array:
        """``sum_i mean(D_i(fake)[-1]²) + mean((1 - D_i(real)[-1])²)``, with no gradient
        flowing into `fake` (the reference detaches it).

        Returns:
          float32 scalar.

        Raises:
          ValueError: if the two calls return different numbers of sub-discriminators.
        """
        d_fake, d_real = self(jax.lax.stop_gradient(fake), real)
        _check_maps(d_fake, d_real)
        loss = jnp.zeros((), jnp.float32)
        for x_fake, x_real in zip(d_fake, d_real, strict=True):
            loss = loss + jnp.mean(jnp.square(x_fake[-1]))
            loss = loss + jnp.mean(jnp.square(1 - x_real[-1]))
        return loss

    def generator_loss(self, fake: Array, real: Array) -> tuple[Array, Array]:
        """``(adversarial, feature_matching)``: ``sum_i mean((1 - D_i(fake)[-1])²)`` and
        ``sum_i sum_{j < last} mean(|D_i(fake)[j] - D_i(real)[j]|)`` with the real maps
        treated as constants (no gradient into `real` from either term).

        Returns:
          two float32 scalars.

        Raises:
          ValueError: if the feature-map structures of `fake` and `real` differ.
        """
        d_fake, d_real = self(fake, real)
        _check_maps(d_fake, d_real)
        loss_g = jnp.zeros((), jnp.float32)
        for x_fake in d_fake:
            loss_g = loss_g + jnp.mean(jnp.square(1 - x_fake[-1]))
        loss_feature = jnp.zeros((), jnp.float32)
        for maps_fake, maps_real in zip(d_fake, d_real, strict=True):
            for a, b in zip(maps_fake[:-1], maps_real[:-1], strict=True):
                loss_feature = loss_feature + jnp.mean(abs_torch(a - jax.lax.stop_gradient(b)))
        return loss_g, loss_feature


def _check_maps(d_fake: FeatureMaps, d_real: FeatureMaps) -> None:
    shapes_fake = [[jnp.shape(m) for m in maps] for maps in d_fake]
    shapes_real = [[jnp.shape(m) for m in maps] for maps in d_real]
    if shapes_fake != shapes_real:
        raise ValueError(
            f"GANLoss: the discriminator's feature maps of fake and real differ: "
            f"{shapes_fake} vs {shapes_real}"
        )
