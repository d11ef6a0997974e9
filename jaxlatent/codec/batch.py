"""Windows of many inputs coded together in fixed-shape batches, on every local device.

The official chunked ``compress`` codes every window independently (one encoder pass per
window, per channel), so windows of different inputs can share a model call. A
:class:`BatchEncoder` takes :class:`~jaxlatent.codec.compression.PreparedAudio` inputs one
after another, cuts them into rows ``[window_samples]`` (one per window and channel), and
stacks rows of the same window length and padding into batches ``[batch_size,
window_samples, 1]``: one compiled function serves every input and length of a window size.
A batch that cannot be filled (the end of the inputs) is completed with zero rows to the
smallest of ``n_devices * 2**k`` (at most ``batch_size``) that holds it, so the last batches
compile a few more shapes, not one per leftover count. Unchunked inputs (shorter than the
window) have a window of their own length, as in the official algorithm, so they share
batches only with inputs of the same padded length.

Codes equal :func:`~jaxlatent.codec.compress`'s: the encoder and quantizer compute every
batch row on its own (no reduction across the batch), and XLA's result for a row does not
depend on the batch size or the other rows (tested on CPU: batches of 1, 3 and 8 rows on 1
and 8 devices, codes identical to ``compress`` alone and to the official package; latents
measured bit-identical). A :class:`BatchDecoder` does the same for ``decompress``: chunks of
``chunk_length`` codes of many files per call, then each file's loudness and resampling
(:func:`~jaxlatent.codec.compression.finish_decoding`); audio equal to ``decompress``'s.

:meth:`BatchEncoder.encode_exact` batches the exact windows of
:func:`~jaxlatent.codec.compress_exact` the same way (windows that read the encoder's
receptive field around them; the codes of the whole signal): a window's position and its
signal's length are per-row arguments, so every input of at least one window is coded by
one compiled function; codes equal ``compress_exact``'s alone (tested as above, mixed
lengths, inputs shorter than a window included).

With several devices the batch is split over them along its first axis (``jit`` with a
``NamedSharding`` of a one-axis mesh); the model's state is replicated. ``batch_size`` must
be a multiple of the device count.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence

import numpy as np
from flax import nnx

from jaxlatent.codec.compression import (
    PreparedAudio,
    _decode_chunk,
    _encode_chunk,
    check_decodable,
    finish_decoding,
)
from jaxlatent.codec.dac_file import DACFile
from jaxlatent.compilation import compiled

__all__ = ["BatchDecoder", "BatchEncoder", "check_batch_size"]

#: Batches dispatched to the devices before the host waits for the oldest one.
_IN_FLIGHT = 2


@dataclasses.dataclass
class _Job:
    """One input being coded: its windows, and their results as they come back.

    ``window(k)`` gives window `k` of every row: the arguments of `fn`, each
    ``[rows, *row_shape]`` (an array, or a tuple of them); ``results[k]`` is filled row by row
    with the model's outputs; ``remaining`` counts the rows still out.
    """

    key: Hashable
    item: object
    n_windows: int
    rows: int
    window: Callable[[int], np.ndarray | tuple[np.ndarray, ...]]
    fn: Callable  # fn(model, *arguments, **options), compiled
    options: tuple  # the compiled function's static options, part of the batch key
    results: list = dataclasses.field(default_factory=list)
    remaining: int = 0

    def __post_init__(self):
        self.results = [None] * self.n_windows
        self.remaining = self.n_windows * self.rows


class _Batches:
    """Rows of many jobs through ``job.fn(model, *x, **job.options)`` in batches over
    `devices` (rows of the same function, options, shapes and dtypes share a batch)."""

    def __init__(self, model, batch_size, devices):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        devices = list(jax.local_devices() if devices is None else devices)
        check_batch_size(batch_size, len(devices))
        self.batch_size = int(batch_size)
        self.devices = devices
        self.batches = 0
        self._graphdef, state = nnx.split(model)
        if len(devices) > 1:
            mesh = Mesh(np.array(devices), ("batch",))
            self._rows_sharding = NamedSharding(mesh, PartitionSpec("batch"))
            self._state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))
        else:
            self._rows_sharding = devices[0]
            self._state = jax.device_put(state, devices[0])

    def _size(self, n: int) -> int:
        """Rows of the batch that holds `n` rows: `batch_size`, or for fewer rows the
        smallest ``n_devices * 2**k`` that holds them."""
        size = len(self.devices)
        while size < n:
            size *= 2
        return min(size, self.batch_size)

    def run(self, jobs: Iterable[_Job]) -> Iterator[_Job]:
        """Run every job's rows; yield each job once all its results are back."""
        import jax

        buckets: dict[tuple, list] = collections.defaultdict(list)  # rows waiting per shape
        in_flight: collections.deque = collections.deque()

        def dispatch(fn, options, rows):
            size = self._size(len(rows))
            xs = []
            for j, sample in enumerate(rows[0][3]):
                x = np.zeros((size, *sample.shape), sample.dtype)  # zero rows: padding
                for i, row in enumerate(rows):
                    x[i] = row[3][j]
                xs.append(jax.device_put(x, self._rows_sharding))
            out = compiled(fn, self._graphdef, **dict(options))(self._state, *xs)
            in_flight.append((out, [row[:3] for row in rows]))
            self.batches += 1

        def collect():
            out, slots = in_flight.popleft()
            out = np.asarray(out)
            for i, (job, k, r) in enumerate(slots):
                if job.results[k] is None:
                    job.results[k] = np.empty((job.rows, *out.shape[1:]), out.dtype)
                job.results[k][r] = out[i]
                job.remaining -= 1
                if job.remaining == 0:
                    yield job

        for job in jobs:
            for k in range(job.n_windows):
                window = job.window(k)
                parts = window if isinstance(window, tuple) else (window,)
                shapes = tuple((x.shape[1:], x.dtype.str) for x in parts)
                bucket = buckets[(shapes, job.fn, job.options)]
                for r in range(job.rows):
                    bucket.append((job, k, r, tuple(x[r] for x in parts)))
                    if len(bucket) == self.batch_size:
                        dispatch(job.fn, job.options, bucket)
                        bucket.clear()
                        while len(in_flight) > _IN_FLIGHT:
                            yield from collect()
        for (_, fn, options), bucket in buckets.items():
            for i in range(0, len(bucket), self.batch_size):
                dispatch(fn, options, bucket[i : i + self.batch_size])
        while in_flight:
            yield from collect()


