"""Matrix-product gradients of few-row 1-d convolutions (jaxlatent.nn.conv).

A 1-d convolution with fewer output rows (batch * time_out) than output channels keeps
XLA's forward bit for bit but takes its derivatives as matrix products
(`conv_with_matmul_gradient`: im2col, or one product per tap when rows * taps <= channels);
a transposed convolution with as few input rows takes its adjoint per tap against the
stored kernel. Both must give the gradients of the plain convolution up to summation order,
in reverse and forward mode, for strides, dilations and paddings, and the layers must use
them exactly where `_gradient_as_matmul` / `_few_rows` say.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.nn.conv import (
    ConvSpec,
    TransposedConvSpec,
    _conv,
    _few_rows,
    _fractionally_strided,
    _gradient_as_matmul,
    conv_transpose,
    conv_with_matmul_gradient,
)
from tests.tolerances import assert_close
from tests.unit.test_conv_transpose_grad import assert_trains_in_bfloat16_under_jit

CONV_CASES = [
    # (batch, time, in, out, taps, stride, dilation, padding): rows, rows * taps vs out
    (2, 19, 24, 48, 7, 1, 1, 3),  # 38 rows < 48 < 266: im2col
    (2, 4, 16, 64, 7, 1, 1, 3),  # 8 rows, 56 <= 64: per tap
    (1, 40, 8, 32, 16, 8, 1, 4),  # stride 8 (DAC's encoder): 5 rows, 80 > 32: im2col
    (1, 16, 8, 96, 16, 8, 1, 4),  # 2 rows, 32 <= 96: per tap
    (2, 9, 12, 40, 3, 1, 3, 3),  # dilation 3: 18 rows, 54 > 40: im2col
    (1, 6, 12, 40, 3, 2, 2, 2),  # stride 2, dilation 2: 3 rows, 9 <= 40: per tap
]


def _data(rng, *shape):
    return jnp.asarray(rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[-2]))


def _assert_same_vjp(plain, custom, x, w, g):
    """`custom`'s (dx, dw) for cotangent `g` against `plain`'s; returns `plain`'s vjp."""
    _, vjp_plain = jax.vjp(plain, x, w)
    _, vjp_custom = jax.vjp(custom, x, w)
    for name, want, got in zip(("dx", "dw"), vjp_plain(g), vjp_custom(g), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert_close(got, want, "conv_gradient_forms", err_msg=name)
    return vjp_plain


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(c) for c in CONV_CASES])
def test_matmul_gradient_equals_the_convolutions(rng, case):
    batch, time, c_in, c_out, taps, stride, dilation, padding = case
    spec = ConvSpec((stride,), (padding,), (dilation,), 1, jax.lax.Precision.HIGHEST)
    x = _data(rng, batch, time, c_in)
    w = _data(rng, taps, c_in, c_out)
    y = _conv(x, w, spec)
    assert _gradient_as_matmul(y.shape[0] * y.shape[1], c_out, taps)
    # the value is XLA's convolution, bit for bit (eager and jitted)
    np.testing.assert_array_equal(conv_with_matmul_gradient(x, w, spec), y)
    jitted = jax.jit(conv_with_matmul_gradient, static_argnums=2)
    np.testing.assert_array_equal(jitted(x, w, spec), jax.jit(_conv, static_argnums=2)(x, w, spec))

    g = jnp.asarray(rng.standard_normal(y.shape, dtype=np.float32))
    vjp_plain = _assert_same_vjp(
        lambda a, b: _conv(a, b, spec), lambda a, b: conv_with_matmul_gradient(a, b, spec), x, w, g
    )
    # one argument differentiated (its symbolic-zero partner costs no product)
    dw = jax.grad(lambda b: jnp.vdot(g, conv_with_matmul_gradient(x, b, spec)))(w)
    assert_close(dw, vjp_plain(g)[1], "conv_gradient_forms", err_msg="dw alone")
    dx = jax.grad(lambda a: jnp.vdot(g, conv_with_matmul_gradient(a, w, spec)))(x)
    assert_close(dx, vjp_plain(g)[0], "conv_gradient_forms", err_msg="dx alone")
    # forward mode
    tx, tw = _data(rng, *x.shape), _data(rng, *w.shape)
    _, want = jax.jvp(lambda a, b: _conv(a, b, spec), (x, w), (tx, tw))
    _, got = jax.jvp(lambda a, b: conv_with_matmul_gradient(a, b, spec), (x, w), (tx, tw))
    assert_close(got, want, "conv_gradient_forms", err_msg="jvp")


