"""FSQ, ResidualFSQ and GroupedResidualFSQ vs vector-quantize-pytorch 1.32.0.

Both modules are built with the same arguments; the reference's random projection weights go
to jaxlatent through the production converter (and back, strictly). On random inputs and on
real features (DAC encoder latents of the bundled speech): indices exactly, the quantized
output and the gradients of ``sum(w * quantized)`` w.r.t. the input and every parameter within
named tolerances.
"""

from __future__ import annotations

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
from tests.tolerances import TOLERANCES, assert_close

pytestmark = pytest.mark.parity


def _lucid():
    return ref.vector_quantize_pytorch()


@nnx.jit
def _jax_forward(module, x, w):
    def objective(module, x):
        out = module(x)
        return jnp.sum(w * out.quantized), out

    grad_fn = nnx.grad(objective, argnums=(nnx.DiffState(0, nnx.Param), 1), has_aux=True)
    (g_params, g_x), out = grad_fn(module, x)
    return out, g_params, g_x


def _check(t, j, x, w, what):
    torch = ref.torch()
    xt = ref.to_torch(x).requires_grad_()
    t_out = t(xt)
    (t_out[0] * ref.to_torch(w)).sum().backward()
    out, g_params, g_x = _jax_forward(j, jnp.asarray(x), jnp.asarray(w))
    np.testing.assert_array_equal(out.indices, ref.to_numpy(t_out[1]), err_msg=what)
    assert_close(out.quantized, ref.to_numpy(t_out[0]), "fsq_out", err_msg=what)
    assert_close(g_x, ref.to_numpy(xt.grad), "fsq_grad", err_msg=f"{what}: input gradient")
    t_grads, j_grads = iv.torch_grads(t), iv.jax_grads(j, g_params)
    assert set(t_grads) == set(j_grads), what
    for k in t_grads:
        assert_close(j_grads[k], t_grads[k], "fsq_grad", err_msg=f"{what}: {k}")
    del torch
    return out


FSQ_CASES = {
    "paper": dict(levels=[8, 5, 5, 5]),
    "codebooks_symmetric": dict(
        levels=[7, 5, 4, 2], dim=10, num_codebooks=3, preserve_symmetry=True
    ),
    "hard_clamp_rotation": dict(
        levels=[8, 6, 5],
        bound_hard_clamp=True,
        projection_has_bias=False,
        dim=5,
        orthogonal_rotation=True,
    ),
}


@pytest.mark.parametrize("case", list(FSQ_CASES))
def test_fsq_matches_reference(rng, case):
    t, j = iv.pair(_lucid().FSQ, q.FSQ, **FSQ_CASES[case])
    x = (rng.standard_normal((3, 40, t.dim)) * 2).astype(np.float32)
    w = rng.standard_normal((3, 40, t.dim)).astype(np.float32)
    out = _check(t, j, x, w, case)
    assert len(np.unique(np.asarray(out.indices))) > 20  # many codes: a non-vacuous check
    codes = iv.method(j, "indices_to_codes", out.indices)
    assert_close(codes, t.indices_to_codes(ref.to_torch(np.array(out.indices))).detach(), "fsq_out")
    np.testing.assert_array_equal(j.implicit_codebook, ref.to_numpy(t.implicit_codebook))


def test_fsq_on_dac_latents():
    z = iv.dac_latents(4)
    t, j = iv.pair(_lucid().FSQ, q.FSQ, levels=[8, 5, 5, 5])
    w = np.random.default_rng(1).standard_normal(z.shape).astype(np.float32)
    out = _check(t, j, z, w, "dac latents")
    assert len(np.unique(np.asarray(out.indices))) > 10


def test_fsq_four_dims_images(rng):
    # channels-last [b, h, w, d] in jaxlatent; the reference takes images channel-first
    t, j = iv.pair(_lucid().FSQ, q.FSQ, levels=[8, 5, 5], dim=3)
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)
    t_out, t_idx = t(ref.to_torch(x.transpose(0, 3, 1, 2)))
    out = iv.call(j, jnp.asarray(x))
    np.testing.assert_array_equal(out.indices, ref.to_numpy(t_idx))
    assert_close(out.quantized, ref.to_numpy(t_out).transpose(0, 2, 3, 1), "fsq_out")


RFSQ_CASES = {
    "residual": dict(levels=[8, 5, 5, 3], num_quantizers=3, dim=10),
    "soft_clamp_rotation": dict(
        levels=[6, 5, 4],
        num_quantizers=2,
        bound_hard_clamp=False,
        soft_clamp_input_value=1.5,
        orthogonal_rotation=True,
    ),
}


