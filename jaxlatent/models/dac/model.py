"""The whole DAC codec: encoder, residual vector quantizer and decoder.

Same computation, parameters and defaults as descript-audio-codec 1.0.0 ``dac.DAC``
(``dac/model/dac.py``; SpeechBrain 1.1.2 ``speechbrain.lobes.models.discrete.dac.DAC`` has the
same modules), on channels-last arrays: audio ``[batch, samples, 1]``, latents
``[batch, frames, channels]``, codes ``[batch, n_q, frames]``.

`DAC` is a plain NNX module: its methods validate their arguments and compute, eagerly or
inside any `jax`/`nnx` transform. Compile at the call site: ``nnx.jit``, or
:func:`jaxlatent.compilation.compiled` (``compiled(DAC.encode, graphdef, n_quantizers=4)``),
the cached compilation the codec and the command line use.

Behaviour kept from the reference (documented quirks):

* ``n_quantizers`` is honoured only in evaluation; with ``train=True`` every quantizer runs
  and quantizer dropout applies (the reference ignores the argument whenever
  ``model.training`` is set, which is the state ``dac.DAC.load`` returns).
* The 16 and 24 kHz configurations (a stride-5 transposed convolution without
  ``output_padding``) decode ``hop_length * frames - 8`` samples, so ``__call__`` returns
  ``audio`` *shorter* than its input when the input is within 8 samples of a multiple of the
  hop length; the reference crops ``x[..., :length]`` the same way.
* ``encode`` does not pad: audio whose length is not a multiple of ``hop_length`` is encoded
  as it is (the strided convolutions drop the tail); ``__call__`` pads first (``preprocess``).

Source: Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN"
(arXiv:2306.06546); descript-audio-codec 1.0.0 ``dac.model.dac.DAC``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlatent._checks import (
    check_floating,
    check_n_quantizers,
    check_no_nan,
    is_concrete,
    shape_str,
)
from jaxlatent.models.dac.codec import Decoder, Encoder
from jaxlatent.models.dac.config import DACConfig
from jaxlatent.models.dac.layers import init_weights
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike, resolve_precision
from jaxlatent.quantizers.dac import ResidualVectorQuantize, RVQDecoded

Array = jax.Array

__all__ = ["DAC", "DACEncoded", "DACOutput"]


class DACEncoded(NamedTuple):
    """Output of :meth:`DAC.encode` (the reference's 5-tuple, in its order)."""

    #: ``[batch, frames, latent_dim]``: quantized continuous representation.
    z: Array
    #: int32 ``[batch, n_q, frames]``: code indices (``n_q = n_codebooks`` in training).
    codes: Array
    #: ``[batch, frames, n_q * codebook_dim]``: projected latents before quantization.
    latents: Array
    #: float32 scalar: commitment loss summed over quantizers.
    commitment_loss: Array
    #: float32 scalar: codebook loss summed over quantizers.
    codebook_loss: Array


class DACOutput(NamedTuple):
    """Output of :meth:`DAC.__call__` (the reference's ``forward`` dict, as fields)."""

    #: ``[batch, samples', 1]``: decoded audio cropped to the input length (``samples' <=
    #: samples``; see the module docstring for the 16/24 kHz case).
    audio: Array
    #: ``[batch, frames, latent_dim]``.
    z: Array
    #: int32 ``[batch, n_q, frames]``.
    codes: Array
    #: ``[batch, frames, n_q * codebook_dim]``.
    latents: Array
    #: float32 scalar (the reference's ``"vq/commitment_loss"``).
    commitment_loss: Array
    #: float32 scalar (the reference's ``"vq/codebook_loss"``).
    codebook_loss: Array


def _pad_to_hop(audio: Array, hop_length: int) -> Array:
    length = audio.shape[1]
    right_pad = math.ceil(length / hop_length) * hop_length - length
    if right_pad == 0:
        return audio
    return jnp.pad(audio, ((0, 0), (0, right_pad), (0, 0)))


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class DAC(nnx.Module):
    """The Descript Audio Codec (encoder, residual VQ, decoder), channels-last.

    Submodules ``encoder`` (:class:`~jaxlatent.models.dac.Encoder`), ``quantizer``
    (:class:`~jaxlatent.quantizers.dac.ResidualVectorQuantize`) and ``decoder``
    (:class:`~jaxlatent.models.dac.Decoder`) hold exactly the reference's parameters
    (weight-normed convolutions with trainable ``weight_g``/``weight_v``, Snake ``alpha``,
    codebooks). After construction the reference's ``init_weights`` is applied
    (:func:`~jaxlatent.models.dac.init_weights`: the ``Conv1d`` biases are zeroed; its
    ``trunc_normal_`` on the recomputed weight has no effect in torch either).

    Pretrained weights come from :func:`converters.dac.convert_checkpoint` /
    :func:`converters.dac_cache.load_model`; building a full-size model here initialises ~75 M
    random parameters eagerly (tens of seconds on CPU); wrap it in ``nnx.eval_shape`` when
    only the structure is needed.

    Args:
      config: the hyper-parameters (:class:`~jaxlatent.models.dac.DACConfig`; presets for the
        released variants).
      param_dtype: dtype of the parameters.
      precision: precision of every convolution and projection: a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision` (default
        ``"highest"``: float32 products on every backend, the reference's values;
        ``"default"``: TF32 / one bfloat16 pass on GPU / TPU, faster). The nearest-code
        search is at ``HIGHEST`` whatever this is. See :mod:`jaxlatent.precision`.
      rngs: initialisation randomness.

    Raises:
      ValueError: if `config` is not a `DACConfig`, or for an unknown `precision`.

    Source: descript-audio-codec 1.0.0 ``dac.DAC`` (Kumar et al. 2023, arXiv:2306.06546).

    Example:
      Shapes of the released 16 kHz model on 0.1 s of audio, evaluated abstractly (no
      parameters allocated, nothing computed; real use converts a checkpoint first):

      >>> config = DACConfig.dac_16khz()
      >>> model = nnx.eval_shape(lambda: DAC(config, rngs=nnx.Rngs(0)))
      >>> audio = jax.ShapeDtypeStruct((2, 1600, 1), jnp.float32)
      >>> out = nnx.eval_shape(lambda m, x: m(x, 16000, n_quantizers=4), model, audio)
      >>> out.audio.shape, out.z.shape, out.codes.shape, out.latents.shape
      ((2, 1592, 1), (2, 5, 1024), (2, 4, 5), (2, 5, 32))
      >>> codes = jax.ShapeDtypeStruct((2, 4, 5), jnp.int32)
      >>> nnx.eval_shape(lambda m, c: m.decode(m.from_codes(c).z), model, codes).shape
      (2, 1592, 1)
    """

    def __init__(
        self,
        config: DACConfig,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        if not isinstance(config, DACConfig):
            raise ValueError(f"config must be a DACConfig, got {type(config).__name__}")
        self.config = config
        #: The `jax.lax.Precision` of every convolution and projection.
        self.precision = resolve_precision(precision)
        precision = self.precision
        kw = {"param_dtype": param_dtype, "precision": precision, "rngs": rngs}
        self.encoder = Encoder.from_config(config, **kw)
        self.quantizer = ResidualVectorQuantize(
            config.latent_dim,
            config.n_codebooks,
            config.codebook_size,
            config.codebook_dims,
            config.quantizer_dropout,
            precision=precision,
            rngs=rngs,
        )
        self.decoder = Decoder.from_config(config, **kw)
        init_weights(self)

    # ----------------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """Sample rate in Hz (``config.sample_rate``)."""
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        """Samples per code frame (product of the encoder rates)."""
        return self.config.hop_length

    @property
    def n_codebooks(self) -> int:
        """Number of residual quantizers."""
        return self.config.n_codebooks

    # ----------------------------------------------------------------------------------------
    # Validation
    # ----------------------------------------------------------------------------------------
    def _check_audio(self, audio) -> Array:
        if not hasattr(audio, "dtype"):
            audio = np.asarray(audio)
        check_floating("audio", audio)
        if jnp.ndim(audio) != 3 or jnp.shape(audio)[-1] != 1:
            raise ValueError(
                f"audio must be [batch, samples, 1] (mono, channels-last), got shape "
                f"{shape_str(audio)}"
            )
        if jnp.shape(audio)[1] == 0:
            raise ValueError(f"audio is empty (shape {shape_str(audio)})")
        check_no_nan("audio", audio)
        return jnp.asarray(audio)

    def _check_train_key(self, batch: int, train: bool, key):
        if not train:
            return None  # evaluation is deterministic: the key is not used (nor compiled in)
        if key is None and int(batch * self.config.quantizer_dropout) > 0:
            raise ValueError(
                f"key is required with train=True: quantizer_dropout="
                f"{self.config.quantizer_dropout} drops quantizers for "
                f"{int(batch * self.config.quantizer_dropout)} of {batch} items"
            )
        return key

    # ----------------------------------------------------------------------------------------
    # Public API (names and semantics of dac.DAC)
    # ----------------------------------------------------------------------------------------
    def preprocess(self, audio, sample_rate: int | None = None) -> Array:
        """Right-pad `audio` with zeros to a multiple of ``hop_length``.

        Args:
          audio: floating ``[batch, samples, 1]``.
          sample_rate: the audio's sample rate; ``None`` means the model's.

        Returns:
          ``[batch, ceil(samples / hop) * hop, 1]``.

        Raises:
          ValueError: if `sample_rate` differs from the model's (the reference asserts), or
            `audio` is not a finite floating ``[batch, samples, 1]`` array.
        """
        if sample_rate is not None and sample_rate != self.config.sample_rate:
            raise ValueError(
                f"sample_rate={sample_rate} Hz does not match the model's "
                f"{self.config.sample_rate} Hz; resample the audio first"
            )
        return _pad_to_hop(self._check_audio(audio), self.config.hop_length)

    def encode(
        self,
        audio,
        n_quantizers: int | None = None,
        *,
        train: bool = False,
        key: Array | None = None,
        padding: bool = True,
    ) -> DACEncoded:
        """Encode audio to quantized latents and codes (no padding; see `preprocess`).

        Args:
          audio: floating ``[batch, samples, 1]`` (``samples`` a multiple of ``hop_length``
            for the reference's framing).
          n_quantizers: quantizers to use in evaluation (default all); ignored when `train`.
          train: training mode: every quantizer runs, with quantizer dropout.
          key: PRNG key of the quantizer dropout (needed when `train` and
            ``int(batch * quantizer_dropout) > 0``; unused in evaluation).
          padding: ``False`` runs the encoder's convolutions with padding 0, as the
            reference's chunked ``compress`` (``model.padding = False``): fewer frames.

        Returns:
          :class:`DACEncoded` ``(z, codes, latents, commitment_loss, codebook_loss)``.

        Raises:
          ValueError: if `audio` is not floating ``[batch, samples, 1]`` or (when concrete)
            contains NaN/Inf, `n_quantizers` is not an int in ``[1, n_codebooks]``, or the
            key is missing in training.
        """
        audio = self._check_audio(audio)
        n_q = check_n_quantizers(n_quantizers, self.config.n_codebooks)
        key = self._check_train_key(audio.shape[0], bool(train), key)
        z = self.encoder(audio, padding=padding)
        out = self.quantizer(z, n_q, train=bool(train), key=key)
        return DACEncoded(out.z, out.codes, out.latents, out.commitment_loss, out.codebook_loss)

    def decode(self, z, *, padding: bool = True) -> Array:
        """Decode quantized latents ``z [batch, frames, latent_dim]`` to audio.

        Args:
          z: floating ``[batch, frames, latent_dim]``.
          padding: ``False`` runs the decoder's convolutions with padding 0, as the
            reference's chunked ``decompress`` of files coded so.

        Returns:
          ``[batch, samples, 1]`` in ``(-1, 1)``: ``hop_length * frames`` samples, 8 fewer
          for the 16/24 kHz configurations (stride-5 upsampling, as the reference); fewer
          without `padding`.

        Raises:
          ValueError: if `z` is not floating ``[batch, frames, latent_dim]`` or (when
            concrete) contains NaN/Inf.
        """
        if not hasattr(z, "dtype"):
            z = np.asarray(z)
        check_floating("z", z)
        if jnp.ndim(z) != 3 or jnp.shape(z)[-1] != self.config.latent_dim:
            raise ValueError(
                f"z must be [batch, frames, latent_dim={self.config.latent_dim}], got shape "
                f"{shape_str(z)}"
            )
        check_no_nan("z", z)
        return self.decoder(jnp.asarray(z), padding=padding)

    def from_codes(self, codes) -> RVQDecoded:
        """Quantized latents from codes (``quantizer.from_codes`` of the reference).

        Args:
          codes: integer ``[batch, n, frames]`` with ``1 <= n <= n_codebooks`` (any integer
            dtype, e.g. the uint16 of ``.dac`` files): the first `n` codebooks are used.

        Returns:
          :class:`~jaxlatent.quantizers.RVQDecoded` ``(z, z_p, codes)``; ``z`` feeds
          :meth:`decode`.

        Raises:
          ValueError: if `codes` is not an integer ``[batch, n, frames]`` array with ``n`` in
            ``[1, n_codebooks]`` or (when concrete) holds codes outside
            ``[0, codebook_size)``.
        """
        if not hasattr(codes, "dtype"):
            codes = np.asarray(codes)
        dtype = jnp.result_type(codes)
        if not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"codes must be an integer array, got dtype {dtype}")
        n = self.config.n_codebooks
        if jnp.ndim(codes) != 3 or not 1 <= jnp.shape(codes)[1] <= n:
            raise ValueError(
                f"codes must be [batch, n, frames] with 1 <= n <= n_codebooks={n}, got shape "
                f"{shape_str(codes)}"
            )
        if is_concrete(codes):
            values = np.asarray(codes)
            if values.size and (values.min() < 0 or values.max() >= self.config.codebook_size):
                raise ValueError(
                    f"codes must lie in [0, codebook_size={self.config.codebook_size}), got "
                    f"values in [{values.min()}, {values.max()}]"
                )
        return self.quantizer.from_codes(jnp.asarray(codes).astype(jnp.int32))

    def __call__(
        self,
        audio,
        sample_rate: int | None = None,
        n_quantizers: int | None = None,
        *,
        train: bool = False,
        key: Array | None = None,
    ) -> DACOutput:
        """The reference's ``forward``: pad, encode, quantize, decode, crop to the input length.

        Args:
          audio: floating ``[batch, samples, 1]``.
          sample_rate: must equal the model's (``None``: the model's).
          n_quantizers, train, key: as :meth:`encode`.

        Returns:
          :class:`DACOutput` ``(audio, z, codes, latents, commitment_loss, codebook_loss)``.

        Raises:
          ValueError: as :meth:`preprocess` and :meth:`encode`.
        """
        if sample_rate is not None and sample_rate != self.config.sample_rate:
            raise ValueError(
                f"sample_rate={sample_rate} Hz does not match the model's "
                f"{self.config.sample_rate} Hz; resample the audio first"
            )
        audio = self._check_audio(audio)
        length = audio.shape[1]
        enc = self.encode(
            _pad_to_hop(audio, self.config.hop_length), n_quantizers, train=train, key=key
        )
        return DACOutput(self.decoder(enc.z)[:, :length], *enc)
