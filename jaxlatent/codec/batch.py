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
depend on the batch size or the other rows (tested: 1 and 8 rows, 1 and 8 devices, codes and
latents bit-identical).

With several devices the batch is split over them along its first axis (``jit`` with a
``NamedSharding`` of a one-axis mesh); the model's state is replicated. ``batch_size`` must
be a multiple of the device count.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Hashable, Iterable, Iterator, Sequence

import numpy as np
from flax import nnx

from jaxlatent.codec.compression import PreparedAudio, _encode_chunk
from jaxlatent.codec.dac_file import DACFile
from jaxlatent.compilation import compiled

__all__ = ["BatchEncoder", "check_batch_size"]

#: Batches dispatched to the devices before the host waits for the oldest one.
_IN_FLIGHT = 2


@dataclasses.dataclass
class _Job:
    """One input being coded: its windows' codes as they come back."""

    key: Hashable
    prepared: PreparedAudio
    codes: list = dataclasses.field(default_factory=list)  # per window: [rows, n_q, frames]
    remaining: int = 0

    def __post_init__(self):
        n = self.prepared.plan.n_chunks
        self.codes = [None] * n
        self.remaining = n * self.prepared.rows


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

    Example:
      >>> # encoder = BatchEncoder(model, batch_size=16)
      >>> # for key, dac_file in encoder.encode((path, prepare(model, audio, sr)) ...): ...
    """

    def __init__(self, model: nnx.Module, batch_size: int, devices: Sequence | None = None):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        devices = list(jax.local_devices() if devices is None else devices)
        check_batch_size(batch_size, len(devices))
        self.batch_size = int(batch_size)
        self.devices = devices
        self.batches = 0  # model calls so far
        self._graphdef, state = nnx.split(model)
        if len(devices) > 1:
            mesh = Mesh(np.array(devices), ("batch",))
            self._rows_sharding = NamedSharding(mesh, PartitionSpec("batch"))
            self._state = jax.device_put(state, NamedSharding(mesh, PartitionSpec()))
        else:
            self._rows_sharding = devices[0]
            self._state = jax.device_put(state, devices[0])

    def _sizes(self, n: int) -> int:
        """Rows of the batch that holds `n` leftover rows."""
        size = len(self.devices)
        while size < n:
            size *= 2
        return min(size, self.batch_size)

    def encode(
        self, inputs: Iterable[tuple[Hashable, PreparedAudio]]
    ) -> Iterator[tuple[Hashable, DACFile]]:
        """Code every ``(key, prepared)`` input; yield ``(key, DACFile)`` as each completes.

        Inputs are read lazily (one window at a time), so at most a few batches of audio are
        held; files complete roughly in input order (an input completes once its last
        window's batch is back).
        """
        import jax

        buckets: dict[tuple, list] = collections.defaultdict(list)  # rows waiting per shape
        in_flight: collections.deque = collections.deque()

        def dispatch(shape_key, rows):
            window, n_q, padding = shape_key
            size = self.batch_size if len(rows) == self.batch_size else self._sizes(len(rows))
            x = np.zeros((size, window, 1), np.float32)
            for i, (_, _, _, samples) in enumerate(rows):
                x[i] = samples
            fn = compiled(_encode_chunk, self._graphdef, n_q=n_q, padding=padding)
            codes = fn(self._state, jax.device_put(x, self._rows_sharding))
            in_flight.append((codes, [r[:3] for r in rows]))
            self.batches += 1

        def collect():
            codes, slots = in_flight.popleft()
            codes = np.asarray(codes)
            for i, (job, k, r) in enumerate(slots):
                if job.codes[k] is None:
                    job.codes[k] = np.empty((job.prepared.rows, *codes.shape[1:]), codes.dtype)
                job.codes[k][r] = codes[i]
                job.remaining -= 1
                if job.remaining == 0:
                    yield job.key, job.prepared.dac_file(job.codes)

        for key, prepared in inputs:
            job = _Job(key, prepared)
            shape_key = (prepared.window_samples, prepared.n_q, prepared.padding)
            bucket = buckets[shape_key]
            for k in range(prepared.plan.n_chunks):
                window = prepared.window(k)
                for r in range(prepared.rows):
                    bucket.append((job, k, r, window[r]))
                    if len(bucket) == self.batch_size:
                        dispatch(shape_key, bucket)
                        bucket.clear()
                        while len(in_flight) > _IN_FLIGHT:
                            yield from collect()
        for shape_key, bucket in buckets.items():
            while bucket:
                rows, bucket[:] = bucket[: self.batch_size], bucket[self.batch_size :]
                dispatch(shape_key, rows)
        while in_flight:
            yield from collect()


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
