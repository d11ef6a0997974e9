"""Least-squares GAN and feature-matching losses of descript-audio-codec 1.0.0
(``dac.nn.loss.GANLoss``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

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
        the last map of each being its score, or to an object whose ``feature_maps``
        attribute is that sequence, e.g. :class:`jaxlatent.models.dac.Discriminator` (its
        :class:`~jaxlatent.models.dac.DiscriminatorOutput`); any callable, closed over the
        parameters to differentiate.
      joint: `discriminator_loss` calls the discriminator once on `fake` and `real`
        concatenated along axis 0 and splits every map back (one call on twice the batch is
        ~10% cheaper to differentiate on CPU than two). Only for a discriminator that treats
        the examples of a batch independently (no batch statistics), whose maps all keep the
        batch on axis 0, as :class:`~jaxlatent.models.dac.Discriminator`; then the loss is the
        two calls' up to float rounding.

    Example:
      With a toy discriminator (one sub-discriminator, one feature map and a score); a
      :class:`~jaxlatent.models.dac.Discriminator` is passed the same way, ``GANLoss(disc)``:

      >>> loss = GANLoss(lambda x: [[x, jnp.mean(x, axis=1)]])
      >>> real, fake = jnp.ones((1, 4, 1)), jnp.zeros((1, 4, 1))
      >>> float(loss.discriminator_loss(fake, real))
      0.0
      >>> [float(v) for v in loss.generator_loss(fake, real)]
      [1.0, 1.0]
    """

    def __init__(self, discriminator: Callable[[Array], Any], *, joint: bool = False):
        self.discriminator = discriminator
        self.joint = joint

    def __call__(self, fake: Array, real: Array) -> tuple[FeatureMaps, FeatureMaps]:
        """``(discriminator(fake), discriminator(real))`` as sequences of feature maps (the
        ``feature_maps`` of an output that has them)."""
        return _feature_maps(self.discriminator(fake)), _feature_maps(self.discriminator(real))

    def discriminator_loss(self, fake: Array, real: Array) -> Array:
        """``sum_i mean(D_i(fake)[-1]²) + mean((1 - D_i(real)[-1])²)``, with no gradient
        flowing into `fake` (the reference detaches it).

        Returns:
          float32 scalar.

        Raises:
          ValueError: if the two calls return different numbers of sub-discriminators.
        """
        fake = jax.lax.stop_gradient(fake)
        if self.joint and jnp.shape(fake) == jnp.shape(real):
            n = jnp.shape(fake)[0]
            both = _feature_maps(self.discriminator(jnp.concatenate([fake, real], axis=0)))
            d_fake = [[m[:n] for m in maps] for maps in both]
            d_real = [[m[n:] for m in maps] for maps in both]
        else:
            d_fake, d_real = self(fake, real)
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


def _feature_maps(out: Any) -> FeatureMaps:
    return out.feature_maps if hasattr(out, "feature_maps") else out


def _check_maps(d_fake: FeatureMaps, d_real: FeatureMaps) -> None:
    shapes_fake = [[jnp.shape(m) for m in maps] for maps in d_fake]
    shapes_real = [[jnp.shape(m) for m in maps] for maps in d_real]
    if shapes_fake != shapes_real:
        raise ValueError(
            f"GANLoss: the discriminator's feature maps of fake and real differ: "
            f"{shapes_fake} vs {shapes_real}"
        )
