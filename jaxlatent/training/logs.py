"""Training logs: metrics as JSON lines and TensorBoard event files.

`JsonlMetrics` appends one JSON object per logged step and flushes it, so a killed run
loses at most the line being written. Resuming from a checkpoint at step ``s`` first
rewrites the file (atomically) without the records of steps after ``s`` and any torn last
line, so the file reads like the log of an uninterrupted run.

`TensorBoardLog` writes scalars with ``tensorboardX.SummaryWriter`` (numpy and protobuf only;
no TensorFlow or torch needed). On resume it opens the writer with ``purge_step=s + 1``, which
first writes a ``SessionLog.START`` event at that step, TensorBoard's standard marker that makes
it discard the stale events of steps after ``s`` from the interrupted run.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from jaxlatent.atomic import atomic_write


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The complete records of a JSON-lines file (a torn last line is skipped)."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise
    return records


class JsonlMetrics:
    """Append-only JSON-lines metrics file, flushed after every record.

    Args:
      path: the file.
      resume_step: when resuming, keep only records with ``step <= resume_step``; when None
        the file must not exist yet (it is created).

    Raises:
      FileExistsError: if `resume_step` is None and the file exists.
    """

    def __init__(self, path: str, *, resume_step: int | None = None):
        self.path = path
        if resume_step is None:
            self._file = open(path, "x")  # closed by `close`
            return
        if os.path.exists(path):
            kept = [r for r in read_jsonl(path) if r.get("step", 0) <= resume_step]
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = open(path, "a")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardLog:
    """Scalars to TensorBoard event files in `logdir` (``tensorboardX.SummaryWriter``).

    Every call to `scalars` is flushed (the writer's thread writes it to disk within a
    second), so a killed run loses at most its last records. Each writer gets its own event
    file, named so that TensorBoard reads the files in the order they were written.

    Args:
      logdir: the event folder.
      resume_step: when resuming, the restored step: events of later steps are purged.

    Raises:
      ImportError: if the `tensorboardX` package is missing (``pip install ".[train]"``).
    """

    def __init__(self, logdir: str, *, resume_step: int | None = None):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as e:  # pragma: no cover - tensorboardX is a test dependency
            raise ImportError(
                "TensorBoard logging needs the `tensorboardX` package: "
                "pip install '.[train]' from a clone (or pass tensorboard=False)"
            ) from e
        # tensorboardX names files events.out.tfevents.<seconds>.<host><suffix>: two writers
        # in the same second would share (and truncate) one file without a unique suffix, and
        # TensorBoard reads files in name order, so the suffix starts with the time in ns.
        self._writer = SummaryWriter(
            logdir,
            purge_step=None if resume_step is None else resume_step + 1,
            flush_secs=1,
            filename_suffix=f".{time.time_ns():020d}.{os.getpid()}",
        )

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, global_step=step)
        self._writer.flush()

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
