"""Whole folders of audio -> ``.dac`` files, batched over devices and processes.

What ``jaxlatent encode`` runs. Inputs are files, folders (every audio file below them) and
``@LIST`` files of paths (:func:`jaxlatent.codec.files.find_inputs`); outputs mirror the
input tree under the output folder, one ``.dac`` per input, each written atomically.

* Windows of many files are coded together in fixed-shape batches
  (:class:`jaxlatent.codec.batch.BatchEncoder`) over this process's devices; codes equal
  :func:`jaxlatent.codec.compress`'s (the official algorithm) for every file; with
  ``exact``, :func:`jaxlatent.codec.compress_exact`'s (the whole-signal codes), batched the
  same way.
* With several processes (``jax.distributed``, see :func:`join_processes`) process ``i`` of
  ``n`` codes files ``i, i + n, i + 2n, ...`` of the sorted list, on its own devices.
* An output that exists is kept (``overwrite=True`` codes it again), so a killed run loses
  at most the files in flight and a rerun codes only the rest.
* An input that cannot be read or coded is reported and skipped (``fail_fast=True``: the
  first one raises); ``summary.json`` in the output folder lists the files coded, the audio
  hours, the skipped files with their reasons and the throughput.
* With several processes, they agree after every file they complete (a small all-gather of
  each process's state: working, done or stopped; a process that has finished its share
  keeps answering until all have): when one stops (``fail_fast``'s bad input, or any
  error), every process stops at its next file and raises, with the first process's error.
  Every such wait has a timeout (:data:`SYNC_TIMEOUT`): a process that gets no answer ends
  itself with a one-line error and exit status 2 instead of hanging.

Files are read and prepared (resampled, loudness measured) by a background thread while the
devices code earlier windows.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike, resolve_precision

__all__ = ["FolderSummary", "decode_folder", "encode_folder", "join_processes"]

#: Name of the summary written in the output folder.
SUMMARY_NAME = "summary.json"

#: Rows per model call when not given (rounded up to a multiple of the device count).
DEFAULT_BATCH = 16

#: Files read and prepared ahead of the devices.
_READ_AHEAD = 4

#: Seconds a process waits for the others at an agreement (after a file, and the final
#: summary) before it ends itself (exit status 2): longer than any one file should take.
SYNC_TIMEOUT = 1800.0

# States exchanged after every file (multi-process runs).
_WORKING, _DONE, _STOPPED = 0, 1, 2


class FolderSummary(NamedTuple):
    """What :func:`encode_folder` / :func:`decode_folder` did (over all processes).

    Attributes:
      coded: input files coded (or decoded) in this run.
      already_done: inputs whose output existed and was kept.
      skipped: ``(input, reason)`` of every input that could not be read or coded.
      audio_seconds: seconds of audio coded (encode) or written (decode) in this run.
      seconds: wall time of the coding (after the model is loaded).
      processes: processes of the job.
      devices: devices of all processes.
      summary_path: the ``summary.json`` written.
    """

    coded: tuple[str, ...]
    already_done: int
    skipped: tuple[tuple[str, str], ...]
    audio_seconds: float
    seconds: float
    processes: int
    devices: int
    summary_path: Path

    @property
    def audio_seconds_per_second(self) -> float:
        """Throughput: seconds of audio coded per second of wall time."""
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0


def join_processes(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> bool:
    """Join a multi-process job if one is asked for; call before any device is used.

    The arguments (``--coordinator HOST:PORT --num-processes N --process-id I``) win; else
    the environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` (all three) are used. Nothing given: one process, nothing done.

    Returns:
      Whether `jax.distributed` was initialised.

    Raises:
      ValueError: for an incomplete or inconsistent set
        (:func:`jaxlatent.training.distributed.initialize_distributed`).
    """
    if coordinator is None and num_processes is None and process_id is None:
        coordinator = environ.get("JAX_COORDINATOR_ADDRESS")
        if coordinator is None:
            return False
        try:
            num_processes = int(environ["JAX_NUM_PROCESSES"])
            process_id = int(environ["JAX_PROCESS_ID"])
        except (KeyError, ValueError):
            raise ValueError(
                "JAX_COORDINATOR_ADDRESS is set: JAX_NUM_PROCESSES and JAX_PROCESS_ID must be "
                "set to integers too"
            ) from None
    from jaxlatent.training.distributed import initialize_distributed

    initialize_distributed(coordinator, num_processes, process_id)
    return True


def _batch_size(batch_size: int | None) -> int:
    """`batch_size` checked against this process's devices, or the default."""
    import jax

    from jaxlatent.codec.batch import check_batch_size

    n = jax.local_device_count()
    if batch_size is None:
        return -(-DEFAULT_BATCH // n) * n
    return check_batch_size(batch_size, n)


def _check_options(config, win_duration, n_quantizers, exact: bool = False) -> None:
    from jaxlatent._checks import check_n_quantizers
    from jaxlatent.codec import chunking

    if n_quantizers is not None:
        check_n_quantizers(n_quantizers, config.n_codebooks)
    if exact:  # any positive window works: its context is read around it
        chunking.check_win_duration(win_duration)
        return
    # A window too short for the model fails every long input: refuse it up front.
    chunking.chunk_plan(config, int(win_duration * config.sample_rate) + 1, win_duration)


def _check_rates(paths, model_rate: int) -> dict[Path, str]:
    """Check every input's rate can be resampled; return ``{path: reason}`` of unreadable ones.

    Raises:
      ValueError: if an input's rate cannot be resampled to the model's.
    """
    from jaxlatent.codec.resample import check_rates
    from jaxlatent.datasets import _soundfile

    sf = _soundfile()
    unreadable = {}
    for path in paths:
        try:
            rate = sf.info(str(path)).samplerate
        except (RuntimeError, sf.LibsndfileError) as e:
            unreadable[path] = f"not a readable audio file ({e})"
            continue
        try:
            check_rates(int(rate), model_rate)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return unreadable


def _prepare(model, path, win_duration, n_quantizers):
    from jaxlatent.codec.compression import prepare
    from jaxlatent.datasets import read_audio

    clip = read_audio(path)
    prepared = prepare(
        model, clip.audio, clip.sample_rate, win_duration=win_duration, n_quantizers=n_quantizers
    )
    return prepared, clip.audio.shape[0] / clip.sample_rate


def _bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc=desc, disable=not enabled, dynamic_ncols=True)


def _waiting(what: str, timeout: float):
    """A started timer that ends the process (exit status 2, a one-line error on stderr) if
    it is not cancelled within `timeout` seconds: the timeout of a collective, which cannot
    be interrupted once entered."""
    import threading

    def give_up():
        print(
            f"jaxlatent: error: no answer from the other processes in {timeout:g} s ({what}); "
            "stopping",
            file=sys.stderr,
            flush=True,
        )
        os._exit(2)

    timer = threading.Timer(timeout, give_up)
    timer.daemon = True
    timer.start()
    return timer


def _allgather(value, what: str, timeout: float):
    """``multihost_utils.process_allgather(value)`` as numpy, within `timeout` seconds."""
    import numpy as np
    from jax.experimental import multihost_utils

    timer = _waiting(what, timeout)
    try:
        return np.asarray(multihost_utils.process_allgather(value))
    finally:
        timer.cancel()


def _gather(obj, timeout: float | None = None) -> list:
    """`obj` (JSON) of every process, in process order (a collective, within `timeout`
    seconds; default :data:`SYNC_TIMEOUT`)."""
    import jax
    import numpy as np

    if jax.process_count() == 1:
        return [obj]
    timeout = SYNC_TIMEOUT if timeout is None else timeout
    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = _allgather(np.int32(data.size), "gathering results", timeout).reshape(-1)
    buf = np.zeros(int(sizes.max()), np.uint8)
    buf[: data.size] = data
    rows = _allgather(buf, "gathering results", timeout).reshape(len(sizes), -1)
    return [json.loads(bytes(row[:n])) for row, n in zip(rows, sizes, strict=True)]


class _Stopped(ValueError):
    """Another process stopped the run (its error in the message)."""


class _Run:
    """The bookkeeping of one folder run: progress bar, skipped inputs, summary."""

    def __init__(self, command, total, fail_fast, progress):
        import jax

        self.command, self.fail_fast = command, fail_fast
        self.rank, self.count = jax.process_index(), jax.process_count()
        self.bar = _bar(total, progress and self.rank == 0 and sys.stderr.isatty(), command)
        self.start = time.perf_counter()
        self.coded: list[Path] = []
        self.skipped: dict[Path, str] = {}
        self.audio_seconds = 0.0

    def skip(self, path: Path, error: Exception) -> None:
        """Report and skip `path` (or raise, with `fail_fast`)."""
        reason = " ".join(str(error).split())
        if self.fail_fast:
            self.bar.close()
            raise ValueError(reason if str(path) in reason else f"{path}: {reason}") from None
        self.skipped[path] = reason
        self.bar.update(1)
        print(f"jaxlatent {self.command}: skipped {path}: {reason}", file=sys.stderr)

    def done(self, path: Path, audio_seconds: float) -> None:
        self.coded.append(path)
        self.audio_seconds += audio_seconds
        hours = self.audio_seconds / 3600
        rate = hours / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{hours:.2f} h audio, {rate:.3g} h/s", refresh=False)
        self.bar.update(1)

    def prefetch(self, todo, load):
        """``(path, load(path))`` for every path, loaded by a background thread a few files
        ahead; a path whose load raises ValueError is skipped."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            pending: list = []
            for path in todo:
                pending.append((path, pool.submit(load, path)))
                while len(pending) >= _READ_AHEAD:
                    yield from self._take(*pending.pop(0))
            for item in pending:
                yield from self._take(*item)

    def _take(self, path, future):
        try:
            value = future.result()
        except ValueError as e:
            self.skip(path, e)
            return
        yield path, value

    def drive(self, items, handle) -> None:
        """``handle(item)`` for every item of the iterator `items`, in step with the other
        processes: after every item (and while this process has none left) all processes
        exchange their state; when one stopped, every process raises (the stopped one its
        own exception, the others a ValueError naming its error)."""
        items = iter(items)
        state, error = _WORKING, None
        while True:
            if state == _WORKING:
                try:
                    handle(next(items))
                except StopIteration:
                    state = _DONE
                except Exception as e:  # told to the others, then re-raised
                    state, error = _STOPPED, e
            if self.count == 1:
                if error is not None:
                    raise error
                if state == _DONE:
                    return
                continue
            states = _allgather(np.int32(state), "after a file", SYNC_TIMEOUT).reshape(-1)
            if (states == _STOPPED).any():
                reason = " ".join(str(error).split()) if error is not None else ""
                reasons = _gather(reason)
                if error is not None:
                    raise error
                first = int(np.argmax(states == _STOPPED))
                raise _Stopped(f"process {first} stopped: {reasons[first]}")
            if (states == _DONE).all():
                return

    def finish(self, output, already_done: int, extra: dict) -> FolderSummary:
        """Gather every process's part, write ``summary.json`` (process 0), the summary."""
        import jax

        from jaxlatent.atomic import atomic_write

        self.bar.close()
        part = {
            "coded": [str(p) for p in self.coded],
            "already_done": already_done,
            "skipped": [{"file": str(p), "reason": r} for p, r in self.skipped.items()],
            "audio_seconds": self.audio_seconds,
            "seconds": time.perf_counter() - self.start,
            "devices": jax.local_device_count(),
        }
        parts = _gather(part)
        audio = sum(p["audio_seconds"] for p in parts)
        wall = max(p["seconds"] for p in parts)
        summary = {
            "command": self.command,
            "files": [f for p in parts for f in p["coded"]],
            "already_done": sum(p["already_done"] for p in parts),
            "skipped": [s for p in parts for s in p["skipped"]],
            "audio_hours": audio / 3600,
            "wall_seconds": wall,
            "audio_hours_per_second": audio / 3600 / wall if wall > 0 else 0.0,
            "audio_seconds_per_second": audio / wall if wall > 0 else 0.0,
            **extra,
            "processes": self.count,
            "files_per_process": [len(p["coded"]) for p in parts],
            "devices": sum(p["devices"] for p in parts),
        }
        path = Path(output) / SUMMARY_NAME
        if self.rank == 0:
            atomic_write(path, json.dumps(summary, indent=1) + "\n")
        return FolderSummary(
            tuple(summary["files"]),
            summary["already_done"],
            tuple((s["file"], s["reason"]) for s in summary["skipped"]),
            audio,
            wall,
            self.count,
            summary["devices"],
            path,
        )


def encode_folder(
    model,
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    batch_size: int | None = None,
    win_duration: float = 5.0,
    n_quantizers: int | None = None,
    exact: bool = False,
    overwrite: bool = False,
    fail_fast: bool = False,
    progress: bool = True,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> FolderSummary:
    """Code audio files, folders and ``@LIST`` files into ``.dac`` files under `output`.

    Args:
      model: a :class:`jaxlatent.models.dac.DAC`, or the path of a converted directory or a
        DAC ``.pth`` (loaded after the cheap checks, by
        :func:`jaxlatent.apps.dac_models.load_dac_model`).
      inputs: audio files, folders (suffixes :data:`jaxlatent.codec.files.AUDIO_SUFFIXES`,
        recursive) and ``@LIST`` files (one path a line).
      output: output folder; ``DIR/sub/a.wav`` given as ``DIR`` becomes
        ``output/sub/a.dac``; ``output/summary.json`` is the run's summary.
      batch_size: rows (windows x channels) per model call, a multiple of this process's
        device count; default :data:`DEFAULT_BATCH` rounded up to such a multiple.
      win_duration: compress window in seconds (5.0 as the official ``dac encode``).
      n_quantizers: codebooks to use (default all).
      exact: code each input as :func:`jaxlatent.codec.compress_exact` (the codes of the
        whole signal at once, in windows of `win_duration` with their receptive field; one
        unchunked ``.dac`` per input) instead of the official windowed algorithm; windows of
        many inputs are batched as in the official mode
        (:meth:`jaxlatent.codec.batch.BatchEncoder.encode_exact`).
      overwrite: code inputs whose output exists again (default: keep them).
      fail_fast: raise at the first input that cannot be read or coded (default: report and
        skip it).
      progress: a progress bar (files, audio hours, hours per second) on a terminal, in
        process 0.
      precision: the loaded model's precision (:mod:`jaxlatent.precision`; default
        ``"highest"``: the reference's codes on every backend; ``"default"``: faster on
        GPU/TPU); a given `DAC` keeps its own.

    Returns:
      A :class:`FolderSummary`.

    Raises:
      ValueError: before anything is written, for a bad `batch_size` (not a positive multiple
        of the local device count), `n_quantizers` or `win_duration`, no inputs, or an input
        rate the model's rate cannot be resampled from; with `fail_fast`, for the first bad
        input (outputs already written are complete files and stay).
      FileNotFoundError: for a missing input or a missing path in an ``@LIST``.
    """
    import jax

    from jaxlatent.apps.dac_models import load_dac_model
    from jaxlatent.codec import files
    from jaxlatent.codec.batch import BatchEncoder

    resolve_precision(precision)  # an unknown name fails before anything is read or written
    if n_quantizers is not None and n_quantizers < 1:
        raise ValueError(f"--n-quantizers must be at least 1, got {n_quantizers}")
    if not (isinstance(win_duration, int | float) and win_duration > 0):
        raise ValueError(f"--win-duration must be positive, got {win_duration}")
    found = files.find_inputs(inputs, files.AUDIO_SUFFIXES)
    batch_size = _batch_size(batch_size)
    model = load_dac_model(model, precision)
    _check_options(model.config, win_duration, n_quantizers, exact)
    encoder = BatchEncoder(model, batch_size)
    targets = {path: files.output_path(output, rel, ".dac") for path, rel in found}
    # Every process checks every input's header, so that all of them refuse a bad rate (or,
    # with fail_fast, an unreadable file) before anything is written.
    pending = [path for path, _ in found if overwrite or not targets[path].exists()]
    unreadable = _check_rates(pending, model.config.sample_rate)
    if unreadable and fail_fast:
        path, reason = next(iter(unreadable.items()))
        raise ValueError(f"{path}: {reason}")
    mine = found[jax.process_index() :: jax.process_count()]
    pending_set = set(pending)
    todo = [path for path, _ in mine if path in pending_set]
    unreadable = {path: unreadable[path] for path in todo if path in unreadable}

    run = _Run("encode", len(todo), fail_fast, progress)
    for path, reason in unreadable.items():
        run.skip(path, ValueError(reason))
    todo = [path for path in todo if path not in unreadable]
    durations: dict[Path, float] = {}

    def load(path):  # exact windows are cut from the unchunked signal
        prepared, seconds = _prepare(model, path, None if exact else win_duration, n_quantizers)
        durations[path] = seconds
        return prepared

    def save(item):
        path, dac_file = item
        dac_file.save(targets[path])
        run.done(path, durations.pop(path))

    try:
        prepared = run.prefetch(todo, load)
        if exact:
            coded = encoder.encode_exact(prepared, win_duration)
        else:
            coded = encoder.encode(prepared)
        run.drive(coded, save)
    finally:
        run.bar.close()
    extra = {"batch_size": batch_size, "win_duration": win_duration, "exact": exact}
    return run.finish(output, len(mine) - len(todo) - len(unreadable), extra)


def _decoded_targets(output, rel: Path, items: int) -> list[Path]:
    """The WAV files of a ``.dac`` of `items` batch items (``NAME.wav``; several:
    ``NAME-0.wav``, ``NAME-1.wav``, ...)."""
    from jaxlatent.codec import files

    if items == 1:
        return [files.output_path(output, rel, ".wav")]
    return [
        files.output_path(output, rel.with_name(f"{rel.stem}-{i}{rel.suffix}"), ".wav")
        for i in range(items)
    ]


def _decoded(output, rel: Path, path: Path) -> bool:
    """Whether every output of the ``.dac`` file `path` exists."""
    from jaxlatent.codec import DACFile

    if _decoded_targets(output, rel, 1)[0].exists():
        return True
    if not _decoded_targets(output, rel, 2)[0].exists():
        return False
    try:
        dac_file = DACFile.load(path)
    except ValueError:
        return False
    items = dac_file.codes.shape[0] // dac_file.channels
    return all(t.exists() for t in _decoded_targets(output, rel, items))


def decode_folder(
    model,
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    batch_size: int | None = None,
    win_duration: float = 5.0,
    overwrite: bool = False,
    fail_fast: bool = False,
    progress: bool = True,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> FolderSummary:
    """Decode ``.dac`` files, folders and ``@LIST`` files into 16-bit WAV files under `output`.

    The inverse of :func:`encode_folder`, with the same batching (chunks of many files per
    model call, :class:`jaxlatent.codec.batch.BatchDecoder`), process shards, resumption
    and skipping: a corrupt ``.dac`` or one the model cannot decode is reported and skipped.
    ``NAME.dac`` becomes ``output/NAME.wav`` (a file of several batch items:
    ``NAME-{i}.wav``), audio equal to :func:`jaxlatent.codec.decompress`'s.

    Args:
      model, batch_size, overwrite, fail_fast, progress, precision: as :func:`encode_folder`.
      inputs: ``.dac`` files, folders and ``@LIST`` files.
      output: output folder (``summary.json`` included).
      win_duration: the decoding window in seconds of unchunked files (``encode --exact``'s)
        longer than one window: those are decoded window by window with code context
        (:func:`jaxlatent.codec.decompress_exact`, one compiled window for every such file);
        only speed and memory depend on it.

    Returns:
      A :class:`FolderSummary` (``audio_seconds``: audio written).

    Raises:
      ValueError: for a bad `batch_size` or `win_duration`, or no inputs (before anything is
        written); with
        `fail_fast`, for the first bad input.
      FileNotFoundError: for a missing input or a missing path in an ``@LIST``.
    """
    import jax

    from jaxlatent.apps.dac_models import load_dac_model
    from jaxlatent.codec import DACFile, decompress_exact, files
    from jaxlatent.codec.batch import BatchDecoder
    from jaxlatent.codec.chunking import check_win_duration
    from jaxlatent.codec.compression import check_decodable
    from jaxlatent.codec.exact import decodes_in_windows

    resolve_precision(precision)
    check_win_duration(win_duration)
    found = files.find_inputs(inputs, (".dac",))
    batch_size = _batch_size(batch_size)
    model = load_dac_model(model, precision)
    decoder = BatchDecoder(model, batch_size)
    mine = found[jax.process_index() :: jax.process_count()]
    rels = dict(mine)
    todo = [path for path, rel in mine if overwrite or not _decoded(output, rel, path)]
    run = _Run("decode", len(todo), fail_fast, progress)

    def load(path):
        dac_file = DACFile.load(path)
        check_decodable(model, dac_file)
        return dac_file

    dac_files: dict[Path, DACFile] = {}

    def loaded():
        for path, dac_file in run.prefetch(todo, load):
            dac_files[path] = dac_file
            yield path, dac_file

    def write(path, audio, rate):
        for item, target in zip(
            audio, _decoded_targets(output, rels[path], audio.shape[0]), strict=True
        ):
            files.write_audio(target, item, rate)
        run.done(path, audio.shape[0] * audio.shape[1] / rate)

    def batchable():
        """The loaded files for the batches; a long unchunked file (jaxlatent's exact codes,
        or the official ``win_duration=None``) is decoded here, in windows with code context
        (:func:`jaxlatent.codec.decompress_exact`: flat memory, the same audio)."""
        for path, dac_file in loaded():
            if decodes_in_windows(model, dac_file, win_duration=win_duration):
                audio = decompress_exact(model, dac_file, win_duration=win_duration)
                write(path, audio, dac_files.pop(path).sample_rate)
            else:
                yield path, dac_file

    try:
        run.drive(
            decoder.decode(batchable()),
            lambda item: write(item[0], item[1], dac_files.pop(item[0]).sample_rate),
        )
    finally:
        run.bar.close()
    extra = {"batch_size": batch_size, "win_duration": win_duration}
    return run.finish(output, len(mine) - len(todo), extra)
