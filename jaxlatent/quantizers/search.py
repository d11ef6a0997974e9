"""Exact nearest-code search in bounded memory.

:func:`nearest_code` returns, for every vector, the index of the closest codebook row: an exact
argmin (no approximation), the **lowest index on ties** (as `torch.min`/`torch.max` with
``dim``), int32 indices. Distances are computed in float32 with
``Precision.HIGHEST`` matmuls whatever the input dtype (bf16/TF32 matmuls flip near-tied
codes).

Memory does not grow as ``N × K``. The vectors are processed in chunks of `vector_chunk` rows
(`lax.map`, the last chunk zero-padded) and, inside each, the codebook in chunks of
`code_chunk` rows (`lax.scan` carrying the running minimum and its index; a later chunk
replaces the carry only when strictly smaller, which keeps the first index on ties). The
largest temporary is one ``vector_chunk × code_chunk`` float32 block, so 262144 vectors
against 65536 codes fit in well under 2 GiB.

The default chunk sizes depend on the backend (:func:`default_chunks`): on CPU, small blocks
(256 × 1024, 1 MiB) that stay in cache between the distance matmul and the argmin, which is
computed in two vectorised passes (the row minimum, then the lowest index attaining it);
on accelerators, 4096 × 4096 blocks (64 MiB) and a single fused argmin. Both give the first
index of the minimum (and of the first NaN, as `jnp.argmin`).

The distance is the expanded squared L2 distance of the PyTorch references, evaluated with the
same association of floating-point operations so that near-ties resolve as they do there:

============  ==============================  ==============================================
`form`        float32 expression              reference
============  ==============================  ==============================================
``"dac"``     ``(‖x‖² - 2 x·c) + ‖c‖²``       `dac.nn.quantize.VectorQuantize.decode_latents`
                                              (SpeechBrain `discrete.dac` is identical)
``"addmm"``   ``(‖c‖² + ‖x‖²) - 2 x·c``       SpeechBrain `PIQ.VectorQuantization`
                                              (``torch.addmm(beta=1, alpha=-2)``)
============  ==============================  ==============================================

``metric="cosine"`` first l2-normalises vectors and codes as `torch.nn.functional.normalize`
does (``v / max(‖v‖, 1e-12)``) and then takes the same squared L2 distance: on unit vectors
``‖x - c‖² = 2 - 2 cos(x, c)``, so this is the cosine-similarity argmax of DAC's lookup
(Yu et al. 2022, "Vector-quantized Image Modeling with Improved VQGAN", arXiv:2110.04627).

Codes can be excluded per vector with `forbidden` (their distance is taken as ``+inf``, as
SpeechBrain PIQ's class partitioning does with ``distances[irrelevant] = inf``): either a
boolean mask ``[..., codebook_size]`` per vector, or a boolean table ``[rows, codebook_size]``
with `forbidden_rows` choosing one table row per vector (memory ``rows × codebook_size``, not
``N × codebook_size``). A vector whose codes are all forbidden gets index 0 (`torch.min` of an
all-``inf`` row).

Code vectors are gathered with :func:`lookup_codes` (`jnp.take`; its gradient is a
scatter-add into the used rows, never an ``N × K`` one-hot matmul).
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxlatent._checks import check_choice, check_floating, is_concrete, shape_str

Array = jax.Array
Metric = Literal["l2", "cosine"]
Form = Literal["dac", "addmm"]

#: `F.normalize`'s default epsilon: norms are clamped to at least this value.
NORMALIZE_EPS = 1e-12
#: Default number of vectors per chunk: None picks the backend's (:func:`default_chunks`).
VECTOR_CHUNK: int | None = None
#: Default number of codes per chunk: None picks the backend's (:func:`default_chunks`).
CODE_CHUNK: int | None = None
#: Chunk sizes ``(vector_chunk, code_chunk)`` used on CPU (1 MiB float32 blocks, cache-sized;
#: measured in benchmarks/bench_quantizers.py) and on accelerators (64 MiB blocks).
CPU_CHUNKS = (256, 1024)
ACCELERATOR_CHUNKS = (4096, 4096)


def default_chunks(backend: str | None = None) -> tuple[int, int]:
    """Default ``(vector_chunk, code_chunk)`` for `backend` (default: JAX's default backend).

    Example:
      >>> default_chunks("cpu"), default_chunks("gpu")
      ((256, 1024), (4096, 4096))
    """
    backend = jax.default_backend() if backend is None else backend
    return CPU_CHUNKS if backend == "cpu" else ACCELERATOR_CHUNKS


def l2_normalize(x, *, eps: float = NORMALIZE_EPS) -> Array:
    """``x / max(‖x‖₂, eps)`` over the last axis, in float32 (`torch.nn.functional.normalize`).

    Args:
      x: floating array ``[..., dim]``.
      eps: lower bound of the norm (zero vectors stay zero).

    Returns:
      float32 array of the shape of `x`.

    Example:
      >>> l2_normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]]))
      Array([[0.6, 0.8],
             [0. , 0. ]], dtype=float32)
    """
    x = jnp.asarray(x).astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
    return x / jnp.maximum(norm, jnp.float32(eps))


def _check_search_inputs(x, codebook) -> None:
    check_floating("x", x)
    check_floating("codebook", codebook)
    if jnp.ndim(codebook) != 2:
        raise ValueError(
            f"codebook must be 2-D [codebook_size, dim], got shape {shape_str(codebook)}"
        )
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != jnp.shape(codebook)[1]:
        raise ValueError(
            f"feature dimension mismatch: x has shape {shape_str(x)} ([..., dim]) but codebook "
            f"has shape {shape_str(codebook)} ([codebook_size, dim])"
        )
    if jnp.shape(codebook)[0] < 1:
        raise ValueError(f"codebook is empty: shape {shape_str(codebook)}")


def _check_chunk(name: str, value: int | None) -> None:
    if value is None:
        return
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def _pad_rows(a: Array, rows: int, value: float = 0.0) -> Array:
    if rows == a.shape[0]:
        return a
    pad = [(0, rows - a.shape[0])] + [(0, 0)] * (a.ndim - 1)
    return jnp.pad(a, pad, constant_values=value)


def _block_distances(x: Array, x_sqr: Array, c: Array, c_sqr: Array, form: str) -> Array:
    """Distances ``[n, k]`` of a vector block ``[n, D]`` to a code block ``[k, D]``."""
    dot = jax.lax.dot_general(
        x,
        c,
        (((1,), (1,)), ((), ())),
        precision=jax.lax.Precision.HIGHEST,
        preferred_element_type=jnp.float32,
    )
    if form == "dac":
        return (x_sqr[:, None] - 2.0 * dot) + c_sqr[None, :]
    return (c_sqr[None, :] + x_sqr[:, None]) - 2.0 * dot


def _check_forbidden(x, codebook, forbidden, forbidden_rows) -> None:
    lead, k = tuple(jnp.shape(x))[:-1], jnp.shape(codebook)[0]
    if forbidden is None:
        if forbidden_rows is not None:
            raise ValueError("forbidden_rows was given without a forbidden table")
        return
    if jnp.result_type(forbidden) != jnp.bool_:
        raise ValueError(
            f"forbidden must be a boolean array, got dtype {jnp.result_type(forbidden)}"
        )
    if forbidden_rows is None:
        if tuple(jnp.shape(forbidden)) != (*lead, k):
            raise ValueError(
                f"forbidden must have shape {(*lead, k)} (x's leading axes, codebook_size), got "
                f"{shape_str(forbidden)} for x {shape_str(x)} and codebook {shape_str(codebook)}"
            )
        return
    if jnp.ndim(forbidden) != 2 or jnp.shape(forbidden)[1] != k:
        raise ValueError(
            f"with forbidden_rows, forbidden must be a table [rows, {k}], got shape "
            f"{shape_str(forbidden)} for codebook {shape_str(codebook)}"
        )
    if tuple(jnp.shape(forbidden_rows)) != lead:
        raise ValueError(
            f"forbidden_rows must have shape {lead} (x's leading axes), got "
            f"{shape_str(forbidden_rows)} for x {shape_str(x)}"
        )
    check_code_indices(forbidden_rows, jnp.shape(forbidden)[0], name="forbidden_rows")


def _first_argmin(d: Array) -> tuple[Array, Array]:
    """Row minimum of ``d [n, k]`` and the lowest index attaining it, in two plain reductions.

    Equal to ``(d[i, argmin], argmin)`` with `jnp.argmin`'s ties (first index) and NaN (first
    NaN) rules; XLA:CPU vectorises a min-reduce but not argmin's variadic (value, index) one.
    """
    m = jnp.min(d, axis=1)  # NaN if the row holds one
    iota = jax.lax.broadcasted_iota(jnp.int32, d.shape, 1)
    hit = (d == m[:, None]) | jnp.isnan(d)  # a NaN only exists in a row whose minimum is NaN
    return m, jnp.min(jnp.where(hit, iota, jnp.int32(d.shape[1])), axis=1)


@functools.partial(
    jax.jit, static_argnames=("metric", "form", "vector_chunk", "code_chunk", "two_pass")
)
def _nearest_code(
    x, codebook, forbidden, forbidden_rows, *, metric, form, vector_chunk, code_chunk, two_pass
):
    lead = x.shape[:-1]
    dim = x.shape[-1]
    masked = forbidden is not None
    if masked and forbidden_rows is None:  # per-vector mask: a table with one row per vector
        forbidden = forbidden.reshape(-1, forbidden.shape[-1])
        forbidden_rows = jnp.arange(forbidden.shape[0], dtype=jnp.int32)
    rows = forbidden_rows.reshape(-1).astype(jnp.int32) if masked else None
    # No gradient flows through an argmin: stop it so transforms do not differentiate the search.
    x = jax.lax.stop_gradient(x).astype(jnp.float32).reshape(-1, dim)
    codebook = jax.lax.stop_gradient(codebook).astype(jnp.float32)
    if metric == "cosine":
        x = l2_normalize(x)
        codebook = l2_normalize(codebook)
    n, k = x.shape[0], codebook.shape[0]

    vc = max(1, min(vector_chunk, n))
    cc = min(code_chunk, k)
    n_vchunks = -(-n // vc)
    n_cchunks = -(-k // cc)
    # Padded codes get +inf squared norms, hence +inf distances: they never win (a real code
    # with an equal distance has a lower index).
    c_sqr = _pad_rows(jnp.sum(codebook * codebook, axis=1), n_cchunks * cc, jnp.inf)
    c_blocks = _pad_rows(codebook, n_cchunks * cc).reshape(n_cchunks, cc, dim)
    c_sqr_blocks = c_sqr.reshape(n_cchunks, cc)
    offsets = jnp.arange(n_cchunks, dtype=jnp.int32) * cc
    if masked:  # [rows, K] -> [n_cchunks, rows, cc]; padded codes are forbidden
        table = jnp.pad(forbidden, ((0, 0), (0, n_cchunks * cc - k)), constant_values=True)
        table_blocks = jnp.moveaxis(table.reshape(-1, n_cchunks, cc), 1, 0)
    else:  # a dummy scan input, never read
        table_blocks = jnp.zeros((n_cchunks, 1, 1), jnp.bool_)

    def search_block(block) -> Array:
        xb, rb = block
        xb_sqr = jnp.sum(xb * xb, axis=1)

        def local(c, c2, t):
            d = _block_distances(xb, xb_sqr, c, c2, form)
            if masked:
                d = jnp.where(jnp.take(t, rb, axis=0), jnp.float32(jnp.inf), d)
            if two_pass:
                return _first_argmin(d)
            idx = jnp.argmin(d, axis=1).astype(jnp.int32)  # first index on ties
            return jnp.take_along_axis(d, idx[:, None], axis=1)[:, 0], idx

        if n_cchunks == 1:
            return local(c_blocks[0], c_sqr_blocks[0], table_blocks[0])[1]

        def step(carry, block):
            best_d, best_i = carry
            c, c2, offset, t = block
            d, i = local(c, c2, t)
            better = d < best_d  # strict: an earlier (lower-index) chunk wins ties
            return (jnp.where(better, d, best_d), jnp.where(better, i + offset, best_i)), None

        init = (
            jnp.full((xb.shape[0],), jnp.inf, jnp.float32),
            jnp.zeros((xb.shape[0],), jnp.int32),
        )
        (_, best_i), _ = jax.lax.scan(step, init, (c_blocks, c_sqr_blocks, offsets, table_blocks))
        return best_i

    if rows is None:
        rows = jnp.zeros((n,), jnp.int32)  # unused
    if n_vchunks == 1:
        indices = search_block((x, rows))
    else:
        xs = _pad_rows(x, n_vchunks * vc).reshape(n_vchunks, vc, dim)
        rs = _pad_rows(rows, n_vchunks * vc).reshape(n_vchunks, vc)
        indices = jax.lax.map(search_block, (xs, rs)).reshape(-1)[:n]
    return indices.reshape(lead)


def nearest_code(
    x,
    codebook,
    *,
    metric: Metric = "l2",
    form: Form = "dac",
    vector_chunk: int | None = VECTOR_CHUNK,
    code_chunk: int | None = CODE_CHUNK,
    forbidden=None,
    forbidden_rows=None,
) -> Array:
    """Index of the nearest codebook row for every vector (exact, lowest index on ties).

    Args:
      x: floating vectors ``[..., dim]`` (any float dtype; searched in float32).
      codebook: floating codes ``[codebook_size, dim]``.
      metric: ``"l2"`` (squared Euclidean distance) or ``"cosine"`` (squared distance of the
        l2-normalised vectors, i.e. the largest cosine similarity; zero vectors are left at 0).
      form: the float32 association of ``‖x‖² - 2 x·c + ‖c‖²``: ``"dac"`` or ``"addmm"``
        (see the module docstring); only near-ties depend on it.
      vector_chunk: vectors per chunk (static; None: the backend default of
        :func:`default_chunks`). Peak temporary memory is about
        ``4 · vector_chunk · code_chunk`` bytes.
      code_chunk: codes per chunk (static; None: the backend default).
      forbidden: optional boolean mask of codes excluded from the search (distance ``+inf``):
        ``[..., codebook_size]`` per vector, or a table ``[rows, codebook_size]`` when
        `forbidden_rows` is given. Vectors with every code forbidden get index 0.
      forbidden_rows: optional integer ``[...]`` (the leading axes of `x`): the row of the
        `forbidden` table that applies to each vector.

    Returns:
      int32 array ``[...]`` (the leading axes of `x`) of indices in ``[0, codebook_size)``.

    Raises:
      ValueError: if either input is not floating, `codebook` is not 2-D or empty, the
        feature dimensions differ, `metric`/`form`/the chunk sizes are invalid, or
        `forbidden`/`forbidden_rows` have the wrong dtype or shape (or, when concrete,
        `forbidden_rows` holds values outside ``[0, rows)``).

    Source: the lookups of `dac.nn.quantize.VectorQuantize` (descript-audio-codec 1.0.0) and
    SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.VectorQuantization` (without its class
    partitioning).

    Example:
      >>> codebook = jnp.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [-2.0, 0.0]])
      >>> nearest_code(jnp.array([[0.9, 1.2], [-1.5, 0.1], [0.1, 0.0]]), codebook)
      Array([1, 3, 0], dtype=int32)
      >>> nearest_code(jnp.array([[3.0, 2.9]]), codebook, metric="cosine")
      Array([1], dtype=int32)
      >>> table = jnp.array([[False, True, True, False], [True, True, False, True]])
      >>> nearest_code(jnp.array([[0.9, 1.2], [0.9, 1.2]]), codebook, forbidden=table,
      ...              forbidden_rows=jnp.array([0, 1]))
      Array([0, 2], dtype=int32)
    """
    check_choice("metric", metric, ("l2", "cosine"))
    check_choice("form", form, ("dac", "addmm"))
    _check_chunk("vector_chunk", vector_chunk)
    _check_chunk("code_chunk", code_chunk)
    _check_search_inputs(x, codebook)
    _check_forbidden(x, codebook, forbidden, forbidden_rows)
    backend = jax.default_backend()
    default_vc, default_cc = default_chunks(backend)
    return _nearest_code(
        jnp.asarray(x),
        jnp.asarray(codebook),
        None if forbidden is None else jnp.asarray(forbidden),
        None if forbidden_rows is None else jnp.asarray(forbidden_rows),
        metric=metric,
        form=form,
        vector_chunk=int(default_vc if vector_chunk is None else vector_chunk),
        code_chunk=int(default_cc if code_chunk is None else code_chunk),
        two_pass=backend == "cpu",
    )


def lookup_codes(codebook, indices) -> Array:
    """Codebook rows ``codebook[indices]`` (a gather; differentiable w.r.t. `codebook`).

    Args:
      codebook: ``[codebook_size, dim]``.
      indices: integer array ``[...]`` with values in ``[0, codebook_size)``.

    Returns:
      ``[..., dim]`` in the dtype of `codebook`. Under `jax.jit` (no range check possible)
      out-of-range indices give NaN rows.

    Raises:
      ValueError: if `indices` is not an integer array or (when concrete) holds values
        outside ``[0, codebook_size)``, or `codebook` is not a 2-D floating array.

    Example:
      >>> lookup_codes(jnp.array([[0.0, 1.0], [2.0, 3.0]]), jnp.array([1, 1, 0]))
      Array([[2., 3.],
             [2., 3.],
             [0., 1.]], dtype=float32)
    """
    codebook = jnp.asarray(codebook)
    indices = jnp.asarray(indices)
    check_floating("codebook", codebook)
    if codebook.ndim != 2:
        raise ValueError(
            f"codebook must be 2-D [codebook_size, dim], got shape {shape_str(codebook)}"
        )
    check_code_indices(indices, codebook.shape[0])
    return jnp.take(codebook, indices, axis=0, mode="fill", fill_value=jnp.nan)


def check_code_indices(indices, codebook_size: int, *, name: str = "indices") -> None:
    """Raise ValueError unless `indices` is integer and (when concrete) in ``[0, size)``."""
    dtype = jnp.result_type(indices)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {dtype}")
    if is_concrete(indices) and jnp.size(indices):
        values = np.asarray(indices)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= codebook_size:
            raise ValueError(
                f"{name} out of range: values in [{lo}, {hi}] but the codebook has "
                f"{codebook_size} codes (valid: [0, {codebook_size - 1}])"
            )
