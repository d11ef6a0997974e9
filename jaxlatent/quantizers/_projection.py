"""Applying a quantizer's optional projection layer, with a fast weight gradient for narrow
code spaces.

Private; the one way every quantizer applies its ``project_in`` / ``project_out`` (and decodes
through them). ``project(layer, x)`` is ``layer(x)``, and ``x`` itself when `layer` is None.
For an `nnx.Linear` with the default ``dot_general`` and a narrow kernel (one side at most
`NARROW`) it runs the Linear's own forward operations (bit for bit) under a `jax.custom_jvp`
whose derivative spells the kernel term as a broadcast product summed over the batch instead of
a matmul. Reverse mode then computes the kernel gradient ``Σ_n x_nᵀ g_n`` as one elementwise
reduction that reads the batch once, where XLA:CPU's transposed-operand matmul with a dimension
of 4 (FSQ's code space) first copies the ``[batch, dim]`` operand into a transposed layout and
then runs a slow matrix product: measured 6x faster for a 1024 → 4 projection on a 2-core CPU.
Forward-mode (`jax.jvp`) and higher-order derivatives keep working (a `jax.custom_jvp` whose
tangent is linear in every input). Any other layer (LFQ's `CosineSimLinear`, a wide kernel, a
Linear with a custom ``dot_general`` or a ``preferred_element_type``) is simply called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.custom_derivatives import SymbolicZero

Array = jax.Array

#: the broadcast-product form is used when the narrower side of the kernel is at most this;
#: wider kernels keep the matmul (the product would grow as ``d_in · d_out`` per row).
NARROW = 16


def project(layer: Callable[[Array], Array] | None, x: Array) -> Array:
    """``layer(x)`` (``x`` unchanged when `layer` is None), ``[..., d_in] → [..., d_out]``;
    same forward values and dtype as ``layer(x)``, bit for bit."""
    if layer is None:
        return x
    if not _narrow_linear(layer):
        return layer(x)
    kernel = layer.kernel[...]
    bias = layer.bias[...] if layer.bias is not None else None
    x, kernel, bias = layer.promote_dtype((x, kernel, bias), dtype=layer.dtype)
    if bias is None:
        return _dense_no_bias(x, kernel, layer.precision)
    return _dense(x, kernel, bias, layer.precision)


def _narrow_linear(layer) -> bool:
    """Whether ``layer(x)`` is the plain `nnx.Linear` product that `_dense` reproduces, with a
    kernel narrow enough for the broadcast-product gradient."""
    return (
        isinstance(layer, nnx.Linear)
        and layer.dot_general is jax.lax.dot_general
        and layer.preferred_element_type is None
        and min(layer.kernel.shape) <= NARROW
    )


def _matmul(x: Array, kernel: Array, precision) -> Array:
    # nnx.Linear's product: the last axis of x with the first of the kernel
    return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=precision)


def _kernel_term(x: Array, dk: Array) -> Array:
    """``x @ dk`` as a broadcast product and a sum, its wide axis minor (so that the
    transposed sum over the batch streams through `x` or the cotangent once)."""
    d_in, d_out = dk.shape
    lead = (1,) * (x.ndim - 1)
    if d_in <= d_out:
        return jnp.sum(x[..., :, None] * dk.reshape(lead + dk.shape), axis=-2)
    return jnp.sum(x[..., None, :] * dk.T.reshape(lead + dk.T.shape), axis=-1)


def _add_bias(y: Array, bias: Array) -> Array:
    return y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))


def _tangent(x, kernel, dx, dk, precision) -> Array | None:
    """``dx @ kernel + x @ dk``, skipping symbolic zeros (None when both are)."""
    terms = []
    if not isinstance(dx, SymbolicZero):
        terms.append(_matmul(dx, kernel, precision))
    if not isinstance(dk, SymbolicZero):
        terms.append(_kernel_term(x, dk))
    return None if not terms else functools.reduce(jnp.add, terms)


def _or_zeros(dy, y: Array) -> Array:
    return jnp.zeros_like(y) if dy is None else dy


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _dense(x: Array, kernel: Array, bias: Array, precision) -> Array:
    return _add_bias(_matmul(x, kernel, precision), bias)


def _dense_jvp(precision, primals, tangents):
    x, kernel, bias = primals
    dx, dk, db = tangents
    y = _dense(x, kernel, bias, precision)
    dy = _tangent(x, kernel, dx, dk, precision)
    if not isinstance(db, SymbolicZero):
        dy = _add_bias(_or_zeros(dy, y), db)
    return y, _or_zeros(dy, y)


_dense.defjvp(_dense_jvp, symbolic_zeros=True)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _dense_no_bias(x: Array, kernel: Array, precision) -> Array:
    return _matmul(x, kernel, precision)


def _dense_no_bias_jvp(precision, primals, tangents):
    x, kernel = primals
    dx, dk = tangents
    y = _dense_no_bias(x, kernel, precision)
    return y, _or_zeros(_tangent(x, kernel, dx, dk, precision), y)


_dense_no_bias.defjvp(_dense_no_bias_jvp, symbolic_zeros=True)