@pytest.mark.parametrize("case", list(RFSQ_CASES))
def test_residual_fsq_matches_reference(rng, case):
    t, j = iv.pair(_lucid().ResidualFSQ, q.ResidualFSQ, **RFSQ_CASES[case])
    d = j.dim
    x = (rng.standard_normal((2, 50, d)) * 1.5).astype(np.float32)
    w = rng.standard_normal((2, 50, d)).astype(np.float32)
    out = _check(t, j, x, w, case)
    idx = np.array(out.indices)
    assert idx.shape == (2, 50, j.num_quantizers)
    assert all(len(np.unique(idx[..., k])) > 5 for k in range(j.num_quantizers))
    assert_close(
        iv.method(j, "get_output_from_indices", out.indices),
        t.get_output_from_indices(ref.to_torch(idx).long()).detach(),
        "fsq_out",
    )


def test_residual_fsq_on_dac_latents():
    z = iv.dac_latents(16)
    t, j = iv.pair(
        _lucid().ResidualFSQ, q.ResidualFSQ, levels=[8, 5, 5, 5], num_quantizers=4, dim=16
    )
    w = np.random.default_rng(1).standard_normal(z.shape).astype(np.float32)
    _check(t, j, z, w, "dac latents")


DEEP_CASES = {
    "levels_8555": dict(levels=[8, 5, 5, 5], num_quantizers=8),
    "levels_8553_projected": dict(levels=[8, 5, 5, 3], num_quantizers=8, dim=10),
}


