"""DAC `Encoder` (audio -> continuous latent) and `Decoder` (latent -> audio), channels-last.

Same architecture and parameters as descript-audio-codec 1.0.0 ``dac.model.dac.Encoder`` /
``Decoder`` (and SpeechBrain 1.1.2 ``speechbrain.lobes.models.discrete.dac``), on
``[batch, time, channels]`` arrays: audio is ``[batch, samples, 1]``, latents are
``[batch, frames, latent_dim]``. The residual vector quantizer that sits between them is a
separate module.

Source: Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN"
(arXiv:2306.06546).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import check_floating
from jaxlatent.models.dac.config import DACConfig
from jaxlatent.models.dac.layers import DecoderBlock, EncoderBlock, Snake1d
from jaxlatent.nn import WNConv1d
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

Array = jax.Array

__all__ = ["Decoder", "Encoder"]


class Encoder(nnx.Module):
    """Conv(1 -> d_model, k7), one :class:`EncoderBlock` per stride (channels doubling), Snake,
    Conv(-> d_latent, k3).

    Args:
      d_model: channels after the first convolution.
      strides: downsampling strides; the output has ``time / prod(strides)`` frames (for
        inputs padded to a multiple of the hop length; see `EncoderBlock` for the rest).
      d_latent: output channels.
      param_dtype: dtype of the parameters.
      precision: precision of every convolution (:mod:`jaxlatent.precision`).
      rngs: initialisation randomness (torch's default initialisation).

    Source: ``dac.model.dac.Encoder``.

    Example:
      Shapes of the 44.1 kHz encoder on one second of audio (86 frames of 512 samples),
      evaluated abstractly (no parameters allocated, nothing computed):

      >>> from jaxlatent.models.dac import DACConfig
      >>> config = DACConfig.dac_44khz_8kbps()
      >>> encoder = nnx.eval_shape(lambda: Encoder.from_config(config, rngs=nnx.Rngs(0)))
      >>> audio = jax.ShapeDtypeStruct((1, 86 * 512, 1), jnp.float32)
      >>> nnx.eval_shape(lambda m, x: m(x), encoder, audio).shape
      (1, 86, 1024)
    """

    def __init__(
        self,
        d_model: int = 64,
        strides: Sequence[int] = (2, 4, 8, 8),
        d_latent: int = 64,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        kw = {"param_dtype": param_dtype, "precision": precision, "rngs": rngs}
        self.strides = tuple(strides)
        self.conv1 = WNConv1d(1, d_model, kernel_size=7, padding=3, **kw)
        blocks = []
        for stride in self.strides:
            d_model *= 2
            blocks.append(EncoderBlock(d_model, stride=stride, **kw))
        self.blocks = nnx.List(blocks)
        self.snake1 = Snake1d(d_model, param_dtype=param_dtype)
        self.conv2 = WNConv1d(d_model, d_latent, kernel_size=3, padding=1, **kw)
        self.enc_dim = d_model

    @classmethod
    def from_config(cls, config: DACConfig, **kwargs) -> Encoder:
        """The encoder of a DAC model (`kwargs`: ``rngs``, ``param_dtype``, ``precision``)."""
        return cls(config.encoder_dim, config.encoder_rates, config.latent_dim, **kwargs)

    def __call__(self, audio: Array, *, padding: bool = True) -> Array:
        """Encode audio.

        Args:
          audio: ``[batch, samples, 1]``, floating.
          padding: ``False`` runs every convolution with padding 0 (the official chunked
            ``compress``; fewer frames, see :func:`jaxlatent.codec.chunking.output_length`).

        Returns:
          ``[batch, frames, d_latent]`` in the dtype of `audio`.

        Raises:
          ValueError: if `audio` is not floating or not ``[batch, samples, 1]``.
        """
        check_floating("audio", audio)
        x = self.conv1(audio, padding=padding)
        for block in self.blocks:
            x = block(x, padding=padding)
        return self.conv2(self.snake1(x), padding=padding)


class Decoder(nnx.Module):
    """Conv(input_channel -> channels, k7), one :class:`DecoderBlock` per rate (channels
    halving), Snake, Conv(-> d_out, k7), Tanh.

    Odd rates lose one sample per block (see `DecoderBlock`): with rates ``(8, 5, 4, 2)`` the
    decoder returns ``320 * frames - 8`` samples, as the reference and its checkpoints do.

    Args:
      input_channel: latent channels.
      channels: channels after the first convolution (halved by every block).
      rates: upsampling strides.
      d_out: output channels (1: mono audio).
      param_dtype: dtype of the parameters.
      precision: precision of every convolution (:mod:`jaxlatent.precision`).
      rngs: initialisation randomness.

    Source: ``dac.model.dac.Decoder``.

    Example:
      The 16 kHz decoder returns 8 samples fewer than ``320 * frames`` (shapes evaluated
      abstractly):

      >>> from jaxlatent.models.dac import DACConfig
      >>> config = DACConfig.dac_16khz()
      >>> decoder = nnx.eval_shape(lambda: Decoder.from_config(config, rngs=nnx.Rngs(0)))
      >>> z = jax.ShapeDtypeStruct((1, 50, config.latent_dim), jnp.float32)
      >>> nnx.eval_shape(lambda m, z: m(z), decoder, z).shape
      (1, 15992, 1)
    """

    def __init__(
        self,
        input_channel: int,
        channels: int,
        rates: Sequence[int],
        d_out: int = 1,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        kw = {"param_dtype": param_dtype, "precision": precision, "rngs": rngs}
        self.rates = tuple(rates)
        self.conv1 = WNConv1d(input_channel, channels, kernel_size=7, padding=3, **kw)
        blocks = []
        output_dim = channels
        for i, stride in enumerate(self.rates):
            input_dim = channels // 2**i
            output_dim = channels // 2 ** (i + 1)
            blocks.append(DecoderBlock(input_dim, output_dim, stride, **kw))
        self.blocks = nnx.List(blocks)
        self.snake1 = Snake1d(output_dim, param_dtype=param_dtype)
        self.conv2 = WNConv1d(output_dim, d_out, kernel_size=7, padding=3, **kw)

    @classmethod
    def from_config(cls, config: DACConfig, **kwargs) -> Decoder:
        """The decoder of a DAC model (`kwargs`: ``rngs``, ``param_dtype``, ``precision``)."""
        return cls(config.latent_dim, config.decoder_dim, config.decoder_rates, **kwargs)

    def __call__(self, z: Array, *, padding: bool = True) -> Array:
        """Decode latents.

        Args:
          z: ``[batch, frames, input_channel]``, floating.
          padding: ``False`` runs every convolution with padding 0 (the official chunked
            ``decompress`` of files coded so).

        Returns:
          ``[batch, samples, d_out]`` in ``(-1, 1)``, in the dtype of `z`.

        Raises:
          ValueError: if `z` is not floating or has the wrong rank or channel count.
        """
        check_floating("z", z)
        x = self.conv1(z, padding=padding)
        for block in self.blocks:
            x = block(x, padding=padding)
        return jnp.tanh(self.conv2(self.snake1(x), padding=padding))
