"""`fit`: outputs, resumption, SIGKILL/SIGTERM in a subprocess, and two processes on CPU.

The subprocess tests run `python -m tests.training_job` (a small VAE with BatchNorm) and
share a persistent compilation cache, so only the first job of the session compiles.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import optax
import pytest

from jaxlatent import training
from tests.tolerances import assert_close
from tests.training_job import conv_bn_autoencoder, flat_params, mse_loss_fn, run_in_process

ROOT = pathlib.Path(__file__).resolve().parents[2]
TX = optax.sgd(0.05)


def _data(batch_size=8):
    x = np.random.default_rng(0).normal(size=(24, 10, 3)).astype(np.float32)
    return training.ArrayDataIterator({"x": x}, batch_size, seed=1)


@functools.cache
def _single_device():
    return training.SingleDevice(mse_loss_fn, TX)  # one object: compiled once


def _fit(out, steps, **kw):
    state = training.TrainState.create(conv_bn_autoencoder(), TX, key=0)
    kw.setdefault("checkpoint_every", 2)
    trainer = kw.pop("trainer", None) or _single_device()
    return training.fit(
        trainer, state, kw.pop("data", None) or _data(), steps=steps, out_dir=str(out), **kw
    )


def _tb_scalars(logdir, tag="loss"):
    """(step, value) of every event of `tag`, read back as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _tb_steps(logdir, tag="loss"):
    return [step for step, _ in _tb_scalars(logdir, tag)]


