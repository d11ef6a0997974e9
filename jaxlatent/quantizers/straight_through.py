"""Straight-through gradient estimator as a `jax.custom_vjp`.

``straight_through(x, q)`` returns `q` **bit for bit** (the chosen code vectors) and, in the
backward pass, hands the cotangent of its output to `x` unchanged and nothing to `q`
(Bengio et al. 2013, arXiv:1308.3432; van den Oord et al. 2017, "Neural Discrete
Representation Learning", arXiv:1711.00937).

The gradients are those of the usual ``x + stop_gradient(q - x)`` (DAC's
``z + (q - z).detach()``), but its forward value is not exactly `q`: ``x + (q - x)`` rounds, so
downstream layers would see a vector that differs from the code by an ulp. Here the forward
value is the code itself, so decoding the indices reproduces the quantized output exactly. The
codebook learns only through other paths (a codebook loss on the gathered codes, or EMA
updates), exactly as in DAC, where the straight-through branch is detached from the codebook.

Works under `jax.jit`, `jax.vmap`, `jax.grad`, `jax.pmap` and `jax.shard_map` (a custom_vjp is
transparent to them); forward-mode differentiation (`jax.jvp`) is not supported, as for any
`custom_vjp`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_floating, shape_str

Array = jax.Array


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _straight_through(x: Array, q: Array, x_dtype) -> Array:
    del x, x_dtype
    return q


def _fwd(x, q, x_dtype):
    del x, x_dtype
    return q, None


def _bwd(x_dtype, residuals, g):
    del residuals
    return g.astype(x_dtype), None  # None: a symbolic zero cotangent for q


_straight_through.defvjp(_fwd, _bwd)


def straight_through(x, q) -> Array:
    """`q` in the forward pass; the identity gradient to `x` (none to `q`) in the backward pass.

    Args:
      x: the encoder output (continuous vectors), floating ``[..., dim]``.
      q: the quantized vectors chosen for `x`, floating, same shape as `x` (any float dtype).

    Returns:
      `q` unchanged (same values and dtype). Under differentiation the cotangent of the
      output flows to `x` (cast to the dtype of `x`) and `q` receives a zero cotangent.

    Raises:
      ValueError: if either input is not floating or the shapes differ (no broadcasting).

    Example:
      >>> x = jnp.array([0.2, 0.9])
      >>> codes = jnp.array([0.0, 1.0])
      >>> straight_through(x, codes)
      Array([0., 1.], dtype=float32)
      >>> jax.grad(lambda x: jnp.sum(3.0 * straight_through(x, codes)))(x)
      Array([3., 3.], dtype=float32)
    """
    x = jnp.asarray(x)
    q = jnp.asarray(q)
    check_floating("x", x)
    check_floating("q", q)
    if x.shape != q.shape:
        raise ValueError(
            f"x and q must have the same shape, got x {shape_str(x)} and q {shape_str(q)}"
        )
    return _straight_through(x, q, x.dtype)
