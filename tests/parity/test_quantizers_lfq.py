"""LFQ, ResidualLFQ and GroupedResidualLFQ vs vector-quantize-pytorch 1.32.0.

Both modules are built with the same arguments; the reference's random projection weights go
to jaxlatent through the production converter. In training mode, on random inputs and on real
features (DAC encoder latents of the bundled speech): indices exactly; the quantized output,
the auxiliary loss and its breakdown (per-sample entropy, batch entropy, commitment) and the
gradients of ``loss + sum(w * quantized)`` w.r.t. the input and every parameter within named
tolerances. Evaluation mode: same indices and codes, zero losses.
"""

from __future__ import annotations

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters.vector_quantize import (
    export_vector_quantize_pytorch,
    load_vector_quantize_pytorch,
)
from jaxlatent import quantizers as q
from tests import implicit_vq as iv
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity


def _lucid():
    return ref.vector_quantize_pytorch()


@nnx.jit
def _jax_forward(module, x, w, mask):
    def objective(module, x):
        out = module(x, train=True, mask=mask)
        loss = out.loss if hasattr(out, "loss") else jnp.sum(out.losses)
        return loss + jnp.sum(w * out.quantized), out

    grad_fn = nnx.grad(objective, argnums=(nnx.DiffState(0, nnx.Param), 1), has_aux=True)
    (g_params, g_x), out = grad_fn(module, x)
    return out, g_params, g_x


def _check(t, j, x, w, what, mask=None):
    t.train()
    xt = ref.to_torch(x).requires_grad_()
    tm = None if mask is None else ref.to_torch(mask)
    single = isinstance(j, q.LFQ)
    if single:
        (t_q, t_idx, t_loss), breakdown = t(xt, mask=tm, return_loss_breakdown=True)
        t_loss_total = t_loss
    else:
        t_q, t_idx, t_loss = t(xt, mask=tm)
        t_loss_total = t_loss.sum()
    (t_loss_total + (t_q * ref.to_torch(w)).sum()).backward()
    out, g_params, g_x = _jax_forward(j, jnp.asarray(x), jnp.asarray(w), mask)
    np.testing.assert_array_equal(out.indices, ref.to_numpy(t_idx), err_msg=what)
    assert_close(out.quantized, ref.to_numpy(t_q), "lfq_out", err_msg=what)
    if single:
        assert_close(out.loss, ref.to_numpy(t_loss), "lfq_loss", err_msg=f"{what}: loss")
        names = ("per_sample_entropy", "batch_entropy", "commitment_loss")
        for name, value in zip(names, breakdown, strict=True):
            assert_close(getattr(out, name), ref.to_numpy(value), "lfq_loss", err_msg=name)
    else:
        assert_close(out.losses, ref.to_numpy(t_loss), "lfq_loss", err_msg=f"{what}: losses")
    assert_close(g_x, ref.to_numpy(xt.grad), "lfq_grad", err_msg=f"{what}: input gradient")
    t_grads, j_grads = iv.torch_grads(t), iv.jax_grads(j, g_params)
    assert set(t_grads) == set(j_grads), what
    for k in t_grads:
        assert_close(j_grads[k], t_grads[k], "lfq_grad", err_msg=f"{what}: {k}")
    return out


LFQ_CASES = {
    "default": dict(codebook_size=64),
    "projected_codebooks_spherical": dict(
        dim=10,
        codebook_size=32,
        num_codebooks=2,
        commitment_loss_weight=0.5,
        diversity_gamma=2.0,
        entropy_loss_weight=0.3,
        spherical=True,
        codebook_scale=0.5,
    ),
    "cosine_sim_rotation": dict(
        dim=8,
        codebook_size=16,
        cosine_sim_project_in=True,
        soft_clamp_input_value=2.0,
        experimental_softplus_entropy_loss=True,
        orthogonal_rotation=True,
        projection_has_bias=False,
    ),
}


