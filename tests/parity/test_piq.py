"""SpeechBrain PIQ (`speechbrain.lobes.models.PIQ`, SpeechBrain 1.1.2) vs jaxlatent.

* `get_irrelevant_regions`: the boolean tables are exactly equal for ~950 (K, C, S)
  configurations (K = 512 and 1024 with C = 50 included), TRAIN and VALID, float and int labels.
* `VectorQuantization`: indices exactly equal on random inputs with exact ties, with and
  without partitioning, shared keys in TRAIN and VALID, classes that own no code.
* Straight-through gradients (inputs and codebook, through each of `VQEmbedding`'s two outputs
  separately) vs torch autograd.
* `ResBlockAudio`, `Conv2dEncoder_v2` and the three PSI models in eval and train mode, weights
  copied through `converters.piq` (BatchNorm running statistics randomised first), running
  statistics after a training forward, exported back into torch with ``strict=True``, and the
  parameter gradients of the training recipe's loss.

Layouts: torch NCHW, jaxlatent NHWC; the tests transpose.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import piq as piq_conv
from jaxlatent.models import piq as models
from jaxlatent.quantizers import piq
from tests import reference as ref
from tests.tolerances import assert_close
from tests.unit.test_piq import psi_training_loss_and_grads

pytestmark = pytest.mark.parity


@pytest.fixture(autouse=True, scope="module")
def _single_torch_thread():
    """Small torch ops are much faster single-threaded on a shared CPU."""
    torch = ref.torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _nchw(x):
    return ref.to_torch(np.moveaxis(x, -1, 1))


def _nhwc(t):
    return np.moveaxis(ref.to_numpy(t), 1, -1)


# --------------------------------------------------------------------------------------------
# get_irrelevant_regions
# --------------------------------------------------------------------------------------------


def _configs():
    ks = [1, 2, 3, 7, 10, 11, 20, 31, 50, 64, 100, 127, 257, 500, 512, 1000, 1024]
    out = []
    for c in range(1, 101, 7):
        for k in ks:
            for s in (0, 1, 5, 10):
                if s <= k:
                    out.append((k, c, s))
    # configurations where np.linspace (float64, or cast to float32) rounds differently
    # (200, 2, 0), ..., (512, 46, 0), or float32 without fused multiply-add does (138, 37, 0), ...
    hard = [(200, 2, 0), (205, 2, 5), (399, 2, 0), (512, 46, 0), (138, 37, 0), (158, 37, 20)]
    hard += [(275, 37, 0), (4096, 64, 20)]
    return [*out, *hard, (512, 50, 0), (1024, 50, 0), (1024, 50, 5), (1024, 10, 10)]


def test_irrelevant_region_tables_equal_for_many_configs():
    torch = ref.torch()
    sb = ref.sb_piq()
    configs = _configs()
    assert len(configs) > 900
    for k, c, s in configs:
        labels = np.arange(c)  # every class: the whole table
        for stage in ("TRAIN", "VALID"):
            expected = ref.to_numpy(
                sb.get_irrelevant_regions(torch.from_numpy(labels), k, c, s, stage)
            )
            own = piq.class_of_code(k, c, s)[None, :] == labels[:, None]
            shared = np.full((c, s), stage == "TRAIN")
            np.testing.assert_array_equal(
                np.concatenate([~own, shared], 1), expected, err_msg=f"{(k, c, s, stage)}"
            )


@pytest.mark.parametrize("k,c,s", [(512, 50, 0), (1024, 50, 0), (64, 10, 10), (20, 3, 5)])
def test_get_irrelevant_regions_matches(rng, k, c, s):
    torch = ref.torch()
    sb = ref.sb_piq()
    labels = rng.integers(0, c, 37)
    for stage in ("TRAIN", "VALID"):
        for lab in (labels.astype(np.float32), labels.astype(np.int64)):
            expected = sb.get_irrelevant_regions(torch.from_numpy(lab), k, c, s, stage)
            got = piq.get_irrelevant_regions(jnp.asarray(lab), k, c, s, stage)
            np.testing.assert_array_equal(got, ref.to_numpy(expected), err_msg=stage)


# --------------------------------------------------------------------------------------------
# VectorQuantization (indices)
# --------------------------------------------------------------------------------------------


def _codebook_with_ties(rng, k, d):
    codebook = rng.standard_normal((k, d)).astype(np.float32)
    codebook[k // 2] = codebook[3]  # same code in two classes' blocks
    codebook[k - 1] = codebook[k // 3]  # a shared key equal to a class code
    return codebook


VQ_CASES = [
    # (K, num_classes, partitioning, shared_keys, training)
    (64, 10, True, 10, True),  # SpeechBrain's defaults
    (64, 10, True, 10, False),  # shared keys allowed outside training
    (64, 4, True, 0, True),
    (64, 4, False, 0, True),
    (8, 10, True, 0, True),  # two classes own no code: every code forbidden -> index 0
    (8, 10, True, 3, False),
]


@pytest.mark.parametrize("k,c,part,s,training", VQ_CASES)
def test_vector_quantization_indices_equal(rng, k, c, part, s, training):
    torch = ref.torch()
    sb = ref.sb_piq()
    d = 6
    codebook = _codebook_with_ties(rng, k, d)
    x = rng.standard_normal((4, 5, 7, d)).astype(np.float32)
    x[0, 0, :3] = codebook[[3, k // 2, k // 3]]  # exact ties
    labels = np.array([0, c - 1, 1, 0], np.float32)
    if c > 8:
        labels[2] = c - 2
    expected = ref.to_numpy(
        sb.VectorQuantization.apply(
            ref.to_torch(x), ref.to_torch(codebook), torch.from_numpy(labels), c, part, s, training
        )
    )
    got = piq.vector_quantization(x, codebook, jnp.asarray(labels), c, part, s, training)
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(got, expected)
    jitted = jax.jit(piq.vector_quantization, static_argnums=(3, 4, 5, 6))
    got_int = jitted(x, codebook, jnp.asarray(labels, jnp.int32), c, part, s, training)
    np.testing.assert_array_equal(got_int, expected)


def test_vq_embedding_forward_uses_speechbrain_function_defaults(rng):
    """SpeechBrain's `VQEmbedding.forward` ignores numclasses/shared_keys/eval mode."""
    sb = ref.sb_piq()
    torch = ref.torch()
    tm = sb.VQEmbedding(64, 6, numclasses=3, shared_keys=0).eval()
    jm = piq_conv.from_state_dict(
        lambda: piq.VQEmbedding(64, 6, 3, rngs=nnx.Rngs(0)), tm.state_dict()
    )
    weight = tm.embedding.weight.detach()
    x = (rng.standard_normal((4, 5, 7, 6)) / 64).astype(np.float32)  # the shapes of VQ_CASES
    for labels in ([2.0, 0.0, 9.0, 1.0], [2.0, 0.0, 2.0, 1.0]):  # 9: in the 10-class table
        labels = np.array(labels, np.float32)
        expected = ref.to_numpy(tm(_nchw(x), torch.from_numpy(labels)))
        np.testing.assert_array_equal(jm(x, jnp.asarray(labels), train=True), expected)
    # the module's own settings (3 classes, no shared keys, eval) give other codes: a real quirk
    own = sb.VectorQuantization.apply(
        ref.to_torch(x), weight, torch.from_numpy(labels), 3, True, 0, False
    )
    got = jm(x, jnp.asarray(labels), num_classes=3, shared_keys=0, train=False)
    np.testing.assert_array_equal(got, ref.to_numpy(own))
    assert not np.array_equal(ref.to_numpy(own), expected)


