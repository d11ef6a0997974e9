"""Snake's fast ``sin**2`` and its derivative: accuracy against float64, the exact fallback
out of range, and Snake's values, gradients and JVPs against the ``jnp.sin`` formula (torch
parity of Snake: tests/parity/test_dac_layers.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent.models.dac import snake
from jaxlatent.models.dac.sin_squared import (
    FAST_RANGE,
    sin_squared,
    sin_squared_and_derivative_reduced,
    sin_squared_reduced,
)
from tests.tolerances import assert_close


def _snake_sin(x, alpha):  # the formula with XLA's sine (the implementation before sin_squared)
    return x + jnp.reciprocal(alpha + 1e-9) * jnp.square(jnp.sin(alpha * x))


@pytest.mark.parametrize("bound", [1e-3, 1.0, 100.0, FAST_RANGE * (1 - 1e-6)])
def test_sin_squared_accuracy(rng, bound):
    y = rng.uniform(-bound, bound, 200_000).astype(np.float32)
    y[:4] = [0.0, -0.0, bound, -bound]
    exact = np.sin(y.astype(np.float64)) ** 2
    out = np.asarray(jax.jit(sin_squared)(jnp.asarray(y)))
    assert out.dtype == np.float32
    assert_close(out, exact, "dac_sin_squared", err_msg=f"|y| < {bound}")
    assert out[0] == 0.0 and out[1] == 0.0


@pytest.mark.parametrize("special", [FAST_RANGE, -3e5, np.inf, np.nan])
def test_sin_squared_out_of_range_is_jnp_sin(rng, special):
    y = rng.uniform(-10, 10, 1000).astype(np.float32)
    y[17] = special
    out = jax.jit(sin_squared)(jnp.asarray(y))
    np.testing.assert_array_equal(out, jnp.square(jnp.sin(jnp.asarray(y))))


def test_snake_fast_path_matches_the_sine_formula(rng):
    x = jnp.asarray((rng.standard_normal((2, 300, 6)) * 4).astype(np.float32))
    alpha = jnp.asarray(np.array([0.0, 1e-4, 0.5, 1.0, 2.0, 7.0], np.float32).reshape(1, 1, 6))
    fast = jax.jit(snake)(x, alpha)
    assert_close(fast, _snake_sin(x, alpha), "dac_snake_f32")
    np.testing.assert_array_equal(fast[..., 0], x[..., 0])  # alpha = 0 stays the identity
    assert (fast != _snake_sin(x, alpha)).any()  # the polynomial ran, not jnp.sin

    grads = jax.jit(jax.grad(_loss(snake), argnums=(0, 1)))(x, alpha)
    expected = jax.jit(jax.grad(_loss(_snake_sin), argnums=(0, 1)))(x, alpha)
    for g, e, name in zip(grads, expected, ("x", "alpha"), strict=True):
        assert_close(g, e, "dac_grad_f32", err_msg=name)


@pytest.mark.parametrize("special", [1e4, np.inf, np.nan])
def test_snake_out_of_range_uses_the_sine_formula(rng, special):
    x = (rng.standard_normal((1, 50, 3)) * 4).astype(np.float32)
    x[0, 7, 1] = special  # |alpha * x| >= FAST_RANGE in one element only
    alpha = jnp.asarray(np.array([0.5, 1.0, 2.0], np.float32).reshape(1, 1, 3))
    out = jax.jit(snake)(jnp.asarray(x), alpha)
    np.testing.assert_array_equal(out, jax.jit(_snake_sin)(jnp.asarray(x), alpha))


@pytest.mark.parametrize("bound", [1e-3, 1.0, 100.0, FAST_RANGE * (1 - 1e-6)])
def test_sin_squared_derivative_accuracy(rng, bound):
    y = jnp.asarray(rng.uniform(-bound, bound, 200_000).astype(np.float32))
    value, derivative = jax.jit(sin_squared_and_derivative_reduced)(y)
    np.testing.assert_array_equal(value, jax.jit(sin_squared_reduced)(y))  # one reduction
    exact = np.sin(2 * np.asarray(y, np.float64))
    assert_close(derivative, exact, "dac_sin_squared_derivative", err_msg=f"|y| < {bound}")


def _loss(f):
    return lambda x, a: jnp.sum(f(x, a) * jnp.cos(x))


@pytest.mark.parametrize("special", [1e4, -3e5])
def test_snake_gradient_out_of_range_is_the_sine_formulas(rng, special):
    x = (rng.standard_normal((2, 40, 3)) * 4).astype(np.float32)
    x[1, 7, 1] = special  # |alpha * x| >= FAST_RANGE: the jnp.sin branch of the derivative
    x, alpha = jnp.asarray(x), jnp.asarray(np.array([[[0.5, 1.0, 2.0]]], np.float32))
    grads = jax.jit(jax.grad(_loss(snake), argnums=(0, 1)))(x, alpha)
    expected = jax.jit(jax.grad(_loss(_snake_sin), argnums=(0, 1)))(x, alpha)
    for g, e, name in zip(grads, expected, ("x", "alpha"), strict=True):
        assert_close(g, e, "dac_grad_f32", err_msg=name)


def test_snake_forward_mode_and_low_precision_gradients(rng):
    x = jnp.asarray((rng.standard_normal((2, 30, 4)) * 3).astype(np.float32))
    alpha = jnp.asarray(np.array([[[0.0, 0.3, 1.0, 5.0]]], np.float32))
    tangents = (jnp.asarray(rng.standard_normal(x.shape).astype(np.float32)), jnp.ones_like(alpha))
    y, y_dot = jax.jvp(snake, (x, alpha), tangents)
    _, y_dot_ref = jax.jvp(_snake_sin, (x, alpha), tangents)
    np.testing.assert_array_equal(y, jax.jit(snake)(x, alpha))  # the primal is the forward's
    assert_close(y_dot, y_dot_ref, "dac_grad_f32")
    # bfloat16 activations: gradients come back in the inputs' dtypes
    gx, ga = jax.grad(_loss(snake), argnums=(0, 1))(x.astype(jnp.bfloat16), alpha)
    assert gx.dtype == jnp.bfloat16 and ga.dtype == jnp.float32
    assert np.isfinite(np.asarray(gx, np.float32)).all() and np.isfinite(ga).all()