@pytest.mark.parametrize("case", list(LFQ_CASES))
def test_lfq_matches_reference(rng, case):
    t, j = iv.pair(_lucid().LFQ, q.LFQ, **LFQ_CASES[case])
    x = (rng.standard_normal((3, 40, t.dim)) * 0.1).astype(np.float32)
    w = rng.standard_normal((3, 40, t.dim)).astype(np.float32)
    out = _check(t, j, x, w, case)
    assert len(np.unique(np.asarray(out.indices))) > 10  # a non-vacuous comparison
    # evaluation: same codes, decodable from the indices, zero losses
    t.eval()
    t_q, t_idx, _ = t(ref.to_torch(x))
    ev = iv.call(j, jnp.asarray(x))
    np.testing.assert_array_equal(ev.indices, ref.to_numpy(t_idx))
    assert_close(ev.quantized, ref.to_numpy(t_q), "lfq_out")
    assert_close(iv.method(j, "indices_to_codes", ev.indices), ref.to_numpy(t_q), "lfq_out")
    assert float(ev.loss) == 0.0


def test_lfq_with_mask_matches_reference(rng):
    # With a mask, vector-quantize-pytorch 1.32.0 flattens the selected tokens and the codebook
    # axis together before its batch mean ('b n ... -> (b n) ...' on an already flat
    # [tokens, c, d] selection), so its batch entropy degenerates into the per-sample entropy.
    # jaxlatent keeps the documented meaning: its masked losses equal the reference's on the
    # unmasked tokens alone, and its per-sample entropy and commitment equal the reference's
    # masked ones.
    kw = dict(dim=6, codebook_size=32, commitment_loss_weight=0.3)
    t, j = iv.pair(_lucid().LFQ, q.LFQ, **kw)
    t.train()
    x = (rng.standard_normal((2, 30, 6)) * 0.3).astype(np.float32)
    mask = np.arange(30)[None, :] < np.array([[22], [13]])
    out = iv.call(j, jnp.asarray(x), train=True, mask=jnp.asarray(mask))
    (_, t_idx, _), t_masked = t(
        ref.to_torch(x), mask=ref.to_torch(mask), return_loss_breakdown=True
    )
    np.testing.assert_array_equal(out.indices, ref.to_numpy(t_idx))
    assert_close(out.per_sample_entropy, ref.to_numpy(t_masked[0]), "lfq_loss")
    assert_close(out.commitment_loss, ref.to_numpy(t_masked[2]), "lfq_loss")
    (_, _, t_loss), t_kept = t(ref.to_torch(x[mask][None]), return_loss_breakdown=True)
    assert_close(out.loss, ref.to_numpy(t_loss), "lfq_loss")
    for name, value in zip(("per_sample_entropy", "batch_entropy"), t_kept[:2], strict=True):
        assert_close(getattr(out, name), ref.to_numpy(value), "lfq_loss", err_msg=name)
    assert float(out.batch_entropy) > float(out.per_sample_entropy) + 0.5  # not degenerate
    np.testing.assert_array_equal(
        out.counts, np.bincount(np.asarray(out.indices)[mask], minlength=32)
    )


def test_lfq_on_dac_latents():
    z = iv.dac_latents(16)
    kw = dict(dim=16, codebook_size=256, commitment_loss_weight=0.25)
    t, j = iv.pair(_lucid().LFQ, q.LFQ, **kw)
    w = np.random.default_rng(1).standard_normal(z.shape).astype(np.float32)
    out = _check(t, j, z, w, "dac latents")
    assert len(np.unique(np.asarray(out.indices))) > 5


RLFQ_CASES = {
    "residual": dict(dim=10, num_quantizers=3, codebook_size=32, commitment_loss_weight=0.2),
    "soft_clamp_spherical": dict(
        dim=5, num_quantizers=2, codebook_size=32, soft_clamp_input_value=2.0, spherical=True
    ),
}