# --------------------------------------------------------------------------------------------
# Straight-through gradients
# --------------------------------------------------------------------------------------------


def test_straight_through_function_gradients(rng):
    torch = ref.torch()
    sb = ref.sb_piq()
    k, d = 48, 5
    x = rng.standard_normal((2, 3, 4, d)).astype(np.float32)
    codebook = rng.standard_normal((k, d)).astype(np.float32)
    labels = np.array([1.0, 3.0], np.float32)
    w = rng.standard_normal(x.shape).astype(np.float32)

    xt = ref.to_torch(x).requires_grad_(True)
    ct = ref.to_torch(codebook).requires_grad_(True)
    codes, idx = sb.VectorQuantizationStraightThrough.apply(
        xt, ct, torch.from_numpy(labels), 4, True, 2, True
    )
    (ref.to_torch(w) * codes**2).sum().backward()

    def loss(x, cb):
        codes, _ = piq.vector_quantization_straight_through(x, cb, labels, 4, True, 2, True)
        return jnp.sum(w * codes**2)

    out = piq.vector_quantization_straight_through(x, codebook, labels, 4, True, 2, True)
    np.testing.assert_array_equal(out.indices, ref.to_numpy(idx))
    np.testing.assert_array_equal(out.codes, ref.to_numpy(codes))
    gx, gc = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(x), jnp.asarray(codebook))
    assert_close(gx, ref.to_numpy(xt.grad), "piq_st_grad", err_msg="d/dinputs")
    assert_close(gc, ref.to_numpy(ct.grad), "piq_st_grad", err_msg="d/dcodebook")
    assert np.count_nonzero(np.abs(np.asarray(gc)).sum(1)) == len(np.unique(ref.to_numpy(idx)))


