"""PIQ invariants without torch: the forbidden-code search, partition, shapes, modes, bad input,
jit, converters round trip."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import piq as piq_conv
from converters.errors import ConversionError
from jaxlatent import quantizers as q
from jaxlatent.models import piq as models
from jaxlatent.quantizers import piq

# --------------------------------------------------------------------------------------------
# nearest_code with forbidden codes (the core search's mask)
# --------------------------------------------------------------------------------------------


def _masked_argmin(x, codebook, forbidden):
    d = ((x[:, None, :].astype(np.float64) - codebook[None].astype(np.float64)) ** 2).sum(-1)
    return np.where(forbidden, np.inf, d).argmin(1)


@pytest.mark.parametrize("chunks", [{}, {"vector_chunk": 7, "code_chunk": 5}])
def test_search_with_forbidden_mask_and_table(rng, chunks):
    x = rng.standard_normal((30, 3)).astype(np.float32)
    codebook = rng.standard_normal((23, 3)).astype(np.float32)
    table = rng.random((4, 23)) < 0.6
    table[2] = True  # a row with every code forbidden -> index 0
    rows = rng.integers(0, 4, 30)
    expected = _masked_argmin(x, codebook, table[rows])
    expected[rows == 2] = 0
    by_table = q.nearest_code(x, codebook, forbidden=table, forbidden_rows=rows, **chunks)
    per_vector = q.nearest_code(x, codebook, forbidden=table[rows], **chunks)
    np.testing.assert_array_equal(by_table, expected)
    np.testing.assert_array_equal(per_vector, expected)
    # leading axes are kept, and jit gives the same
    f = jax.jit(lambda x, t, r: q.nearest_code(x, codebook, forbidden=t, forbidden_rows=r))
    out = f(x.reshape(5, 6, 3), table, rows.reshape(5, 6))
    np.testing.assert_array_equal(out, expected.reshape(5, 6))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"forbidden": np.zeros((6, 5))}, "boolean"),
        ({"forbidden": np.zeros((6, 4), bool)}, r"shape \(6, 5\)"),
        ({"forbidden": np.zeros((2, 4), bool), "forbidden_rows": np.zeros(6, int)}, "table"),
        ({"forbidden": np.zeros((2, 5), bool), "forbidden_rows": np.zeros(5, int)}, "rows"),
        ({"forbidden": np.zeros((2, 5), bool), "forbidden_rows": np.full(6, 2)}, "out of range"),
        ({"forbidden_rows": np.zeros(6, int)}, "without a forbidden table"),
    ],
)
def test_search_forbidden_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        q.nearest_code(np.zeros((6, 3), np.float32), np.zeros((5, 3), np.float32), **kwargs)


# --------------------------------------------------------------------------------------------
# The partition
# --------------------------------------------------------------------------------------------


def test_class_of_code_block_sizes():
    # speechbrain_notes.md §3.1 (verified against SpeechBrain 1.1.2)
    np.testing.assert_array_equal(piq.class_of_code(20, 3, 5), np.repeat([0, 1, 2], 5))
    sizes = np.bincount(piq.class_of_code(1024, 10, 10))
    np.testing.assert_array_equal(sizes, [102, 101, 102, 101, 102, 101, 101, 102, 101, 101])
    sizes = np.bincount(piq.class_of_code(512, 50, 0))
    np.testing.assert_array_equal(sizes[:5], [11, 10, 10, 10, 11])
    assert sizes.sum() == 512 and set(sizes) == {10, 11}
    assert piq.class_of_code(1, 50, 0).tolist() == [0]  # -0.5 rounds half to even
    assert piq.class_of_code(10, 3, 10).shape == (0,)
    assert piq.class_of_code(64, 7, 1) is piq.class_of_code(64, 7, 1)  # cached
    with pytest.raises(ValueError):
        piq.class_of_code(64, 7, 1)[0] = 3  # read-only


def test_torch_linspace_f32_endpoints_and_halves():
    v = piq.torch_linspace_f32(-0.5, 49.49, 512)
    assert v.dtype == np.float32 and v[0] == np.float32(-0.5) and v[-1] == np.float32(49.49)
    assert (np.diff(v) > 0).all()
    assert piq.torch_linspace_f32(3.0, 4.0, 1).tolist() == [3.0]
    assert piq.torch_linspace_f32(3.0, 4.0, 0).shape == (0,)


def test_get_irrelevant_regions_shapes_and_stages():
    labels = jnp.array([1.0, 0.0, 2.0])
    train = piq.get_irrelevant_regions(labels, 20, 3, 5)  # SpeechBrain's doctest
    valid = piq.get_irrelevant_regions(labels, 20, 3, 5, stage="VALID")
    assert train.shape == valid.shape == (3, 20) and train.dtype == jnp.bool_
    assert bool(train[:, 15:].all()) and not bool(valid[:, 15:].any())
    np.testing.assert_array_equal(train[:, :15], valid[:, :15])
    np.testing.assert_array_equal((~train[:, :15]).sum(1), [5, 5, 5])
    ints = piq.get_irrelevant_regions(jnp.array([1, 0, 2]), 20, 3, 5)
    np.testing.assert_array_equal(ints, train)


# --------------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------------


def test_vector_quantization_is_the_nearest_allowed_code(rng):
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    codebook = rng.standard_normal((40, 6)).astype(np.float32)
    labels = np.array([2, 0, 3])
    for training in (True, False):
        idx = piq.vector_quantization(x, codebook, labels, 4, True, 4, training)
        irr = np.asarray(piq.get_irrelevant_regions(labels, 40, 4, 4, "TRAIN" if training else ""))
        expected = _masked_argmin(x.reshape(-1, 6), codebook, np.repeat(irr, 20, axis=0))
        np.testing.assert_array_equal(np.asarray(idx).reshape(-1), expected)
    free = piq.vector_quantization(x, codebook, None, activate_class_partitioning=False)
    np.testing.assert_array_equal(
        np.asarray(free).reshape(-1), _masked_argmin(x.reshape(-1, 6), codebook, False)
    )


def test_speechbrain_doctest_shapes():
    inputs = jnp.ones((3, 14, 25, 256))
    codebook = jnp.asarray(np.random.default_rng(0).standard_normal((1024, 256)), jnp.float32)
    labels = jnp.array([1.0, 0.0, 2.0])
    assert piq.VectorQuantization.apply(inputs, codebook, labels).shape == (3, 14, 25)
    quant, quant_ind = piq.VectorQuantizationStraightThrough.apply(inputs, codebook, labels)
    assert quant.shape == (3, 14, 25, 256) and quant_ind.shape == (1050,)
    assert quant_ind.dtype == jnp.int32


def test_straight_through_values_and_gradient_routing(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    codebook = rng.standard_normal((30, 5)).astype(np.float32)
    labels = np.array([1, 2])
    codes, idx = piq.vector_quantization_straight_through(x, codebook, labels, 3, True, 0)
    np.testing.assert_array_equal(codes, codebook[np.asarray(idx)].reshape(x.shape))  # exact

    def loss(x, cb):
        return jnp.sum(piq.vector_quantization_straight_through(x, cb, labels, 3, True, 0)[0])

    gx, gc = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, codebook)
    np.testing.assert_array_equal(gx, np.ones_like(x))
    np.testing.assert_array_equal(gc.sum(1) / 5, np.bincount(np.asarray(idx), minlength=30))


# --------------------------------------------------------------------------------------------
# VQEmbedding
# --------------------------------------------------------------------------------------------


def test_vq_embedding_init_modes_and_outputs(rng):
    rngs = nnx.Rngs(jax.random.key(0, impl="unsafe_rbg"))  # compiles faster than threefry
    vq = piq.VQEmbedding(32, 4, numclasses=4, shared_keys=4, rngs=rngs)
    w = np.asarray(vq.embedding[...])
    assert w.shape == (32, 4) and np.abs(w).max() <= 1 / 32 and w.std() > 1 / 128
    z = jnp.asarray(rng.standard_normal((2, 3, 5, 4)) / 32, jnp.float32)
    vq.embedding[...] = vq.embedding[...].at[28:].set(z[0, 0, :4])  # shared keys: exact matches
    labels = jnp.array([3, 1])
    out = vq.straight_through(z, labels, train=True)
    assert isinstance(out, piq.VQEmbeddingOutput)
    np.testing.assert_array_equal(out.z_q_x, out.z_q_x_bar)
    # training: the shared keys (28..31) are forbidden ...
    train_idx = vq(z, labels, num_classes=4, shared_keys=4, train=True)
    np.testing.assert_array_equal(out.z_q_x, vq.embedding[...][train_idx])
    # ... evaluation (the default) allows them
    eval_idx = vq(z, labels, num_classes=4, shared_keys=4)
    np.testing.assert_array_equal(eval_idx[0, 0, :4], [28, 29, 30, 31])
    assert not np.array_equal(eval_idx, train_idx)
    np.testing.assert_array_equal(vq.straight_through(z, labels).z_q_x, vq.embedding[...][eval_idx])
    # NNX's mode switches change nothing: the stage is the call's `train`
    for switch in (vq.eval, vq.train):
        switch()
        np.testing.assert_array_equal(vq(z, labels, num_classes=4, shared_keys=4), eval_idx)
        np.testing.assert_array_equal(vq.straight_through(z, labels, train=True).z_q_x, out.z_q_x)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

X = np.zeros((2, 3, 4, 5), np.float32)
CB = np.zeros((16, 5), np.float32)


@pytest.mark.parametrize(
    "args, match",
    [
        ((X, CB, np.array([0, 10])), r"labels must be whole numbers in \[0, 10\).*10"),
        ((X, CB, np.array([-1, 0])), r"\[0, 10\).*-1"),
        ((X, CB, np.array([0.5, 1.0])), "whole numbers.*0.5"),
        ((X, CB, np.array([0, 1, 2])), r"labels has shape \(3,\).*2 batch items"),
        ((X, CB, np.zeros((2, 1))), r"1-D \[batch\]"),
        ((X, CB, np.array([True, False])), "integer or floating"),
        ((X, CB, None), "labels .* required"),
        ((X, np.zeros((16, 4), np.float32), np.array([0, 1])), r"\(2, 3, 4, 5\).*\(16, 4\)"),
        ((X.astype(np.int32), CB, np.array([0, 1])), "inputs must be a floating"),
        ((X, CB.astype(np.int32), np.array([0, 1])), "codebook must be a floating"),
        ((X, np.zeros((8, 5), np.float32), np.array([0, 1])), "N_shared=10.*K=8"),
    ],
)
def test_vector_quantization_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        piq.vector_quantization(*args)


def _abstract(build):
    """A module with shape-only variables: enough to test argument checks, no init compiled."""
    return nnx.eval_shape(build)


def test_modules_bad_input():
    vq = _abstract(lambda: piq.VQEmbedding(16, 5, numclasses=3, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"\[batch, H, W, 5\].*\(2, 3, 4, 6\)"):
        vq.straight_through(np.zeros((2, 3, 4, 6), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 3\).*3"):
        piq.VQEmbedding(16, 5, numclasses=3, rngs=nnx.Rngs(0)).straight_through(X, np.array([0, 3]))
    with pytest.raises(ValueError, match="floating"):
        vq(X.astype(np.int32), np.array([0, 1]))
    with pytest.raises(ValueError, match="shared keys do not fit"):
        piq.VQEmbedding(4, 5, numclasses=3, shared_keys=5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs use_adapter=True"):
        models.VectorQuantizedPSI_Audio(8, 16, 3, use_adapter=False, rngs=nnx.Rngs(0))
    psi = _abstract(lambda: models.VectorQuantizedPSI_Audio(8, 16, 3, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"hs \[batch, H, W, 8\].*\(2, 4, 4, 3\)"):
        psi(np.zeros((2, 4, 4, 3), np.float32), np.array([0, 1]))
    enc = _abstract(lambda: models.Conv2dEncoder_v2(4, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"\[batch, time, freq\].*\(2, 40\)"):
        enc(np.zeros((2, 40), np.float32))
    res = _abstract(lambda: models.ResBlockAudio(4, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"\[batch, H, W, 4\].*\(1, 8, 8, 3\)"):
        res(np.zeros((1, 8, 8, 3), np.float32))


# --------------------------------------------------------------------------------------------
# PSI models
# --------------------------------------------------------------------------------------------

PSI_KWARGS = {"dim": 8, "K": 32, "numclasses": 4, "shared_keys": 2}  # as the parity tests


@pytest.fixture(scope="module")
def psi():
    # an RBG key: its initialisation compiles several times faster than threefry's
    return models.VectorQuantizedPSI_Audio(
        **PSI_KWARGS, rngs=nnx.Rngs(jax.random.key(0, impl="unsafe_rbg"))
    )


@nnx.jit
def psi_training_loss_and_grads(model, hs, labels, target):
    """A PIQ training loss (reconstruction + VQ + 0.25 commitment), train mode, jit + grad.

    Shared with tests/parity/test_piq.py (one compilation for both).
    """

    def loss(model, hs):
        out = model(hs, labels, train=True)
        sg = jax.lax.stop_gradient
        value = (
            jnp.mean((out.x_tilde - target) ** 2)
            + jnp.mean((out.z_q_x - sg(out.hcat)) ** 2)
            + 0.25 * jnp.mean((out.hcat - sg(out.z_q_x)) ** 2)
        )
        return value, out

    return nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(model, hs)


def _psi_inputs():
    rng = np.random.default_rng(0)
    labels = jnp.array([0.0, 3.0, 1.0])  # float labels, as in SpeechBrain's doctests
    return jnp.asarray(rng.standard_normal((3, 8, 10, 8)), jnp.float32), labels


def test_psi_weights_init(psi):
    """Xavier-uniform conv kernels, zero biases; BatchNorm and the codebook untouched."""
    convs = [
        m
        for _, m in nnx.iter_graph(psi)
        if isinstance(m, models.blocks.Conv2d | models.blocks.ConvTranspose2d)
    ]
    assert len(convs) == 9
    for conv in convs:
        kh, kw = conv.kernel_size
        bound = math.sqrt(6 / ((conv.in_channels + conv.out_channels) * kh * kw))
        kernel = np.asarray(conv.kernel[...])
        assert np.abs(kernel).max() <= bound and kernel.std() > bound / 4
        np.testing.assert_array_equal(conv.bias[...], 0.0)
    assert np.abs(np.asarray(psi.codebook.embedding[...])).max() <= 1 / 32
    np.testing.assert_array_equal(psi.decoder.bn1.scale[...], 1.0)


def test_psi_shapes_and_modes(psi):
    psi = nnx.clone(psi)
    hs, labels = _psi_inputs()
    out = psi(hs, labels, train=True)
    assert isinstance(out, models.PSIOutput)
    assert [o.shape for o in out] == [(3, 129, 161, 1), (3, 4, 5, 8), (3, 4, 5, 8)]
    assert int(psi.decoder.bn1.num_batches_tracked[...]) == 1
    a = psi(hs, labels)  # the default is evaluation: running statistics, no update
    assert int(psi.decoder.bn1.num_batches_tracked[...]) == 1
    psi.train()  # NNX's mode switch does not change what a call computes: `train` does
    b = psi(hs, labels)
    np.testing.assert_array_equal(a.x_tilde, b.x_tilde)
    assert int(psi.decoder.bn1.num_batches_tracked[...]) == 1
    psi.eval()
    psi(hs, labels, train=True)
    assert int(psi.decoder.bn1.num_batches_tracked[...]) == 2

    def run(cls, hs, **kw):
        return cls(**PSI_KWARGS, **kw, rngs=nnx.Rngs(0))(hs, labels)

    no_adapter = jax.eval_shape(
        lambda h: run(
            models.VectorQuantizedPSIViT_Audio, h, use_adapter=False, adapter_reduce_dim=False
        ),
        hs,
    )
    h, w = 8, 10  # no down/up: the decoder sees hs; ConvTranspose: (n - 1) s - 2 p + k
    for (kh, kw), (sh, sw) in (
        ((3, 3), (4, 5)),
        ((4, 1), (2, 2)),
        ((4, 1), (2, 2)),
        ((4, 2), (2, 2)),
        ((10, 8), (1, 1)),
    ):
        h, w = (h - 1) * sh - 2 + kh, (w - 1) * sw - 2 + kw
    assert [o.shape for o in no_adapter] == [(3, h, w, 1), (3, 8, 10, 8), (3, 8, 10, 8)]
    assert (h, w) == (239, 353)


def test_psi_jit_and_grad_match_eager(psi):
    hs, labels = _psi_inputs()
    target = jnp.zeros((3, 129, 161, 1))
    eager = nnx.clone(psi)(hs, labels, train=True)
    model = nnx.clone(psi)
    (_, jitted), (grads, gh) = psi_training_loss_and_grads(model, hs, labels, target)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert int(model.decoder.bn4.num_batches_tracked[...]) == 1  # BatchNorm state came back
    assert np.isfinite(np.asarray(gh)).all() and np.abs(np.asarray(gh)).sum() > 0
    gc = np.abs(np.asarray(grads.codebook.embedding[...])).sum(1)
    z = eager.hcat
    used = np.unique(np.asarray(psi.codebook(z, labels, num_classes=4, shared_keys=2, train=True)))
    np.testing.assert_array_equal(np.nonzero(gc)[0], used)  # only the selected codes learn


# --------------------------------------------------------------------------------------------
# Converter
# --------------------------------------------------------------------------------------------


def test_converter_round_trip_and_errors(psi):
    sd = piq_conv.export_state_dict(psi)
    assert sd["decoder.0.weight"].shape == (8, 8, 3, 3)  # torch ConvTranspose [in, out, kh, kw]
    assert sd["adapter.block.0.weight"].shape == (8, 8, 3, 3)
    assert sd["decoder.12.weight"].shape == (8, 1, 12, 12)
    assert sd["codebook.embedding.weight"].shape == (32, 8)
    build = lambda: models.VectorQuantizedPSI_Audio(**PSI_KWARGS, rngs=nnx.Rngs(0))  # noqa: E731
    built = piq_conv.from_state_dict(build, sd)
    for key, value in piq_conv.export_state_dict(built).items():
        np.testing.assert_array_equal(value, sd[key], err_msg=key)
    broken = dict(sd)
    del broken["decoder.2.running_var"]
    broken["decoder.1.weight"] = sd["decoder.0.weight"]  # a ReLU index has no weights
    with pytest.raises(ConversionError, match=r"decoder\.2\.running_var[\s\S]*decoder\.1\.weight"):
        piq_conv.from_state_dict(build, broken)
    with pytest.raises(ValueError, match="no PIQ conversion table"):
        piq_conv.table_for(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    enc = _abstract(lambda: models.Conv2dEncoder_v2(4, rngs=nnx.Rngs(0)))
    assert set(piq_conv.table_for(enc)) >= {"conv1.weight", "resblock.block.4.bias"}
