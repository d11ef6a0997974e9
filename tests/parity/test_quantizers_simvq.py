"""SimVQ and ResidualSimVQ vs vector-quantize-pytorch 1.32.0.

Both modules are built with the same arguments; the reference's frozen codebooks and code
transforms go to jaxlatent through the production converter (and back, strictly). On random
inputs and on real features (DAC encoder latents of speech): indices exactly; the quantized
output, the losses and the gradients of ``loss + sum(w * quantized)`` w.r.t. the input and
the code transforms within named tolerances, with the rotation trick (the default) and
straight-through; ResidualSimVQ's quantizer dropout with the reference's seed chosen to keep
the same layers.
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
from tests import implicit_vq as iv
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity


@nnx.jit(static_argnames="train")
def _jax_forward(module, x, w, key, train):
    def objective(module, x):
        kw = dict(train=train, key=key) if isinstance(module, q.ResidualSimVQ) else {}
        out = module(x, **kw)
        loss = out.loss if isinstance(module, q.SimVQ) else jnp.sum(out.losses)
        return loss + jnp.sum(w * out.quantized), out

    grad_fn = nnx.value_and_grad(objective, argnums=(0, 1), has_aux=True)
    (_, out), (g_params, g_x) = grad_fn(module, x)
    return out, g_params, g_x


def _check(t, j, x, w, what, *, key=None, train=False, **torch_kwargs):
    t.zero_grad()
    xt = ref.to_torch(x).requires_grad_()
    t_q, t_idx, t_loss = t(xt, **torch_kwargs)
    (t_loss.sum() + (ref.to_torch(w) * t_q).sum()).backward()
    out, g_params, g_x = _jax_forward(j, jnp.asarray(x), jnp.asarray(w), key, train)
    np.testing.assert_array_equal(out.indices, ref.to_numpy(t_idx), err_msg=what)
    assert_close(out.quantized, ref.to_numpy(t_q), "simvq_out", err_msg=what)
    losses = out.loss if isinstance(j, q.SimVQ) else out.losses
    assert_close(losses, ref.to_numpy(t_loss), "simvq_loss", err_msg=what)
    assert_close(g_x, ref.to_numpy(xt.grad), "simvq_grad", err_msg=what)
    t_grads, j_grads = iv.torch_grads(t), iv.jax_grads(j, g_params)
    assert set(t_grads) <= set(j_grads), what
    for k in set(j_grads) - set(t_grads):  # layers dropped by quantizer dropout
        assert not j_grads[k].any(), f"{what}: {k}"
    for k, v in t_grads.items():
        assert_close(j_grads[k], v, "simvq_grad", err_msg=f"{what}: {k}")
    return out


@pytest.mark.parametrize("rotation", [True, False], ids=["rotation", "straight"])
def test_sim_vq_matches_reference(rng, rotation):
    lucid = ref.require("vector_quantize_pytorch.sim_vq")
    kw = dict(dim=8, codebook_size=64, rotation_trick=rotation, frozen_codebook_dim=6)
    t, j = iv.pair(lucid.SimVQ, q.SimVQ, **kw)
    exported = export_vector_quantize_pytorch(j)
    assert set(exported) == set(t.state_dict())
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(exported[k], ref.to_numpy(v), err_msg=k)
    for what, x in (("random", rng.standard_normal((3, 40, 8))), ("dac", iv.dac_latents(8))):
        x = np.asarray(x, np.float32)
        w = rng.standard_normal(x.shape).astype(np.float32)
        out = _check(t, j, x, w, f"{what}, rotation {rotation}")
        assert len(np.unique(np.asarray(out.indices))) > 8
    np.testing.assert_array_equal(j.indices_to_codes(out.indices), out.quantized)


def test_residual_sim_vq_matches_reference(rng):
    lucid = ref.require("vector_quantize_pytorch.residual_sim_vq")
    kw = dict(dim=8, num_quantizers=3, codebook_size=32, quantize_dropout=True)
    t, j = iv.pair(lucid.ResidualSimVQ, q.ResidualSimVQ, **kw)
    assert set(export_vector_quantize_pytorch(j)) == set(t.state_dict())
    x = rng.standard_normal((2, 30, 8)).astype(np.float32)
    w = rng.standard_normal(x.shape).astype(np.float32)
    t.eval()
    out = _check(t, j, x, w, "eval")
    assert (np.asarray(out.indices) >= 0).all()
    np.testing.assert_allclose(j.get_output_from_indices(out.indices), out.quantized, atol=1e-6)
    # quantizer dropout: the reference's seed is chosen to keep the layers our key keeps
    t.train()
    seen = set()
    for k in range(3):
        key = jax.random.key(k)
        last = int(j.dropout_index(key))
        seen.add(last)
        seed = next(s for s in range(1000) if random.Random(s).randrange(0, 3) == last)
        out = _check(
            t, j, x, w, f"key {k}", key=key, train=True, rand_quantize_dropout_fixed_seed=seed
        )
        assert (np.asarray(out.indices)[..., last + 1 :] == -1).all()
    assert len(seen) > 1


def test_converter_is_strict_and_rejects_custom_transforms():
    lucid = ref.require("vector_quantize_pytorch.residual_sim_vq")
    kw = dict(dim=4, num_quantizers=2, codebook_size=8)
    t, j = iv.pair(lucid.ResidualSimVQ, q.ResidualSimVQ, **kw)
    state = dict(t.state_dict())
    del state["layers.1.frozen_codebook"]
    with pytest.raises(ConversionError, match=r"layers\.1\.frozen_codebook"):
        load_vector_quantize_pytorch(j, state)
    custom = q.SimVQ(4, 8, codebook_transform=nnx.Linear(4, 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))
    with pytest.raises(ConversionError, match="code_transform"):
        export_vector_quantize_pytorch(custom)
