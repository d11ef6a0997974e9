"""Finite scalar quantization (FSQ): each channel is bounded and rounded to a few levels; the
code is the tuple of levels, its index their mixed-radix number. No codebook to learn.

Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple", arXiv:2309.15505
(App. A.1); the symmetry-preserving bound and noise dropout of arXiv:2411.19842 §3.2. Follows
lucidrains' vector-quantize-pytorch 1.32.0 ``FSQ`` (class name, constructor arguments, every
formula and its float32 evaluation order, so that indices agree exactly), channels-last.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlatent._checks import shape_str
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike, resolve_precision
from jaxlatent.quantizers import _scalar as sc
from jaxlatent.quantizers._projection import project

Array = jax.Array


class FSQOutput(NamedTuple):
    """Output of :meth:`FSQ.__call__`."""

    #: ``[batch, ..., dim]``, dtype of the input: the codes (projected out when `dim` differs
    #: from ``len(levels) * num_codebooks``); straight-through gradients to the input.
    quantized: Array
    #: int32 ``[batch, ...]`` (``[batch, ..., num_codebooks]`` when `keep_num_codebooks_dim`),
    #: in ``[0, codebook_size)``; None when the module was built with ``return_indices=False``.
    indices: Array | None
    #: int32 ``[codebook_size]``: how often each code was chosen in this batch, over all
    #: codebooks (global under `axis_name`); None without indices.
    counts: Array | None
    #: float32 scalar: perplexity of that usage (:func:`~jaxlatent.quantizers.perplexity`).
    perplexity: Array | None


def _round_ste(z: Array) -> Array:
    return z + jax.lax.stop_gradient(jnp.round(z) - z)


def _floor_ste(z: Array) -> Array:
    return z + jax.lax.stop_gradient(jnp.floor(z) - z)


def check_levels(levels, preserve_symmetry: bool) -> tuple[int, ...]:
    """`levels` as a tuple of ints >= 2 (2 only with `preserve_symmetry`), else ValueError."""
    try:
        out = tuple(int(lv) for lv in levels)
        ok = len(out) > 0 and all(float(a) == b for a, b in zip(levels, out, strict=True))
    except (TypeError, ValueError):
        ok = False
    if not ok or min(out) < 2:
        raise ValueError(f"levels must be a non-empty sequence of integers >= 2, got {levels!r}")
    if 2 in out and not preserve_symmetry:
        raise ValueError(
            f"levels={list(out)} contains 2: turn on preserve_symmetry to use a level of 2, or "
            "use a greater level"
        )
    return out


class FSQ(nnx.Module):
    """Finite scalar quantizer, channels-last ``[batch, ..., dim]``.

    Args:
      levels: number of levels per code channel, ints >= 2 (2 needs `preserve_symmetry`);
        ``codebook_size = prod(levels)``.
      dim: input feature dimension (default ``len(levels) * num_codebooks``); when it differs,
        linear projections ``project_in`` / ``project_out`` map to and from the codes.
      num_codebooks: independent FSQ codes per vector (the projected features are split).
      keep_num_codebooks_dim: keep a codebook axis on the indices (default: ``num_codebooks >
        1``; must be True then).
      scale: stored only (the reference does not use it either).
      allowed_dtypes: input dtypes quantized as they are; others go through float32 when
        `force_quantization_f32`.
      channel_first: must be False (channels-last only).
      projection_has_bias: whether the projections have biases.
      return_indices: compute indices (and usage statistics).
      force_quantization_f32: quantize in float32 for inputs outside `allowed_dtypes`.
      preserve_symmetry: the symmetric bound ``2/(L-1)·floor((L-1)(tanh z + 1)/2 + 1/2) - 1``
        of arXiv:2411.19842 instead of the tanh-offset bound of the FSQ paper.
      noise_dropout: in training, probability that a channel's code gets uniform noise in
        ``[-1/2, 1/2)`` (clipped to ``[-1, 1]``); needs `preserve_symmetry` and a `key`.
      bound_hard_clamp: clamp to ``[-1, 1]`` instead of ``tanh`` (inputs already bounded, as
        in `ResidualFSQ`).
      orthogonal_rotation: rotate the code space by a fixed random orthogonal matrix
        (arXiv:2307.13304); a :class:`Buffer`, converted as the reference's ``orthogonal_rot``.
      rngs: initialisation randomness, needed only for the projections or the rotation.
      precision: precision of the projections' and the rotation's matmuls (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`; default
        ``"highest"``).

    Raises:
      ValueError: for levels the reference rejects (< 2, or 2 without `preserve_symmetry`),
        `noise_dropout` outside ``[0, 1]`` or without `preserve_symmetry`, ``num_codebooks >
        1`` without `keep_num_codebooks_dim`, `channel_first`, or missing `rngs`.

    Example:
      >>> fsq = FSQ(levels=[8, 5, 5])
      >>> out = fsq(jnp.zeros((2, 7, 3)))
      >>> out.quantized.shape, out.indices.shape, fsq.codebook_size
      ((2, 7, 3), (2, 7), 200)
      >>> bool((fsq.indices_to_codes(out.indices) == out.quantized).all())
      True
    """

    def __init__(
        self,
        levels,
        dim: int | None = None,
        num_codebooks: int = 1,
        keep_num_codebooks_dim: bool | None = None,
        scale: float | None = None,
        allowed_dtypes=(jnp.float32, jnp.float64),
        channel_first: bool = False,
        projection_has_bias: bool = True,
        return_indices: bool = True,
        force_quantization_f32: bool = True,
        preserve_symmetry: bool = False,
        noise_dropout: float = 0.0,
        bound_hard_clamp: bool = False,
        orthogonal_rotation: bool = False,
        *,
        rngs: nnx.Rngs | None = None,
        precision: PrecisionLike = DEFAULT_PRECISION,
    ):
        self.levels = check_levels(levels, preserve_symmetry)
        self.precision = resolve_precision(precision)
        if not 0.0 <= noise_dropout <= 1.0:
            raise ValueError(f"noise_dropout must lie in [0, 1], got {noise_dropout!r}")
        if noise_dropout > 0 and not preserve_symmetry:
            raise ValueError(f"noise_dropout={noise_dropout} needs preserve_symmetry=True")
        sc.check_channels_last("channel_first", channel_first)
        if not isinstance(num_codebooks, int) or num_codebooks < 1:
            raise ValueError(f"num_codebooks must be a positive int, got {num_codebooks!r}")
        keep = num_codebooks > 1 if keep_num_codebooks_dim is None else keep_num_codebooks_dim
        if num_codebooks > 1 and not keep:
            raise ValueError(
                f"keep_num_codebooks_dim=False is impossible with num_codebooks={num_codebooks}"
            )
        self.codebook_dim = len(self.levels)
        self.num_codebooks = num_codebooks
        self.effective_codebook_dim = self.codebook_dim * num_codebooks
        self.keep_num_codebooks_dim = bool(keep)
        self.dim = self.effective_codebook_dim if dim is None else dim
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.scale = scale
        self.preserve_symmetry = preserve_symmetry
        self.noise_dropout = float(noise_dropout)
        self.bound_hard_clamp = bound_hard_clamp
        self.return_indices = return_indices
        self.force_quantization_f32 = force_quantization_f32
        self.allowed_dtypes = tuple(jnp.dtype(d) for d in allowed_dtypes)
        self.codebook_size = math.prod(self.levels)
        self.has_projections = self.dim != self.effective_codebook_dim
        self.project_in, self.project_out = sc.projections(
            self.has_projections,
            self.dim,
            self.effective_codebook_dim,
            projection_has_bias,
            rngs,
            self.precision,
        )
        self.orthogonal_rot = (
            sc.orthogonal(self.codebook_dim, rngs) if orthogonal_rotation else None
        )

    # -- constants (float32, in the reference's evaluation order) ---------------------------
    def _const(self, values, ndim: int) -> np.ndarray:
        return np.asarray(values).reshape((1,) * (ndim - 1) + (-1,))

    def _lv(self, ndim: int, dtype=np.int32) -> np.ndarray:
        return self._const(np.asarray(self.levels, dtype), ndim)

    def _basis(self, ndim: int) -> np.ndarray:
        basis = np.cumprod([1, *self.levels[:-1]]).astype(np.int32)
        return self._const(basis, ndim)

    # -- the bound and its inverse ----------------------------------------------------------
    def bound(self, z: Array, eps: float = 1e-3) -> Array:
        """The FSQ-paper bound and rounding of `z` ``[..., len(levels)]`` → codes in
        ``[-1, 1]`` (straight-through rounding)."""
        lv = self._lv(z.ndim)
        half_l = (lv - 1).astype(np.float32) * np.float32(1 + eps) / np.float32(2)
        offset = np.where(lv % 2 == 0, np.float32(0.5), np.float32(0.0))
        ratio = (offset / half_l).astype(np.float32)
        if self.bound_hard_clamp:
            bounded = jnp.clip(z + ratio, -1.0, 1.0) * half_l - offset
        else:
            shift = np.arctanh(ratio).astype(np.float32)
            bounded = jnp.tanh(z + shift) * half_l - offset
        return _round_ste(bounded) / (lv // 2).astype(np.float32)

    def symmetry_preserving_bound(self, z: Array) -> Array:
        """``2/(L-1)·floor((L-1)(tanh z + 1)/2 + 1/2) - 1`` (arXiv:2411.19842 §3.2)."""
        lm1 = (self._lv(z.ndim) - 1).astype(np.float32)
        t = jnp.clip(z, -1.0, 1.0) if self.bound_hard_clamp else jnp.tanh(z)
        bracket = _floor_ste(lm1 * (t + 1.0) / 2.0 + 0.5)
        return (np.float32(2.0) / lm1) * bracket - 1.0

    def quantize(self, z: Array) -> Array:
        """Bound and round `z` ``[..., len(levels)]`` to normalised codes in ``[-1, 1]``."""
        return self.symmetry_preserving_bound(z) if self.preserve_symmetry else self.bound(z)

    def _scale_and_shift(self, zhat: Array) -> Array:
        lv = self._lv(zhat.ndim)
        if self.preserve_symmetry:
            return (zhat + 1.0) / (np.float32(2.0) / (lv - 1).astype(np.float32))
        hw = (lv // 2).astype(np.float32)
        return zhat * hw + hw

    def _scale_and_shift_inverse(self, zhat: Array) -> Array:
        lv = self._lv(zhat.ndim)
        if self.preserve_symmetry:
            return zhat * (np.float32(2.0) / (lv - 1).astype(np.float32)) - 1.0
        hw = (lv // 2).astype(np.float32)
        return (zhat - hw) / hw

    def codes_to_indices(self, zhat) -> Array:
        """Normalised codes ``[..., len(levels)]`` → int32 indices ``[...]``.

        Raises:
          ValueError: if the last axis is not ``len(levels)``.
        """
        zhat = jnp.asarray(zhat)
        if zhat.ndim < 1 or zhat.shape[-1] != self.codebook_dim:
            raise ValueError(
                f"zhat must have shape [..., {self.codebook_dim}], got {shape_str(zhat)}"
            )
        shifted = self._scale_and_shift(zhat)
        basis = self._basis(1).astype(np.float32)
        # channel by channel, not a reduction over the short last axis, which XLA:CPU runs as a
        # kernel of its own (8 of them in an 8-layer ResidualFSQ); the sum of integer-valued
        # floats is rounded, so the order of the additions cannot change an index
        terms = (shifted[..., k] * basis[k] for k in range(self.codebook_dim))
        return jnp.round(functools.reduce(jnp.add, terms)).astype(jnp.int32)

    def indices_to_level_indices(self, indices) -> Array:
        """int indices ``[...]`` → the level of each channel, int32 ``[..., len(levels)]``."""
        idx = jnp.asarray(indices).astype(jnp.int32)[..., None]
        return (idx // self._basis(idx.ndim)) % self._lv(idx.ndim)

    def _indices_to_codes(self, indices) -> Array:
        levels = self.indices_to_level_indices(indices).astype(jnp.float32)
        return self._scale_and_shift_inverse(levels)

    @property
    def implicit_codebook(self) -> Array:
        """All normalised codes, float32 ``[codebook_size, len(levels)]`` (by index)."""
        return self._indices_to_codes(jnp.arange(self.codebook_size))

    def indices_to_codes(self, indices) -> Array:
        """Indices ``[batch, ...]`` (``[batch, ..., num_codebooks]`` with
        `keep_num_codebooks_dim`) → float32 quantized vectors ``[batch, ..., dim]``, equal to
        :meth:`__call__`'s `quantized` (projected out when there are projections).

        Raises:
          ValueError: if `indices` is not integer or its codebook axis is not `num_codebooks`.
        """
        indices = jnp.asarray(indices)
        if not jnp.issubdtype(indices.dtype, jnp.integer):
            raise ValueError(f"indices must be integer, got dtype {indices.dtype}")
        if not self.keep_num_codebooks_dim:
            indices = indices[..., None]
        if indices.shape[-1] != self.num_codebooks:
            raise ValueError(
                f"indices must have a last axis of num_codebooks={self.num_codebooks}, got "
                f"shape {shape_str(indices)}"
            )
        codes = self._indices_to_codes(indices)
        if self.orthogonal_rot is not None:
            codes = sc.matmul(codes, self.orthogonal_rot[...].T, self.precision)
        codes = codes.reshape((*codes.shape[:-2], self.effective_codebook_dim))
        return project(self.project_out, codes)

    # -- forward -----------------------------------------------------------------------------
    def _noise(self, codes: Array, key: Array) -> Array:
        k_mask, k_offset = jax.random.split(key)
        on = jax.random.bernoulli(k_mask, self.noise_dropout, codes.shape)
        offset = jax.random.uniform(k_offset, codes.shape, codes.dtype) - 0.5
        return jnp.clip(jnp.where(on, codes + offset, codes), -1.0, 1.0)

    def __call__(
        self,
        x,
        *,
        train: bool = False,
        key: Array | None = None,
        axis_name: str | None = None,
    ) -> FSQOutput:
        """Quantize `x` ``[batch, ..., dim]``.

        Args:
          x: floating features ``[batch, ..., dim]``.
          train: apply noise dropout (when `noise_dropout` > 0). Nothing else differs.
          key: PRNG key, required in training with noise dropout.
          axis_name: mapped batch axis under `pmap`/`shard_map`: the usage counts are then
            those of the global batch.

        Returns:
          :class:`FSQOutput`.

        Raises:
          ValueError: if `x` is not floating or its last axis is not `dim`, or the key is
            missing in training with noise dropout.
        """
        x = sc.check_input(x, self.dim)
        noisy = train and self.noise_dropout > 0
        if noisy and key is None:
            raise ValueError(
                f"key is required in training with noise_dropout={self.noise_dropout}, got None"
            )
        z = project(self.project_in, x)
        z = z.reshape((*z.shape[:-1], self.num_codebooks, self.codebook_dim))
        if self.orthogonal_rot is not None:
            z = sc.matmul(z, self.orthogonal_rot[...], self.precision)
        orig_dtype = z.dtype
        if self.force_quantization_f32 and jnp.dtype(orig_dtype) not in self.allowed_dtypes:
            z = z.astype(jnp.float32)
        codes = self.quantize(z)
        indices = self.codes_to_indices(codes) if self.return_indices else None
        if noisy:
            codes = self._noise(codes, key)
        if self.orthogonal_rot is not None:
            codes = sc.matmul(codes, self.orthogonal_rot[...].T, self.precision)
        codes = codes.reshape((*codes.shape[:-2], self.effective_codebook_dim))
        out = project(self.project_out, codes.astype(orig_dtype))
        counts = ppl = None
        if indices is not None:
            counts, ppl = sc.usage(indices, self.codebook_size, axis_name)
            if not self.keep_num_codebooks_dim:
                indices = indices[..., 0]
        return FSQOutput(out, indices, counts, ppl)