def test_matmul_gradient_rejects_grouped_or_2d_specs():
    x, w = jnp.ones((1, 5, 4)), jnp.ones((3, 2, 8))
    with pytest.raises(ValueError, match="1-d convolutions with groups=1"):
        conv_with_matmul_gradient(x, w, ConvSpec((1,), (1,), (1,), 2))


TRANSPOSED_CASES = [
    # (batch, time, in, out, taps, stride, dilation, padding, output_padding)
    (1, 2, 64, 8, 16, 8, 1, 4, 0),  # DAC's decoder geometry, 2 rows * 16 taps <= 64
    (2, 3, 48, 5, 3, 2, 2, 1, 1),  # dilation 2: 6 rows * 3 taps <= 48
    (1, 2, 40, 6, 3, 2, 3, 1, 2),  # output_padding >= stride (dilation larger)
]


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=[str(c) for c in TRANSPOSED_CASES])
def test_transposed_adjoint_by_taps_equals_autodiff(rng, case):
    batch, time, c_in, c_out, taps, stride, dilation, padding, output_padding = case
    assert _few_rows(batch * time, c_in, taps)
    spec = TransposedConvSpec((stride,), (padding,), (dilation,), (output_padding,), "highest")
    x = _data(rng, batch, time, c_in)
    w = _data(rng, taps, c_in, c_out)
    y = _fractionally_strided(x, w, spec)
    g = jnp.asarray(rng.standard_normal(y.shape, dtype=np.float32))
    _assert_same_vjp(
        lambda a, b: _fractionally_strided(a, b, spec),
        lambda a, b: conv_transpose(a, b, spec),
        x,
        w,
        g,
    )


def test_empty_inputs_keep_xla_gradients_of_zeros():
    """No rows: neither form applies, and the gradients are XLA's zeros (the per-tap forms
    would fail on an empty input)."""
    assert not _gradient_as_matmul(0, 64, 7) and not _few_rows(0, 64, 16)
    spec = TransposedConvSpec((8,), (4,), (1,), (0,), "highest")
    x, w = jnp.ones((1, 0, 16)), jnp.ones((16, 16, 8))
    assert conv_transpose(x, w, spec).shape == (1, 0, 8)
    dw = jax.grad(lambda w: jnp.sum(conv_transpose(x, w, spec)))(w)
    np.testing.assert_array_equal(dw, np.zeros_like(dw))


def _has_custom_jvp(fn, *args) -> bool:
    return "custom_jvp_call" in str(jax.make_jaxpr(fn)(*args))


def test_layers_take_the_matmul_gradient_exactly_for_few_rows(rng):
    """A weight-normed Conv1d uses it for few rows only (its value is then unchanged), and
    its parameter gradients equal those of the plain convolution."""
    layer = jnn.WNConv1d(16, 64, kernel_size=7, padding=3, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(layer)
    few, many = _data(rng, 2, 5, 16), _data(rng, 2, 40, 16)
    assert _has_custom_jvp(lambda x: layer(x), few)
    assert not _has_custom_jvp(lambda x: layer(x), many)
    assert not _has_custom_jvp(lambda x: layer(x, padding=False), _data(rng, 1, 70, 16))

    def loss(params, x, plain):
        model = nnx.merge(graphdef, params)
        if plain:
            spec = ConvSpec(model.stride, model.padding, model.dilation, 1, model.precision)
            y = _conv(x, model.effective_kernel(), spec) + model.bias[...][None, None]
        else:
            y = model(x)
        return jnp.sum(jnp.sin(y))

    # an empty output keeps XLA's convolution, whose parameter gradients are zeros
    short = _data(rng, 1, 3, 16)
    assert layer(short, padding=False).shape == (1, 0, 64)
    assert not _has_custom_jvp(lambda x: layer(x, padding=False), short)
    empty = jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(short, padding=False)))(params)
    for path, g in jax.tree_util.tree_leaves_with_path(empty):
        np.testing.assert_array_equal(g, np.zeros_like(g), err_msg=str(path))

    np.testing.assert_array_equal(layer(few), nnx.merge(graphdef, params)(few))
    want = jax.grad(loss)(params, few, True)
    got = jax.grad(loss)(params, few, False)
    leaves = jax.tree_util.tree_leaves_with_path
    for (path, a), (_, b) in zip(leaves(got), leaves(want), strict=True):
        assert_close(a, b, "conv_gradient_forms", err_msg=str(path))


def test_matmul_gradient_in_bfloat16_under_jit(rng):
    layer = jnn.WNConv1d(16, 96, kernel_size=7, padding=3, rngs=nnx.Rngs(0))
    assert_trains_in_bfloat16_under_jit(layer, _data(rng, 1, 4, 16).astype(jnp.bfloat16))
