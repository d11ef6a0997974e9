"""Data parallelism of the implicit-codebook quantizers on 8 CPU devices.

Every statistic computed over the batch (LFQ's batch entropy, the code usage counts and
perplexities of ResidualLFQ and ResidualFSQ) must be that of the global batch under `pmap`
and `shard_map` (with `axis_name`) and under `jit` of a batch sharded over a mesh (no
`axis_name`): equal to one device on the same global batch, indices exactly. The per-device
means (per-sample entropy, commitment, the loss) equal the global ones after `lax.pmean`.
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


@pytest.fixture(scope="module")
def mesh():
    if jax.device_count() < N_DEV:
        pytest.skip(f"needs {N_DEV} devices")
    return jax.make_mesh((N_DEV,), ("data",), axis_types=(AxisType.Auto,))


def _modules():
    rngs = nnx.Rngs(0)
    lfq = q.ResidualLFQ(
        dim=DIM, num_quantizers=2, codebook_size=16, commitment_loss_weight=0.2, rngs=rngs
    )
    fsq = q.ResidualFSQ(levels=[5, 4, 3], num_quantizers=2, dim=DIM, rngs=rngs)
    return lfq, fsq


def _step_fn(lfq, fsq, axis_name):
    def mean(v):
        return v if axis_name is None else jax.lax.pmean(v, axis_name)

    def step(x):
        o = lfq(x, train=True, axis_name=axis_name)
        f = fsq(x, axis_name=axis_name)
        return (
            o.indices,
            f.indices,
            o.batch_entropy,
            o.counts,
            o.perplexity,
            f.counts,
            f.perplexity,
            mean(o.per_sample_entropy),
            mean(o.commitment_loss),
            mean(jnp.sum(o.losses)),
        )

    return step


N_SHARDED = 2  # indices are sharded, every other output is global


def _run(layout: str, mesh):
    lfq, fsq = _modules()
    x = np.random.default_rng(0).standard_normal((BATCH, TIME, DIM)).astype(np.float32)
    if layout == "single":
        out = jax.jit(_step_fn(lfq, fsq, None))(x)
    elif layout == "gspmd":
        out = jax.jit(_step_fn(lfq, fsq, None))(jax.device_put(x, NamedSharding(mesh, P("data"))))
    elif layout == "shard_map":
        specs = (P("data"),) * N_SHARDED + (P(),) * 8
        step = jax.shard_map(
            _step_fn(lfq, fsq, "data"), mesh=mesh, in_specs=P("data"), out_specs=specs
        )
        out = jax.jit(step)(jax.device_put(x, NamedSharding(mesh, P("data"))))
    else:  # pmap
        axes = (0,) * N_SHARDED + (None,) * 8
        step = jax.pmap(_step_fn(lfq, fsq, "data"), axis_name="data", out_axes=axes)
        out = step(x.reshape(N_DEV, BATCH // N_DEV, TIME, DIM))
    out = [np.asarray(v) for v in out]
    for i in range(N_SHARDED):
        out[i] = out[i].reshape(BATCH, TIME, -1)
    return out


@pytest.fixture(scope="module")
def single(mesh):
    return _run("single", mesh)


NAMES = (
    "lfq indices", "fsq indices", "batch_entropy", "lfq counts", "lfq perplexity",
    "fsq counts", "fsq perplexity", "per_sample_entropy", "commitment", "loss",
)  # fmt: skip


@pytest.mark.parametrize("layout", ["pmap", "gspmd", "shard_map"])
def test_global_batch_statistics_equal_single_device(single, mesh, layout):
    out = _run(layout, mesh)
    for name, got, want in zip(NAMES, out, single, strict=True):
        if got.dtype.kind in "iu":
            np.testing.assert_array_equal(got, want, err_msg=f"{layout}: {name}")
        else:
            assert_close(got, want, "scalar_vq_data_parallel", err_msg=f"{layout}: {name}")


def test_single_device_statistics_are_not_per_shard(single):
    # guard against a vacuous comparison: one shard's batch entropy and counts differ from
    # the global batch's, so a missing reduction would fail the test above
    lfq, _ = _modules()
    x = np.random.default_rng(0).standard_normal((BATCH, TIME, DIM)).astype(np.float32)
    shard = jax.jit(lambda x: lfq(x, train=True))(jnp.asarray(x[: BATCH // N_DEV]))
    assert np.abs(np.asarray(shard.batch_entropy) - single[2]).max() > 1e-3
    np.testing.assert_array_equal(single[3].sum(axis=1), [BATCH * TIME] * 2)
    assert (np.asarray(shard.counts).sum(axis=1) == BATCH * TIME // N_DEV).all()
