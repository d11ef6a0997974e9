"""Data parallelism on the 8 CPU devices of the test session: pmap, sharded jit, shard_map.

Every mode must give the parameters, BatchNorm running statistics and optimizer state of one
device trained on the same global batches (SGD, so no Adam sign amplification of round-off).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from jaxlatent import nn as jnn
from jaxlatent import training
from tests.tolerances import TOLERANCES, assert_close
from tests.training_job import conv_bn_autoencoder, mse_loss_fn

TX = optax.sgd(0.1)
MODES = {
    "pmap": training.PmapDataParallel,
    "jit": training.ShardedDataParallel,
    "shard_map": training.ShardMapDataParallel,
}


def _batches(n_steps=3, batch=16):
    rng = np.random.default_rng(0)
    return [{"x": rng.normal(size=(batch, 10, 3)).astype(np.float32)} for _ in range(n_steps)]


def _train(trainer, model, batches):
    state = trainer.put_state(training.TrainState.create(model, TX, key=0))
    for b in batches:
        state, metrics = trainer(state, trainer.put_batch(b))
    return state, metrics


def _host_arrays(state):
    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return jax.tree_util.tree_flatten_with_path(jax.tree.map(host, state.arrays()))[0]


@functools.cache
def _single_device_run():
    return _train(training.SingleDevice(mse_loss_fn, TX), conv_bn_autoencoder(), _batches())


def _max_diff(a, b):
    return max(
        float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
        for (_, x), (_, y) in zip(_host_arrays(a), _host_arrays(b), strict=True)
    )


@pytest.mark.parametrize("mode", list(MODES))
def test_data_parallel_equals_single_device(mode):
    ref, ref_metrics = _single_device_run()
    trainer = MODES[mode](mse_loss_fn, TX)
    assert trainer.num_devices == 8
    state, metrics = _train(trainer, conv_bn_autoencoder(), _batches())
    assert len(state.params["conv"]["kernel"].sharding.device_set) == 8
    assert int(state.step) == 3
    for (path, x), (_, y) in zip(_host_arrays(state), _host_arrays(ref), strict=True):
        if np.issubdtype(x.dtype, np.floating):
            assert_close(
                x, y, "train_data_parallel", err_msg=f"{mode} {jax.tree_util.keystr(path)}"
            )
        else:  # step, num_batches_tracked, PRNG key data
            np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))
    for k in ("loss", "grad_norm"):
        assert_close(metrics[k], ref_metrics[k], "train_data_parallel", err_msg=k)
    # the parameters moved far more than the tolerance: the comparison can fail
    init = training.TrainState.create(conv_bn_autoencoder(), TX)
    assert _max_diff(ref, init) > 100 * TOLERANCES["train_data_parallel"].atol


def test_shard_map_with_pmap_style_grad_reduction_would_differ():
    """Negative control: inside shard_map the gradients of replicated parameters are already
    summed over devices, so the pmap habit (local loss, then pmean the gradients) gives 8x
    too large gradients."""
    ref, _ = _single_device_run()
    trainer = training.ShardMapDataParallel(mse_loss_fn, TX)
    pmap_style = training.make_train_step(mse_loss_fn, TX, axis_name="data", reduce="grads")
    step = jax.jit(
        jax.shard_map(
            pmap_style, mesh=trainer.mesh, in_specs=(P(), P("data")), out_specs=(P(), P())
        )
    )
    state = trainer.put_state(training.TrainState.create(conv_bn_autoencoder(), TX, key=0))
    for b in _batches():
        state, _ = step(state, trainer.put_batch(b))
    assert _max_diff(state, ref) > 1e-3


def test_pmap_without_synced_batch_statistics_would_differ():
    """Negative control: per-device BatchNorm statistics are not global-batch statistics."""
    ref, _ = _single_device_run()
    trainer = training.PmapDataParallel(mse_loss_fn, TX, sync_batch_stats=False)
    state, _ = _train(trainer, conv_bn_autoencoder(), _batches())
    var = np.asarray(state.model_state["bn"]["var"][...])
    assert np.max(np.abs(var - np.asarray(ref.model_state["bn"]["var"][...]))) > 1e-3


def _denoising_loss(model, batch, *, key, train):
    x = batch["x"]
    noise = jax.random.normal(key, (x.size,)).reshape(x.shape)  # = a draw of x.shape
    err = (model(x + 0.3 * noise, train=train) - x) ** 2
    return err.mean(), {}


def test_sharded_jit_reproduces_single_device_noise():
    """With jax_threefry_partitionable, sharded jit draws the single-device numbers."""
    out = []
    for trainer in (
        training.SingleDevice(_denoising_loss, TX),
        training.ShardedDataParallel(_denoising_loss, TX),
    ):
        out.append(_train(trainer, conv_bn_autoencoder(), _batches(2)))
    assert_close(out[1][1]["loss"], out[0][1]["loss"], "train_data_parallel")
    for (path, x), (_, y) in zip(_host_arrays(out[1][0]), _host_arrays(out[0][0]), strict=True):
        assert_close(x, y, "train_data_parallel", err_msg=jax.tree_util.keystr(path))


def test_batch_norm_axis_name_gives_global_batch_statistics(rng):
    x = rng.normal(size=(16, 5, 4)).astype(np.float32)
    ref = jnn.BatchNorm(4)
    y_ref = ref(x)
    trainer = training.ShardMapDataParallel(mse_loss_fn, TX)

    def local(x):
        bn = jnn.BatchNorm(4, axis_name="data")
        y = bn(x)
        return y, bn.mean[...], bn.var[...]

    y, mean, var = jax.jit(
        jax.shard_map(local, mesh=trainer.mesh, in_specs=P("data"), out_specs=(P("data"), P(), P()))
    )(x)
    assert_close(y, y_ref, "train_data_parallel")
    assert_close(mean, ref.mean[...], "train_data_parallel")
    assert_close(var, ref.var[...], "train_data_parallel")  # unbiased with the global count


@pytest.mark.parametrize("mode", ["pmap", "jit", "shard_map"])
def test_batch_not_divisible_by_devices(mode):
    trainer = MODES[mode](mse_loss_fn, TX)
    with pytest.raises(ValueError, match="batch size 12 is not divisible by the 8 devices"):
        trainer.check_batch_size(12)
    with pytest.raises(ValueError, match="batch size 12 is not divisible by the 8 devices"):
        trainer.put_batch({"x": np.zeros((12, 10, 3), np.float32)})


def test_bad_batches_and_meshes():
    trainer = training.SingleDevice(mse_loss_fn, TX)
    with pytest.raises(ValueError, match="leading batch axis"):
        trainer.put_batch({"x": np.zeros((4, 2)), "y": np.zeros((5, 2))})
    with pytest.raises(ValueError, match="batch size must be positive"):
        trainer.check_batch_size(0)
    mesh = jax.make_mesh((8,), ("model",), axis_types=(jax.sharding.AxisType.Auto,))
    with pytest.raises(ValueError, match="mesh must be 1-D with axis 'data'"):
        training.ShardedDataParallel(mse_loss_fn, TX, mesh=mesh)


def test_evaluate_agrees_across_modes():
    ref, _ = _single_device_run()
    batch = _batches(1)[0]
    single = training.SingleDevice(mse_loss_fn, TX)
    expected = single.evaluate(ref, single.put_batch(batch))
    for cls in MODES.values():
        trainer = cls(mse_loss_fn, TX)
        got = trainer.evaluate(trainer.put_state(ref), trainer.put_batch(batch))
        assert_close(got["loss"], expected["loss"], "train_data_parallel")
