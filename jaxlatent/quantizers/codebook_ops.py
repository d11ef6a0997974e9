"""Pure functions behind :class:`~jaxlatent.quantizers.VectorQuantizer`'s codebook learning:
EMA statistics with Laplace smoothing, k-means initialisation and dead-code restarts.

Every function works on one device's **local** batch and takes an optional `axis_name`: under
`jax.pmap` / `jax.shard_map` the batch statistics are `psum`'d over that axis, so each device
computes the update of the **global** batch. Under `jax.jit` with sharded inputs (GSPMD) leave
`axis_name=None`: the code sees the global batch and XLA inserts the reductions.

Random choices (k-means seeds, replacement vectors for dead codes) are made **from the global
batch with the same key on every device**: global row ``g`` of the batch lives on device
``g // n_local`` at local row ``g % n_local`` (the leading batch axis is the sharded one, as
with ``P('data')`` or pmap's leading axis). Each device gathers the rows it owns, zeros
elsewhere, and a `psum` assembles them; exactly one device contributes each row, so the
result is bit-identical to the single-device choice on the concatenated batch. The key must be
the same (replicated) on every device.

Semantics follow lucidrains' vector-quantize-pytorch (v1.32.0, `vector_quantize_pytorch.py`):
``old.lerp(new, 1 - decay)`` without zero-debiasing, Laplace-smoothed cluster sizes
``(n + eps) / (Σn + K·eps) · Σn``, codes ``embed_sum / smoothed_n``; k-means seeded by
sampling codes from the batch; dead codes (EMA size below a threshold) replaced by random
batch vectors with their statistics reset to ``reset_size``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlatent._collectives import psum_if as psum_if
from jaxlatent.quantizers.search import l2_normalize, nearest_code

Array = jax.Array


def _axis_index_size(axis_name: str | None) -> tuple[Array | int, int]:
    if axis_name is None:
        return 0, 1
    return jax.lax.axis_index(axis_name), jax.lax.axis_size(axis_name)


def ema_lerp(old: Array, new: Array, weight: float) -> Array:
    """``old + weight · (new - old)`` with the float association of `torch.lerp`.

    torch evaluates ``self + w·(end - self)`` for ``|w| < 0.5`` and
    ``end - (end - self)·(1 - w)`` otherwise; `weight` is a Python float (``1 - decay``).
    """
    if abs(weight) < 0.5:
        return old + jnp.float32(weight) * (new - old)
    return new - (new - old) * jnp.float32(1.0 - weight)


def smoothed_sizes(cluster_size: Array, eps: float) -> Array:
    """Laplace-smoothed cluster sizes ``(n + eps) / (Σn + K·eps) · Σn`` (never zero for Σn > 0)."""
    k = cluster_size.shape[-1]
    total = jnp.sum(cluster_size, axis=-1, keepdims=True)
    return (cluster_size + jnp.float32(eps)) / (total + jnp.float32(k * eps)) * total


def codes_from_ema(embed_sum: Array, cluster_size: Array, eps: float, *, cosine: bool) -> Array:
    """Codebook ``embed_sum / smoothed_sizes(cluster_size)`` (l2-normalised for cosine)."""
    codes = embed_sum / smoothed_sizes(cluster_size, eps)[:, None]
    return l2_normalize(codes) if cosine else codes


def batch_code_stats(
    x: Array, indices: Array, codebook_size: int, axis_name: str | None = None
) -> tuple[Array, Array]:
    """Per-code vector counts and vector sums of a batch (global under `axis_name`).

    Args:
      x: float32 vectors ``[n, dim]`` (this device's rows).
      indices: int32 ``[n]`` code of each vector.
      codebook_size: ``K``.
      axis_name: mapped axis to `psum` over, or None.

    Returns:
      ``(counts, sums)``: float32 ``[K]`` and float32 ``[K, dim]``. Computed with
      `segment_sum` (a scatter-add of ``n`` rows, never an ``n × K`` one-hot).
    """
    counts = jax.ops.segment_sum(
        jnp.ones(indices.shape, jnp.float32), indices, num_segments=codebook_size
    )
    sums = jax.ops.segment_sum(x, indices, num_segments=codebook_size)
    return psum_if(counts, axis_name), psum_if(sums, axis_name)


def sample_global_rows(key: Array, x: Array, num: int, axis_name: str | None = None) -> Array:
    """`num` random rows of the global batch, identical on every device.

    Without replacement (distinct rows in random order) when the global batch has at least
    `num` rows, with replacement (uniform) otherwise, as lucidrains' `sample_vectors`.

    Args:
      key: PRNG key, the same on every device.
      x: this device's rows ``[n_local, dim]`` (all devices hold the same number).
      num: rows to draw (static).
      axis_name: mapped axis the batch is split over, or None.

    Returns:
      ``[num, dim]`` in the dtype of `x`, replicated.
    """
    n_local = x.shape[0]
    index, size = _axis_index_size(axis_name)
    n_global = n_local * size
    if n_global >= num:
        # `num` distinct rows in random order: the largest of n_global random 32-bit keys
        # (cheaper to compile and run than a full permutation)
        rows = jax.lax.top_k(jax.random.bits(key, (n_global,), jnp.uint32), num)[1]
    else:
        rows = jax.random.randint(key, (num,), 0, n_global)
    if axis_name is None:
        return jnp.take(x, rows, axis=0)
    owner, local = rows // n_local, rows % n_local
    mine = jnp.take(x, local, axis=0)
    return jax.lax.psum(jnp.where((owner == index)[:, None], mine, jnp.zeros_like(mine)), axis_name)


def kmeans(
    key: Array,
    x: Array,
    num_clusters: int,
    num_iters: int,
    *,
    cosine: bool = False,
    axis_name: str | None = None,
) -> tuple[Array, Array]:
    """Lloyd's k-means on the (global) batch, seeded with random batch vectors.

    Each iteration assigns every vector to its nearest mean (exact search; for `cosine` the
    vectors are expected l2-normalised and the means are re-normalised), then moves every
    non-empty cluster to the mean of its vectors; empty clusters keep their previous mean.

    Args:
      key: PRNG key of the seeding (same on every device).
      x: float32 vectors ``[n_local, dim]``.
      num_clusters: ``K`` (static).
      num_iters: Lloyd iterations (static, >= 1).
      cosine: cosine-similarity assignment and unit-norm means.
      axis_name: mapped axis to `psum` the statistics over, or None.

    Returns:
      ``(means, sizes)``: float32 ``[K, dim]`` and the float32 ``[K]`` cluster sizes of the
      last assignment (lucidrains' ``(means, bins)``).
    """
    means = sample_global_rows(key, x, num_clusters, axis_name).astype(jnp.float32)

    def step(_, carry):
        means, _ = carry
        idx = nearest_code(x, means, metric="cosine" if cosine else "l2", form="addmm")
        sizes, sums = batch_code_stats(x, idx, num_clusters, axis_name)
        new = sums / jnp.maximum(sizes, 1.0)[:, None]
        if cosine:
            new = l2_normalize(new)
        return jnp.where((sizes == 0)[:, None], means, new), sizes

    sizes = jnp.zeros((num_clusters,), jnp.float32)
    return jax.lax.fori_loop(0, num_iters, step, (means, sizes))


def restart_dead_codes(
    key: Array,
    x: Array,
    codebook: Array,
    cluster_size: Array,
    embed_sum: Array | None,
    *,
    threshold: float,
    reset_size: float,
    axis_name: str | None = None,
) -> tuple[Array, Array, Array | None]:
    """Replace codes whose EMA cluster size is below `threshold` by random batch vectors.

    A dead code gets a random vector of the (global) batch, its cluster size is reset to
    `reset_size` and its EMA sum to ``vector · reset_size``. Replacement vectors are distinct
    batch rows; when there are more dead codes than batch rows, a random subset of as many
    dead codes as rows is replaced now and the rest later (lucidrains' rule).

    Args:
      key: PRNG key (same on every device).
      x: float32 vectors ``[n_local, dim]`` of the current batch.
      codebook: ``[K, dim]``; cluster_size: ``[K]``; embed_sum: ``[K, dim]`` or None
        (gradient-trained codebooks keep no sums).
      threshold: a code is dead when ``cluster_size < threshold``.
      reset_size: cluster size given to a replaced code.
      axis_name: mapped axis the batch is split over, or None.

    Returns:
      The updated ``(codebook, cluster_size, embed_sum)`` (same shapes and dtypes).
    """
    k = codebook.shape[0]
    _, size = _axis_index_size(axis_name)
    n_global = x.shape[0] * size
    num = min(k, n_global)
    k_rows, k_order = jax.random.split(key)
    dead = cluster_size < threshold
    rows = sample_global_rows(k_rows, x, num, axis_name)
    if n_global >= k:
        slot, replace = jnp.arange(k), dead
    else:
        priority = jnp.where(dead, jax.random.uniform(k_order, (k,)), 2.0)
        rank = jnp.argsort(jnp.argsort(priority))  # dead codes first, in random order
        replace = dead & (rank < num)
        slot = jnp.minimum(rank, num - 1)
    new = jnp.take(rows, slot, axis=0).astype(codebook.dtype)
    codebook = jnp.where(replace[:, None], new, codebook)
    cluster_size = jnp.where(replace, jnp.asarray(reset_size, cluster_size.dtype), cluster_size)
    if embed_sum is not None:
        embed_sum = jnp.where(replace[:, None], new * jnp.float32(reset_size), embed_sum)
    return codebook, cluster_size, embed_sum
