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

from converters.errors import ConversionError
from converters.vector_quantize import (
    export_vector_quantize_pytorch,
    load_vector_quantize_pytorch,
)
from jaxlatent import quantizers as q
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity


def _lucid_rvq():
    return ref.require("vector_quantize_pytorch.residual_vq")


def _copy_state(t, j):
    """The reference's state into jaxlatent through the converter, and back exactly."""
    load_vector_quantize_pytorch(j, t.state_dict())
    exported = export_vector_quantize_pytorch(j)
    assert set(exported) == set(t.state_dict())
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(exported[k], ref.to_numpy(v), err_msg=k)


def _check_state(t, j, msg):
    """Every EMA buffer after training, through the converter's export."""
    exported = export_vector_quantize_pytorch(j)
    for k, v in t.state_dict().items():
        if k.endswith("initted"):
            np.testing.assert_array_equal(exported[k], ref.to_numpy(v), err_msg=k)
        else:
            assert_close(exported[k], ref.to_numpy(v), "vq_ema_lucidrains_state", err_msg=k)


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
    _copy_state(t, j)
    t.train()
    for step in range(2):
        x = rng.standard_normal((2, 20, 8)).astype(np.float32)
        w = rng.standard_normal(x.shape).astype(np.float32)
        _step(t, j, x, w, None, f"grouped, step {step}")
        _check_state(t, j, f"grouped, step {step}")


def test_converter_is_strict():
    t = _lucid_rvq().ResidualVQ(dim=6, num_quantizers=2, codebook_size=8, codebook_dim=4)
    j = q.ResidualVQ(dim=6, num_quantizers=2, codebook_size=8, codebook_dim=4, rngs=nnx.Rngs(0))
    _copy_state(t, j)  # with the projections
    state = dict(t.state_dict())
    del state["layers.1._codebook.embed_avg"]
    state["layers.0._codebook.embed"] = state["layers.0._codebook.embed"][:, :4]
    with pytest.raises(ConversionError, match=r"layers\.1\._codebook\.embed_avg") as err:
        load_vector_quantize_pytorch(j, state)
    assert "layers.0._codebook.embed" in str(err.value)
    # a shared, gradient-trained codebook: the reference's duplicates round-trip as copies
    kw = dict(dim=4, num_quantizers=3, codebook_size=8, shared_codebook=True)
    t = _lucid_rvq().ResidualVQ(**kw, learnable_codebook=True, ema_update=False)
    j = q.ResidualVQ(**kw, config=q.VectorQuantizerConfig.vqvae(8, 4), rngs=nnx.Rngs(0))
    _copy_state(t, j)
    np.testing.assert_array_equal(j.layers[0].codebook[...], t.codebooks[0].detach().numpy())
