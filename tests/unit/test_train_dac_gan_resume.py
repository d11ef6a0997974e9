"""`jaxlatent train --model dac` with DAC's adversarial recipe: a run SIGKILLed after its
step-2 checkpoint resumes to the uninterrupted run's state bit-exactly.

Cost: the uninterrupted run compiles the batch-1 programs; the killed subprocess and the resumed
run load them from this module's persistent compilation cache."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from jaxlatent import cli, training
from tests.unit import dac_gan_runs as runs
from tests.unit.test_train_cli import compilation_cache as compilation_cache
from tests.unit.test_training_fit import _wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _start(log: pathlib.Path, *args) -> subprocess.Popen:
    import jax

    env = dict(os.environ)
    env["JAX_COMPILATION_CACHE_DIR"] = str(jax.config.jax_compilation_cache_dir)
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    cmd = [sys.executable, "-m", "tests.train_cli_job", *map(str, args)]
    with open(log, "w") as f:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_sigkill_then_resume_equals_the_uninterrupted_run_bit_exactly(tmp_path):
    single_run = runs.run(tmp_path / "uninterrupted", *runs.SMALL)  # checkpoints at 2 and 4
    out = tmp_path / "run"
    train = [*map(str, runs.COMMON), "--out", str(out), *map(str, runs.RUN), *map(str, runs.SMALL)]
    log = tmp_path / "killed.log"
    job = _start(log, "--hang-at", 3, "--", *train)
    try:
        _wait_for(out / "hang.marker", job, log, timeout=600)
        # the async save of step 2 is final
        _wait_for(out / "checkpoints" / "2", job, log, timeout=600)
        job.send_signal(signal.SIGKILL)
        assert job.wait(timeout=60) == -signal.SIGKILL
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert training.Checkpointer(out / "checkpoints").all_steps() == [2]
    assert cli.main(["train", *train, "--resume"]) == 0
    want, got = runs.leaves(runs.state(single_run, 4)), runs.leaves(runs.state(out, 4))
    assert [p for p, _ in got] == [p for p, _ in want]
    assert any("discriminator" in p and "opt_state" in p for p, _ in want)
    for (path, a), (_, b) in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=path)
    logged = training.read_jsonl(str(out / "metrics.jsonl"))
    reference = training.read_jsonl(str(single_run / "metrics.jsonl"))
    assert [r["loss"] for r in logged] == [r["loss"] for r in reference]
