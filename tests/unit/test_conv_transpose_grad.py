"""Hand-written gradients of the transposed convolution (jaxlatent.nn.conv.conv_transpose).

The custom VJP (adjoint strided convolution) must give autodiff's gradients of the
fractionally strided forward (the forward value itself is the polyphase form where it
applies), for 1-D and 2-D, strides, dilations, paddings and output
paddings (including output_padding >= stride, which torch allows when dilation is larger).
The layers' values and gradients against torch are in tests/parity/test_layers.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.nn.conv import (
    TransposedConvSpec,
    _fractionally_strided,
    _transposed_forward,
    conv_transpose,
)
from tests.tolerances import assert_close

CASES = [
    # (spatial input, kernel, stride, padding, dilation, output_padding)
    ((9,), (4,), (2,), (1,), (1,), (0,)),
    ((5,), (16,), (8,), (4,), (1,), (0,)),  # DAC's decoder geometry (stride 8)
    ((7,), (3,), (3,), (0,), (2,), (1,)),
    ((6,), (3,), (2,), (1,), (3,), (2,)),  # output_padding >= stride (dilation > it)
    ((5, 4), (3, 2), (2, 1), (1, 0), (1, 2), (1, 0)),
]


@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) + str(c[2]) + str(c[5]) for c in CASES])
def test_custom_vjp_equals_autodiff(rng, case):
    spatial, kernel, stride, padding, dilation, output_padding = case
    spec = TransposedConvSpec(stride, padding, dilation, output_padding, "highest")
    x = jnp.asarray(rng.standard_normal((2, *spatial, 3), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((*kernel, 3, 5), dtype=np.float32))
    y = _fractionally_strided(x, w, spec)
    # the forward is the polyphase form where it applies (equal up to summation order)
    np.testing.assert_array_equal(conv_transpose(x, w, spec), _transposed_forward(x, w, spec))
    assert_close(conv_transpose(x, w, spec), y, "conv_transpose_forms")
    g = jnp.asarray(rng.standard_normal(y.shape, dtype=np.float32))
    _, vjp_plain = jax.vjp(lambda a, b: _fractionally_strided(a, b, spec), x, w)
    _, vjp_custom = jax.vjp(lambda a, b: conv_transpose(a, b, spec), x, w)
    for name, want, got in zip(("dx", "dw"), vjp_plain(g), vjp_custom(g), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        assert_close(got, want, "layer_f32", err_msg=name)


def test_layer_gradients_in_bfloat16_and_under_jit(rng):
    """The weight-normed layer trains through the custom VJP in bf16 and under jit."""
    layer = jnn.WNConvTranspose1d(4, 2, kernel_size=4, stride=2, padding=1, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((2, 6, 4), dtype=np.float32)).astype(jnp.bfloat16)
    assert_trains_in_bfloat16_under_jit(layer, x)


def assert_trains_in_bfloat16_under_jit(layer, x) -> None:
    """`layer`'s jitted gradients for bfloat16 `x`: the input's in bfloat16, every parameter's
    in float32, finite and not all zero (shared with test_conv_matmul_gradient.py)."""
    graphdef, params = nnx.split(layer)

    @jax.jit
    def grads(params, x):
        def loss(params, x):
            return jnp.sum(nnx.merge(graphdef, params)(x).astype(jnp.float32) ** 2)

        return jax.grad(loss, argnums=(0, 1))(params, x)

    dp, dx = grads(params, x)
    assert dx.dtype == jnp.bfloat16 and dx.shape == x.shape
    for leaf in jax.tree.leaves(dp):
        assert leaf.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(leaf)))
        assert bool(jnp.any(leaf != 0))
