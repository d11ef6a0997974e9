"""`FoldedConv` / `fold_convolutions`: every convolution of jaxlatent.nn (plain, transposed,
weight-normalised, polyphase or not) gives its layer's outputs from a kernel computed once;
a folded DAC codes as the DAC; the copy is independent of the original. And the im2col matmul
(`conv_along_axis_as_matmul`) that FoldedConv and the MPD use is the convolution."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.nn.conv import conv_along_axis_as_matmul
from tests.tolerances import assert_close
from tests.unit.test_dac_compress import TINY, tiny_dac

LAYERS = [
    # (constructor, input shape)
    (lambda r: jnn.Conv1d(3, 4, 5, stride=2, padding=2, dilation=1, rngs=r), (2, 11, 3)),
    (lambda r: jnn.WNConv1d(4, 4, 3, dilation=3, padding=3, groups=2, rngs=r), (2, 11, 4)),
    (lambda r: jnn.WNConv2d(3, 2, (3, 2), padding=1, rngs=r), (2, 5, 4, 3)),
    (lambda r: jnn.ConvTranspose1d(3, 2, 4, stride=2, padding=1, rngs=r), (2, 7, 3)),
    (lambda r: jnn.WNConvTranspose1d(3, 2, 10, stride=5, padding=3, rngs=r), (2, 7, 3)),
    (lambda r: jnn.WNConvTranspose1d(3, 2, 5, stride=2, padding=1, rngs=r), (2, 7, 3)),  # 5 % 2
    (lambda r: jnn.WNConvTranspose2d(3, 2, (4, 2), stride=(2, 1), rngs=r), (2, 5, 4, 3)),
]


@pytest.mark.parametrize("index", range(len(LAYERS)))
def test_folded_layer_equals_the_layer(rng, index):
    make, shape = LAYERS[index]
    layer = make(nnx.Rngs(index))
    folded = jnn.FoldedConv(layer)
    assert not hasattr(folded, "weight_v") and folded.bias is not None
    assert folded.polyphase == (layer.transposed and all(
        k % s == 0 for k, s in zip(layer.kernel_size, layer.stride, strict=True)
    ))  # fmt: skip
    # the kernel applied, in every layer's layout (the polyphase form rearranged back)
    np.testing.assert_array_equal(folded.effective_kernel(), layer.effective_kernel())
    x = jnp.asarray(rng.standard_normal(shape).astype(np.float32))
    for padding in (True, False):
        assert_close(folded(x, padding=padding), layer(x, padding=padding), "folded_conv_f32")


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda r: jnn.WNConv1d(3, 8, 5, stride=2, padding=2, rngs=r), (1, 9, 3)),
        (lambda r: jnn.WNConv1d(4, 8, 3, dilation=3, padding=3, rngs=r), (1, 8, 4)),
        (lambda r: jnn.Conv1d(4, 6, 1, rngs=r), (1, 5, 4)),
    ],
)
def test_folded_few_rows_run_as_a_matmul(rng, make, shape):
    """Few output rows (a streaming step): im2col + one matrix product, the layer's values."""
    layer = make(nnx.Rngs(0))
    folded = jnn.FoldedConv(layer)
    x = jnp.asarray(rng.standard_normal(shape).astype(np.float32))
    for padding in (True, False):
        assert folded._matmul_applies(x, layer.padding[0] if padding else 0)
        assert_close(folded(x, padding=padding), layer(x, padding=padding), "folded_conv_f32")
    wide = jnp.zeros((shape[0], 40, shape[2]))  # more rows than output channels: XLA's conv
    assert not folded._matmul_applies(wide, layer.padding[0])


@pytest.mark.parametrize(
    ("shape", "taps", "stride", "dilation", "padding"),
    [
        ((2, 13, 3, 4), 5, 3, 1, 2),  # the MPD's (5, 1) convolutions: [batch, time, period, in]
        ((2, 11, 4), 3, 2, 3, 3),  # a FoldedConv's: [batch, time, in]
        ((1, 9, 2, 3, 4), 4, 1, 2, 0),  # two axes between time and channels
        ((3, 6, 4), 1, 2, 1, 1),  # one tap: no concatenation
    ],
)
def test_conv_along_axis_as_matmul_is_the_convolution(rng, shape, taps, stride, dilation, padding):
    """im2col + one matmul vs XLA's convolution with a ``(taps, 1)`` kernel. Small integers:
    every sum is exact in float32 whatever the order, so the values must be equal."""
    x = jnp.asarray(rng.integers(-3, 4, shape).astype(np.float32))
    w = jnp.asarray(rng.integers(-3, 4, (taps, shape[-1], 5)).astype(np.float32))
    got = conv_along_axis_as_matmul(
        x, w, stride=stride, dilation=dilation, padding=padding, precision="highest"
    )
    rows = x.reshape(shape[0], shape[1], -1, shape[-1])  # the other axes as one width axis
    want = jax.lax.conv_general_dilated(
        rows,
        w[:, None],
        window_strides=(stride, 1),
        padding=[(padding, padding), (0, 0)],
        rhs_dilation=(dilation, 1),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    want = want.reshape(shape[0], want.shape[1], *shape[2:-1], 5)
    assert got.shape == want.shape and got.dtype == x.dtype
    np.testing.assert_array_equal(got, want)


def test_conv_along_axis_as_matmul_rejects_bad_shapes():
    x, w = jnp.zeros((1, 4, 3)), jnp.zeros((3, 3, 2))
    for bad_x, bad_w in [(x, w[:, :2]), (x, w[None]), (x[0], w)]:
        with pytest.raises(ValueError, match=r"needs x \[batch, time, \.\.\., in\]"):
            conv_along_axis_as_matmul(bad_x, bad_w)
    with pytest.raises(ValueError, match="needs at least 5 time steps after padding, got 4"):
        conv_along_axis_as_matmul(x, w, dilation=2)


def test_fold_convolutions_of_a_dac(rng):
    model = tiny_dac()
    folded = jnn.fold_convolutions(model)
    kinds = {type(m).__name__ for _, m in nnx.iter_modules(folded)}
    assert "FoldedConv" in kinds and not kinds & {"WNConv1d", "WNConvTranspose1d"}
    assert type(model.decoder.blocks[0].conv_t1).__name__ == "WNConvTranspose1d"  # unchanged
    assert (
        folded.quantizer.quantizers[0].codebook[...] is model.quantizer.quantizers[0].codebook[...]
    )  # other parameters shared, not copied
    audio = jnp.asarray(rng.standard_normal((2, 10 * TINY.hop_length, 1)).astype(np.float32))
    want, got = model.encode(audio), folded.encode(audio)
    np.testing.assert_array_equal(got.codes, want.codes)
    assert_close(got.z, want.z, "folded_conv_f32")
    assert_close(folded.decode(want.z), model.decode(want.z), "folded_conv_f32")
    # the copy's variables are its own: changing one model leaves the other as it is
    folded.encoder.snake1.alpha.set_value(folded.encoder.snake1.alpha[...] * 2)
    assert not np.array_equal(folded.encoder.snake1.alpha[...], model.encoder.snake1.alpha[...])
    refolded = jnn.fold_convolutions(folded)  # already folded: an equal copy
    assert refolded.decoder.conv1.kernel[...] is folded.decoder.conv1.kernel[...]


def test_fold_rejects_non_convolutions():
    with pytest.raises(TypeError, match="convolution layer"):
        jnn.FoldedConv(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
