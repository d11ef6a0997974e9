"""DAC's vector quantizer and residual vector quantizer, channels-last (the reference's names).

Port of `dac.nn.quantize.VectorQuantize` / `ResidualVectorQuantize` (descript-audio-codec
1.0.0; SpeechBrain 1.1.2 `speechbrain.lobes.models.discrete.dac` has numerically identical
copies) on ``[batch, time, channels]`` arrays. Kumar et al. 2023, "High-Fidelity Audio
Compression with Improved RVQGAN", arXiv:2306.06546; residual VQ from Zeghidour et al. 2021,
"SoundStream", arXiv:2107.03312; factorised, l2-normalised codes from Yu et al. 2022,
arXiv:2110.04627.

Behaviour kept from the reference (each one a documented quirk of it):

* The lookup is by cosine similarity (l2-normalised vectors and codes) but the quantized vector
  is the **raw** codebook row.
* Both losses are the same number per item, ``mean_{t,d} (z_e - z_q)²``; the commitment loss
  trains the input projection, the codebook loss the codebook.
* Training (``train=True``): every quantizer runs and `n_quantizers` is **ignored**; with
  quantizer dropout the **first** ``int(batch * quantizer_dropout)`` items get a random depth
  in ``[1, n_codebooks]`` (the others use all quantizers); the residual is updated with the
  **unmasked** output of every quantizer; each loss is the batch mean of the masked per-item
  losses (masked items count in the denominator), summed over quantizers. `codes` then has
  `n_codebooks` rows even for items whose depth is smaller.

Differences: the straight-through output is the code vector bit for bit (the reference's
``z_e + (z_q - z_e).detach()`` rounds by an ulp); randomness comes from an explicit `key`
(torch uses the global generator); ``n_quantizers`` outside ``[1, n_codebooks]`` and
``quantizer_dropout`` outside ``[0, 1]`` raise instead of misbehaving.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlatent._checks import check_floating, check_n_quantizers, shape_str
from jaxlatent._rng import next_key
from jaxlatent.nn.weight_norm import WNConv1d
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike
from jaxlatent.quantizers.rotation import estimator
from jaxlatent.quantizers.search import (
    CODE_CHUNK,
    VECTOR_CHUNK,
    check_code_indices,
    lookup_codes,
    nearest_code,
)

__all__ = [
    "RVQDecoded",
    "RVQOutput",
    "ResidualVectorQuantize",
    "VectorQuantize",
    "VectorQuantizeOutput",
    "dropout_depths",
]

Array = jax.Array


class VectorQuantizeOutput(NamedTuple):
    """Output of :class:`VectorQuantize` (the reference's 5-tuple, in its order)."""

    #: ``[batch, time, input_dim]``: ``out_proj`` of the (straight-through) code vectors.
    z_q: Array
    #: ``[batch]``: ``mean_{t,d} (z_e - sg(codes))²`` (gradient to the input projection).
    commitment_loss: Array
    #: ``[batch]``: ``mean_{t,d} (codes - sg(z_e))²`` (gradient to the codebook).
    codebook_loss: Array
    #: int32 ``[batch, time]``.
    indices: Array
    #: ``[batch, time, codebook_dim]``: the projected latents before quantization.
    z_e: Array


class RVQOutput(NamedTuple):
    """Output of :meth:`ResidualVectorQuantize.__call__` (the reference's 5-tuple)."""

    #: ``[batch, time, input_dim]``: sum of the (masked) quantizer outputs.
    z: Array
    #: int32 ``[batch, n_q, time]`` (``n_q`` quantizers run: `n_codebooks` in training).
    codes: Array
    #: ``[batch, time, Σ codebook_dim]``: the projected latents of every quantizer run.
    latents: Array
    #: float32 scalar.
    commitment_loss: Array
    #: float32 scalar.
    codebook_loss: Array


class RVQDecoded(NamedTuple):
    """Output of :meth:`ResidualVectorQuantize.from_codes` / `from_latents`."""

    #: ``[batch, time, input_dim]``.
    z: Array
    #: ``[batch, time, Σ codebook_dim]``: the code vectors (raw codebook rows) concatenated.
    z_p: Array
    #: int32 ``[batch, n, time]``.
    codes: Array


def _check_sequence(name: str, x, channels: int) -> None:
    check_floating(name, x)
    if jnp.ndim(x) != 3 or jnp.shape(x)[-1] != channels:
        raise ValueError(
            f"{name} must be [batch, time, {channels}] (channels-last), got shape {shape_str(x)}"
        )


class VectorQuantize(nnx.Module):
    """Factorised, l2-normalised vector quantizer of DAC (channels-last).

    ``z_e = in_proj(z)`` (weight-normed 1×1 conv to `codebook_dim`), nearest code by cosine
    similarity, raw codebook row as ``z_q``, losses per item, straight-through, then
    ``out_proj`` back to `input_dim`.

    Args:
      input_dim: channels of the input ``z``.
      codebook_size: number of codes ``K``.
      codebook_dim: dimension ``d`` of the code space.
      vector_chunk, code_chunk: chunk sizes of the nearest-code search (see
        :func:`~jaxlatent.quantizers.nearest_code`).
      precision: precision of the two projections (:mod:`jaxlatent.precision`; the
        nearest-code search is at ``HIGHEST`` whatever this is).
      rotation_trick: route the gradient to ``z_e`` with the rotation trick
        (:func:`~jaxlatent.quantizers.rotation_trick`, Fifty et al. 2024) instead of DAC's
        straight-through (the default, as in the reference).
      rngs: initialisation randomness (torch's defaults: uniform conv weights, N(0, 1) codes).

    Parameters: ``in_proj`` / ``out_proj`` (:class:`~jaxlatent.nn.WNConv1d`, ``weight_g``,
    ``weight_v``, ``bias``) and ``codebook`` (``nnx.Param [codebook_size, codebook_dim]``).

    Source: descript-audio-codec 1.0.0 `dac.nn.quantize.VectorQuantize` and SpeechBrain 1.1.2
    `speechbrain.lobes.models.discrete.dac.VectorQuantize`.

    Example:
      >>> vq = VectorQuantize(12, 16, 4, rngs=nnx.Rngs(0))
      >>> out = vq(jnp.ones((2, 5, 12)))
      >>> out.z_q.shape, out.indices.shape, out.indices.dtype, out.commitment_loss.shape
      ((2, 5, 12), (2, 5), dtype('int32'), (2,))
    """

    def __init__(
        self,
        input_dim: int,
        codebook_size: int,
        codebook_dim: int,
        *,
        vector_chunk: int | None = VECTOR_CHUNK,
        code_chunk: int | None = CODE_CHUNK,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rotation_trick: bool = False,
        rngs: nnx.Rngs,
    ):
        self.input_dim = input_dim
        self.rotation_trick = bool(rotation_trick)
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.vector_chunk = vector_chunk
        self.code_chunk = code_chunk
        self.in_proj = WNConv1d(input_dim, codebook_dim, 1, precision=precision, rngs=rngs)
        self.out_proj = WNConv1d(codebook_dim, input_dim, 1, precision=precision, rngs=rngs)
        self.codebook = nnx.Param(
            jax.random.normal(next_key(rngs), (codebook_size, codebook_dim), jnp.float32)
        )

    def __call__(self, z: Array) -> VectorQuantizeOutput:
        """Quantize ``z [batch, time, input_dim]`` (floating).

        Returns:
          :class:`VectorQuantizeOutput`.

        Raises:
          ValueError: if `z` is not floating or not ``[batch, time, input_dim]``.
        """
        _check_sequence("z", z, self.input_dim)
        z_e = self.in_proj(z)
        z_q, indices = self.decode_latents(z_e)
        z_q = z_q.astype(z_e.dtype)
        axes = (1, 2)
        commitment_loss = jnp.mean(jnp.square(z_e - jax.lax.stop_gradient(z_q)), axis=axes)
        codebook_loss = jnp.mean(jnp.square(z_q - jax.lax.stop_gradient(z_e)), axis=axes)
        z_q = self.out_proj(estimator(self.rotation_trick)(z_e, z_q))
        return VectorQuantizeOutput(z_q, commitment_loss, codebook_loss, indices, z_e)

    def embed_code(self, embed_id: Array) -> Array:
        """Codebook rows of integer ids ``[...]`` → ``[..., codebook_dim]``."""
        return lookup_codes(self.codebook[...], embed_id)

    def decode_code(self, embed_id: Array) -> Array:
        """Code vectors of ids ``[batch, time]`` → ``[batch, time, codebook_dim]``.

        (Channels-last, so the same as :meth:`embed_code`; the reference transposes.)
        """
        return self.embed_code(embed_id)

    def decode_latents(self, latents: Array) -> tuple[Array, Array]:
        """Nearest codes of ``latents [batch, time, codebook_dim]`` by cosine similarity.

        Returns:
          ``(z_q, indices)``: the raw codebook rows ``[batch, time, codebook_dim]`` (dtype of
          the codebook) and int32 indices ``[batch, time]``.

        Raises:
          ValueError: if `latents` is not floating or its last axis is not `codebook_dim`.
        """
        _check_sequence("latents", latents, self.codebook_dim)
        codebook = self.codebook[...]
        indices = nearest_code(
            latents,
            codebook,
            metric="cosine",
            form="dac",
            vector_chunk=self.vector_chunk,
            code_chunk=self.code_chunk,
        )
        return jnp.take(codebook, indices, axis=0), indices


def dropout_depths(key: Array, batch: int, n_codebooks: int, quantizer_dropout: float) -> Array:
    """Per-item number of quantizers in training, with the reference's quantizer dropout.

    Draws ``randint(1, n_codebooks + 1, (batch,))`` from `key` and gives it to the first
    ``int(batch * quantizer_dropout)`` items; the others get ``n_codebooks + 1`` (all
    quantizers), as `dac.nn.quantize.ResidualVectorQuantize.forward`. Item ``b`` uses
    quantizers ``i < depths[b]``.

    Returns:
      int32 ``[batch]``.

    Example:
      >>> d = dropout_depths(jax.random.key(0), 4, 3, 0.5)
      >>> d.shape, bool(((d[:2] >= 1) & (d[:2] <= 3)).all()), d[2:].tolist()
      ((4,), True, [4, 4])
    """
    n_dropout = int(batch * quantizer_dropout)
    depths = jnp.full((batch,), n_codebooks + 1, jnp.int32)
    if n_dropout <= 0:
        return depths
    draw = jax.random.randint(key, (batch,), 1, n_codebooks + 1, dtype=jnp.int32)
    return jnp.where(jnp.arange(batch) < n_dropout, draw, depths)


class ResidualVectorQuantize(nnx.Module):
    """DAC's residual vector quantizer (channels-last), with quantizer dropout.

    Quantizer ``i`` quantizes the residual left by quantizers ``0..i-1``; the output is the
    sum of the quantizer outputs. See the module docstring for the training-mode semantics.

    Args:
      input_dim: channels of the input ``z``.
      n_codebooks: number of quantizers.
      codebook_size: codes per codebook.
      codebook_dim: code dimension, one int for all quantizers or one per quantizer.
      quantizer_dropout: fraction of the batch (its first items) that gets a random depth in
        training (`True` means 1.0, as in the reference).
      vector_chunk, code_chunk, precision, rotation_trick: passed to every
        :class:`VectorQuantize` (straight-through by default, as in the reference).
      rngs: initialisation randomness.

    Parameters: ``quantizers/{i}/{in_proj,out_proj,codebook}`` (an `nnx.List`).

    Raises:
      ValueError: if `codebook_dim` has the wrong length or `quantizer_dropout` is outside
        ``[0, 1]``.

    Source: descript-audio-codec 1.0.0 `dac.nn.quantize.ResidualVectorQuantize` and
    SpeechBrain 1.1.2 `speechbrain.lobes.models.discrete.dac.ResidualVectorQuantize`.

    Example:
      >>> rvq = ResidualVectorQuantize(12, 3, 16, 4, rngs=nnx.Rngs(0))
      >>> out = rvq(jnp.ones((2, 5, 12)), n_quantizers=2)
      >>> out.z.shape, out.codes.shape, out.latents.shape, out.commitment_loss.shape
      ((2, 5, 12), (2, 2, 5), (2, 5, 8), ())
      >>> rvq.from_codes(out.codes).z.shape
      (2, 5, 12)
    """

    def __init__(
        self,
        input_dim: int = 512,
        n_codebooks: int = 9,
        codebook_size: int = 1024,
        codebook_dim: int | Sequence[int] = 8,
        quantizer_dropout: float = 0.0,
        *,
        vector_chunk: int | None = VECTOR_CHUNK,
        code_chunk: int | None = CODE_CHUNK,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rotation_trick: bool = False,
        rngs: nnx.Rngs,
    ):
        if isinstance(codebook_dim, int):
            codebook_dim = [codebook_dim] * n_codebooks
        codebook_dim = [int(d) for d in codebook_dim]
        if len(codebook_dim) != n_codebooks:
            raise ValueError(
                f"codebook_dim has {len(codebook_dim)} entries but n_codebooks={n_codebooks}"
            )
        if not 0.0 <= float(quantizer_dropout) <= 1.0:
            raise ValueError(f"quantizer_dropout must lie in [0, 1], got {quantizer_dropout}")
        self.input_dim = input_dim
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.codebook_dim = tuple(codebook_dim)
        self.quantizer_dropout = float(quantizer_dropout)
        self.quantizers = nnx.List(
            [
                VectorQuantize(
                    input_dim,
                    codebook_size,
                    d,
                    vector_chunk=vector_chunk,
                    code_chunk=code_chunk,
                    precision=precision,
                    rotation_trick=rotation_trick,
                    rngs=rngs,
                )
                for d in codebook_dim
            ]
        )

    def __call__(
        self,
        z: Array,
        n_quantizers: int | None = None,
        *,
        train: bool = False,
        key: Array | None = None,
    ) -> RVQOutput:
        """Quantize ``z [batch, time, input_dim]``.

        Args:
          z: floating input ``[batch, time, input_dim]``.
          n_quantizers: in evaluation, how many quantizers to run (default all); **ignored
            in training**, as in the reference (still validated).
          train: training mode (all quantizers run, quantizer dropout applies).
          key: PRNG key of the quantizer dropout; required when ``train`` and
            ``int(batch * quantizer_dropout) > 0``.

        Returns:
          :class:`RVQOutput`.

        Raises:
          ValueError: if `z` is not floating or not ``[batch, time, input_dim]``,
            `n_quantizers` is not an int in ``[1, n_codebooks]``, or the key is missing.
        """
        _check_sequence("z", z, self.input_dim)
        n_q = check_n_quantizers(n_quantizers, self.n_codebooks)
        batch = z.shape[0]
        depths = None
        if train:
            n_q = self.n_codebooks
            if int(batch * self.quantizer_dropout) > 0:
                if key is None:
                    raise ValueError(
                        "key is required in training with quantizer_dropout="
                        f"{self.quantizer_dropout} (batch {batch})"
                    )
                depths = dropout_depths(key, batch, self.n_codebooks, self.quantizer_dropout)

        z_q = None
        residual = z
        commitment_loss = jnp.zeros((), jnp.float32)
        codebook_loss = jnp.zeros((), jnp.float32)
        codes, latents = [], []
        for i, quantizer in enumerate(self.quantizers[:n_q]):
            out = quantizer(residual)
            z_q_i, cl_i, cb_i = out.z_q, out.commitment_loss, out.codebook_loss
            if depths is not None:
                mask = (i < depths).astype(z_q_i.dtype)
                z_q_i_masked = z_q_i * mask[:, None, None]
                cl_i, cb_i = cl_i * mask, cb_i * mask
            else:
                z_q_i_masked = z_q_i
            z_q = z_q_i_masked if z_q is None else z_q + z_q_i_masked
            residual = residual - z_q_i  # the unmasked output, as the reference
            commitment_loss = commitment_loss + jnp.mean(cl_i)
            codebook_loss = codebook_loss + jnp.mean(cb_i)
            codes.append(out.indices)
            latents.append(out.z_e)
        return RVQOutput(
            z_q,
            jnp.stack(codes, axis=1),
            jnp.concatenate(latents, axis=-1),
            commitment_loss,
            codebook_loss,
        )

    def from_codes(self, codes: Array) -> RVQDecoded:
        """Reconstruct from codes ``[batch, n, time]`` (``n <= n_codebooks``; the first `n`).

        Returns:
          :class:`RVQDecoded` ``(z, z_p, codes)``.

        Raises:
          ValueError: if `codes` is not an integer ``[batch, n, time]`` array with
            ``1 <= n <= n_codebooks``, or (when concrete) holds out-of-range codes.
        """
        codes = jnp.asarray(codes)
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.n_codebooks:
            raise ValueError(
                f"codes must be [batch, n, time] with 1 <= n <= n_codebooks={self.n_codebooks}, "
                f"got shape {shape_str(codes)}"
            )
        check_code_indices(codes, self.codebook_size, name="codes")
        z_q, z_p = None, []
        for i in range(codes.shape[1]):
            quantizer = self.quantizers[i]
            z_p_i = quantizer.decode_code(codes[:, i, :])
            z_p.append(z_p_i)
            z_q_i = quantizer.out_proj(z_p_i)
            z_q = z_q_i if z_q is None else z_q + z_q_i
        return RVQDecoded(z_q, jnp.concatenate(z_p, axis=-1), codes)

    def from_latents(self, latents: Array) -> RVQDecoded:
        """Quantize and reconstruct from projected latents ``[batch, time, N]``.

        Uses the largest number ``n`` of quantizers whose code dimensions fit in ``N``
        (``Σ_{i<n} codebook_dim[i] <= N``), as the reference; extra channels are ignored.

        Returns:
          :class:`RVQDecoded` ``(z, z_p, codes)`` with ``codes [batch, n, time]``.

        Raises:
          ValueError: if `latents` is not a floating 3-D array or ``N`` is smaller than the
            first codebook's dimension.
        """
        check_floating("latents", latents)
        if jnp.ndim(latents) != 3:
            raise ValueError(
                f"latents must be [batch, time, channels], got shape {shape_str(latents)}"
            )
        dims = np.cumsum([0, *self.codebook_dim])
        n = int(np.nonzero(dims <= latents.shape[-1])[0].max())
        if n == 0:
            raise ValueError(
                f"latents have {latents.shape[-1]} channels, fewer than the first codebook's "
                f"dimension {self.codebook_dim[0]}"
            )
        z_q, z_p, codes = None, [], []
        for i in range(n):
            quantizer = self.quantizers[i]
            z_p_i, codes_i = quantizer.decode_latents(latents[..., dims[i] : dims[i + 1]])
            z_p.append(z_p_i)
            codes.append(codes_i)
            z_q_i = quantizer.out_proj(z_p_i)
            z_q = z_q_i if z_q is None else z_q + z_q_i
        return RVQDecoded(z_q, jnp.concatenate(z_p, axis=-1), jnp.stack(codes, axis=1))
