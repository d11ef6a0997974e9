"""Codebook statistics: usage counts, perplexity and the fraction of dead codes.

All functions are jit-compatible (the codebook size is a static int; counts are a
`jax.ops.segment_sum` of static length) and take an optional mask to leave padded frames out.

* **perplexity** ``exp(H(p))`` of the empirical code distribution ``p = counts / Σ counts``,
  with ``0·log 0 = 0``: 1 when a single code is used, `codebook_size` when all are used equally
  (the "codebook perplexity" of van den Oord et al. 2017, arXiv:1711.00937, and of
  lucidrains' vector-quantize-pytorch). With no counted vector at all it is 1.
* **dead-code fraction**: the share of codes used fewer than `threshold` times (the dead-code
  criterion of SoundStream/EnCodec-style codebook restarts; `threshold=1` means "never used").
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.quantizers.search import check_code_indices

Array = jax.Array


class CodebookStats(NamedTuple):
    """Usage statistics of one codebook."""

    #: int32 ``[codebook_size]``: how many (unmasked) vectors chose each code.
    counts: Array
    #: float32 scalar: ``exp(entropy)`` of the code distribution, in ``[1, codebook_size]``.
    perplexity: Array
    #: float32 scalar: fraction of codes with ``counts < dead_threshold``.
    dead_fraction: Array


def code_counts(indices, codebook_size: int, *, mask=None) -> Array:
    """How often each code occurs in `indices`.

    Args:
      indices: integer code indices, any shape ``[...]``, values in ``[0, codebook_size)``.
      codebook_size: number of codes ``K`` (static int).
      mask: optional bool array of the shape of `indices`; False entries are not counted.

    Returns:
      int32 ``[codebook_size]``.

    Raises:
      ValueError: if `indices` is not integer or (when concrete) out of range, `codebook_size`
        is not a positive int, or `mask` has a different shape.

    Example:
      >>> code_counts(jnp.array([[0, 2, 2], [2, 3, 0]]), 5)
      Array([2, 0, 3, 1, 0], dtype=int32)
    """
    if not isinstance(codebook_size, int) or isinstance(codebook_size, bool) or codebook_size < 1:
        raise ValueError(f"codebook_size must be a positive int, got {codebook_size!r}")
    indices = jnp.asarray(indices)
    check_code_indices(indices, codebook_size)
    weights = jnp.ones(indices.shape, jnp.int32)
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.shape != indices.shape:
            raise ValueError(
                f"mask must have the shape of indices {shape_str(indices)}, got {shape_str(mask)}"
            )
        weights = mask.astype(jnp.int32)
    return jax.ops.segment_sum(
        weights.reshape(-1), indices.reshape(-1).astype(jnp.int32), num_segments=codebook_size
    )


def _check_counts(counts) -> Array:
    counts = jnp.asarray(counts)
    if counts.ndim != 1:
        raise ValueError(f"counts must be 1-D [codebook_size], got shape {shape_str(counts)}")
    if not jnp.issubdtype(counts.dtype, jnp.integer):
        check_floating("counts", counts)
    return counts


def perplexity(counts) -> Array:
    """``exp(-Σ p log p)`` of ``p = counts / Σ counts`` (1 for all-zero counts).

    Args:
      counts: usage counts ``[codebook_size]``, integer or floating (e.g. EMA cluster sizes).

    Returns:
      float32 scalar in ``[1, codebook_size]``.

    Raises:
      ValueError: if `counts` is not 1-D or not numeric.

    Example:
      >>> perplexity(jnp.array([5, 5, 0, 0]))
      Array(2., dtype=float32)
    """
    counts = _check_counts(counts).astype(jnp.float32)
    total = jnp.sum(counts)
    p = counts / jnp.maximum(total, jnp.finfo(jnp.float32).tiny)
    return jnp.exp(-jnp.sum(jax.scipy.special.xlogy(p, p)))


def dead_code_fraction(counts, threshold: float = 1) -> Array:
    """Fraction of codes whose count is below `threshold` (``counts < threshold``).

    Args:
      counts: usage counts ``[codebook_size]``.
      threshold: a code is dead when used fewer than this many times (1: never used).

    Returns:
      float32 scalar in ``[0, 1]``.

    Raises:
      ValueError: if `counts` is not 1-D or not numeric.

    Example:
      >>> dead_code_fraction(jnp.array([3, 0, 1, 0]))
      Array(0.5, dtype=float32)
      >>> dead_code_fraction(jnp.array([3, 0, 1, 0]), threshold=2)
      Array(0.75, dtype=float32)
    """
    counts = _check_counts(counts)
    return jnp.mean((counts < threshold).astype(jnp.float32))


def codebook_stats(
    indices, codebook_size: int, *, mask=None, dead_threshold: float = 1
) -> CodebookStats:
    """Counts, perplexity and dead-code fraction of `indices` in one call.

    Args:
      indices: integer code indices ``[...]`` in ``[0, codebook_size)``.
      codebook_size: number of codes (static int).
      mask: optional bool array of the shape of `indices` (False: not counted).
      dead_threshold: see :func:`dead_code_fraction`.

    Returns:
      :class:`CodebookStats`.

    Raises:
      ValueError: as :func:`code_counts`.

    Example:
      >>> stats = codebook_stats(jnp.array([0, 1, 1, 1]), 4)
      >>> stats.counts, stats.dead_fraction
      (Array([1, 3, 0, 0], dtype=int32), Array(0.5, dtype=float32))
    """
    counts = code_counts(indices, codebook_size, mask=mask)
    return CodebookStats(counts, perplexity(counts), dead_code_fraction(counts, dead_threshold))
