"""The two forms of the transposed convolution agree, and the layers pick the polyphase one
exactly where it applies (torch parity of both: tests/parity/test_layers.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.nn import conv
from tests.tolerances import assert_close

CASES_1D = [
    # (kernel, stride, padding, output_padding)
    (16, 8, 4, 0),  # DAC 44 kHz decoder, stride 8
    (10, 5, 3, 0),  # DAC 16/24 kHz, odd stride: L * s - 1 samples
    (4, 2, 1, 0),  # DAC stride 2
    (4, 2, 0, 1),  # output_padding > padding: a zero sample past the computed ones
    (6, 3, 1, 2),  # two taps per phase, output_padding > padding
    (9, 3, 5, 1),  # three taps, padding beyond one stride
    (2, 2, 0, 0),  # one tap per phase: a pure interleave
]


@pytest.mark.parametrize("length", [1, 7])
def test_polyphase_equals_fractionally_strided_1d(rng, length):
    for k, s, p, op in CASES_1D:
        x = jnp.asarray(rng.standard_normal((2, length, 3)).astype(np.float32))
        w = jnp.asarray(rng.standard_normal((k, 3, 5)).astype(np.float32))
        fast = conv.conv_transpose_polyphase(x, w, (s,), (p,), (op,))
        ref = conv.conv_transpose_dilated(x, w, (s,), (p,), (op,), (1,))
        assert fast.shape == ref.shape == (2, (length - 1) * s - 2 * p + k + op, 5)
        assert_close(fast, ref, "conv_transpose_forms", err_msg=f"k={k} s={s} p={p} op={op}")


def test_polyphase_equals_fractionally_strided_2d(rng):
    x = jnp.asarray(rng.standard_normal((2, 5, 4, 3)).astype(np.float32))
    for k, s, p, op in [((4, 4), (2, 2), (1, 1), (0, 1)), ((6, 2), (3, 2), (2, 0), (1, 1))]:
        w = jnp.asarray(rng.standard_normal((*k, 3, 2)).astype(np.float32))
        fast = conv.conv_transpose_polyphase(x, w, s, p, op)
        ref = conv.conv_transpose_dilated(x, w, s, p, op, (1, 1))
        assert fast.shape == ref.shape
        assert_close(fast, ref, "conv_transpose_forms", err_msg=f"k={k} s={s} p={p} op={op}")


def test_layers_use_polyphase_exactly_where_it_applies(monkeypatch):
    calls = []
    for name in ("conv_transpose_polyphase", "conv_transpose_dilated"):
        original = getattr(conv, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(conv, name, spy)
    x = jax.ShapeDtypeStruct((1, 3, 2), jnp.float32)
    apply = lambda m, x: m(x)  # noqa: E731  (traced only: nothing is compiled)
    cases = [  # (kernel, stride, dilation) -> form
        ((16, 8, 1), "conv_transpose_polyphase"),
        ((10, 5, 1), "conv_transpose_polyphase"),
        ((3, 2, 1), "conv_transpose_dilated"),  # kernel not a multiple of the stride
        ((4, 2, 2), "conv_transpose_dilated"),  # dilation
        ((3, 1, 1), "conv_transpose_dilated"),  # stride 1: an ordinary convolution
    ]
    for (k, s, d), form in cases:
        calls.clear()
        layer = nnx.eval_shape(
            lambda k=k, s=s, d=d: jnn.WNConvTranspose1d(2, 2, k, s, dilation=d, rngs=nnx.Rngs(0))
        )
        nnx.eval_shape(apply, layer, x)
        assert calls == [form], (k, s, d)
    layer = nnx.eval_shape(lambda: jnn.ConvTranspose2d(2, 2, (4, 3), (2, 1), rngs=nnx.Rngs(0)))
    calls.clear()
    nnx.eval_shape(apply, layer, jax.ShapeDtypeStruct((1, 3, 3, 2), jnp.float32))
    assert calls == ["conv_transpose_polyphase"]  # 3 % 1 == 0 on the stride-1 axis


def test_polyphase_rejects_kernels_that_are_not_stride_multiples():
    with pytest.raises(ValueError, match="multiple of stride"):
        conv.conv_transpose_polyphase(jnp.ones((1, 4, 2)), jnp.ones((3, 2, 2)), (2,), (0,), (0,))
