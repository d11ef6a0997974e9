"""Float32 arithmetic in PyTorch's evaluation order (private helpers of the misc losses).

XLA's algebraic simplifier rewrites ``x / broadcast(y)`` into ``x * broadcast(1 / y)``, which
is off by up to one ulp from the IEEE quotient that PyTorch computes. That is harmless for
most losses, but not for ill-conditioned ones: SI-SNR of a perfect estimate is
``10·log10(‖proj‖² / (‖e‖² + 1e-8))`` where ``e`` is pure round-off, so one ulp in
``dot·s / ‖s‖²`` moves the result by decibels (SpeechBrain's doctest value 130.9283 becomes
130.4955). :func:`true_divide` hides the broadcast from the simplifier with an
optimization barrier, so the division stays an elementwise IEEE division.

:func:`torch_cpu_sum` adds terms in the order of PyTorch's CPU sum kernel, which decides
PIT tie-breaks that hinge on round-off.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

Array = jax.Array

#: Lanes of PyTorch's float32 vectorised CPU sum (`at::vec::Vectorized<float>`), as observed
#: on x86-64 builds (AVX2 and AVX512 machines both sum in 8-lane vectors).
_TORCH_SUM_LANES = 8
#: Independent accumulators of PyTorch's `row_sum` (instruction-level parallelism factor).
_TORCH_SUM_ILP = 4


@custom_vmap
def _ieee_div(x: Array, y: Array) -> Array:
    """``x / y`` for equal shapes; the barrier hides from XLA that `y` may be a broadcast."""
    return x / jax.lax.optimization_barrier(y)


@_ieee_div.def_vmap
def _ieee_div_vmap(axis_size, in_batched, x, y):
    # Batch both operands before the barrier: vmap's own batching of `x / y` with an
    # unbatched `y` would broadcast `y` outside the barrier, and XLA would rewrite again.
    x_batched, y_batched = in_batched
    if not x_batched:
        x = jnp.broadcast_to(x, (axis_size, *x.shape))
    if not y_batched:
        y = jnp.broadcast_to(y, (axis_size, *y.shape))
    return _ieee_div(x, y), True


@jax.custom_jvp
def _true_divide(x: Array, y: Array) -> Array:
    shape = jnp.broadcast_shapes(x.shape, y.shape)
    return _ieee_div(jnp.broadcast_to(x, shape), jnp.broadcast_to(y, shape))


@_true_divide.defjvp
def _true_divide_jvp(primals, tangents):
    x, y = primals
    x_dot, y_dot = tangents
    out = _true_divide(x, y)
    return out, x_dot / y - out * y_dot / y


def true_divide(x, y) -> Array:
    """Elementwise IEEE ``x / y`` with broadcasting, never rewritten as ``x * (1 / y)``.

    Works under `jax.jit`, `jax.vmap` (any nesting) and `jax.grad`; the derivative is the
    usual quotient rule (its own divisions need no bit-exactness).
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    dtype = jnp.result_type(x, y)
    return _true_divide(x.astype(dtype), y.astype(dtype))


def no_contract(x: Array) -> Array:
    """`x` unchanged, but a product in `x` is no longer fused into a following add as an FMA.

    XLA's CPU backend contracts ``a * b + c`` into one fused multiply-add (a different
    rounding from PyTorch, which rounds the product first). ``where(x != x, nan, x)`` is the
    identity (NaN stays NaN) and its select stands between the multiply and the add.
    """
    return jnp.where(x != x, jnp.asarray(jnp.nan, x.dtype), x)


def _row_sum(terms: Sequence[Array]) -> Array:
    """PyTorch's `row_sum`: 4 strided partial sums, the tail into the first, then combined."""
    n = len(terms)
    n_ilp = n // _TORCH_SUM_ILP
    zero = jnp.zeros_like(terms[0])
    partial = []
    for k in range(_TORCH_SUM_ILP):
        acc = zero
        for r in range(n_ilp):
            acc = acc + terms[r * _TORCH_SUM_ILP + k]
        partial.append(acc)
    for i in range(n_ilp * _TORCH_SUM_ILP, n):
        partial[0] = partial[0] + terms[i]
    total = partial[0]
    for k in range(1, _TORCH_SUM_ILP):
        total = total + partial[k]
    return total


def torch_cpu_sum(terms: Sequence[Array]) -> Array:
    """Sum equal-shape arrays in the order PyTorch's CPU kernel sums a contiguous float row.

    ``torch.stack(terms, -1).sum(-1)`` (float32, x86-64) adds the elements of a row of length
    ``n`` as follows: rows shorter than 8 go through `row_sum` (4 interleaved accumulators);
    longer rows are summed as 8-lane vectors with `row_sum`, then the scalar tail, then the 8
    lanes, in that order. Verified bit-exact against torch 2.13 for n = 2..39; rows of 512 or
    more elements (never met here: n is the number of sources) use a deeper cascade.
    """
    n = len(terms)
    if n < _TORCH_SUM_LANES:
        return _row_sum(terms)
    n_vec = n // _TORCH_SUM_LANES
    lanes = []
    for lane in range(_TORCH_SUM_LANES):
        lanes.append(_row_sum([terms[v * _TORCH_SUM_LANES + lane] for v in range(n_vec)]))
    total = jnp.zeros_like(terms[0])
    for i in range(n_vec * _TORCH_SUM_LANES, n):
        total = total + terms[i]
    for lane in lanes:
        total = total + lane
    return total