class BatchEncoder:
    """Codes many inputs' windows in batches of `batch_size` rows over `devices`.

    Args:
      model: a DAC model (as :func:`~jaxlatent.codec.compress`).
      batch_size: rows (windows x channels) per model call; a multiple of the device count.
      devices: the devices a batch is split over (default: this process's,
        ``jax.local_devices()``).

    Attributes:
      batches: model calls made so far.

    Raises:
      ValueError: if `batch_size` is not a positive multiple of the number of devices.
    """

    def __init__(self, model: nnx.Module, batch_size: int, devices: Sequence | None = None):
        self._model = model
        self._batches = _Batches(model, batch_size, devices)

    @property
    def batches(self) -> int:
        return self._batches.batches

    def encode(
        self, inputs: Iterable[tuple[Hashable, PreparedAudio]]
    ) -> Iterator[tuple[Hashable, DACFile]]:
        """Code every ``(key, prepared)`` input; yield ``(key, DACFile)`` as each completes.

        Inputs are read lazily (one window at a time), so at most a few batches of audio are
        held; files complete roughly in input order (an input completes once its last
        window's batch is back). The files equal :func:`~jaxlatent.codec.compress`'s.
        """
        jobs = (
            _Job(
                key,
                p,
                p.plan.n_chunks,
                p.rows,
                p.window,
                _encode_chunk,
                (("n_q", p.n_q), ("padding", p.padding)),
            )
            for key, p in inputs
        )
        for job in self._batches.run(jobs):
            yield job.key, job.item.dac_file(job.results)

    def encode_exact(
        self, inputs: Iterable[tuple[Hashable, PreparedAudio]], win_duration: float = 5.0
    ) -> Iterator[tuple[Hashable, DACFile]]:
        """Code every ``(key, prepared)`` input in exact windows of `win_duration` seconds;
        yield ``(key, DACFile)`` as each completes, equal to
        :func:`~jaxlatent.codec.compress_exact`'s (the whole-signal codes).

        Inputs are prepared unchunked (``prepare(..., win_duration=None)``). Every window
        reads its receptive field around it (:class:`~jaxlatent.codec.exact.ExactWindows`);
        its position and its signal's length are arguments per row, so windows of every
        input of at least one window share one compiled function and its batches; a shorter
        input has the power-of-two window that holds it (as :func:`compress_exact`: a few
        shapes, shared by the inputs of similar lengths).

        Raises:
          ValueError: for a `win_duration` that is not a positive finite number (before any
            input is read), or an input prepared chunked (when it is taken).
        """
        from jaxlatent.codec.chunking import check_win_duration

        check_win_duration(win_duration)
        return self._encode_exact(inputs, win_duration)

    def _encode_exact(self, inputs, win_duration):
        from jaxlatent.codec.exact import exact_windows
        from jaxlatent.models.dac.windowed import encode_window

        def job(key, prep):
            windows = exact_windows(self._model, prep, win_duration)
            return _Job(
                key,
                windows,
                windows.n_windows,
                prep.rows,
                windows.window,
                encode_window,
                (("frames", windows.window_frames), ("n_q", prep.n_q)),
            )

        for done in self._batches.run(job(key, p) for key, p in inputs):
            yield done.key, done.item.dac_file(done.results)


