"""The rotation trick gradient estimator as a `jax.custom_vjp`.

``rotation_trick(x, q)`` returns `q` **bit for bit** (the chosen code vectors, as
:func:`~jaxlatent.quantizers.straight_through` does) and, in the backward pass, hands `x`
the output cotangent transformed by the rotation and rescaling that maps `x` onto `q`
(Fifty et al. 2024, "Restructuring Vector Quantization with the Rotation Trick",
arXiv:2410.06424, §4.2), treated as a constant; `q` receives no gradient.

With ``u = x / |x|``, ``q̂ = q / |q|``, ``w = (u + q̂) / |u + q̂|`` and ``s = |q| / |x|``, the
forward map is ``q = s · (x − 2 (x·w) w + 2 (x·u) q̂)`` with `u`, `w`, `q̂`, `s` detached, so
the gradient for an output cotangent `g` is::

    g_x = s · (g − 2 (g·w) w + 2 (g·q̂) u)

This is vector-quantize-pytorch 1.32.0's ``rotate_to(src, tgt)`` (its ``safe_div``/``l2norm``
clamps of the norms at 1e-6 included). The reference returns the rotated vector computed in
float32, which equals `q` up to rounding (and is 0 where `x` is exactly 0); here the forward
value is `q` itself, so decoding the indices reproduces the quantized output exactly.

Works under `jax.jit`, `jax.vmap`, `jax.grad` and `jax.shard_map`; forward-mode
differentiation (`jax.jvp`) is not supported, as for any `custom_vjp`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.quantizers.straight_through import straight_through

Array = jax.Array
_EPS = 1e-6  # the reference's safe_div / l2norm clamp


def _unit(v: Array) -> tuple[Array, Array]:
    norm = jnp.linalg.norm(v, axis=-1, keepdims=True)
    return v / jnp.maximum(norm, _EPS), norm


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _rotation_trick(x: Array, q: Array, x_dtype) -> Array:
    del x, x_dtype
    return q


def _fwd(x, q, x_dtype):
    del x_dtype
    return q, (x, q)


def _bwd(x_dtype, residuals, g):
    x, q = residuals
    x32, q32, g32 = (a.astype(jnp.float32) for a in (x, q, g))
    u, norm_x = _unit(x32)
    q_hat, norm_q = _unit(q32)
    w, _ = _unit(u + q_hat)
    scale = norm_q / jnp.maximum(norm_x, _EPS)

    def dot(a, b):
        return jnp.sum(a * b, axis=-1, keepdims=True)

    gx = scale * (g32 - 2.0 * dot(g32, w) * w + 2.0 * dot(g32, q_hat) * u)
    return gx.astype(x_dtype), None  # None: a symbolic zero cotangent for q


_rotation_trick.defvjp(_fwd, _bwd)


def rotation_trick(x, q) -> Array:
    """`q` in the forward pass; the rotation-trick gradient to `x` (none to `q`) backward.

    Args:
      x: the encoder output (continuous vectors), floating ``[..., dim]``.
      q: the quantized vectors chosen for `x`, floating, same shape as `x`.

    Returns:
      `q` unchanged (same values and dtype). Under differentiation the output cotangent `g`
      reaches `x` as ``|q|/|x| · (g − 2 (g·w) w + 2 (g·q̂) u)`` per vector (float32 maths,
      cast to the dtype of `x`; see the module docstring), and `q` gets a zero cotangent.

    Raises:
      ValueError: if either input is not floating, the shapes differ (no broadcasting), or
        the inputs have no feature axis.

    Example:
      >>> x = jnp.array([2.0, 0.0])
      >>> code = jnp.array([0.0, 1.0])
      >>> rotation_trick(x, code)
      Array([0., 1.], dtype=float32)
      >>> g = jax.grad(lambda x: rotation_trick(x, code)[1])(x)  # (0, 1) rotated onto x
      >>> g.round(6)
      Array([0.5, 0. ], dtype=float32)
    """
    x = jnp.asarray(x)
    q = jnp.asarray(q)
    check_floating("x", x)
    check_floating("q", q)
    if x.shape != q.shape or x.ndim < 1:
        raise ValueError(
            "x and q must have the same shape [..., dim], got "
            f"x {shape_str(x)} and q {shape_str(q)}"
        )
    return _rotation_trick(x, q, x.dtype)


def estimator(rotation: bool):
    """The gradient estimator ``f(x, q)``: :func:`rotation_trick` or straight-through."""
    return rotation_trick if rotation else straight_through
