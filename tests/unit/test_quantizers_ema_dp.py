"""Data parallelism of VectorQuantizer's codebook learning on 8 CPU devices.

The data-parallel training step (pmap with `axis_name`, jit with a NamedSharding over an Auto
mesh, and shard_map) must give the single-device update of the global batch: the same codes
(exactly), the same k-means seeds and dead-code replacement vectors (bit for bit: they are
batch rows chosen from the global batch with the same key), and the same EMA statistics up to
the order of the cross-device sums.
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
K, D = 16, 4
BATCH, TIME = 16, 12  # 192 vectors, 24 per device
THRESHOLD = 6.0  # dead-code threshold: starved codes are restarted
RESET = 7.77  # their new cluster size (EMAs of integer counts with decay 0.9 never hit it)


@pytest.fixture(scope="module")
def mesh():
    if jax.device_count() < N_DEV:
        pytest.skip(f"needs {N_DEV} devices")
    return jax.make_mesh((N_DEV,), ("data",), axis_types=(AxisType.Auto,))


def _batches(n_steps: int) -> list[np.ndarray]:
    # a mixture of 6 clusters: k-means and EMA have something to find, some codes starve
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, D)).astype(np.float32) * 3.0
    out = []
    for _ in range(n_steps):
        labels = rng.integers(0, 6, (BATCH, TIME))
        noise = rng.standard_normal((BATCH, TIME, D)).astype(np.float32) * 0.3
        out.append(centres[labels] + noise)
    return out


def _config(**changes) -> q.VectorQuantizerConfig:
    kw = (
        dict(
            decay=0.9,
            kmeans_init=True,
            kmeans_iters=3,
            dead_code_threshold=THRESHOLD,
            reset_cluster_size=RESET,
        )
        | changes
    )
    return q.VectorQuantizerConfig.vqvae_ema(K, D, **kw)


def _step_fn(graphdef, axis_name):
    def step(state, x, key):
        vq = nnx.merge(graphdef, state)
        out = vq(x, train=True, key=key, axis_name=axis_name)
        loss = out.loss if axis_name is None else jax.lax.pmean(out.loss, axis_name)
        return nnx.state(vq), out.indices, loss, out.counts

    return step


def _run(layout: str, mesh, config, n_steps: int = 3):
    """States after each step and the indices of each step, for one layout."""
    vq = q.VectorQuantizer(config, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(vq)
    keys = jax.random.split(jax.random.key(42), n_steps)
    if layout == "single":
        step = jax.jit(_step_fn(graphdef, None))
    elif layout == "gspmd":
        step = jax.jit(_step_fn(graphdef, None))
        state = jax.device_put(state, NamedSharding(mesh, P()))
    elif layout == "shard_map":
        step = jax.jit(
            jax.shard_map(
                _step_fn(graphdef, "data"),
                mesh=mesh,
                in_specs=(P(), P("data"), P()),
                out_specs=(P(), P("data"), P(), P()),
            )
        )
    else:  # pmap
        step = jax.pmap(
            _step_fn(graphdef, "data"),
            axis_name="data",
            in_axes=(None, 0, None),
            out_axes=(None, 0, None, None),
        )
    states, indices, losses, counts = [], [], [], []
    for x, key in zip(_batches(n_steps), keys, strict=True):
        if layout == "pmap":
            x = x.reshape(N_DEV, BATCH // N_DEV, TIME, D)
        elif layout in ("gspmd", "shard_map"):
            x = jax.device_put(x, NamedSharding(mesh, P("data")))
        state, idx, loss, cnt = step(state, x, key)
        states.append(jax.tree.map(np.asarray, nnx.to_pure_dict(state)))
        indices.append(np.asarray(idx).reshape(BATCH, TIME))
        losses.append(np.asarray(loss))
        counts.append(np.asarray(cnt))
    return states, indices, losses, counts


@pytest.fixture(scope="module")
def single(mesh):
    return _run("single", mesh, _config())


@pytest.mark.parametrize("layout", ["pmap", "gspmd", "shard_map"])
def test_data_parallel_update_equals_single_device(single, mesh, layout):
    ref_states, ref_idx, ref_loss, ref_counts = single
    states, idx, losses, counts = _run(layout, mesh, _config())
    # step 0 ran k-means, then restarted the starved codes with rows of the global batch: the
    # same rows, bit for bit, in every layout (nothing changes them later in that step)
    restarted = ref_states[0]["cluster_size"] == np.float32(RESET)
    np.testing.assert_array_equal(states[0]["cluster_size"] == np.float32(RESET), restarted)
    np.testing.assert_array_equal(
        states[0]["codebook"][restarted], ref_states[0]["codebook"][restarted]
    )
    for step in range(len(states)):
        msg = f"{layout}, step {step}"
        np.testing.assert_array_equal(idx[step], ref_idx[step], err_msg=msg)
        np.testing.assert_array_equal(counts[step], ref_counts[step], err_msg=msg)
        assert bool(states[step]["initialized"]) and bool(ref_states[step]["initialized"])
        for name in ("codebook", "cluster_size", "embed_sum"):
            assert_close(
                states[step][name],
                ref_states[step][name],
                "vq_ema_data_parallel",
                err_msg=f"{msg}, {name}",
            )
        assert_close(losses[step], ref_loss[step], "vq_ema_data_parallel", err_msg=msg)


def test_reference_run_exercises_kmeans_and_restarts(single):
    # guard against a vacuous comparison: the first step must have run k-means (codes moved
    # away from the tiny uniform init) and restarted some codes with distinct batch rows
    states, _, _, _ = single
    init = q.VectorQuantizer(_config(), rngs=nnx.Rngs(0))
    assert np.abs(states[0]["codebook"] - np.asarray(init.codebook[...])).max() > 0.5
    restarted = states[0]["cluster_size"] == np.float32(RESET)
    assert 0 < restarted.sum() < K
    rows = states[0]["codebook"][restarted]
    x0 = _batches(1)[0].reshape(-1, D)
    assert (rows[:, None, :] == x0[None, :, :]).all(-1).any(1).all()
    assert len({tuple(r) for r in rows}) == len(rows)


def test_sample_global_rows_is_layout_independent(mesh):
    # the building block of the k-means seeding and the restarts, in both of its regimes
    x = jnp.asarray(_batches(1)[0].reshape(-1, D))
    key = jax.random.key(3)

    def local(x):
        distinct = q.sample_global_rows(key, x, 20, "data")
        with_replacement = q.sample_global_rows(key, x[:1], 20, "data")  # 8 global rows < 20
        return distinct, with_replacement

    sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("data"), out_specs=P()))(x)
    np.testing.assert_array_equal(sharded[0], q.sample_global_rows(key, x, 20))
    per_device_first = x.reshape(N_DEV, -1, D)[:, 0]
    np.testing.assert_array_equal(sharded[1], q.sample_global_rows(key, per_device_first, 20))
    assert len({tuple(r) for r in np.asarray(sharded[0])}) == 20