@pytest.mark.parametrize("case", list(RLFQ_CASES))
def test_residual_lfq_matches_reference(rng, case):
    t, j = iv.pair(_lucid().ResidualLFQ, q.ResidualLFQ, **RLFQ_CASES[case])
    x = (rng.standard_normal((2, 40, j.dim)) * 0.5).astype(np.float32)
    w = rng.standard_normal((2, 40, j.dim)).astype(np.float32)
    out = _check(t, j, x, w, case)
    idx = np.array(out.indices)
    assert all(len(np.unique(idx[..., k])) > 5 for k in range(j.num_quantizers))
    assert_close(
        iv.method(j, "get_output_from_indices", out.indices),
        t.get_output_from_indices(ref.to_torch(idx).long()).detach(),
        "lfq_out",
    )


def test_residual_lfq_on_dac_latents():
    z = iv.dac_latents(16)
    kw = dict(dim=16, num_quantizers=3, codebook_size=64, commitment_loss_weight=0.25)
    t, j = iv.pair(_lucid().ResidualLFQ, q.ResidualLFQ, **kw)
    w = np.random.default_rng(1).standard_normal(z.shape).astype(np.float32)
    _check(t, j, z, w, "dac latents")


def test_grouped_residual_lfq_and_dropout_match_reference(rng):
    lucid = _lucid()
    kw = dict(dim=8, groups=2, num_quantizers=3, codebook_size=16, quantize_dropout=True)
    t, j = iv.pair(lucid.GroupedResidualLFQ, q.GroupedResidualLFQ, **kw)
    exported = export_vector_quantize_pytorch(j)
    assert set(exported) == set(t.state_dict())  # the LFQ bit masks go back as well
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(exported[k], ref.to_numpy(v), err_msg=k)
    x = (rng.standard_normal((2, 25, 8)) * 0.5).astype(np.float32)
    # the reference's GroupedResidualLFQ draws its dropout seed itself: compare its groups
    # one by one (the same seed for all, as it does) against jaxlatent's grouped call
    t.train()
    seen = set()
    for k in range(4):
        out = iv.call(j, jnp.asarray(x), train=True, key=jax.random.key(k))
        kept = int((np.asarray(out.indices)[0, 0, 0] >= 0).sum())
        seen.add(kept)
        seed = next(s for s in range(1000) if random.Random(s).randrange(0, 3) == kept - 1)
        for g, (rvq, chunk) in enumerate(zip(t.rvqs, np.split(x, 2, axis=-1), strict=True)):
            t_q, t_idx, t_loss = rvq(ref.to_torch(chunk), rand_quantize_dropout_fixed_seed=seed)
            msg = f"key {k}, group {g}"
            np.testing.assert_array_equal(out.indices[g], ref.to_numpy(t_idx), err_msg=msg)
            assert_close(out.losses[g], ref.to_numpy(t_loss), "lfq_loss", err_msg=msg)
            assert_close(out.quantized[..., 4 * g : 4 * g + 4], ref.to_numpy(t_q), "lfq_out")
    assert len(seen) > 1
    # without dropout (evaluation) the whole grouped module agrees
    t.eval()
    t_q, t_idx, _ = t(ref.to_torch(x))
    ev = iv.call(j, jnp.asarray(x))
    np.testing.assert_array_equal(ev.indices, ref.to_numpy(t_idx))
    assert_close(ev.quantized, ref.to_numpy(t_q), "lfq_out")


def test_bit_mask_is_checked_on_load():
    lucid = _lucid()
    t, j = iv.pair(lucid.ResidualLFQ, q.ResidualLFQ, dim=6, num_quantizers=2, codebook_size=16)
    state = dict(t.state_dict())
    state["layers.1.mask"] = state["layers.1.mask"].flip(0)
    with pytest.raises(ValueError, match=r"layers\.1\.mask: expected \[8, 4, 2, 1\]"):
        load_vector_quantize_pytorch(j, state)
