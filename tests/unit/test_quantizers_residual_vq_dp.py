"""Data parallelism of ResidualVQ's codebook learning on 8 CPU devices: under `pmap` and
`shard_map` with `axis_name`, and under `jit` of a batch sharded over a mesh (no
`axis_name`), two training steps with k-means init, dead-code restarts and quantizer dropout
give the single-device update of the global batch (indices and counts exactly, EMA state up
to the order of the sums): a ResidualVQ with separate codebooks, and a GroupedResidualVQ whose
two groups each share one codebook across their layers."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlatent import quantizers as q
from tests.tolerances import assert_close

N_DEV = 8
BATCH, TIME, D = 16, 6, 4
RESET = 7.77  # cluster size of a restarted code (EMAs of integer counts here never hit it)
#: dead-code thresholds: a shared codebook's counts add up over its layers, so it starves less
THRESHOLD = {"separate": 3.0, "grouped_shared": 6.0}


@pytest.fixture(scope="module")
def mesh():
    if jax.device_count() < N_DEV:
        pytest.skip(f"needs {N_DEV} devices")
    return jax.make_mesh((N_DEV,), ("data",), axis_types=(AxisType.Auto,))


def _step_fn(graphdef, axis_name):
    def step(state, x, key):
        rvq = nnx.merge(graphdef, state)
        out = rvq(x, train=True, key=key, axis_name=axis_name)
        return nnx.state(rvq), out.indices, out.counts

    return step


def _compiled_step(layout, mesh, graphdef, grouped):
    if layout == "shard_map":
        indices = P(None, "data") if grouped else P("data")  # grouped: [G, batch, ..., Q]
        return jax.jit(
            jax.shard_map(
                _step_fn(graphdef, "data"),
                mesh=mesh,
                in_specs=(P(), P("data"), P()),
                out_specs=(P(), indices, P()),
            )
        )
    if layout == "pmap":
        return jax.pmap(
            _step_fn(graphdef, "data"),
            axis_name="data",
            in_axes=(None, 0, None),
            out_axes=(None, 0, None),
        )
    return jax.jit(_step_fn(graphdef, None))  # single device, or GSPMD of a sharded batch


def _run(layout, mesh, kind):
    cfg = q.VectorQuantizerConfig.vqvae_ema(
        8,
        D,
        decay=0.9,
        kmeans_init=True,
        kmeans_iters=2,
        dead_code_threshold=THRESHOLD[kind],
        reset_cluster_size=RESET,
    )
    kw = dict(num_quantizers=3, codebook_size=8, quantize_dropout=True, config=cfg)
    grouped = kind == "grouped_shared"
    if grouped:
        rvq = q.GroupedResidualVQ(dim=D, groups=2, shared_codebook=True, rngs=nnx.Rngs(0), **kw)
    else:
        rvq = q.ResidualVQ(dim=D, rngs=nnx.Rngs(0), **kw)
    graphdef, state = nnx.split(rvq)
    step = _compiled_step(layout, mesh, graphdef, grouped)
    if layout == "gspmd":
        state = jax.device_put(state, NamedSharding(mesh, P()))
    rng = np.random.default_rng(0)
    results = []
    for k in (2, 3):  # keys keeping all three layers, then two (the third is dropped)
        x = rng.standard_normal((BATCH, TIME, D)).astype(np.float32)
        if layout == "pmap":
            x = x.reshape(N_DEV, BATCH // N_DEV, TIME, D)
        elif layout != "single":
            x = jax.device_put(x, NamedSharding(mesh, P("data")))
        state, idx, counts = step(state, x, jax.random.key(k))
        idx = np.asarray(idx)
        if layout == "pmap" and grouped:  # [device, G, batch / device, ...]
            idx = np.moveaxis(idx, 0, 1)
        idx = idx.reshape(*((2,) if grouped else ()), BATCH, TIME, -1)
        results.append((jax.tree.map(np.asarray, nnx.to_pure_dict(state)), idx, np.asarray(counts)))
    return results


KINDS = ["separate", "grouped_shared"]


@functools.cache
def _single(kind):
    return _run("single", None, kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["pmap", "gspmd", "shard_map"])
def test_residual_vq_data_parallel_equals_single_device(mesh, layout, kind):
    single = _single(kind)
    for step, ((s, idx, c), (rs, ridx, rc)) in enumerate(
        zip(_run(layout, mesh, kind), single, strict=True)
    ):
        msg = f"{layout}, {kind}, step {step}"
        np.testing.assert_array_equal(idx, ridx, err_msg=msg)
        np.testing.assert_array_equal(c, rc, err_msg=msg)
        flat, rflat = jax.tree.leaves_with_path(s), jax.tree.leaves(rs)
        assert len(flat) == len(rflat), msg
        for (path, v), r in zip(flat, rflat, strict=True):
            assert_close(v, r, "vq_ema_data_parallel", err_msg=f"{msg}, {path}")


@pytest.mark.parametrize("kind", KINDS)
def test_single_device_run_exercises_dropout_kmeans_and_restarts(kind):
    # guard against a vacuous comparison: some layers were dropped in one step and used in
    # another, and the first step restarted starved codes in every codebook
    single = _single(kind)
    assert (single[0][1] >= 0).all() and (single[1][1][..., 2] == -1).all()
    (s0, _, c0), (_, _, c1) = single
    n = BATCH * TIME
    assert (c0.sum(axis=-1) == n).all()
    assert (c1.sum(axis=-1)[..., :2] == n).all() and (c1.sum(axis=-1)[..., 2] == 0).all()
    sizes = [
        v for p, v in jax.tree.leaves_with_path(s0) if "cluster_size" in jax.tree_util.keystr(p)
    ]
    assert len(sizes) == (3 if kind == "separate" else 2)
    for size in sizes:
        assert 0 < (size == np.float32(RESET)).sum() < 8
