"""The dataset-scale coding stages of `jaxlatent demo` (see `jaxlatent.apps.demo`).

* :func:`copy_clips`: every bundled clip (``jaxlatent/data/*.wav``) copied into one folder,
  the folder ``jaxlatent encode`` then codes as a dataset;
* :func:`check_exact`: the exact codes of every ``.dac`` (``jaxlatent encode --exact``:
  :func:`jaxlatent.codec.compress_exact`, windows with their receptive field) against the
  whole-signal ``DAC.encode`` of the same normalised signal; any difference raises;
* :func:`stream_clip`: one clip pushed piece by piece through
  :class:`jaxlatent.codec.StreamingEncoder` and :class:`~jaxlatent.codec.StreamingDecoder`,
  its codes checked against the exact codes, with the per-push latency and the algorithmic
  lookahead.

torch-free.
"""

from __future__ import annotations

import importlib.resources
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "ExactCheck",
    "StreamReport",
    "bundled_clips",
    "check_exact",
    "copy_clips",
    "format_engine",
    "stream_clip",
]


def bundled_clips() -> list[Path]:
    """The bundled clips ``jaxlatent/data/*.wav``, sorted by name."""
    folder = importlib.resources.files("jaxlatent") / "data"
    return sorted(Path(os.fspath(p)) for p in folder.iterdir() if p.name.endswith(".wav"))


def copy_clips(folder: str | os.PathLike, seconds: float | None) -> list[Path]:
    """Copy every bundled clip into `folder` (cut to its first `seconds`; ``None``: whole),
    sample-exactly (:func:`jaxlatent.apps.codec_demo.copy_clip`). Returns the copies."""
    from jaxlatent.apps.codec_demo import copy_clip

    return [copy_clip(src, Path(folder) / src.name, seconds) for src in bundled_clips()]


class ExactCheck(NamedTuple):
    """Exact codes against whole-signal codes, per clip.

    Attributes:
      agreement: ``{clip name: fraction of equal codes}`` (1.0: all equal).
      codes: codes compared over all clips (rows x codebooks x frames).
    """

    agreement: dict[str, float]
    codes: int

    @property
    def all_equal(self) -> bool:
        return all(a == 1.0 for a in self.agreement.values())


def whole_signal_codes(model, path: str | os.PathLike) -> np.ndarray:
    """int32 ``[rows, n_codebooks, frames]``: ``DAC.encode`` of the whole audio file at once,
    normalised and resampled as ``compress`` does (the signal :func:`compress_exact` codes in
    windows), hop-padded. One compilation per padded length (of the function ``jaxlatent
    parity dac`` compiles, ``compiled(DAC.encode, graphdef, n_quantizers=n_codebooks)``)."""
    from flax import nnx

    from jaxlatent.codec.compression import prepare
    from jaxlatent.compilation import compiled
    from jaxlatent.datasets import read_audio
    from jaxlatent.models.dac import DAC

    clip = read_audio(path)
    prep = prepare(model, clip.audio, clip.sample_rate, win_duration=None)
    graphdef, state = nnx.split(model)
    rows = prep.read(0, prep.window_samples)  # zero-padded to whole hops
    encode = compiled(DAC.encode, graphdef, n_quantizers=model.config.n_codebooks)
    return np.asarray(encode(state, rows).codes)


def check_exact(model, pairs: list[tuple[Path, Path]]) -> ExactCheck:
    """Compare the codes of every ``(audio, .dac)`` pair with the whole-signal codes.

    Raises:
      RuntimeError: naming the clips and their agreement if any code differs (exact coding
        promises the whole-signal codes up to float32 near-ties of the nearest-code search).
    """
    from jaxlatent.codec import DACFile

    agreement, total = {}, 0
    for audio, dac_path in pairs:
        got = DACFile.load(dac_path).codes.astype(np.int32)
        want = whole_signal_codes(model, audio)
        if got.shape != want.shape:
            raise RuntimeError(
                f"{dac_path}: exact codes {got.shape} do not have the whole-signal shape "
                f"{want.shape}"
            )
        agreement[audio.name] = float((got == want).mean())
        total += got.size
    check = ExactCheck(agreement, total)
    if not check.all_equal:
        bad = ", ".join(f"{n}: {a:.4%}" for n, a in agreement.items() if a < 1.0)
        raise RuntimeError(f"exact codes differ from whole-signal DAC.encode codes ({bad})")
    return check


class StreamReport(NamedTuple):
    """One clip streamed push by push (:func:`stream_clip`).

    Attributes:
      clip: the clip's file name.
      seconds: seconds of audio streamed.
      pushes: pushes timed (after the warm-up).
      push_ms: audio per push in milliseconds.
      frames: code frames checked against the exact codes (all equal).
      latency_median_ms, latency_p95_ms: wall time of one push (encoder push, then the
        decoder push of the codes it returned), median and 95th percentile.
      realtime_factor: wall time over audio time of the timed pushes (< 1: faster than
        real time).
      encoder_lookahead_ms, decoder_lookahead_ms: the algorithmic latency: audio a code frame
        waits for before it is final, and code frames (as audio) a decoded sample waits for.
      warmup_s: wall time of the warm-up pushes (compilation of the steps).
    """

    clip: str
    seconds: float
    pushes: int
    push_ms: float
    frames: int
    latency_median_ms: float
    latency_p95_ms: float
    realtime_factor: float
    encoder_lookahead_ms: float
    decoder_lookahead_ms: float
    warmup_s: float


