"""Data parallelism of the implicit-codebook quantizers on 8 CPU devices.

Every statistic computed over the batch (LFQ's batch entropy, the code usage counts and
perplexities of ResidualLFQ, ResidualFSQ, ResidualSimVQ and the grouped forms) must be that
of the global batch under `pmap` and `shard_map` (with `axis_name`) and under `jit` of a batch
sharded over a mesh (no `axis_name`): equal to one device on the same global batch, indices
and counts exactly. The per-device means (per-sample entropy, commitment, the losses) equal
the global ones after `lax.pmean`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlatent import quantizers as q
from tests.tolerances import assert_close

N_DEV = 8
BATCH, TIME, DIM = 16, 6, 6  # 96 vectors, 12 per device
SIM_KEY = 0  # ResidualSimVQ's dropout key: keeps the first two of its three layers


@pytest.fixture(scope="module")
def mesh():
    if jax.device_count() < N_DEV:
        pytest.skip(f"needs {N_DEV} devices")
    return jax.make_mesh((N_DEV,), ("data",), axis_types=(AxisType.Auto,))


def _modules():
    rngs = nnx.Rngs(0)
    return dict(
        lfq=q.ResidualLFQ(
            dim=DIM, num_quantizers=2, codebook_size=16, commitment_loss_weight=0.2, rngs=rngs
        ),
        fsq=q.ResidualFSQ(levels=[5, 4, 3], num_quantizers=2, dim=DIM, rngs=rngs),
        glfq=q.GroupedResidualLFQ(dim=DIM, groups=2, num_quantizers=2, codebook_size=4, rngs=rngs),
        gfsq=q.GroupedResidualFSQ(dim=DIM, groups=2, levels=[3, 3], num_quantizers=2, rngs=rngs),
        sim=q.ResidualSimVQ(
            dim=DIM, num_quantizers=3, codebook_size=8, quantize_dropout=True, rngs=rngs
        ),
    )


SHARDED = ("lfq indices", "fsq indices", "glfq indices", "gfsq indices", "sim indices")


def _step_fn(mods, axis_name):
    def mean(v):
        return v if axis_name is None else jax.lax.pmean(v, axis_name)

    def step(x):
        o = mods["lfq"](x, train=True, axis_name=axis_name)
        f = mods["fsq"](x, axis_name=axis_name)
        go = mods["glfq"](x, train=True, axis_name=axis_name)
        gf = mods["gfsq"](x, axis_name=axis_name)
        s = mods["sim"](x, train=True, key=jax.random.key(SIM_KEY), axis_name=axis_name)
        return {
            "lfq indices": o.indices,
            "fsq indices": f.indices,
            "glfq indices": go.indices,
            "gfsq indices": gf.indices,
            "sim indices": s.indices,
            "batch_entropy": o.batch_entropy,
            "lfq counts": o.counts,
            "lfq perplexity": o.perplexity,
            "fsq counts": f.counts,
            "fsq perplexity": f.perplexity,
            "per_sample_entropy": mean(o.per_sample_entropy),
            "commitment": mean(o.commitment_loss),
            "loss": mean(jnp.sum(o.losses)),
            "glfq batch_entropy": go.batch_entropy,
            "glfq counts": go.counts,
            "glfq loss": mean(go.losses),
            "gfsq counts": gf.counts,
            "gfsq perplexity": gf.perplexity,
            "sim counts": s.counts,
            "sim perplexity": s.perplexity,
            "sim losses": mean(s.losses),
        }

    return step


def _indices_global(name: str, v: np.ndarray) -> np.ndarray:
    """Indices as ``[..., BATCH, TIME, Q]`` (pmap stacks the devices' rows first)."""
    if name.startswith("g"):  # [G, batch, time, Q]: pmap gives [dev, G, batch/dev, time, Q]
        return np.moveaxis(v, 0, 1).reshape(v.shape[1], BATCH, TIME, -1) if v.ndim == 5 else v
    return v.reshape(BATCH, TIME, -1)


def _run(layout: str, mesh):
    mods = _modules()
    x = np.random.default_rng(0).standard_normal((BATCH, TIME, DIM)).astype(np.float32)
    if layout == "single":
        out = jax.jit(_step_fn(mods, None))(x)
    elif layout == "gspmd":
        out = jax.jit(_step_fn(mods, None))(jax.device_put(x, NamedSharding(mesh, P("data"))))
    elif layout == "shard_map":
        names = jax.eval_shape(_step_fn(mods, None), x).keys()
        # indices are sharded on their batch axis (1 for the grouped [G, batch, ...]); every
        # other output is global
        specs = {n: P() for n in names} | {n: P(*([None] * (n[0] == "g")), "data") for n in SHARDED}
        step = jax.shard_map(_step_fn(mods, "data"), mesh=mesh, in_specs=P("data"), out_specs=specs)
        out = jax.jit(step)(jax.device_put(x, NamedSharding(mesh, P("data"))))
    else:  # pmap
        names = jax.eval_shape(_step_fn(mods, None), x).keys()
        axes = {n: 0 if n in SHARDED else None for n in names}
        step = jax.pmap(_step_fn(mods, "data"), axis_name="data", out_axes=axes)
        out = step(x.reshape(N_DEV, BATCH // N_DEV, TIME, DIM))
    out = {k: np.asarray(v) for k, v in out.items()}
    for name in SHARDED:
        out[name] = _indices_global(name, out[name])
    return out


@pytest.fixture(scope="module")
def single(mesh):
    return _run("single", mesh)


@pytest.mark.parametrize("layout", ["pmap", "gspmd", "shard_map"])
def test_global_batch_statistics_equal_single_device(single, mesh, layout):
    out = _run(layout, mesh)
    assert out.keys() == single.keys()
    for name, want in single.items():
        got = out[name]
        assert got.shape == want.shape, f"{layout}: {name}"
        if got.dtype.kind in "iu":
            np.testing.assert_array_equal(got, want, err_msg=f"{layout}: {name}")
        else:
            assert_close(got, want, "scalar_vq_data_parallel", err_msg=f"{layout}: {name}")


def test_single_device_statistics_are_not_per_shard(single):
    # guard against a vacuous comparison: one shard's batch entropy and counts differ from
    # the global batch's, so a missing reduction would fail the test above
    mods = _modules()
    x = np.random.default_rng(0).standard_normal((BATCH, TIME, DIM)).astype(np.float32)
    shard = jax.jit(lambda x: mods["lfq"](x, train=True))(jnp.asarray(x[: BATCH // N_DEV]))
    assert np.abs(np.asarray(shard.batch_entropy) - single["batch_entropy"]).max() > 1e-3
    n = BATCH * TIME
    np.testing.assert_array_equal(single["lfq counts"].sum(axis=1), [n] * 2)
    assert (np.asarray(shard.counts).sum(axis=1) == n // N_DEV).all()
    np.testing.assert_array_equal(single["gfsq counts"].sum(axis=-1), [[n] * 2] * 2)
    # ResidualSimVQ's dropout kept two of its three layers: the dropped one counts nothing
    sim = single["sim indices"]
    np.testing.assert_array_equal(single["sim counts"].sum(axis=1), [n, n, 0])
    assert (sim[..., :2] >= 0).all() and (sim[..., 2] == -1).all()
    assert min(len(np.unique(sim[..., k])) for k in range(2)) > 4
