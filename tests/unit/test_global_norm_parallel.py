"""`GlobalNorm` under data parallelism on the 8 CPU devices of the test session.

With ``axis_name`` set, `jax.shard_map` and `jax.pmap` over a batch split in 8 merge the
statistics of the global batch: running statistics and outputs equal one call on the whole
batch, every device holds the same statistics, and the training core's `sync_model_state`
leaves them unchanged. Through the training core (which sets ``axis_name``), a
`NormalizingAutoencoder` trains to the same parameters and statistics in every mode.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxlatent import training
from jaxlatent.losses import AutoencoderLoss
from jaxlatent.models import NormalizingAutoencoder
from jaxlatent.nn import GlobalNorm
from tests.tolerances import assert_close

D = 8  # devices (tests/conftest.py)
AXIS = "data"
CALLS, BATCH, T, F = 2, 16, 12, 3  # two successive calls on batches of 16 (2 per device)
STATS = ("running_mean", "running_std", "weight", "step_count")


def _data():
    """``x [calls, batch, T, F]`` and relative lengths ``[calls, batch]``; in the 1st call the
    shard of device 3 is entirely padded (its local count is 0)."""
    x = 2.0 * jax.random.normal(jax.random.key(0), (CALLS, BATCH, T, F)) + 0.7
    lengths = np.random.default_rng(0).integers(1, T + 1, (CALLS, BATCH)) / T
    lengths[0, 6:8] = 0.0
    lengths[1, 0] = 7 / 12
    return x, jnp.asarray(lengths, jnp.float32)


def _apply(graphdef, state, x, lengths, axis_name):
    """The calls in turn; returns outputs, final statistics and `sync_model_state` of them."""
    norm = nnx.merge(graphdef, state)
    norm.axis_name = axis_name
    ys = jnp.stack([norm(x[i], lengths[i]) for i in range(CALLS)])
    stats = nnx.state(norm)
    synced = stats if axis_name is None else training.sync_model_state(stats, axis_name)
    return ys, stats, synced


def _stats(state) -> dict[str, np.ndarray]:
    return {name: np.asarray(state[name][...]) for name in STATS}


@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_global_norm_mapped_equals_one_call_on_the_whole_batch(mode):
    assert jax.device_count() == D
    graphdef, state = nnx.split(GlobalNorm(norm_mean=0.5, norm_std=2.0, length_dim=1))
    x, lengths = _data()
    ref_y, ref_state, _ = jax.jit(functools.partial(_apply, graphdef, axis_name=None))(
        state, x, lengths
    )
    ref = _stats(ref_state)
    assert int(ref["step_count"]) == CALLS
    assert float(ref["weight"]) == float(np.sum(np.ceil(np.asarray(lengths) * T - 1e-6))) * F

    per_device = functools.partial(_apply, graphdef, axis_name=AXIS)
    if mode == "shard_map":
        mesh = Mesh(np.asarray(jax.devices()), (AXIS,))

        def run(state, x, lengths):  # every device's statistics, stacked: [devices]
            y, stats, synced = per_device(state, x, lengths)
            return y, *(jax.tree.map(lambda v: v[None], s) for s in (stats, synced))

        specs = (P(), P(None, AXIS), P(None, AXIS))
        out = jax.jit(
            jax.shard_map(
                run, mesh=mesh, in_specs=specs, out_specs=(P(None, AXIS), P(AXIS), P(AXIS))
            )
        )(state, x, lengths)
        y = out[0]
    else:
        split = lambda a: jnp.moveaxis(a.reshape(CALLS, D, -1, *a.shape[2:]), 1, 0)  # noqa: E731
        out = jax.pmap(per_device, axis_name=AXIS, in_axes=(None, 0, 0))(
            state, split(x), split(lengths)
        )
        y = jnp.moveaxis(out[0], 0, 1).reshape(x.shape)
    stats, synced = _stats(out[1]), _stats(out[2])

    assert_close(np.asarray(y), np.asarray(ref_y), "global_norm_parallel", err_msg="outputs")
    for name in STATS:
        assert stats[name].shape == (D,)
        # the same statistics on every device, untouched by the trainer's pmean / pmax
        np.testing.assert_array_equal(stats[name], np.broadcast_to(stats[name][0], (D,)), name)
        np.testing.assert_array_equal(synced[name], stats[name], err_msg=name)
        if name in ("weight", "step_count"):  # counts are exact
            np.testing.assert_array_equal(stats[name][0], ref[name], err_msg=name)
        else:
            assert_close(stats[name][0], ref[name], "global_norm_parallel", err_msg=name)
    # one device's own statistics are far from the global ones: the comparison can fail
    shard = GlobalNorm(length_dim=1)
    shard(x[0, :2], lengths[0, :2])
    shard(x[1, :2], lengths[1, :2])
    assert abs(float(shard.running_mean[...]) - float(ref["running_mean"])) > 0.05


def test_global_norm_axis_name_default_and_unbound():
    assert GlobalNorm().axis_name is None  # the parity tests pin the unmapped values
    norm = GlobalNorm(length_dim=1, axis_name=AXIS)
    with pytest.raises(NameError, match="unbound axis name"):
        norm(jnp.ones((2, 3)))
    norm.freeze()  # no update, no collective
    assert norm(jnp.ones((2, 3))).shape == (2, 3)


# --- through the training core ------------------------------------------------------------

TX = optax.sgd(0.05)
MODES = {
    "pmap": training.PmapDataParallel,
    "jit": training.ShardedDataParallel,
    "shard_map": training.ShardMapDataParallel,
}


def _model():
    rngs = nnx.Rngs(0)
    return NormalizingAutoencoder(nnx.Linear(F, 2, rngs=rngs), nnx.Linear(2, F, rngs=rngs))


def _loss_fn(model, batch, *, key, train):
    x, length = batch["x"], batch["length"]
    out = model.train_sample(x, length, train=train)
    return AutoencoderLoss()(out, x, length, reduction="batchmean"), {}


def _train(trainer):
    x, lengths = _data()
    state = trainer.put_state(training.TrainState.create(_model(), TX, key=0))
    for i in range(CALLS):
        state, _ = trainer(state, trainer.put_batch({"x": x[i], "length": lengths[i]}))
    return jax.device_get(state)


@functools.cache
def _single_device_state():
    return _train(training.SingleDevice(_loss_fn, TX))


@pytest.mark.parametrize("mode", list(MODES))
def test_normalizing_autoencoder_trains_alike_in_every_mode(mode):
    """Gradients flow through the global statistics (psum) as through one device's."""
    ref, state = _single_device_state(), _train(MODES[mode](_loss_fn, TX))
    assert set(state.model_state["norm"]) == set(STATS) and "norm" not in state.params
    for name in STATS:
        got, want = state.model_state["norm"][name][...], ref.model_state["norm"][name][...]
        if name in ("weight", "step_count"):
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            assert_close(got, want, "global_norm_parallel", err_msg=f"{mode} {name}")
    flat, ref_flat = jax.tree.leaves(state.params), jax.tree.leaves(ref.params)
    for got, want in zip(flat, ref_flat, strict=True):
        assert_close(got, want, "global_norm_parallel", err_msg=mode)
    start = jax.tree.leaves(nnx.state(_model(), nnx.Param))
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(ref_flat, start, strict=True)) > 1e-3