@pytest.mark.parametrize("case", list(DEEP_CASES))
def test_deep_residual_fsq_disagrees_only_at_float32_near_ties(rng, case):
    """8 layers: layer i quantizes ``residual * L**i``, so the deepest layers round float32
    noise and the two frameworks' round-off (XLA's tanh, FMA contraction) picks the other
    level at near-ties. Each vector is compared up to its first differing layer: there, every
    differing channel must lie within ``rfsq_index_tie`` of a rounding boundary of the
    reference's input (later layers quantize a residual that differs by that step)."""
    t, j = iv.pair(_lucid().ResidualFSQ, q.ResidualFSQ, **DEEP_CASES[case])
    torch = ref.torch()
    x = (rng.standard_normal((4, 500, j.dim)) * 1.5).astype(np.float32)
    z_ref = []  # each layer's input, residual / scale, in the reference
    hooks = [
        layer.register_forward_pre_hook(lambda m, a: z_ref.append(ref.to_numpy(a[0])))
        for layer in t.layers
    ]
    with torch.no_grad():
        t_out, t_idx = t(ref.to_torch(x))
    for h in hooks:
        h.remove()
    out = iv.call(j, jnp.asarray(x))
    got, want = np.asarray(out.indices), ref.to_numpy(t_idx)
    levels, nq = np.asarray(j.levels), j.num_quantizers
    # distance of the reference's floor((L-1)(clip(z)+1)/2 + 1/2) argument to an integer, in
    # input units ([4, 500, Q, c]); the level of each channel from either side's indices
    bracket = (levels - 1) * (np.clip(np.stack(z_ref, -2), -1, 1) + 1) / 2 + 0.5
    margin = np.abs(bracket - np.round(bracket)) * (2 / (levels - 1)) * j.scales
    basis = np.cumprod([1, *levels[:-1]])
    level_got, level_want = [(i[..., None] // basis) % levels for i in (got, want)]
    differ = got != want
    first = np.where(differ.any(-1), differ.argmax(-1), nq)
    tie = TOLERANCES["rfsq_index_tie"].atol
    # a channel whose half level step is below the tolerance (L = 8 at layer 7) passes
    # whatever it picks: its levels are finer than the input's round-off
    half_step = (1 / (levels - 1)) * j.scales  # [Q, c]
    margins, n_testable = [], 0
    for v in zip(*np.nonzero(first < nq), strict=True):
        i = first[v]
        flipped = level_got[v][i] != level_want[v][i]
        margins.append(margin[v][i][flipped].max())
        n_testable += int((half_step[i][flipped] > tie).any())
    report = (
        f"{case}: {(~differ).mean():.4f} of indices agree (per layer "
        f"{np.round((~differ).reshape(-1, nq).mean(0), 4).tolist()}); {len(margins)} vectors "
        f"differ, first at layers {np.bincount(first[first < nq], minlength=nq).tolist()} "
        f"({n_testable} in a channel whose half step exceeds the tolerance); their boundary "
        f"margins: max {max(margins, default=0):.3g}, median "
        f"{np.median(margins) if margins else 0:.3g} (tolerance {tie:.3g})"
    )
    print(report)
    assert max(margins, default=0.0) <= tie, report
    # not vacuous: where the levels are coarse, an entry is rarely that close to a boundary
    assert np.mean(margin[:, :, half_step > 10 * tie] <= tie) < 1e-2, report
    # both outputs are the input minus a final residual of at most half a last-layer step
    # (plus the input's round-off), so they differ by at most one such step
    step = (2 / (levels - 1)) * j.scales[-1]
    diff = np.abs(np.asarray(out.quantized) - ref.to_numpy(t_out))
    if j.has_projections:
        step = np.abs(ref.to_numpy(t.project_out.weight)) @ step  # through project_out
    assert (diff <= step + tie).all(), f"{report}; output error {diff.max():.3g}"


def test_grouped_residual_fsq_matches_reference(rng):
    kw = dict(dim=12, groups=2, levels=[8, 5, 5], num_quantizers=2)
    t, j = iv.pair(_lucid().GroupedResidualFSQ, q.GroupedResidualFSQ, **kw)
    x = rng.standard_normal((2, 30, 12)).astype(np.float32)
    w = rng.standard_normal((2, 30, 12)).astype(np.float32)
    out = _check(t, j, x, w, "grouped")
    assert out.indices.shape == (2, 2, 30, 2)
    assert_close(
        iv.method(j, "get_output_from_indices", out.indices),
        t.get_output_from_indices(ref.to_torch(np.array(out.indices)).long()).detach(),
        "fsq_out",
    )


def test_residual_fsq_quantize_dropout_matches_reference(rng):
    # the reference draws the last kept layer with random.Random(seed); jaxlatent with a key:
    # pick the seed that gives the layer jaxlatent drew
    import random

    kw = dict(levels=[8, 5, 5], num_quantizers=4, dim=6, quantize_dropout=True)
    kw |= dict(quantize_dropout_cutoff_index=1)
    t, j = iv.pair(_lucid().ResidualFSQ, q.ResidualFSQ, **kw)
    t.train()
    x = rng.standard_normal((2, 20, 6)).astype(np.float32)
    seen = set()
    for k in range(6):
        key = jax.random.key(k)
        out = iv.call(j, jnp.asarray(x), train=True, key=key)
        kept = int((np.asarray(out.indices)[0, 0] >= 0).sum())
        seen.add(kept)
        seed = next(s for s in range(1000) if random.Random(s).randrange(1, 4) == kept - 1)
        t_out, t_idx = t(ref.to_torch(x), rand_quantize_dropout_fixed_seed=seed)
        np.testing.assert_array_equal(out.indices, ref.to_numpy(t_idx), err_msg=f"key {k}")
        assert_close(out.quantized, ref.to_numpy(t_out), "fsq_out", err_msg=f"key {k}")
    assert len(seen) > 1  # the key changes the number of kept layers


def test_state_dict_round_trip_and_strictness():
    lucid = _lucid()
    kw = dict(dim=12, groups=2, levels=[8, 5, 5], num_quantizers=2, orthogonal_rotation=True)
    t, j = iv.pair(lucid.GroupedResidualFSQ, q.GroupedResidualFSQ, **kw)
    exported = export_vector_quantize_pytorch(j)
    state = t.state_dict()
    assert set(exported) == set(state)
    for k, v in state.items():
        np.testing.assert_array_equal(exported[k], ref.to_numpy(v), err_msg=k)
    t2 = lucid.GroupedResidualFSQ(**kw)
    t2.load_state_dict({k: ref.to_torch(v) for k, v in exported.items()}, strict=True)
    # a state_dict of another configuration is refused, naming the keys
    other = lucid.GroupedResidualFSQ(**(kw | dict(num_quantizers=3))).state_dict()
    with pytest.raises(ConversionError, match=r"(?s)unexpected.*rvqs.0.layers.2.orthogonal_rot"):
        load_vector_quantize_pytorch(j, other)
    bad = dict(state) | {"rvqs.0.project_in.weight": state["rvqs.0.project_in.weight"][:, :2]}
    with pytest.raises(ConversionError, match="mis-shaped"):
        load_vector_quantize_pytorch(j, bad)


REJECTED = [
    ("FSQ", dict(levels=[8, 2]), "levels"),
    ("FSQ", dict(levels=[5, 5], noise_dropout=0.1), "noise_dropout"),
    ("FSQ", dict(levels=[5, 5], num_codebooks=2, keep_num_codebooks_dim=False), "keep_num"),
    ("ResidualFSQ", dict(levels=[5, 1], num_quantizers=2), "levels"),
    ("ResidualFSQ", dict(levels=[5, 5], num_quantizers=2, soft_clamp_input_value=1.0), "soft"),
    ("GroupedResidualFSQ", dict(dim=10, groups=3, levels=[5], num_quantizers=1), "dim=10"),
    ("LFQ", dict(codebook_size=48), "codebook_size"),
    ("LFQ", dict(), "either dim or codebook_size"),
    ("LFQ", dict(codebook_size=16, frac_per_sample_entropy=0.0), "frac_per_sample_entropy"),
    ("LFQ", dict(codebook_size=16, soft_clamp_input_value=0.5), "soft_clamp_input_value"),
    ("ResidualLFQ", dict(dim=4, num_quantizers=2, codebook_size=16, frac_per_sample_entropy=2.0),
     "frac_per_sample_entropy"),
]  # fmt: skip


@pytest.mark.parametrize("name, kwargs, match", REJECTED)
def test_arguments_the_reference_rejects_are_value_errors(name, kwargs, match):
    with pytest.raises(AssertionError):
        getattr(_lucid(), name)(**kwargs)
    with pytest.raises(ValueError, match=match):
        getattr(q, name)(**kwargs)