def stream_clip(
    model,
    audio_path: str | os.PathLike,
    dac_path: str | os.PathLike,
    *,
    seconds: float | None = None,
    push_ms: float = 20.0,
    timer: Callable[[], float] = time.perf_counter,
) -> StreamReport:
    """Stream a clip push by push and check its codes against the exact ``.dac`` codes.

    The stream is the clip's normalised signal at the model's rate (what
    :func:`jaxlatent.codec.compress_exact` coded into `dac_path`), cut to its first
    `seconds` (``None``: the whole clip, then flushed), pushed `push_ms` at a time into a
    :class:`~jaxlatent.codec.StreamingEncoder`; every push's codes go straight into a
    :class:`~jaxlatent.codec.StreamingDecoder`. The frames the encoder returned (all of
    them when flushed; before a flush, the frames whose receptive field has arrived, which
    are final) must equal the first frames of the exact codes. Both streams run steps of
    one code frame (one compiled step each), compiled by a warm-up push beforehand so that
    the timed pushes are steady.

    Returns:
      A :class:`StreamReport`.

    Raises:
      ValueError: for a non-positive `push_ms` or `seconds`.
      RuntimeError: if the streamed codes differ from the exact codes.
    """
    from jaxlatent.codec import DACFile, StreamingDecoder, StreamingEncoder
    from jaxlatent.codec.compression import prepare
    from jaxlatent.datasets import read_audio

    if not push_ms > 0:
        raise ValueError(f"push_ms must be positive, got {push_ms}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"stream seconds must be positive, got {seconds}")
    want = DACFile.load(dac_path).codes.astype(np.int32)
    clip = read_audio(audio_path)
    prep = prepare(model, clip.audio, clip.sample_rate, win_duration=None)
    rate, hop = model.config.sample_rate, model.config.hop_length
    total = -(-prep.original_length * rate // clip.sample_rate)
    n = total if seconds is None else min(total, int(seconds * rate))
    flush = n == total
    x = prep.read(0, n)[:, :, 0].T  # [samples, rows]
    rows = x.shape[1]
    push = max(1, round(push_ms * rate / 1000))

    def streams():
        kw = {"channels": rows, "max_step_frames": 1}
        return StreamingEncoder(model, **kw), StreamingDecoder(model, **kw)

    start = timer()
    enc, dec = streams()  # warm-up: compile the one-frame steps
    dec.push(enc.push(np.zeros((hop, rows), np.float32)))
    dec.push(np.zeros((rows, want.shape[1], 1), np.int32))
    warmup = timer() - start

    enc, dec = streams()
    codes, latencies = [], []
    for s in range(0, n, push):
        t = timer()
        c = enc.push(x[s : s + push])
        dec.push(c)
        latencies.append(timer() - t)
        codes.append(c)
    if flush:
        codes.append(enc.flush())
        dec.push(codes[-1])
        dec.flush()
    got = np.concatenate(codes, axis=-1)
    head = want[..., : got.shape[-1]]
    if got.shape != (want.shape if flush else head.shape) or not np.array_equal(got, head):
        differ = int((got != head).sum()) if got.shape == head.shape else "all"
        raise RuntimeError(
            f"{audio_path}: streamed codes {got.shape} differ from the exact codes "
            f"{want.shape} ({differ} codes differ)"
        )
    ms = 1000 * np.asarray(latencies)
    return StreamReport(
        clip=Path(audio_path).name,
        seconds=n / rate,
        pushes=len(latencies),
        push_ms=1000 * push / rate,
        frames=int(got.shape[-1]),
        latency_median_ms=float(np.median(ms)),
        latency_p95_ms=float(np.percentile(ms, 95)),
        realtime_factor=float(ms.sum() / 1000 / (n / rate)),
        encoder_lookahead_ms=enc.lookahead_ms,
        decoder_lookahead_ms=dec.lookahead_ms,
        warmup_s=warmup,
    )


def format_engine(encoded, decoded, check: ExactCheck, stream: StreamReport) -> str:
    """The lines `jaxlatent demo` prints about the folder coding and the stream."""
    clips = len(check.agreement)
    lines = [
        f"folder coding: {clips} clips, {encoded.audio_seconds:.2f} s of audio; encode --exact "
        f"{encoded.audio_seconds_per_second:.2f} audio s per wall s, decode "
        f"{decoded.audio_seconds_per_second:.2f} audio s per wall s (first runs: compilation "
        "included)",
        f"exact codes = whole-signal DAC.encode codes: {check.codes} codes of {clips} clips, "
        + ", ".join(f"{n} {a:.2%}" for n, a in check.agreement.items()),
        f"streaming {stream.clip}: {stream.seconds:.2f} s in {stream.pushes} pushes of "
        f"{stream.push_ms:.0f} ms, codes = exact codes ({stream.frames} frames); per push "
        f"{stream.latency_median_ms:.1f} ms median, "
        f"{stream.latency_p95_ms:.1f} ms p95 (real-time factor {stream.realtime_factor:.2f}); "
        f"lookahead {stream.encoder_lookahead_ms:.1f} ms encoder + "
        f"{stream.decoder_lookahead_ms:.1f} ms decoder",
    ]
    return "\n".join(lines)
