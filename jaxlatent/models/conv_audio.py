"""Small convolutional autoencoders over time, channels-last ``[batch, time, features]``.

The SpeechBrain-style audio autoencoders that ``jaxlatent train`` trains on log spectrograms
(``sb_autoencoder``, ``sb_normalizing_ae``, ``sb_vae``). They treat the feature axis
(spectrogram bins, or the one waveform channel) as channels and convolve over time with
"same" padding, so the time axis keeps its length.

* `conv_encoder_decoder` — the encoder and decoder shared by `ConvAutoencoder` and the
  registry's `NormalizingAutoencoder`.
* `ConvAutoencoder` — SpeechBrain's `Autoencoder` interface (`encode`, `decode`,
  `train_sample` with relative-length masking) over `conv_encoder_decoder`.
* `conv_variational_autoencoder` — SpeechBrain's `VariationalAutoencoder` over a
  convolutional encoder and decoder (the net of SpeechBrain's VAE examples, sized by the
  caller).

All are float32 by default (`jaxlatent.nn.Conv1d`'s parameters); the layers take any
floating input. None has a train/eval difference (no normalisation or dropout), so none
takes ``train``. Source: SpeechBrain 1.1.2 ``speechbrain.nnet.autoencoders`` for the
interfaces; the nets are this project's.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.models.autoencoders import (
    Autoencoder,
    AutoencoderOutput,
    VariationalAutoencoder,
    pad_mask_and_decode,
)
from jaxlatent.models.padding import check_length
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

Array = jax.Array


def _time_conv(
    kernel_size: int, precision: PrecisionLike, rngs: nnx.Rngs
) -> Callable[..., jnn.Conv1d]:
    """``conv(c_in, c_out, k=kernel_size)``: a "same"-padded `jnn.Conv1d` (odd `k`)."""

    def conv(c_in: int, c_out: int, k: int = kernel_size) -> jnn.Conv1d:
        return jnn.Conv1d(c_in, c_out, k, padding=k // 2, precision=precision, rngs=rngs)

    return conv


def _conv_decoder(
    conv: Callable[..., jnn.Conv1d], features: int, hidden: int, latent: int
) -> nnx.Sequential:
    """``[batch, time, latent] -> [batch, time, features]``: conv, leaky ReLU, conv."""
    return nnx.Sequential(conv(latent, hidden), nnx.leaky_relu, conv(hidden, features))


def conv_encoder_decoder(
    features: int,
    hidden: int,
    latent: int,
    kernel_size: int = 5,
    *,
    precision: PrecisionLike = DEFAULT_PRECISION,
    rngs: nnx.Rngs,
) -> tuple[nnx.Sequential, nnx.Sequential]:
    """The convolutional encoder and decoder over time of `ConvAutoencoder`.

    Encoder ``[batch, time, features] -> [batch, time, latent]``: ``Conv1d(features, hidden,
    k)`` → leaky ReLU → ``Conv1d(hidden, latent, 1)``; decoder ``[batch, time, latent] ->
    [batch, time, features]``: ``Conv1d(latent, hidden, k)`` → leaky ReLU → ``Conv1d(hidden,
    features, k)`` ("same" padding, odd `kernel_size`), so the time axis keeps its length.
    Also the encoder/decoder of ``jaxlatent train``'s `NormalizingAutoencoder`
    (``sb_normalizing_ae``).

    Args:
      features: input (and output) channels.
      hidden: hidden channels.
      latent: latent channels.
      kernel_size: odd kernel size of the time convolutions.
      rngs: initialisation randomness (the encoder's layers draw first).
      precision: precision of every convolution (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`; default
        ``"highest"``).

    Returns:
      ``(encoder, decoder)``.

    Example:
      >>> enc, dec = nnx.eval_shape(lambda: conv_encoder_decoder(6, 8, 2, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((2, 10, 6), jax.numpy.float32)
      >>> z = nnx.eval_shape(lambda m, x: m(x), enc, x)
      >>> z.shape, nnx.eval_shape(lambda m, z: m(z), dec, z).shape
      ((2, 10, 2), (2, 10, 6))
    """
    conv = _time_conv(kernel_size, precision, rngs)
    encoder = nnx.Sequential(conv(features, hidden), nnx.leaky_relu, conv(hidden, latent, 1))
    return encoder, _conv_decoder(conv, features, hidden, latent)


class ConvAutoencoder(Autoencoder):
    """A plain convolutional autoencoder over time: ``[batch, time, features]``.

    Encoder and decoder: `conv_encoder_decoder` (the time axis keeps its length).

    Args:
      features: input (and output) channels.
      hidden: hidden channels.
      latent: latent channels.
      kernel_size: odd kernel size of the time convolutions.
      rngs: initialisation randomness.
      precision: precision of every convolution (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`; default
        ``"highest"``).

    Example:
      Shapes only (`nnx.eval_shape` allocates and computes nothing):

      >>> ae = nnx.eval_shape(lambda: ConvAutoencoder(6, 8, 2, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((2, 10, 6), jax.numpy.float32)
      >>> length = jax.ShapeDtypeStruct((2,), jax.numpy.float32)
      >>> out = nnx.eval_shape(lambda m, x, n: m.train_sample(x, n), ae, x, length)
      >>> out.rec.shape, out.latent.shape
      ((2, 10, 6), (2, 10, 2))
    """

    def __init__(
        self,
        features: int,
        hidden: int,
        latent: int,
        kernel_size: int = 5,
        *,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs,
    ):
        self.encoder, self.decoder = conv_encoder_decoder(
            features, hidden, latent, kernel_size, precision=precision, rngs=rngs
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


def conv_variational_autoencoder(
    features: int,
    hidden: int,
    latent: int,
    kernel_size: int = 5,
    *,
    precision: PrecisionLike = DEFAULT_PRECISION,
    rngs: nnx.Rngs,
) -> VariationalAutoencoder:
    """A `VariationalAutoencoder` over time with convolutional encoder, decoder and heads.

    Encoder ``[batch, time, features] -> [batch, time, hidden]``: two ``Conv1d(k)`` each
    followed by leaky ReLU; heads ``mean`` and ``log_var``: ``Conv1d(hidden, latent, 1)``;
    decoder ``[batch, time, latent] -> [batch, time, features]``: ``Conv1d(latent, hidden,
    k)`` → leaky ReLU → ``Conv1d(hidden, features, k)`` ("same" padding, odd `kernel_size`).

    Args:
      features: input (and output) channels.
      hidden: hidden channels.
      latent: latent channels.
      kernel_size: odd kernel size of the time convolutions.
      rngs: initialisation randomness (drawn in the order encoder, decoder, mean, log_var).
      precision: precision of every convolution (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`; default
        ``"highest"``).

    Returns:
      The `VariationalAutoencoder` (its `train_sample` takes ``key``: the sampling noise).

    Example:
      >>> vae = nnx.eval_shape(
      ...     lambda: conv_variational_autoencoder(6, 8, 2, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((2, 10, 6), jax.numpy.float32)
      >>> nnx.eval_shape(lambda m, x: m.encode(x), vae, x).shape
      (2, 10, 2)
    """
    conv = _time_conv(kernel_size, precision, rngs)
    encoder = nnx.Sequential(
        conv(features, hidden), nnx.leaky_relu, conv(hidden, hidden), nnx.leaky_relu
    )
    decoder = _conv_decoder(conv, features, hidden, latent)
    return VariationalAutoencoder(
        encoder=encoder,
        decoder=decoder,
        mean=conv(hidden, latent, 1),
        log_var=conv(hidden, latent, 1),
    )
