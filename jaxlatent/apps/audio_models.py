"""Small convolutional audio models for `jaxlatent train`, channels-last ``[batch, time, feat]``.

* `conv_encoder_decoder` — the convolutional encoder and decoder over time shared by the
  SpeechBrain-style autoencoders of the app.
* `ConvAutoencoder` — SpeechBrain's `Autoencoder` interface (`encode`, `decode`,
  `train_sample` with relative-length masking) over `conv_encoder_decoder`.
* `ConvVQVAE` — a VQ-VAE (van den Oord et al. 2017, arXiv:1711.00937): convolutional encoder
  that halves the time axis, the generic `jaxlatent.quantizers.VectorQuantizer` (gradient or
  EMA codebook, k-means init, dead-code restarts) and a transposed-convolution decoder.

Both treat the feature axis (spectrogram bins, or the one waveform channel) as channels and
convolve over time.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.models import Autoencoder, AutoencoderOutput
from jaxlatent.models.autoencoders import pad_mask_and_decode
from jaxlatent.models.padding import check_length
from jaxlatent.quantizers import VectorQuantizer, VectorQuantizerConfig, VectorQuantizerOutput

Array = jax.Array


def conv_encoder_decoder(
    features: int, hidden: int, latent: int, kernel_size: int = 5, *, rngs: nnx.Rngs
) -> tuple[nnx.Sequential, nnx.Sequential]:
    """The convolutional encoder and decoder over time of `ConvAutoencoder`.

    Encoder ``[batch, time, features] -> [batch, time, latent]``: ``Conv1d(features, hidden,
    k)`` → leaky ReLU → ``Conv1d(hidden, latent, 1)``; decoder ``[batch, time, latent] ->
    [batch, time, features]``: ``Conv1d(latent, hidden, k)`` → leaky ReLU → ``Conv1d(hidden,
    features, k)`` ("same" padding, odd `kernel_size`), so the time axis keeps its length.
    Also the encoder/decoder of ``jaxlatent train``'s `NormalizingAutoencoder`.

    Args:
      features: input (and output) channels.
      hidden: hidden channels.
      latent: latent channels.
      kernel_size: odd kernel size of the time convolutions.
      rngs: initialisation randomness (the encoder's layers draw first).

    Returns:
      ``(encoder, decoder)``.

    Example:
      >>> enc, dec = nnx.eval_shape(lambda: conv_encoder_decoder(6, 8, 2, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((2, 10, 6), jnp.float32)
      >>> z = nnx.eval_shape(lambda m, x: m(x), enc, x)
      >>> z.shape, nnx.eval_shape(lambda m, z: m(z), dec, z).shape
      ((2, 10, 2), (2, 10, 6))
    """
    k, p = kernel_size, kernel_size // 2
    encoder = nnx.Sequential(
        jnn.Conv1d(features, hidden, k, padding=p, rngs=rngs),
        nnx.leaky_relu,
        jnn.Conv1d(hidden, latent, 1, rngs=rngs),
    )
    decoder = nnx.Sequential(
        jnn.Conv1d(latent, hidden, k, padding=p, rngs=rngs),
        nnx.leaky_relu,
        jnn.Conv1d(hidden, features, k, padding=p, rngs=rngs),
    )
    return encoder, decoder


class ConvAutoencoder(Autoencoder):
    """A plain convolutional autoencoder over time: ``[batch, time, features]``.

    Encoder and decoder: `conv_encoder_decoder` (the time axis keeps its length).

    Args:
      features: input (and output) channels.
      hidden: hidden channels.
      latent: latent channels.
      kernel_size: odd kernel size of the time convolutions.
      rngs: initialisation randomness.

    Example:
      Shapes only (`nnx.eval_shape` allocates and computes nothing):

      >>> ae = nnx.eval_shape(lambda: ConvAutoencoder(6, 8, 2, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((2, 10, 6), jnp.float32)
      >>> length = jax.ShapeDtypeStruct((2,), jnp.float32)
      >>> out = nnx.eval_shape(lambda m, x, n: m.train_sample(x, n), ae, x, length)
      >>> out.rec.shape, out.latent.shape
      ((2, 10, 6), (2, 10, 2))
    """

    def __init__(self, features: int, hidden: int, latent: int, kernel_size: int = 5, *, rngs):
        self.encoder, self.decoder = conv_encoder_decoder(
            features, hidden, latent, kernel_size, rngs=rngs
        )
        # what `pad_mask_and_decode` (SpeechBrain's train_sample tail) reads
        self.len_dim = 1
        self.latent_padding = None
        self.mask_latent = True
        self.mask_out = True
        self.out_mask_value = 0.0
        self.latent_mask_value = 0.0

    def encode(self, x: Array, length: Array | None = None) -> Array:
        """Latents ``[batch, time, latent]`` (`length` is not used by the encoder)."""
        return self.encoder(x)

    def decode(self, latent: Array) -> Array:
        """Reconstruction ``[batch, time, features]``."""
        return self.decoder(latent)

    def train_sample(self, x: Array, length: Array | None = None) -> AutoencoderOutput:
        """Encode and decode with SpeechBrain's masking: latents and output past each relative
        `length` (rule "plain ceil") are set to 0.

        Raises:
          ValueError: for a bad `length`.
        """
        check_length(length, x, self.len_dim)
        latent = self.encode(x, length)
        latent, latent_length, rec = pad_mask_and_decode(
            self, latent, x, length, out_mask_value=None, latent_mask_value=None
        )
        return AutoencoderOutput(rec, latent, latent_length)


class ConvVQVAEOutput(NamedTuple):
    """Output of `ConvVQVAE.__call__`."""

    #: ``[batch, time, features]``: the reconstruction.
    rec: Array
    #: the quantizer's output (codes ``[batch, time // 2]``, losses, code counts).
    vq: VectorQuantizerOutput


class ConvVQVAE(nnx.Module):
    """VQ-VAE over time with the generic `VectorQuantizer` (gradient or EMA codebook).

    Encoder: ``Conv1d(features, hidden, k)`` → leaky ReLU → ``Conv1d(hidden, hidden, 4,
    stride 2)`` → leaky ReLU → ``Conv1d(hidden, dim, 1)`` (time halved); the quantizer on
    ``[batch, time/2, dim]``; decoder: ``ConvTranspose1d(dim, hidden, 4, stride 2)`` → leaky
    ReLU → ``Conv1d(hidden, features, k)``.

    The attribute ``axis_name`` (None) is the quantizer's cross-device axis; the training core
    (`jaxlatent.training.set_axis_name`) sets it to the mapped axis under pmap / shard_map, so
    EMA statistics, k-means init and dead-code restarts use the global batch.

    Args:
      features: input (and output) channels.
      hidden: hidden channels.
      codebook: the quantizer's config (its ``dim`` is the latent size).
      kernel_size: odd kernel size of the outer convolutions.
      rngs: initialisation randomness.

    Example:
      >>> cfg = VectorQuantizerConfig.vqvae_ema(codebook_size=8, dim=2)
      >>> vq = nnx.eval_shape(lambda: ConvVQVAE(6, 8, cfg, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((2, 10, 6), jnp.float32)
      >>> out = nnx.eval_shape(lambda m, x: m(x, train=True), vq, x)
      >>> out.rec.shape, out.vq.indices.shape
      ((2, 10, 6), (2, 5))
    """

    def __init__(
        self,
        features: int,
        hidden: int,
        codebook: VectorQuantizerConfig,
        kernel_size: int = 5,
        *,
        rngs: nnx.Rngs,
    ):
        k, p, dim = kernel_size, kernel_size // 2, codebook.dim
        self.encoder = nnx.Sequential(
            jnn.Conv1d(features, hidden, k, padding=p, rngs=rngs),
            nnx.leaky_relu,
            jnn.Conv1d(hidden, hidden, 4, stride=2, padding=1, rngs=rngs),
            nnx.leaky_relu,
            jnn.Conv1d(hidden, dim, 1, rngs=rngs),
        )
        self.quantizer = VectorQuantizer(codebook, rngs=rngs)
        self.decoder = nnx.Sequential(
            jnn.ConvTranspose1d(dim, hidden, 4, stride=2, padding=1, rngs=rngs),
            nnx.leaky_relu,
            jnn.Conv1d(hidden, features, k, padding=p, rngs=rngs),
        )
        self.axis_name: str | None = None

    def __call__(self, x: Array, *, train: bool = False, key: Array | None = None):
        """Encode, quantize (updating the codebook state when `train`), decode.

        Args:
          x: ``[batch, time, features]`` with an even ``time``.
          train: update the quantizer's state (see `VectorQuantizer`).
          key: PRNG key of the k-means init / dead-code restarts (the same on every device).

        Returns:
          `ConvVQVAEOutput` ``(rec, vq)``.

        Raises:
          ValueError: if the time axis is odd (the decoder would not restore it).
        """
        if x.shape[1] % 2:
            raise ValueError(f"ConvVQVAE needs an even time axis, got x of shape {x.shape}")
        vq = self.quantizer(self.encoder(x), train=train, key=key, axis_name=self.axis_name)
        return ConvVQVAEOutput(self.decoder(vq.quantized), vq)

    def decode_indices(self, indices: Array) -> Array:
        """Reconstruction from codes ``[batch, time // 2]`` → ``[batch, time, features]``."""
        return self.decoder(self.quantizer.decode(indices))


def codes_used(indices: Array, codebook_size: int) -> Array:
    """Number of distinct codes in `indices` (float32 scalar; any shape of int codes).

    Example:
      >>> float(codes_used(jnp.array([[0, 3], [3, 3]]), 8))
      2.0
    """
    used = jnp.zeros((codebook_size,), jnp.float32).at[indices.reshape(-1)].max(1.0)
    return jnp.sum(used)
