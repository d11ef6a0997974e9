"""Checkpoints, the resumable data iterator, metrics files and output-folder rules."""

from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from jaxlatent import training
from tests.training_job import conv_bn_autoencoder, mse_loss_fn

TX = optax.adam(1e-2)


def _trained_state(trainer, steps=2):
    """A state with non-trivial params, Adam moments, BatchNorm statistics and key."""
    state = trainer.put_state(training.TrainState.create(conv_bn_autoencoder(), TX, key=5))
    rng = np.random.default_rng(1)
    for _ in range(steps):
        batch = {"x": rng.normal(size=(8, 10, 3)).astype(np.float32)}
        state, _ = trainer(state, trainer.put_batch(batch))
    return state


def _assert_states_equal(a, b):
    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
            x = jax.random.key_data(x)
        return np.asarray(x)

    fa, ta = jax.tree_util.tree_flatten(jax.tree.map(host, a.arrays()))
    fb, tb = jax.tree_util.tree_flatten(jax.tree.map(host, b.arrays()))
    assert ta == tb
    for x, y in zip(fa, fb, strict=True):
        np.testing.assert_array_equal(x, y)


def _template(trainer):
    return trainer.put_state(training.TrainState.create(conv_bn_autoencoder(), TX, key=0))


def test_round_trip_and_keep_last_k(tmp_path):
    trainer = training.SingleDevice(mse_loss_fn, TX)
    state = _trained_state(trainer)
    with training.Checkpointer(tmp_path, save_every=2, keep=2) as ckpt:
        assert [ckpt.should_save(s) for s in range(5)] == [False, False, True, False, True]
        assert not ckpt.save(state.replace(step=state.step + 1))  # step 3: not a save step
        for step in (2, 4, 6):
            assert ckpt.save(state.replace(step=state.step * 0 + step), data_state={"p": step})
        assert not ckpt.save(state.replace(step=state.step * 0 + 6), force=True)  # exists
        ckpt.wait()
        assert ckpt.all_steps() == [4, 6] and ckpt.latest_step() == 6
        restored, meta = ckpt.restore(_template(trainer))
        assert meta["data"] == {"p": 6} and meta["step"] == 6
        _assert_states_equal(restored, state.replace(step=state.step * 0 + 6))
        assert ckpt.restore(_template(trainer), step=4)[1]["data"] == {"p": 4}


def _split_over_devices(state, mesh):
    """The template with every array whose last axis divides by 8 split over the devices."""

    def place(x):
        spec = P(*([None] * (x.ndim - 1)), "data") if x.ndim and x.shape[-1] % 8 == 0 else P()
        return jax.device_put(x, NamedSharding(mesh, spec))

    return state.replace(
        params=jax.tree.map(place, state.params), opt_state=jax.tree.map(place, state.opt_state)
    )


def test_restore_across_device_layouts(tmp_path):
    """Save on 8 devices (replicated, then split), restore on 1 device and back on 8."""
    eight = training.ShardedDataParallel(mse_loss_fn, TX)
    one = training.SingleDevice(mse_loss_fn, TX)
    state8 = _trained_state(eight)
    assert len(state8.params["conv"]["kernel"].sharding.device_set) == 8
    with training.Checkpointer(tmp_path / "a") as ckpt:
        ckpt.save(state8, force=True)
        state1, _ = ckpt.restore(_template(one))
        split, _ = ckpt.restore(_split_over_devices(_template(eight), eight.mesh))
    for leaf in jax.tree.leaves(state1.arrays()):
        assert leaf.sharding == SingleDeviceSharding(one.device)
    _assert_states_equal(state1, state8)
    kernel = split.params["conv"]["kernel"][...]  # [3, 3, 8]: one output channel per device
    assert kernel.sharding.spec == P(None, None, "data")
    assert {s.data.shape for s in kernel.addressable_shards} == {(3, 3, 1)}
    _assert_states_equal(split, state8)
    with training.Checkpointer(tmp_path / "b") as ckpt:
        ckpt.save(split, force=True)  # written shard by shard
        back1, _ = ckpt.restore(_template(one))
        back8, _ = ckpt.restore(_template(eight))
    _assert_states_equal(back1, state8)
    for leaf in jax.tree.leaves(back8.arrays()):
        assert isinstance(leaf.sharding, NamedSharding) and len(leaf.sharding.device_set) == 8
    _assert_states_equal(back8, state8)
    # training continues from the restored layouts in step
    batch = {"x": np.full((8, 10, 3), 0.5, np.float32)}
    a, _ = eight(back8, eight.put_batch(batch))
    b, _ = one(state1, one.put_batch(batch))
    assert int(a.step) == int(b.step) == 3


def test_unfinalized_checkpoint_is_never_picked_up(tmp_path):
    trainer = training.SingleDevice(mse_loss_fn, TX)
    state = _trained_state(trainer)
    with training.Checkpointer(tmp_path) as ckpt:
        ckpt.save(state, force=True)
        ckpt.wait()
    # a later save interrupted before orbax's atomic rename: a complete-looking copy in the
    # temporary folder of step 9 (what a process killed mid-save leaves behind)
    shutil.copytree(tmp_path / "2", tmp_path / "9.orbax-checkpoint-tmp-1234567")
    with training.Checkpointer(tmp_path) as ckpt:
        assert ckpt.latest_step() == 2 and ckpt.all_steps() == [2]
        _, meta = ckpt.restore(_template(trainer))
        assert meta["step"] == 2
        with pytest.raises(FileNotFoundError, match="no finalized checkpoint of step 9"):
            ckpt.restore(_template(trainer), step=9)


