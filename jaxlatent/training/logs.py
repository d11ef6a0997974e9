"""Training logs: metrics as JSON lines and TensorBoard event files.

`JsonlMetrics` appends one JSON object per logged step and flushes it, so a killed run
loses at most the line being written. Resuming from a checkpoint at step ``s`` first
rewrites the file (atomically) without the records of steps after ``s`` and any torn last
line, so the file reads like the log of an uninterrupted run.

`TensorBoardLog` writes scalars with TensorBoard's own framework-free writer
(``tensorboard.summary.Writer``, numpy only; no TensorFlow or torch needed). On resume it
first writes a ``SessionLog.START`` event at step ``s + 1``, TensorBoard's standard marker
that makes it discard the stale events of steps after ``s`` from the interrupted run.
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
    """Scalars to TensorBoard event files in `logdir` (``tensorboard.summary.Writer``).

    Args:
      logdir: the event folder.
      resume_step: when resuming, the restored step: events of later steps are purged.

    Raises:
      ImportError: if the `tensorboard` package is missing (``pip install jaxlatent[train]``).
    """

    def __init__(self, logdir: str, *, resume_step: int | None = None):
        try:
            from tensorboard.compat.proto import event_pb2
            from tensorboard.summary import DirectoryOutput, Writer
        except ImportError as e:  # pragma: no cover - tensorboard is a test dependency
            raise ImportError(
                "TensorBoard logging needs the `tensorboard` package: "
                "pip install 'jaxlatent[train]' (or pass tensorboard=False)"
            ) from e
        os.makedirs(logdir, exist_ok=True)
        output = DirectoryOutput(logdir)
        if resume_step is not None:
            # The START marker goes first into the new event file (DirectoryOutput's own
            # EventFileWriter), so TensorBoard purges the old steps before reading new ones.
            start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
            output._ev_writer.add_event(
                event_pb2.Event(step=resume_step + 1, wall_time=time.time(), session_log=start)
            )
        self._writer = Writer(output)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
