"""A non-variational autoencoder whose latent space is constrained by a normalisation.

Source: SpeechBrain 1.1.2 `speechbrain.nnet.autoencoders.NormalizingAutoencoder`.
"""

from __future__ import annotations

from typing import Any

import jax

from jaxlatent.models.autoencoders import (
    Autoencoder,
    AutoencoderOutput,
    LatentPadding,
    pad_mask_and_decode,
)
from jaxlatent.models.padding import check_length
from jaxlatent.nn.global_norm import GlobalNorm

Array = jax.Array


class NormalizingAutoencoder(Autoencoder):
    """An autoencoder whose latents are normalised (by default with a `GlobalNorm`).

    ``encode(x, length, train=train) = norm(encoder(x), lengths=length, skip_update=not
    train)``; ``decode = decoder``.

    Train/eval is the explicit ``train`` keyword of `encode`, `__call__` and `train_sample`
    (default False), as everywhere in jaxlatent: ``train=True`` merges the batch's statistics
    into the norm's running ones before normalising, ``train=False`` normalises with the
    running statistics as they are (SpeechBrain's ``skip_update=True``). SpeechBrain has no
    such distinction: its calls update the statistics every time, evaluation included (until
    ``norm.freeze()``), which is ``train=True`` here.

    Args:
      encoder: ``x -> h``.
      decoder: ``latent -> reconstruction`` (at least as large as `x` on every axis).
      latent_padding: optional ``(z, length=None) -> (padded_z, new_length)``.
      norm: a module called as ``norm(h, lengths=length, skip_update=not train)`` (the
        signature of `GlobalNorm`); None builds ``GlobalNorm(length_dim=len_dim)``.
      len_dim: the padded (time) axis.
      mask_out: set padded output positions to `out_mask_value` when a length is given.
      mask_latent: set padded latent positions to `latent_mask_value` when a length is given.
      out_mask_value: default output mask value.
      latent_mask_value: default latent mask value.

    SpeechBrain behaviours kept on purpose: the positional order of `mask_out` and
    `mask_latent` is swapped relative to `VariationalAutoencoder`; a frozen norm
    (``model.norm.freeze()``, SpeechBrain's API) never updates, whatever `train`; `GlobalNorm`
    masks with rule "ceil with tolerance"
    and fills padded positions with ``normalize(0)`` while the latent mask afterwards uses rule
    "plain ceil", so on float32 round-off fractions (7/13) one frame can keep that fill value.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.autoencoders.NormalizingAutoencoder`.

    Example:
      >>> from flax import nnx
      >>> rngs = nnx.Rngs(0)
      >>> ae = NormalizingAutoencoder(
      ...     nnx.Linear(128, 16, rngs=rngs), nnx.Linear(16, 128, rngs=rngs))
      >>> x = jax.random.normal(jax.random.key(0), (4, 10, 128))
      >>> z = ae.encode(x, train=True)
      >>> z.shape, ae.decode(z).shape, int(ae.norm.step_count[...]), float(ae.norm.weight[...])
      ((4, 10, 16), (4, 10, 128), 1, 640.0)
      >>> _ = ae.encode(x)  # evaluation: the running statistics stay
      >>> int(ae.norm.step_count[...]), float(ae.norm.weight[...])
      (2, 640.0)
    """

    def __init__(
        self,
        encoder: Any,
        decoder: Any,
        latent_padding: LatentPadding | None = None,
        norm: Any = None,
        len_dim: int = 1,
        mask_out: bool = True,
        mask_latent: bool = True,
        out_mask_value: float = 0.0,
        latent_mask_value: float = 0.0,
    ):
        self.encoder = encoder
        self.decoder = decoder
        self.latent_padding = latent_padding
        self.norm = GlobalNorm(length_dim=len_dim) if norm is None else norm
        self.len_dim = len_dim
        self.mask_out = mask_out
        self.mask_latent = mask_latent
        self.out_mask_value = out_mask_value
        self.latent_mask_value = latent_mask_value

    def encode(self, x: Array, length: Array | None = None, *, train: bool = False) -> Array:
        """``norm(encoder(x), lengths=length)``; `train` updates the norm's statistics first."""
        return self.norm(self.encoder(x), lengths=length, skip_update=not train)

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        """``encode(x, train=train)`` (SpeechBrain's ``forward``: no length)."""
        return self.encode(x, train=train)

    def decode(self, latent: Array) -> Array:
        """``decoder(latent)``."""
        return self.decoder(latent)

    def train_sample(
        self,
        x: Array,
        length: Array | None = None,
        out_mask_value: float | None = None,
        latent_mask_value: float | None = None,
        *,
        train: bool = False,
    ) -> AutoencoderOutput:
        """Encode (normalised), pad, mask, decode, crop and mask one batch.

        Args:
          x: input ``[batch, ...]`` with the padded axis at `len_dim`.
          length: relative lengths ``[batch]`` in [0, 1], or None (no masking).
          out_mask_value: overrides the constructor's value for this call.
          latent_mask_value: overrides the constructor's value for this call.
          train: update the norm's statistics with this batch (as SpeechBrain's every call)
            before normalising; False normalises with them as they are.

        Returns:
          :class:`AutoencoderOutput` ``(rec, latent, latent_length)``; ``latent`` is the
          padded and masked latent the decoder received.

        Raises:
          ValueError: for a bad `length` or `len_dim`, or a reconstruction smaller than `x`.
        """
        check_length(length, x, self.len_dim)
        latent, latent_length, x_rec = pad_mask_and_decode(
            self,
            self.encode(x, length=length, train=train),
            x,
            length,
            out_mask_value=out_mask_value,
            latent_mask_value=latent_mask_value,
        )
        return AutoencoderOutput(x_rec, latent, latent_length)
