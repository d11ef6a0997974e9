"""The autoencoder interface and the variational autoencoder (SpeechBrain's `autoencoders`).

Submodules (`encoder`, `decoder`, `mean`, `log_var`) are arbitrary NNX modules or plain
callables, as in SpeechBrain; everything here is channels-last like SpeechBrain's own
sequence layout (`[batch, time, features]`), with the padded axis at `len_dim`. Relative
lengths are turned into masks with rule "plain ceil" (`jaxlatent.masking.clean_padding`).
The normalising autoencoder is in :mod:`jaxlatent.models.normalizing_autoencoder`.

Source: Kingma & Welling, "Auto-Encoding Variational Bayes", arXiv:1312.6114;
SpeechBrain 1.1.2 `speechbrain.nnet.autoencoders`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import shape_str
from jaxlatent.masking import clean_padding
from jaxlatent.models.padding import check_length, trim_as

Array = jax.Array
#: ``(x, length=None) -> (padded_x, new_relative_length)``, e.g. `pad_divisible`.
LatentPadding = Callable[..., tuple[Array, Array | None]]


class AutoencoderOutput(NamedTuple):
    """Output of `NormalizingAutoencoder.train_sample` (SpeechBrain's namedtuple)."""

    rec: Array
    latent: Array
    latent_length: Array | None


class VariationalAutoencoderOutput(NamedTuple):
    """Output of `VariationalAutoencoder.train_sample` (SpeechBrain's namedtuple)."""

    rec: Array
    latent: Array
    mean: Array
    log_var: Array
    latent_sample: Array
    latent_length: Array | None


class Autoencoder(nnx.Module):
    """The autoencoder interface: `encode`, `decode`; calling the module encodes.

    Subclasses implement ``encode(x, length=None)`` and ``decode(latent)``. As in
    SpeechBrain, ``__call__(x)`` is ``encode(x)`` without a length.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.autoencoders.Autoencoder`.

    Example:
      >>> class Simple(Autoencoder):
      ...     def __init__(self, rngs):
      ...         self.enc = nnx.Linear(128, 16, rngs=rngs)
      ...         self.dec = nnx.Linear(16, 128, rngs=rngs)
      ...     def encode(self, x, length=None):
      ...         return self.enc(x)
      ...     def decode(self, latent):
      ...         return self.dec(latent)
      >>> ae = Simple(nnx.Rngs(0))
      >>> x = jnp.zeros((4, 10, 128))
      >>> ae(x).shape, ae.decode(ae.encode(x)).shape
      ((4, 10, 16), (4, 10, 128))
    """

    def encode(self, x: Array, length: Array | None = None) -> Array:
        """Map a sample to the latent space (abstract).

        Raises:
          NotImplementedError: always, in the base class.
        """
        raise NotImplementedError

    def decode(self, latent: Array) -> Array:
        """Map a latent representation back to the sample space (abstract).

        Raises:
          NotImplementedError: always, in the base class.
        """
        raise NotImplementedError

    def __call__(self, x: Array) -> Array:
        return self.encode(x)


def _normal_noise(log_var: Array, key: Array | None, noise: Array | None) -> Array:
    if noise is not None:
        noise = jnp.asarray(noise)
        if noise.shape != jnp.shape(log_var):
            raise ValueError(
                f"noise has shape {shape_str(noise)} but log_var has shape {shape_str(log_var)}"
            )
        return noise.astype(log_var.dtype)
    if key is None:
        raise ValueError("reparameterize needs a PRNG `key` (or explicit standard-normal `noise`)")
    return jax.random.normal(key, log_var.shape, log_var.dtype)


class VariationalAutoencoder(Autoencoder):
    """A variational autoencoder with SpeechBrain's masking and padding behaviour.

    Args:
      encoder: ``x -> h``.
      decoder: ``latent -> reconstruction`` (at least as large as `x` on every axis).
      mean: ``h -> mean`` of the latent distribution.
      log_var: ``h -> log variance`` of the latent distribution.
      len_dim: the padded (time) axis of `x`, the latents and the reconstruction.
      latent_padding: optional ``(z, length=None) -> (padded_z, new_length)``, e.g.
        ``functools.partial(pad_divisible, factor=4)``.
      mask_latent: set padded latent positions to `latent_mask_value` when a length is given.
      mask_out: set padded output positions to `out_mask_value` when a length is given.
      out_mask_value: default output mask value.
      latent_mask_value: default latent mask value.
      latent_stochastic: `train_sample`'s ``latent`` is the sample (True) or the padded mean.

    SpeechBrain behaviours kept on purpose (see `train_sample`): `encode` ignores `length`
    and returns the mean; the decoder always receives the masked *sample*; with
    ``latent_stochastic=False`` the returned latent is the padded but **unmasked** mean and
    `latent_padding` is required (SpeechBrain fails with a TypeError; here ValueError); the
    reconstruction is cropped on **every** axis to the shape of `x`.

    Source: Kingma & Welling 2014 (arXiv:1312.6114); SpeechBrain 1.1.2
    `speechbrain.nnet.autoencoders.VariationalAutoencoder`.

    Example:
      >>> rngs = nnx.Rngs(0)
      >>> vae = VariationalAutoencoder(
      ...     encoder=nnx.Linear(128, 16, rngs=rngs), decoder=nnx.Linear(16, 128, rngs=rngs),
      ...     mean=nnx.Linear(16, 16, rngs=rngs), log_var=nnx.Linear(16, 16, rngs=rngs))
      >>> x = jnp.zeros((4, 10, 128))
      >>> out = vae.train_sample(x, key=jax.random.key(0))
      >>> out.rec.shape, out.latent.shape, out.mean.shape, out.log_var.shape
      ((4, 10, 128), (4, 10, 16), (4, 10, 16), (4, 10, 16))
      >>> vae.encode(x).shape
      (4, 10, 16)
    """

    def __init__(
        self,
        encoder: Any,
        decoder: Any,
        mean: Any,
        log_var: Any,
        len_dim: int = 1,
        latent_padding: LatentPadding | None = None,
        mask_latent: bool = True,
        mask_out: bool = True,
        out_mask_value: float = 0.0,
        latent_mask_value: float = 0.0,
        latent_stochastic: bool = True,
    ):
        self.encoder = encoder
        self.decoder = decoder
        self.mean = mean
        self.log_var = log_var
        self.len_dim = len_dim
        self.latent_padding = latent_padding
        self.mask_latent = mask_latent
        self.mask_out = mask_out
        self.out_mask_value = out_mask_value
        self.latent_mask_value = latent_mask_value
        self.latent_stochastic = latent_stochastic

    def encode(self, x: Array, length: Array | None = None) -> Array:
        """The latent mean ``mean(encoder(x))``; `length` is ignored (deterministic)."""
        return self.mean(self.encoder(x))

    def decode(self, latent: Array) -> Array:
        """``decoder(latent)``."""
        return self.decoder(latent)

    def reparameterize(
        self,
        mean: Array,
        log_var: Array,
        *,
        key: Array | None = None,
        noise: Array | None = None,
    ) -> Array:
        """The reparameterisation trick: ``mean + noise * exp(0.5 * log_var)``.

        Args:
          mean: latent means.
          log_var: latent log variances (same shape).
          key: PRNG key for the standard-normal noise (shape and dtype of `log_var`).
          noise: explicit standard-normal noise instead of `key` (e.g. to reproduce a run).

        Returns:
          A latent sample, shape of `log_var`.

        Raises:
          ValueError: if neither `key` nor `noise` is given, or `noise` has the wrong shape.
        """
        eps = _normal_noise(log_var, key, noise)
        return mean + eps * jnp.exp(0.5 * log_var)

    def train_sample(
        self,
        x: Array,
        length: Array | None = None,
        out_mask_value: float | None = None,
        latent_mask_value: float | None = None,
        *,
        key: Array | None = None,
        noise: Array | None = None,
    ) -> VariationalAutoencoderOutput:
        """Encode, sample, decode one batch for training.

        Steps (SpeechBrain's order): ``h = encoder(x)``; ``mean``, ``log_var`` from `h`;
        sample; pad the sample with `latent_padding` (its length becomes `latent_length`);
        mask it (rule "plain ceil") if `mask_latent` and `length` is given; decode; crop to
        the shape of `x`; mask the output if `mask_out` and `length` is given. The returned
        ``latent`` is the masked sample, or (``latent_stochastic=False``) ``latent_padding(mean)``
        unmasked, whose length then replaces `latent_length`. `mean`/`log_var` are returned
        unpadded and unmasked.

        Args:
          x: input ``[batch, ...]`` with the padded axis at `len_dim`.
          length: relative lengths ``[batch]`` in [0, 1], or None (no masking).
          out_mask_value: overrides the constructor's value for this call.
          latent_mask_value: overrides the constructor's value for this call.
          key: PRNG key of the reparameterisation noise.
          noise: explicit standard-normal noise, shape of ``log_var`` (instead of `key`).

        Returns:
          :class:`VariationalAutoencoderOutput` ``(rec, latent, mean, log_var,
          latent_sample, latent_length)``.

        Raises:
          ValueError: for a bad `length` or `len_dim`, missing `key`/`noise`, a
            reconstruction smaller than `x`, or ``latent_stochastic=False`` without
            `latent_padding`.
        """
        check_length(length, x, self.len_dim)
        if not self.latent_stochastic and self.latent_padding is None:
            raise ValueError(
                "latent_stochastic=False needs a latent_padding function: the returned latent "
                "is latent_padding(mean, length=length) (SpeechBrain raises TypeError here)"
            )
        h = self.encoder(x)
        mean = self.mean(h)
        log_var = self.log_var(h)
        latent_sample = self.reparameterize(mean, log_var, key=key, noise=noise)
        latent_sample, latent_length, x_rec = pad_mask_and_decode(
            self,
            latent_sample,
            x,
            length,
            out_mask_value=out_mask_value,
            latent_mask_value=latent_mask_value,
        )
        if self.latent_stochastic:
            latent = latent_sample
        else:
            latent, latent_length = self.latent_padding(mean, length=length)
        return VariationalAutoencoderOutput(
            x_rec, latent, mean, log_var, latent_sample, latent_length
        )


def pad_mask_and_decode(
    model: Any,
    latent: Array,
    x: Array,
    length: Array | None,
    *,
    out_mask_value: float | None,
    latent_mask_value: float | None,
) -> tuple[Array, Array | None, Array]:
    """The shared tail of SpeechBrain's `train_sample` for both autoencoders.

    Pads `latent` with ``model.latent_padding`` (if any), masks it (rule "plain ceil") when
    ``model.mask_latent``, decodes, crops the reconstruction to ``x.shape`` on every axis and
    masks it when ``model.mask_out``. None mask values fall back to the model's defaults.

    Returns:
      ``(latent, latent_length, x_rec)``: the latent the decoder received, its relative
      lengths, and the reconstruction.
    """
    if out_mask_value is None:
        out_mask_value = model.out_mask_value
    if latent_mask_value is None:
        latent_mask_value = model.latent_mask_value
    if model.latent_padding is not None:
        latent, latent_length = model.latent_padding(latent, length=length)
    else:
        latent_length = length
    if model.mask_latent and length is not None:
        latent = clean_padding(
            latent, latent_length, len_dim=model.len_dim, mask_value=latent_mask_value
        )
    x_rec = trim_as(model.decode(latent), x)
    if model.mask_out and length is not None:
        x_rec = clean_padding(x_rec, length, len_dim=model.len_dim, mask_value=out_mask_value)
    return latent, latent_length, x_rec
