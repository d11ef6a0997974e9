"""Smoke test of benchmarks/bench_train.py: its step builders, sanity check and scaling path.

Tiny models, one compile each, so the benchmark cannot rot; no timing is asserted.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from tests import reference as ref


@pytest.fixture(scope="module")
def bench():
    ref.torch()
    ref.sb_autoencoders()
    ref.dac_quantize()
    from benchmarks import bench_train, train_pairs
    from benchmarks import train_models as tm

    return bench_train, tm, train_pairs


@pytest.mark.parametrize("name", ["vae", "vqvae", "dac"])
def test_step_builders_agree_on_tiny_models(bench, name):
    """Both sides train from the same weights on the same batch: same loss, twice."""
    bench_train, tm, train_pairs = bench
    size = tm.TINY_DAC if name == "dac" else tm.TINY_CONV
    pair = train_pairs.BUILDERS[name](size)
    assert pair.name == name and pair.examples == size.batch and pair.params > 0
    check = bench_train.sanity_check(pair)  # two steps per side; raises on a loss mismatch
    assert np.isfinite(check["loss_jax"]) and check["loss_jax"] > 0
    assert check["step2_rel"] < 1e-4  # one identical Adam update on both sides
    state, metrics = jax.block_until_ready(pair.jax_step())
    assert int(state.step) == 3 and set(metrics) >= {"loss", "grad_norm"}
    row, speedup = bench_train.pair_row(pair, check, {"jax_s": [1.0], "torch_s": [2.0]})
    assert speedup == 2.0 and row[0] == name and row[7] == "yes"


def test_sanity_check_rejects_different_losses(bench):
    bench_train, tm, _ = bench
    pair = tm.TrainPair("fake", 1, "x", 1, lambda: (None, {"loss": np.float32(1.0)}), lambda: 1.001)
    with pytest.raises(AssertionError, match="different losses"):
        bench_train.sanity_check(pair)


def test_scaling_child_runs_sharded_step(bench):
    """The scaling path: ShardedDataParallel over 2 of the 8 test devices."""
    bench_train, tm, _ = bench
    size = dataclasses.replace(tm.TINY_CONV, batch=2)
    r = bench_train.scaling_child("vae", 2, per_device=2, iters=1, size=size)
    assert r["devices"] == 2 and r["global_batch"] == 4 and r["median_s"] > 0
    env = bench_train._child_env(4, virtual=True)
    assert env["XLA_FLAGS"].count("--xla_force_host_platform_device_count=4") == 1
    assert "device_count=8" not in env["XLA_FLAGS"]