def test_fit_outputs_and_in_process_resume(tmp_path, capfd):
    out = tmp_path / "run"
    result = _fit(out, 5, log_every=2, keep_checkpoints=2, progress=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert summary["final_step"] == 5 and summary["stopped_by"] is None
    assert summary["checkpoints"] == [4, 5]  # every 2 steps, the final step, keep 2
    assert summary["examples_seen"] == 40 and summary["examples_per_sec"] > 0
    records = training.read_jsonl(str(out / "metrics.jsonl"))
    assert [r["step"] for r in records] == [2, 4, 5]
    assert {"loss", "grad_norm", "rmse", "examples_per_sec", "time"} <= set(records[0])
    assert _tb_scalars(out / "tensorboard") == [
        (r["step"], np.float32(r["loss"])) for r in records
    ]  # TensorBoard stores float32 scalars
    err = capfd.readouterr().err
    assert "loss=" in err and "ex_s=" in err and "trained steps 0→5" in err  # tqdm + summary

    with pytest.raises(FileExistsError, match="already holds a training run"):
        _fit(out, 7)
    resumed = _fit(out, 7, log_every=1, resume=True, progress=False)
    assert resumed.summary["start_step"] == 5 and resumed.summary["final_step"] == 7
    assert [r["step"] for r in training.read_jsonl(str(out / "metrics.jsonl"))] == [2, 4, 5, 6, 7]
    assert _tb_steps(out / "tensorboard") == [2, 4, 5, 6, 7]
    done = _fit(out, 7, resume=True, progress=False)  # nothing left to do
    assert done.summary["steps_run"] == 0
    np.testing.assert_array_equal(
        done.state.params["conv"]["kernel"][...], resumed.state.params["conv"]["kernel"][...]
    )
    _fit(out, 1, overwrite=True, progress=False, tensorboard=False)
    assert [r["step"] for r in training.read_jsonl(str(out / "metrics.jsonl"))] == [1]


def test_sigint_stops_after_the_step_with_a_checkpoint(tmp_path):
    before = signal.getsignal(signal.SIGINT)

    def interrupt(step, state, metrics):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would

    result = _fit(tmp_path, 50, checkpoint_every=None, on_step=interrupt, progress=False)
    assert result.summary["stopped_by"] == "SIGINT" and result.summary["final_step"] == 3
    assert result.summary["checkpoints"] == [3]
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_fit_bad_input_fails_before_writing(tmp_path):
    out = tmp_path / "run"
    pmap = training.PmapDataParallel(mse_loss_fn, TX)
    with pytest.raises(ValueError, match="batch size 12 is not divisible by the 8 devices"):
        _fit(out, 3, trainer=pmap, data=_data(12))
    with pytest.raises(ValueError, match="steps and log_every must be positive"):
        _fit(out, 0)
    assert not out.exists()


# --- subprocess tests ---------------------------------------------------------------------


@pytest.fixture
def jobs():
    """Started subprocesses; any still running when the test ends (a failure) is killed."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def job_env(tmp_path_factory):
    env = dict(os.environ)
    env.update(
        JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax_cache")),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    return env


def _start(jobs, env, log: pathlib.Path, *args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.training_job", *map(str, args)]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    jobs.append(proc)
    return proc


def _finish(proc: subprocess.Popen, log: pathlib.Path, timeout=240) -> None:
    rc = proc.wait(timeout=timeout)
    assert rc == 0, f"job exited with {rc}:\n{log.read_text()[-3000:]}"


def _wait_for(path: pathlib.Path, proc: subprocess.Popen, log: pathlib.Path, timeout=240):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"job exited ({proc.returncode}) before {path}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {path}")
        time.sleep(0.05)


def test_sigkill_mid_run_then_resume_equals_uninterrupted_run_bit_exactly(tmp_path, job_env, jobs):
    common = ("--steps", 10, "--checkpoint-every", 3)
    run = tmp_path / "run"
    killed = _start(jobs, job_env, tmp_path / "killed.log", "--out", run, *common, "--hang-at", 7)
    _wait_for(run / "hang.marker", killed, tmp_path / "killed.log")
    # the uninterrupted run starts now, so it finds the step compiled in the cache
    full = _start(
        jobs,
        job_env,
        tmp_path / "full.log",
        "--out",
        tmp_path / "full",
        *common,
        "--params-out",
        tmp_path / "full.npz",
    )
    _wait_for(run / "checkpoints" / "6", killed, tmp_path / "killed.log")  # async save done
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL
    assert training.Checkpointer(run / "checkpoints").all_steps() == [3, 6]
    assert [r["step"] for r in training.read_jsonl(str(run / "metrics.jsonl"))] == list(range(1, 8))

    resumed = _start(
        jobs,
        job_env,
        tmp_path / "resumed.log",
        "--out",
        run,
        *common,
        "--resume",
        "--params-out",
        tmp_path / "resumed.npz",
    )
    _finish(resumed, tmp_path / "resumed.log")
    _finish(full, tmp_path / "full.log")
    want, got = np.load(tmp_path / "full.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(want) == sorted(got) and len(want) == 12
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # the logs read like the uninterrupted run's: each step once, same losses
    full_log = training.read_jsonl(str(tmp_path / "full" / "metrics.jsonl"))
    run_log = training.read_jsonl(str(run / "metrics.jsonl"))
    assert [r["step"] for r in run_log] == list(range(1, 11))
    assert [r["loss"] for r in run_log] == [r["loss"] for r in full_log]
    assert _tb_steps(run / "tensorboard") == list(range(1, 11))  # stale events purged
    summary = json.loads((run / "summary.json").read_text())
    assert summary["start_step"] == 6 and summary["final_step"] == 10


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path, job_env, jobs):
    out = tmp_path / "run"
    log = tmp_path / "job.log"
    job = _start(
        jobs,
        job_env,
        log,
        "--out",
        out,
        "--steps",
        500,
        "--checkpoint-every",
        1000,
        "--slow-after",
        2,
    )
    _wait_for(out / "hang.marker", job, log)
    job.send_signal(signal.SIGTERM)
    _finish(job, log, timeout=60)
    summary = json.loads((out / "summary.json").read_text())
    step = summary["final_step"]
    assert summary["stopped_by"] == "SIGTERM" and 2 <= step < 500
    with training.Checkpointer(out / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [step]
        assert ckpt.metadata()["data"]["position"] == step


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path, job_env, jobs):
    """2 local processes x 4 CPU devices (loopback gloo) vs this process on one device."""
    env = {**job_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    port = _free_port()
    args = (
        "--out",
        tmp_path / "run",
        "--trainer",
        "jit",
        "--optimizer",
        "sgd",
        "--steps",
        4,
        "--checkpoint-every",
        2,
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        2,
        "--params-out",
        tmp_path / "p{process}.npz",
    )
    logs = [tmp_path / f"p{i}.log" for i in range(2)]
    procs = [_start(jobs, env, logs[i], *args, "--process-id", i) for i in range(2)]
    reference = flat_params(run_in_process("single", "sgd", steps=4))
    for proc, log in zip(procs, logs, strict=True):
        _finish(proc, log)
    p0, p1 = np.load(tmp_path / "p0.npz"), np.load(tmp_path / "p1.npz")
    for name, want in reference.items():
        np.testing.assert_array_equal(p0[name], p1[name], err_msg=name)
        assert_close(p0[name], want, "train_multiprocess", err_msg=name)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 8
    assert summary["checkpoints"] == [2, 4]
    assert [r["step"] for r in training.read_jsonl(str(tmp_path / "run" / "metrics.jsonl"))] == [
        1,
        2,
        3,
        4,
    ]