@pytest.mark.parametrize("branch", [0, 1])
def test_vq_embedding_straight_through_gradient_routing(rng, branch):
    """z_q_x trains only the input, z_q_x_bar only the codebook (each output separately)."""
    torch = ref.torch()
    sb = ref.sb_piq()
    k, d = 40, 6
    tm = sb.VQEmbedding(k, d, numclasses=4, shared_keys=4)
    with torch.no_grad():
        tm.embedding.weight.normal_()
    jm = piq_conv.from_state_dict(
        lambda: piq.VQEmbedding(k, d, 4, True, 4, rngs=nnx.Rngs(0)), tm.state_dict()
    )
    x = rng.standard_normal((2, 3, 5, d)).astype(np.float32)
    labels = np.array([3.0, 1.0], np.float32)
    w = rng.standard_normal(x.shape).astype(np.float32)

    xt = _nchw(x).requires_grad_(True)
    outs = tm.straight_through(xt, torch.from_numpy(labels))
    (_nchw(w) * outs[branch] ** 2).sum().backward()
    gx_t = np.zeros_like(x) if xt.grad is None else _nhwc(xt.grad)
    gw = tm.embedding.weight.grad
    gw_t = np.zeros((k, d), np.float32) if gw is None else ref.to_numpy(gw)

    def loss(model, x):
        return jnp.sum(w * model.straight_through(x, labels, train=True)[branch] ** 2)

    gw, gx = nnx.jit(nnx.grad(loss, argnums=(0, 1)))(jm, jnp.asarray(x))
    assert_close(gx, gx_t, "piq_st_grad", err_msg="d/dz_e_x")
    assert_close(gw.embedding[...], gw_t, "piq_st_grad", err_msg="d/dcodebook")
    # the routing itself: exactly one of the two gradients is zero
    assert (np.abs(gx_t).sum() == 0) == (branch == 1)
    assert (np.abs(gw_t).sum() == 0) == (branch == 0)


# --------------------------------------------------------------------------------------------
# Modules with BatchNorm
# --------------------------------------------------------------------------------------------


def _randomise_batch_norms(module):
    torch = ref.torch()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.5, 0.5, generator=gen)
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.num_batches_tracked.fill_(5)


def _check_state(tm, jm):
    """jaxlatent's exported state equals torch's, and loads back into torch strictly."""
    torch = ref.torch()
    exported = piq_conv.export_state_dict(jm)
    expected = tm.state_dict()
    assert list(exported) == list(expected)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(exported[key], ref.to_numpy(value), err_msg=key)
        else:
            assert_close(exported[key], ref.to_numpy(value), "piq_running_stats", err_msg=key)
    fresh = copy.deepcopy(tm)
    fresh.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in exported.items()}, strict=True
    )