class BatchDecoder:
    """Decodes many ``.dac`` files' chunks in batches of `batch_size` rows over `devices`.

    Arguments and errors as :class:`BatchEncoder`; rows are code chunks
    ``[n_q, chunk_length]`` (one per chunk and channel).
    """

    def __init__(self, model: nnx.Module, batch_size: int, devices: Sequence | None = None):
        self._model = model
        self._batches = _Batches(model, batch_size, devices)

    @property
    def batches(self) -> int:
        return self._batches.batches

    def decode(
        self, inputs: Iterable[tuple[Hashable, DACFile]]
    ) -> Iterator[tuple[Hashable, np.ndarray]]:
        """Decode every ``(key, dac_file)``; yield ``(key, audio)`` as each completes, audio
        float32 ``[batch, original_length, channels]`` equal to
        :func:`~jaxlatent.codec.decompress`'s.

        Raises:
          ValueError: for a file the model cannot decode (checked as it is taken, before
            any of its chunks runs).
        """
        rate = self._model.config.sample_rate

        def job(key, dac_file):
            check_decodable(self._model, dac_file)
            codes, step = dac_file.codes, dac_file.chunk_length
            frames = codes.shape[-1]
            return _Job(
                key,
                dac_file,
                -(-frames // step),
                codes.shape[0],
                lambda k: codes[:, :, k * step : (k + 1) * step].astype(np.int32),
                _decode_chunk,
                (("padding", bool(dac_file.padding)),),
            )

        for done in self._batches.run(job(key, f) for key, f in inputs):
            recons = np.concatenate(done.results, axis=-1)
            yield done.key, finish_decoding(done.item, recons, rate)


def check_batch_size(batch_size, n_devices: int) -> int:
    """`batch_size` if it is a positive multiple of `n_devices`.

    Raises:
      ValueError: otherwise, naming both.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise ValueError(f"--batch-size must be an integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if batch_size % n_devices:
        raise ValueError(
            f"--batch-size {batch_size} cannot be split over {n_devices} devices: use a "
            f"multiple of {n_devices}"
        )
    return int(batch_size)
