"""ResidualVQ and GroupedResidualVQ (over VectorQuantizer) vs vector-quantize-pytorch 1.32.0.

The reference's random codebooks go to jaxlatent through their state_dict; both then train
for several steps on the same random batches (EMA codebooks, ``kmeans_init=False`` and no
dead-code restarts, which draw from torch's global generator; the rotation trick, the
reference's default): indices exactly; outputs, per-layer losses, input gradients and every
layer's EMA state (codebook, ``embed_avg`` ↔ ``embed_sum``, ``cluster_size``) within named
tolerances, with separate and shared codebooks, with quantizer dropout (the reference's seed
chosen to keep the layers our key keeps) and grouped.
"""

from __future__ import annotations

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import quantizers as q
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

NAMES = ("_codebook.embed", "_codebook.embed_avg", "_codebook.cluster_size")


def _lucid_rvq():
    return ref.require("vector_quantize_pytorch.residual_vq")


def _copy_state(t_rvq, j_rvq):
    state = t_rvq.state_dict()
    for i, layer in enumerate(j_rvq.layers):
        embed, embed_avg, cluster = (ref.to_numpy(state[f"layers.{i}.{n}"][0]) for n in NAMES)
        layer.codebook[...] = jnp.asarray(embed)
        layer.embed_sum[...] = jnp.asarray(embed_avg)
        layer.cluster_size[...] = jnp.asarray(cluster)


def _check_state(t_rvq, j_rvq, msg):
    state = t_rvq.state_dict()
    for i, layer in enumerate(j_rvq.layers):
        embed, embed_avg, cluster = (ref.to_numpy(state[f"layers.{i}.{n}"][0]) for n in NAMES)
        m = f"{msg}, layer {i}"
        assert_close(layer.codebook[...], embed, "vq_ema_lucidrains_state", err_msg=m)
        assert_close(layer.embed_sum[...], embed_avg, "vq_ema_lucidrains_state", err_msg=m)
        assert_close(layer.cluster_size[...], cluster, "vq_ema_lucidrains_state", err_msg=m)


@nnx.jit(static_argnames="train")
def _forward(module, x, w, key, train):
    def objective(module, x):
        out = module(x, train=train, key=key)
        return jnp.sum(out.losses) + jnp.sum(w * out.quantized), out

    (_, out), grad = nnx.value_and_grad(objective, argnums=1, has_aux=True)(module, x)
    return out, grad


def _step(t, j, x, w, key, msg, **torch_kwargs):
    xt = ref.to_torch(x).requires_grad_()
    t_q, t_idx, t_loss = t(xt, **torch_kwargs)
    (t_loss.sum() + (ref.to_torch(w) * t_q).sum()).backward()
    out, grad = _forward(j, jnp.asarray(x), jnp.asarray(w), key, True)
    np.testing.assert_array_equal(out.indices, ref.to_numpy(t_idx), err_msg=msg)
    assert_close(out.quantized, ref.to_numpy(t_q), "vq_rotation_out", err_msg=msg)
    assert_close(out.losses, ref.to_numpy(t_loss), "vq_ema_lucidrains_out", err_msg=msg)
    assert_close(grad, ref.to_numpy(xt.grad), "vq_rotation_grad", err_msg=msg)
    return out


@pytest.mark.parametrize("shared", [False, True], ids=["separate", "shared"])
def test_residual_vq_training_steps_match_reference(rng, shared):
    kw = dict(dim=6, num_quantizers=3, codebook_size=16, shared_codebook=shared)
    ref.torch().manual_seed(0)
    t = _lucid_rvq().ResidualVQ(**kw, kmeans_init=False, quantize_dropout=True)
    j = q.ResidualVQ(**kw, quantize_dropout=True, rngs=nnx.Rngs(0))
    assert j.layers[0].config.rotation_trick  # the reference's default for dim > 1
    _copy_state(t, j)
    t.train()
    initial = np.asarray(j.layers[0].codebook[...]).copy()
    lasts = set()
    for step in range(4):
        x = rng.standard_normal((2, 30, 6)).astype(np.float32)
        w = rng.standard_normal(x.shape).astype(np.float32)
        key = jax.random.key(step)
        last = int(j.dropout_index(jax.random.split(key)[1]))
        lasts.add(last)
        seed = next(s for s in range(1000) if random.Random(s).randrange(0, 3) == last)
        msg = f"shared {shared}, step {step}"
        out = _step(t, j, x, w, key, msg, rand_quantize_dropout_fixed_seed=seed)
        assert (np.asarray(out.indices)[..., last + 1 :] == -1).all()
        _check_state(t, j, msg)
    assert len(lasts) > 1
    assert np.abs(np.asarray(j.layers[0].codebook[...]) - initial).max() > 0.1


def test_grouped_residual_vq_matches_reference(rng):
    kw = dict(dim=8, groups=2, num_quantizers=2, codebook_size=16)
    ref.torch().manual_seed(0)
    t = _lucid_rvq().GroupedResidualVQ(**kw, kmeans_init=False)
    j = q.GroupedResidualVQ(**kw, rngs=nnx.Rngs(0))
    for t_rvq, j_rvq in zip(t.rvqs, j.rvqs, strict=True):
        _copy_state(t_rvq, j_rvq)
    t.train()
    for step in range(2):
        x = rng.standard_normal((2, 20, 8)).astype(np.float32)
        w = rng.standard_normal(x.shape).astype(np.float32)
        _step(t, j, x, w, None, f"grouped, step {step}")
        for g, (t_rvq, j_rvq) in enumerate(zip(t.rvqs, j.rvqs, strict=True)):
            _check_state(t_rvq, j_rvq, f"grouped, step {step}, group {g}")