def test_checkpoint_of_another_model_or_optimizer(tmp_path):
    trainer = training.SingleDevice(mse_loss_fn, TX)
    with training.Checkpointer(tmp_path) as ckpt:
        with pytest.raises(FileNotFoundError, match="no finalized checkpoint"):
            ckpt.restore(_template(trainer))
        ckpt.save(_template(trainer), force=True)
        ckpt.wait()
        bigger = training.TrainState.create(conv_bn_autoencoder(hidden=16), TX)
        with pytest.raises(
            ValueError,
            match=r"(?s)another model.*\['params'\]\['conv'\]\['kernel'\]: "
            r"checkpoint \[\[3, 3, 8\]",
        ):
            ckpt.restore(bigger)
        sgd = training.TrainState.create(conv_bn_autoencoder(), optax.sgd(0.1))
        with pytest.raises(ValueError, match="in the checkpoint but not in the state"):
            ckpt.restore(sgd)


def test_checkpointer_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="save_every"):
        training.Checkpointer(tmp_path, save_every=0)
    with pytest.raises(ValueError, match="keep"):
        training.Checkpointer(tmp_path, keep=0)


def test_data_iterator_is_deterministic_and_resumable():
    data = {"x": np.arange(20), "y": np.arange(20) * 10}
    a = training.ArrayDataIterator(data, 6, seed=3)
    batches = [next(a) for _ in range(7)]  # 3 batches per epoch: crosses two epochs
    for b in batches:
        np.testing.assert_array_equal(b["y"], b["x"] * 10)
    epoch0 = np.concatenate([b["x"] for b in batches[:3]])
    assert len(set(epoch0.tolist())) == 18  # no repeats within an epoch
    assert not np.array_equal(batches[0]["x"], batches[3]["x"])  # reshuffled
    b = training.ArrayDataIterator(data, 6, seed=3)
    b.set_state(json.loads(json.dumps(_state_at(a, 4))))
    for want in batches[4:]:
        np.testing.assert_array_equal(next(b)["x"], want["x"])
    # per-process slices stack to the global batch
    parts = [
        training.ArrayDataIterator(data, 6, seed=3, process_index=i, process_count=2)
        for i in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate([next(p)["x"] for p in parts]), batches[0]["x"])


def _state_at(it, position):
    return {**it.get_state(), "position": position}


def test_data_iterator_bad_input():
    with pytest.raises(ValueError, match="leading example axis"):
        training.ArrayDataIterator({"x": np.zeros(4), "y": np.zeros(5)}, 2)
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 4\]"):
        training.ArrayDataIterator({"x": np.zeros(4)}, 5)
    with pytest.raises(ValueError, match="not divisible by the 2 processes"):
        training.ArrayDataIterator({"x": np.zeros(4)}, 3, process_index=0, process_count=2)
    it = training.ArrayDataIterator({"x": np.zeros(8)}, 2, seed=0)
    with pytest.raises(ValueError, match="seed=1 but this iterator has seed=0"):
        it.set_state({**it.get_state(), "seed": 1})


def test_jsonl_metrics_truncate_on_resume(tmp_path):
    path = str(tmp_path / "m.jsonl")
    log = training.JsonlMetrics(path)
    for step in range(1, 6):
        log.write({"step": step, "loss": 1.0 / step})
    log.close()
    with open(path, "a") as f:
        f.write('{"step": 6, "lo')  # torn last line of a killed process
    with pytest.raises(FileExistsError):
        training.JsonlMetrics(path)
    log = training.JsonlMetrics(path, resume_step=3)
    log.write({"step": 4, "loss": 0.0})
    log.close()
    assert [r["step"] for r in training.read_jsonl(path)] == [1, 2, 3, 4]


def test_out_dir_is_never_overwritten_silently(tmp_path):
    out = tmp_path / "run"
    training.prepare_out_dir(str(out), resume=False, overwrite=False)  # fresh: fine
    (out / "metrics.jsonl").write_text("{}\n")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="resume=True to continue it or overwrite=True"):
        training.prepare_out_dir(str(out), resume=False, overwrite=False)
    with pytest.raises(ValueError, match="at most one of resume=True and overwrite=True"):
        training.prepare_out_dir(str(out), resume=True, overwrite=True)
    training.prepare_out_dir(str(out), resume=True, overwrite=False)
    assert (out / "metrics.jsonl").exists()
    training.prepare_out_dir(str(out), resume=False, overwrite=True)
    assert sorted(os.listdir(out)) == ["notes.txt"]  # only the run's own artefacts go
    with pytest.raises(FileExistsError, match="not a folder"):
        training.prepare_out_dir(str(out / "notes.txt"), resume=False, overwrite=False)


def test_initialize_distributed_bad_arguments():
    with pytest.raises(ValueError, match="give all of coordinator_address"):
        training.initialize_distributed("127.0.0.1:1234", 2)
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 2\)"):
        training.initialize_distributed("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="num_processes must be positive"):
        training.initialize_distributed("127.0.0.1:1234", 0, 0)
    with pytest.raises(ValueError, match="'host:port'"):
        training.initialize_distributed("localhost", 2, 0)