def test_res_block_and_encoder_train_and_eval(rng):
    torch = ref.torch()
    sb = ref.sb_piq()
    torch.manual_seed(0)
    tm = sb.Conv2dEncoder_v2(dim=8)
    _randomise_batch_norms(tm)
    jm = piq_conv.from_state_dict(
        lambda: models.Conv2dEncoder_v2(8, rngs=nnx.Rngs(0)), tm.state_dict()
    )
    x = rng.standard_normal((2, 37, 50)).astype(np.float32)
    tm.eval()
    with torch.no_grad():
        expected = _nhwc(tm(ref.to_torch(x)))
    assert_close(jm(jnp.asarray(x), train=False), expected, "piq_model_f32", err_msg="eval")
    tm.train()
    with torch.no_grad():
        expected = _nhwc(tm(ref.to_torch(x)))
    got = jm(jnp.asarray(x), train=True)
    assert got.shape == (2, 2, 3, 8)
    assert_close(got, expected, "piq_model_f32", err_msg="train")
    _check_state(tm, jm)


PSI_CASES = {
    # name: (class, use_adapter == adapter_reduce_dim)
    "psi": ("VectorQuantizedPSI_Audio", True),
    "focalnet": ("VectorQuantizedPSIFocalNet_Audio", True),
    "vit_no_adapter": ("VectorQuantizedPSIViT_Audio", False),
}


def _psi_pair(name):
    torch = ref.torch()
    sb = ref.sb_piq()
    cls, adapter = PSI_CASES[name]
    torch.manual_seed(0)
    kwargs = dict(
        dim=8, K=32, numclasses=4, shared_keys=2, use_adapter=adapter, adapter_reduce_dim=adapter
    )
    tm = getattr(sb, cls)(**kwargs)
    with torch.no_grad():  # codes on the scale of the representations
        tm.codebook.embedding.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(2))
    _randomise_batch_norms(tm)
    jm = piq_conv.from_state_dict(
        lambda: getattr(models, cls)(**kwargs, rngs=nnx.Rngs(0)), tm.state_dict()
    )
    return tm, jm


def _psi_inputs(rng):
    hs = rng.standard_normal((3, 8, 10, 8)).astype(np.float32)
    labels = np.array([0.0, 3.0, 1.0], np.float32)
    return hs, labels


@pytest.mark.parametrize("name", list(PSI_CASES))
def test_psi_models_eval_and_train(rng, name):
    torch = ref.torch()
    tm, jm = _psi_pair(name)
    hs, labels = _psi_inputs(rng)
    for train in (False, True):
        tm.train(train)
        with torch.no_grad():
            expected = [_nhwc(t) for t in tm(_nchw(hs), torch.from_numpy(labels))]
        got = jm(jnp.asarray(hs), jnp.asarray(labels), train=train)  # eager: shares op caches
        for field, a, b in zip(got._fields, got, expected, strict=True):
            assert a.shape == b.shape, field
            assert_close(a, b, "piq_model_f32", err_msg=f"{field} train={train}")
    _check_state(tm, jm)


def test_psi_training_loss_gradients(rng):
    """All parameter gradients of a PIQ training loss (reconstruction + VQ + commitment)."""
    torch = ref.torch()
    tm, jm = _psi_pair("psi")
    hs, labels = _psi_inputs(rng)
    target = rng.standard_normal((3, 129, 161, 1)).astype(np.float32)

    tm.train()
    x_tilde, hcat, z_q_x = tm(_nchw(hs), torch.from_numpy(labels))
    mse = torch.nn.functional.mse_loss
    loss = (
        mse(x_tilde, _nchw(target)) + mse(z_q_x, hcat.detach()) + 0.25 * mse(hcat, z_q_x.detach())
    )
    loss.backward()

    (value, _), (grads, _) = psi_training_loss_and_grads(
        jm, jnp.asarray(hs), jnp.asarray(labels), jnp.asarray(target)
    )
    assert_close(value, loss.item(), "piq_model_f32", err_msg="loss")
    flat = {"/".join(map(str, p)): v for p, v in nnx.to_flat_state(nnx.state(grads, nnx.Param))}
    table = piq_conv.table_for(jm)
    named = dict(tm.named_parameters())
    assert {table[k].jax_path for k in named} == set(flat)
    for key, param in named.items():
        rule = table[key]
        got = rule.transform.to_torch(np.asarray(flat[rule.jax_path][...]))
        assert_close(got, ref.to_numpy(param.grad), "piq_grad_f32", err_msg=key)
