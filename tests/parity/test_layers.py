"""torch layers vs their jaxlatent targets, with weights copied by the production tables.

Covers every layer the shared converter machinery maps: Linear, Conv1d/2d, ConvTranspose1d/2d
(stride, padding, output_padding, dilation, groups), both weight-norm key styles, BatchNorm1d/2d
in train and eval mode (running statistics included), LayerNorm and Embedding.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import assign, tables
from jaxlatent import nn as jnn
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity


def _ncl_to_nlc(x):
    return np.moveaxis(x, 1, -1)


def _run_torch(module, x_channels_last):
    torch = ref.torch()
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x_channels_last, -1, 1)))
    with torch.no_grad():
        y = module(x)
    return _ncl_to_nlc(ref.to_numpy(y))


def _convert(torch_module, jax_module, table):
    assign.assign_strict(jax_module, torch_module.state_dict(), table)
    exported = assign.export_state_dict(jax_module, table)
    for k, v in torch_module.state_dict().items():  # the reverse direction is exact
        np.testing.assert_array_equal(exported[k], ref.to_numpy(v), err_msg=k)


CONV_CASES = [
    # (kernel, stride, padding, dilation, groups)
    (1, 1, 0, 1, 1),
    (3, 1, 1, 1, 1),
    (7, 1, 9, 3, 1),
    (4, 2, 1, 1, 2),
    (5, 3, 2, 2, 1),
]


@pytest.mark.parametrize("k,s,p,d,g", CONV_CASES)
@pytest.mark.parametrize("ndim", [1, 2])
def test_conv(rng, ndim, k, s, p, d, g):
    torch = ref.torch()
    torch.manual_seed(0)
    tm = (torch.nn.Conv1d if ndim == 1 else torch.nn.Conv2d)(4, 6, k, s, p, d, g)
    jm = (jnn.Conv1d if ndim == 1 else jnn.Conv2d)(4, 6, k, s, p, d, g, rngs=nnx.Rngs(1))
    _convert(tm, jm, tables.conv("", ""))
    x = rng.standard_normal((2, *([23] * ndim), 4)).astype(np.float32)
    assert_close(jm(jnp.asarray(x)), _run_torch(tm, x), "layer_f32")


TRANSPOSE_CASES = [
    # (kernel, stride, padding, output_padding, dilation); kernel % stride == 0 and no dilation:
    # the polyphase form (jaxlatent.nn.conv.conv_transpose_polyphase), else fractionally strided
    (4, 2, 1, 0, 1),
    (16, 8, 4, 0, 1),  # DAC decoder block, stride 8
    (10, 5, 3, 0, 1),  # DAC decoder block, odd stride 5 (loses one sample)
    (4, 2, 0, 1, 1),  # polyphase, output_padding > padding (a zero sample at the end)
    (6, 3, 1, 2, 1),  # polyphase, two taps per phase, output_padding > padding
    (3, 2, 1, 1, 1),
    (1, 1, 1, 0, 1),  # negative effective padding (a crop), as in SpeechBrain's PSI decoders
    (3, 2, 2, 1, 2),
]


@pytest.mark.parametrize("k,s,p,op,d", TRANSPOSE_CASES)
@pytest.mark.parametrize("ndim", [1, 2])
def test_conv_transpose(rng, ndim, k, s, p, op, d):
    torch = ref.torch()
    torch.manual_seed(0)
    cls = torch.nn.ConvTranspose1d if ndim == 1 else torch.nn.ConvTranspose2d
    tm = cls(4, 3, k, s, p, op, dilation=d)
    jcls = jnn.ConvTranspose1d if ndim == 1 else jnn.ConvTranspose2d
    jm = jcls(4, 3, k, s, p, d, output_padding=op, rngs=nnx.Rngs(1))
    _convert(tm, jm, tables.conv_transpose("", ""))
    x = rng.standard_normal((2, *([9] * ndim), 4)).astype(np.float32)
    out = jm(jnp.asarray(x))
    expected = _run_torch(tm, x)
    assert out.shape == expected.shape
    assert_close(out, expected, "layer_f32")


@pytest.mark.parametrize("style", ["legacy", "parametrizations"])
@pytest.mark.parametrize("transposed", [False, True])
def test_weight_norm_conv(rng, style, transposed):
    torch = ref.torch()
    torch.manual_seed(0)
    if transposed:
        base = torch.nn.ConvTranspose1d(6, 4, 16, stride=8, padding=4)
        jm = jnn.WNConvTranspose1d(6, 4, 16, stride=8, padding=4, rngs=nnx.Rngs(1))
    else:
        base = torch.nn.Conv1d(6, 4, 7, dilation=3, padding=9)
        jm = jnn.WNConv1d(6, 4, 7, dilation=3, padding=9, rngs=nnx.Rngs(1))
    if style == "legacy":
        tm = torch.nn.utils.weight_norm(base)
    else:
        tm = torch.nn.utils.parametrizations.weight_norm(base)
    with torch.no_grad():  # a magnitude that differs from ||v||, so g really matters
        g = tm.weight_g if style == "legacy" else tm.parametrizations.weight.original0
        g.mul_(torch.linspace(0.5, 2.0, g.shape[0]).reshape(-1, 1, 1))
    assert tables.detect_weight_norm_style(tm.state_dict()) == style
    _convert(tm, jm, tables.weight_norm_conv("", "", style=style, transposed=transposed))
    x = rng.standard_normal((2, 12, 6)).astype(np.float32)
    assert_close(jm(jnp.asarray(x)), _run_torch(tm, x), "layer_f32")


@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_train_and_eval(rng, ndim, momentum):
    torch = ref.torch()
    cls = torch.nn.BatchNorm1d if ndim == 1 else torch.nn.BatchNorm2d
    tm = cls(5, momentum=momentum)
    with torch.no_grad():
        tm.weight.uniform_(0.5, 1.5)
        tm.bias.uniform_(-0.5, 0.5)
        tm.running_mean.uniform_(-1, 1)
        tm.running_var.uniform_(0.5, 2)
        tm.num_batches_tracked.fill_(3)
    jm = jnn.BatchNorm(5, momentum=momentum)
    table = tables.batch_norm("", "")
    _convert(tm, jm, table)
    for step in range(2):  # two training steps: running statistics must follow torch's
        x = (rng.standard_normal((4, *([7] * ndim), 5)) * 3 + 1).astype(np.float32)
        tm.train()
        expected = _run_torch(tm, x)
        assert_close(jm(jnp.asarray(x)), expected, "layer_f32", err_msg=f"train step {step}")
    after = assign.export_state_dict(jm, table)
    for k, v in tm.state_dict().items():
        assert_close(after[k], ref.to_numpy(v), "batchnorm_stats", err_msg=k)
    tm.eval()
    jm.eval()
    x = rng.standard_normal((3, *([7] * ndim), 5)).astype(np.float32)
    assert_close(jm(jnp.asarray(x)), _run_torch(tm, x), "layer_f32", err_msg="eval")


def test_linear_layer_norm_embedding(rng):
    torch = ref.torch()
    torch.manual_seed(0)
    tl, jl = torch.nn.Linear(5, 3), nnx.Linear(5, 3, rngs=nnx.Rngs(0))
    _convert(tl, jl, tables.linear("", ""))
    x = rng.standard_normal((4, 5)).astype(np.float32)
    assert_close(jl(jnp.asarray(x)), ref.to_numpy(tl(torch.from_numpy(x))), "layer_f32")

    tn, jn = torch.nn.LayerNorm(5), nnx.LayerNorm(5, epsilon=1e-5, rngs=nnx.Rngs(0))
    with torch.no_grad():
        tn.weight.uniform_(0.5, 1.5)
        tn.bias.uniform_(-1, 1)
    _convert(tn, jn, tables.layer_norm("", ""))
    assert_close(jn(jnp.asarray(x)), ref.to_numpy(tn(torch.from_numpy(x))), "layer_f32")

    te, je = torch.nn.Embedding(10, 4), nnx.Embed(10, 4, rngs=nnx.Rngs(0))
    _convert(te, je, tables.embedding("", ""))
    idx = rng.integers(0, 10, (3, 5))
    np.testing.assert_array_equal(je(jnp.asarray(idx)), ref.to_numpy(te(torch.from_numpy(idx))))
