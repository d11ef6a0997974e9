"""`fit`: the training loop with checkpoints, resumption, signals, progress and logs.

Output folder layout::

    out_dir/checkpoints/<step>/   orbax checkpoints (state + data position), last K kept
    out_dir/metrics.jsonl         one JSON object per logged step
    out_dir/tensorboard/          TensorBoard event files
    out_dir/summary.json          written at the end (also after a signal)

An existing run in `out_dir` is never overwritten silently: pass ``resume=True`` to
continue it from its latest finalized checkpoint, or ``overwrite=True`` to delete those
artefacts (and nothing else) first. SIGTERM and SIGINT stop the loop after the current
step, save a checkpoint of that step and return (a second SIGINT interrupts at once).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxlatent.atomic import atomic_write
from jaxlatent.training.checkpoint import Checkpointer
from jaxlatent.training.distributed import any_process, barrier, is_primary
from jaxlatent.training.logs import JsonlMetrics, TensorBoardLog
from jaxlatent.training.parallel import DataParallel
from jaxlatent.training.state import TrainState

ARTIFACTS = ("checkpoints", "metrics.jsonl", "tensorboard", "summary.json")


class FitResult(NamedTuple):
    """What `fit` returns."""

    state: TrainState
    summary: dict[str, Any]


def prepare_out_dir(out_dir: str, *, resume: bool, overwrite: bool) -> None:
    """Create `out_dir`, refusing to reuse a previous run unless `resume` or `overwrite`.

    Raises:
      ValueError: if both `resume` and `overwrite` are set.
      FileExistsError: if `out_dir` holds a previous run and neither flag is set, or it is
        a file.
    """
    if resume and overwrite:
        raise ValueError("pass at most one of resume=True and overwrite=True")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"out_dir {out_dir!r} exists and is not a folder")
    found = [a for a in ARTIFACTS if os.path.exists(os.path.join(out_dir, a))]
    if found and not (resume or overwrite):
        raise FileExistsError(
            f"out_dir {out_dir!r} already holds a training run ({', '.join(found)}); pass "
            "resume=True to continue it or overwrite=True to replace it"
        )
    barrier("jaxlatent.training: out_dir checked")  # before any process writes into it
    if is_primary():
        if overwrite:
            for name in found:
                path = os.path.join(out_dir, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        os.makedirs(out_dir, exist_ok=True)
    barrier("jaxlatent.training: out_dir ready")


class _StopFlag:
    signum: int | None = None


@contextmanager
def _stop_on_signals(enabled: bool) -> Iterator[_StopFlag]:
    """Turn SIGTERM/SIGINT into a stop request while training (main thread only)."""
    flag = _StopFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        flag.signum = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _host(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def fit(
    trainer: DataParallel,
    state: TrainState,
    data: Any,
    *,
    steps: int,
    out_dir: str,
    checkpoint_every: int | None = 100,
    keep_checkpoints: int | None = 3,
    log_every: int = 10,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    tensorboard: bool = True,
    handle_signals: bool = True,
    async_checkpoints: bool = True,
    on_step: Callable[[int, TrainState, dict | None], None] | None = None,
) -> FitResult:
    """Train `state` with `trainer` on `data` until step `steps`, resumably.

    Args:
      trainer: a data-parallel step (`SingleDevice`, `PmapDataParallel`,
        `ShardedDataParallel`, `ShardMapDataParallel`).
      state: the initial state (`TrainState.create`); also the restore template.
      data: an iterator of process-local batches with ``batch_size`` (global),
        ``get_state()`` and ``set_state(s)``, e.g. `ArrayDataIterator`.
      steps: the total number of steps of the run (a resumed run continues up to it).
      out_dir: the output folder (layout in the module docstring).
      checkpoint_every: save every this many steps (None: only at the end / on a signal).
      keep_checkpoints: how many recent checkpoints to keep (None: all).
      log_every: write metrics every this many steps (and at the last step).
      resume: continue the run in `out_dir` from its latest checkpoint (a fresh start when
        it has none).
      overwrite: delete a previous run's artefacts in `out_dir` first.
      progress: show a tqdm progress bar (loss, examples/s) and print the summary.
      tensorboard: write TensorBoard events.
      handle_signals: stop cleanly with a checkpoint on SIGTERM/SIGINT.
      async_checkpoints: write checkpoints in the background.
      on_step: called as ``on_step(step, state, metrics)`` after every step (`metrics` is
        None on steps that are not logged).

    Returns:
      `FitResult` with the final state and the summary (also in ``summary.json``);
      ``summary["stopped_by"]`` names the signal that stopped the run, if any.

    Raises:
      ValueError: bad `steps`/`log_every`, a batch size the devices cannot split, both
        `resume` and `overwrite`, or a checkpoint of another model.
      FileExistsError: `out_dir` holds a run and neither `resume` nor `overwrite` is set.
    """
    if steps < 1 or log_every < 1:
        raise ValueError(f"steps and log_every must be positive, got {steps}, {log_every}")
    trainer.check_batch_size(data.batch_size)
    prepare_out_dir(out_dir, resume=resume, overwrite=overwrite)
    state = trainer.put_state(state)
    primary = is_primary()
    ckpt = Checkpointer(
        os.path.join(out_dir, "checkpoints"),
        save_every=checkpoint_every,
        keep=keep_checkpoints,
        async_save=async_checkpoints,
    )
    outputs = _Outputs(ckpt)
    try:
        start = 0
        if resume and ckpt.latest_step() is not None:
            state, meta = ckpt.restore(state)
            if meta.get("data") is not None:
                data.set_state(meta["data"])
            start = meta["step"]
        if primary:
            resume_step = start if resume else None
            outputs.metrics = JsonlMetrics(
                os.path.join(out_dir, "metrics.jsonl"), resume_step=resume_step
            )
            if tensorboard:
                outputs.tb = TensorBoardLog(
                    os.path.join(out_dir, "tensorboard"), resume_step=resume_step
                )
            if progress:
                from tqdm.auto import tqdm

                outputs.bar = tqdm(total=steps, initial=start, desc="train", dynamic_ncols=True)
        with _stop_on_signals(handle_signals) as flag:
            state, summary = _run(
                trainer,
                state,
                data,
                outputs,
                flag,
                start=start,
                steps=steps,
                log_every=log_every,
                on_step=on_step,
            )
        ckpt.wait()
        summary["checkpoints"] = ckpt.all_steps()
        if primary:
            atomic_write(
                os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=2) + "\n"
            )
            if progress:
                print(format_summary(summary), file=sys.stderr)
        return FitResult(state, summary)
    finally:
        outputs.close()


@dataclasses.dataclass
class _Outputs:
    """Where a run writes: checkpoints (all processes), logs and progress (primary only)."""

    ckpt: Checkpointer
    metrics: JsonlMetrics | None = None
    tb: TensorBoardLog | None = None
    bar: Any = None

    def log(self, record: dict[str, float]) -> None:
        if self.metrics is not None:
            self.metrics.write({**record, "time": time.time()})
        if self.tb is not None:
            self.tb.scalars(record["step"], {k: v for k, v in record.items() if k != "step"})
        if self.bar is not None:
            rate = record["examples_per_sec"]
            self.bar.set_postfix(loss=f"{record['loss']:.4g}", ex_s=f"{rate:.1f}")

    def close(self) -> None:
        for sink in (self.bar, self.metrics, self.tb):
            if sink is not None:
                sink.close()
        self.ckpt.close()


def _run(
    trainer,
    state,
    data,
    outputs: _Outputs,
    flag: _StopFlag,
    *,
    start: int,
    steps: int,
    log_every: int,
    on_step,
) -> tuple[TrainState, dict[str, Any]]:
    """The step loop of `fit`; returns the final state and the summary (without checkpoints)."""
    batch_size = data.batch_size
    t_start = time.perf_counter()
    t_log, step_log = t_start, start
    t_first = None  # end of this session's first step: throughput excludes compilation
    metrics: dict[str, float] = {}
    device_metrics = None
    stopped_by = None
    step = start
    while step < steps:
        state, device_metrics = trainer(state, trainer.put_batch(next(data)))
        step += 1
        logged = None
        if step % log_every == 0 or step == steps:
            metrics = _host(device_metrics)
            now = time.perf_counter()
            rate = (step - step_log) * batch_size / max(now - t_log, 1e-9)
            t_log, step_log = now, step
            logged = {"step": step, **metrics, "examples_per_sec": rate}
            outputs.log(logged)
        if outputs.bar is not None:
            outputs.bar.update(1)
        if t_first is None:
            jax.block_until_ready(state.step)
            t_first = time.perf_counter()
        outputs.ckpt.save(state, data_state=data.get_state(), step=step)
        if on_step is not None:
            on_step(step, state, logged)
        if any_process(flag.signum is not None):
            stopped_by = signal.Signals(flag.signum or signal.SIGTERM).name
            break
    jax.block_until_ready(state.step)
    t_end = time.perf_counter()
    outputs.ckpt.save(state, data_state=data.get_state(), force=True, step=step)
    if not metrics and device_metrics is not None:
        metrics = _host(device_metrics)
    timed = step - start - 1
    steady = timed * batch_size / (t_end - t_first) if timed > 0 and t_end > t_first else None
    return state, {
        "start_step": start,
        "final_step": step,
        "steps_run": step - start,
        "examples_seen": step * batch_size,
        "batch_size": batch_size,
        "devices": trainer.num_devices,
        "processes": jax.process_count(),
        "train_seconds": round(t_end - t_start, 3),
        "examples_per_sec": steady,
        "final_metrics": metrics,
        "stopped_by": stopped_by,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A few human-readable lines from a `fit` summary."""
    m = summary["final_metrics"]
    rate = summary["examples_per_sec"]
    lines = [
        f"trained steps {summary['start_step']}→{summary['final_step']} "
        f"on {summary['devices']} device(s) in {summary['train_seconds']:.1f} s"
        + (f" ({rate:.1f} examples/s after compilation)" if rate else ""),
        "final " + ", ".join(f"{k}={v:.4g}" for k, v in m.items()) if m else "no steps run",
        f"checkpoints at steps {summary['checkpoints']}",
    ]
    if summary["stopped_by"]:
        lines.append(f"stopped by {summary['stopped_by']} (resume with resume=True)")
    return "\n".join(lines)
