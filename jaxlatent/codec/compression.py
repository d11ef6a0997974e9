"""`compress` / `decompress`: code audio of any length and rate into a `DACFile` and back.

The algorithm is the official ``dac.model.base.CodecMixin.compress`` / ``decompress``
(descript-audio-codec 1.0.0), step by step:

compress
  1. resample to the model rate (:func:`~jaxlatent.codec.resample.resample`, julius' filter);
  2. measure the integrated loudness ``input_db`` (:func:`~jaxlatent.codec.loudness.loudness`,
     audiotools' meter), scale to ``normalize_db`` (-16 LUFS), then scale every channel whose
     peak exceeds 1 down to peak 1 (``ensure_max_of_audio``);
  3. code every channel as a separate mono stream (rows ``batch * channels``);
  4. audio up to ``win_duration`` seconds: one pass with the convolutions padded
     (``padding=True`` in the file). Longer audio: the convolutions run without padding
     (the model's ``padding=False``; the reference sets every padding to 0), the
     signal zero-padded by the model's delay on both sides, and windows of a fixed size
     (:func:`~jaxlatent.codec.chunking.chunk_plan`) coded independently, their codes
     concatenated; the last window is zero-padded to full size.

decompress
  the inverse: decode every ``chunk_length`` codes (padded or not, as recorded), concatenate,
  scale every decoded channel to the recorded loudness, resample to the file's rate and cut to
  ``original_length``.

Differences from the reference, all outside what it computes for valid input:

* ``decompress`` always returns ``original_length`` samples: the 16 and 24 kHz decoders return
  8 samples less than ``hop_length * frames``, so after resampling to another rate the
  reference's signal can be shorter than ``original_length`` and its final reshape crashes;
  the missing tail is zero-filled here.
* Bad input raises ``ValueError`` (empty, NaN/Inf, too many channels, a window too short for
  the model, codes the model cannot decode) where the reference crashes or loops.
* The reference switches to ffmpeg's resampler and meter for audio over 10 *hours*; this
  module does not (it never loads the whole input into the model, see below).

Memory: nothing but the input (not copied, except a ``[batch, time, channels]`` input with
several items *and* channels, which is regrouped into rows once) and the codes grows with the
length of the audio. The resampled signal is never held in full: one pass over it, block by block,
measures the loudness and the peaks; every window is then resampled from the input as it is
coded, and the gain and peak limit are applied to it. The model only ever sees one window,
the same shape every time, so one compiled function
(:func:`jaxlatent.compilation.compiled`) serves every chunk (and every model of the same
configuration). Unchunked coding (audio shorter than ``win_duration``, or
``win_duration=None``) runs the whole signal at once and compiles once per input length, as
the reference does. ``decompress`` writes the decoded chunks into one buffer at the model
rate and resamples it block by block into the output.

The model is a :class:`jaxlatent.models.dac.DAC`-like module with ``config`` (a
:class:`~jaxlatent.models.dac.DACConfig`), ``encoder``, ``quantizer`` (a
:class:`~jaxlatent.quantizers.dac.ResidualVectorQuantize`) and ``decoder``, the encoder
and decoder taking ``padding=`` (see :class:`~jaxlatent.models.dac.Encoder`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable

import numpy as np
from flax import nnx

from jaxlatent._checks import check_n_quantizers
from jaxlatent.codec import chunking
from jaxlatent.codec.dac_file import DACFile, window_codes
from jaxlatent.codec.loudness import CHANNEL_GAINS, StreamingMeter, normalize_gain
from jaxlatent.codec.resample import Resampler
from jaxlatent.compilation import compiled

__all__ = [
    "PreparedAudio",
    "check_decodable",
    "compress",
    "decompress",
    "finish_decoding",
    "prepare",
]

#: Chunks dispatched to the device before the host waits for the oldest one.
_IN_FLIGHT = 2


def _encode_chunk(model, audio, *, n_q: int, padding: bool):
    """int32 codes ``[rows, n_q, frames]`` of audio ``[rows, samples, 1]``."""
    return model.quantizer(model.encoder(audio, padding=padding), n_q).codes


def _decode_chunk(model, codes, *, padding: bool):
    """Audio ``[rows, samples]`` of int32 codes ``[rows, n_q, frames]``."""
    return model.decoder(model.quantizer.from_codes(codes).z, padding=padding)[..., 0]


def _config(model):
    config = getattr(model, "config", None)
    if config is None or not all(hasattr(model, a) for a in ("encoder", "quantizer", "decoder")):
        raise ValueError(
            "model must be a DAC model with `config`, `encoder`, `quantizer` and `decoder`, got "
            f"{type(model).__name__}"
        )
    return config


def _check_audio(audio, sample_rate) -> np.ndarray:
    audio = np.asarray(audio)
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be floating point samples, got dtype {audio.dtype}")
    if audio.ndim == 1:
        audio = audio[None, :, None]
    elif audio.ndim == 2:
        audio = audio[None]
    if audio.ndim != 3:
        raise ValueError(
            f"audio must be [time], [time, channels] or [batch, time, channels], got shape "
            f"{audio.shape}"
        )
    if 0 in audio.shape:
        raise ValueError(f"audio is empty (shape {audio.shape})")
    if audio.shape[-1] > len(CHANNEL_GAINS):
        raise ValueError(
            f"audio has {audio.shape[-1]} channels; the loudness meter supports at most "
            f"{len(CHANNEL_GAINS)} (is it [time, channels]?)"
        )
    for start in range(0, audio.shape[1], 1 << 18):  # block by block: no input-sized temporary
        if not np.isfinite(audio[:, start : start + (1 << 18)]).all():
            raise ValueError("audio contains NaN or Inf samples")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate}")
    return audio


def _progress(iterable, total: int, verbose: bool, desc: str):
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="chunk")


def _run_chunks(fn, state, inputs, n: int, verbose: bool, desc: str):
    """Yield ``np.asarray(fn(state, x))`` for every `x`, keeping a few chunks in flight."""
    pending = []
    for x in _progress(inputs, n, verbose, desc):
        pending.append(fn(state, x))
        if len(pending) > _IN_FLIGHT:
            yield np.asarray(pending.pop(0))
    for p in pending:
        yield np.asarray(p)


def _rows(audio: np.ndarray) -> np.ndarray:
    """``[batch * channels, time]`` rows of ``[batch, time, channels]`` (a view when possible)."""
    batch, time, channels = audio.shape
    if batch == 1:
        return audio[0].T
    return audio.transpose(0, 2, 1).reshape(batch * channels, time)


#: Samples per row read at a time when analysing the resampled signal / writing the output.
_READ_BLOCK = 1 << 18


def _analyse(signal: Resampler, channels: int, rate: int):
    """One pass over the resampled rows: loudness per batch item and peak per row."""
    rows = signal.rows.shape[0]
    meter = StreamingMeter(rows, signal.length, rate, channels=channels)
    peaks = np.zeros(rows, np.float32)
    for s0 in range(0, signal.length, _READ_BLOCK):
        y = signal.read(s0, min(s0 + _READ_BLOCK, signal.length))
        meter.feed(y)
        np.maximum(peaks, np.abs(y).max(axis=1), out=peaks)
    return meter.loudness(), peaks


@dataclasses.dataclass(frozen=True)
class PreparedAudio:
    """Audio resampled, measured and cut into the model's windows, ready to be coded.

    What :func:`compress` computes before the model runs (steps 1-2 and the window plan of
    step 4), so that windows of many inputs can be coded together
    (:class:`jaxlatent.codec.batch.BatchEncoder`) with the codes :func:`compress` gives.

    Attributes:
      plan: the windows (:func:`~jaxlatent.codec.chunking.chunk_plan`).
      n_q: codebooks to use.
      window_samples: samples per window given to the encoder, the same for every window
        (unchunked: the signal zero-padded to whole hops, as the model's ``preprocess``).
      rows: coded rows (``batch * channels``).
      input_db: float32 ``[batch]`` loudness of the input in LUFS.
      original_length: input samples per channel.
      channels: input channels.
      sample_rate: input rate in Hz.
      read: ``read(start, n)`` -> float32 ``[rows, n, 1]``: samples ``[start, start + n)``
        of the normalised signal at the model rate, zero outside it.
    """

    plan: chunking.ChunkPlan
    n_q: int
    window_samples: int
    rows: int
    input_db: np.ndarray
    original_length: int
    channels: int
    sample_rate: int
    read: Callable[[int, int], np.ndarray]

    @property
    def padding(self) -> bool:
        """Whether the model runs with its convolutions padded (one unchunked window)."""
        return not self.plan.chunked

    def window(self, k: int) -> np.ndarray:
        """Window `k` (in ``[0, plan.n_chunks)``): float32 ``[rows, window_samples, 1]``."""
        if not self.plan.chunked:
            return self.read(0, self.window_samples)
        return self.read(k * self.plan.hop - self.plan.delay, self.plan.window)

    def dac_file(self, codes: Iterable[np.ndarray]) -> DACFile:
        """The :class:`DACFile` of every window's int codes ``[rows, n_q, frames]``, in order
        (:func:`jaxlatent.codec.dac_file.window_codes`: one ``uint16`` array, filled window by
        window).

        Raises:
          ValueError: if the windows are not ``plan.n_chunks`` windows of the same shape.
        """
        out, chunk_length = window_codes(codes, self.plan.n_chunks)
        return DACFile(
            codes=out,
            chunk_length=chunk_length,
            original_length=self.original_length,
            input_db=self.input_db,
            channels=self.channels,
            sample_rate=self.sample_rate,
            padding=self.padding,
        )


def prepare(
    model: nnx.Module,
    audio,
    sample_rate: int,
    *,
    win_duration: float | None = 1.0,
    n_quantizers: int | None = None,
    normalize_db: float | None = -16,
) -> PreparedAudio:
    """Steps 1-2 of :func:`compress` and its window plan; arguments and errors as there.

    Returns:
      A :class:`PreparedAudio` (the signal is resampled lazily, window by window).
    """
    config = _config(model)
    audio = _check_audio(audio, sample_rate)
    n_q = check_n_quantizers(n_quantizers, config.n_codebooks)
    if normalize_db is not None and not math.isfinite(float(normalize_db)):
        raise ValueError(f"normalize_db must be a finite number or None, got {normalize_db!r}")
    batch, original_length, channels = audio.shape
    sr = config.sample_rate

    # 1-2. Resample (lazily, block by block), measure the loudness and the peaks.
    signal = Resampler(_rows(audio), int(sample_rate), sr)
    length = signal.length
    if length < 1:
        raise ValueError(
            f"audio of {original_length} samples at {sample_rate} Hz is empty at the model's "
            f"{sr} Hz"
        )
    input_db, peaks = _analyse(signal, channels, sr)
    # Normalise (audio * gain, per batch item) then limit every channel's peak to 1
    # (audio * (1 / peak)): applied to each window as it is read, in the reference's float32
    # order; max |x * g| = fl(max |x| * g) because rounding is monotonic.
    gain = np.ones(batch, np.float32)
    if normalize_db is not None:
        gain = normalize_gain(normalize_db, input_db)
    row_gain = np.repeat(gain, channels)
    peaks = peaks * row_gain
    peak_gain = np.where(peaks > 1.0, np.float32(1.0) / np.maximum(peaks, 1.0), np.float32(1))
    peak_gain = peak_gain.astype(np.float32)

    def read(start: int, n: int) -> np.ndarray:
        y = signal.read(start, start + n) * row_gain[:, None]
        y = y * peak_gain[:, None]
        return y[:, :, None]  # [rows, n, 1]

    plan = chunking.chunk_plan(config, length, win_duration)
    window = plan.window
    if not plan.chunked:  # preprocess: one window padded to whole hops
        window = math.ceil(length / config.hop_length) * config.hop_length
    return PreparedAudio(
        plan,
        n_q,
        window,
        batch * channels,
        input_db,
        original_length,
        channels,
        int(sample_rate),
        read,
    )


def compress(
    model: nnx.Module,
    audio,
    sample_rate: int,
    *,
    win_duration: float | None = 1.0,
    n_quantizers: int | None = None,
    normalize_db: float | None = -16,
    verbose: bool = False,
) -> DACFile:
    """Code audio of any length, rate and channel count into a :class:`DACFile`.

    Args:
      model: a DAC model (see the module docstring), in evaluation semantics.
      audio: float samples ``[time]``, ``[time, channels]`` (as soundfile reads them) or
        ``[batch, time, channels]``; any sample rate, at most 5 channels.
      sample_rate: rate of `audio` in Hz.
      win_duration: window in seconds (the reference's default 1.0; its CLI uses 5.0);
        audio no longer than this is coded in one pass; ``None`` always codes in one pass.
      n_quantizers: codebooks to use (default all).
      normalize_db: loudness target in LUFS before coding; ``None`` skips it.
      verbose: show a progress bar over the chunks (tqdm).

    Returns:
      The :class:`DACFile`: codes ``uint16 [batch * channels, n_q, frames]`` and metadata
      (``input_db`` float32 ``[batch]``, ``original_length`` = ``time``, ``sample_rate``,
      ``chunk_length``, ``channels``, ``padding``).

    Raises:
      ValueError: for audio that is not float or is empty, has NaN/Inf samples or more than 5
        channels; a bad sample rate, `n_quantizers` outside ``[1, n_codebooks]``, or a window
        too short for the model.

    Source: descript-audio-codec 1.0.0 ``dac.model.base.CodecMixin.compress``.
    """
    prepared = prepare(
        model,
        audio,
        sample_rate,
        win_duration=win_duration,
        n_quantizers=n_quantizers,
        normalize_db=normalize_db,
    )
    # 3-4. Code the rows, whole or window by window.
    graphdef, state = nnx.split(model)
    fn = compiled(_encode_chunk, graphdef, n_q=prepared.n_q, padding=prepared.padding)
    n_chunks = prepared.plan.n_chunks
    windows = (prepared.window(k) for k in range(n_chunks))
    return prepared.dac_file(_run_chunks(fn, state, windows, n_chunks, verbose, "compress"))


def decompress(model: nnx.Module, dac_file: DACFile, *, verbose: bool = False) -> np.ndarray:
    """Decode a :class:`DACFile` (made here or by the official package) to audio.

    Args:
      model: the DAC model the file was coded with (same variant).
      dac_file: the codes and metadata (:meth:`DACFile.load` reads a ``.dac`` file).
      verbose: show a progress bar over the chunks (tqdm).

    Returns:
      float32 ``[batch, original_length, channels]`` at ``dac_file.sample_rate``, loudness
      restored to ``input_db``. Exactly ``original_length`` samples (the reference crashes
      for 16/24 kHz models when the decoded signal falls short; the gap is zero-filled).

    Raises:
      ValueError: if the file has more codebooks than the model or codes outside its
        codebooks.

    Source: descript-audio-codec 1.0.0 ``dac.model.base.CodecMixin.decompress``.
    """
    config = _config(model)
    check_decodable(model, dac_file)
    codes = dac_file.codes
    rows, _, frames = codes.shape
    step = dac_file.chunk_length
    graphdef, state = nnx.split(model)
    fn = compiled(_decode_chunk, graphdef, padding=bool(dac_file.padding))
    chunks = (codes[:, :, i : i + step].astype(np.int32) for i in range(0, frames, step))
    n_chunks = -(-frames // step)
    recons = None
    filled = 0
    for y in _run_chunks(fn, state, chunks, n_chunks, verbose, "decompress"):
        if recons is None:  # every chunk but the last decodes to as many samples as the first
            recons = np.empty((rows, y.shape[-1] * n_chunks), np.float32)
        if filled + y.shape[-1] > recons.shape[-1]:
            recons = np.concatenate([recons[:, :filled], y], axis=-1)
        else:
            recons[:, filled : filled + y.shape[-1]] = y
        filled += y.shape[-1]
    return finish_decoding(dac_file, recons[:, :filled], config.sample_rate)


def check_decodable(model: nnx.Module, dac_file: DACFile) -> None:
    """Raise unless `model` can decode `dac_file` (the checks of :func:`decompress`).

    Raises:
      ValueError: if `dac_file` is not a :class:`DACFile`, or has more codebooks than the
        model or codes outside its codebooks.
    """
    config = _config(model)
    if not isinstance(dac_file, DACFile):
        raise ValueError(f"dac_file must be a DACFile, got {type(dac_file).__name__}")
    codes = dac_file.codes
    n_q = codes.shape[1]
    if n_q > config.n_codebooks:
        raise ValueError(
            f"the file has {n_q} codebooks but the model only {config.n_codebooks}: it was "
            "coded with another model variant"
        )
    if int(codes.max()) >= config.codebook_size:
        raise ValueError(
            f"the file has code {int(codes.max())} but the model's codebooks have "
            f"{config.codebook_size} entries: it was coded with another model"
        )


def finish_decoding(dac_file: DACFile, recons: np.ndarray, model_rate: int) -> np.ndarray:
    """The last steps of :func:`decompress`: loudness back to ``input_db``, resampling.

    Args:
      dac_file: the file decoded.
      recons: float32 ``[rows, samples]``, its decoded chunks concatenated, at `model_rate`
        (modified in place).
      model_rate: the model's sample rate in Hz.

    Returns:
      float32 ``[batch, original_length, channels]`` at ``dac_file.sample_rate``.
    """
    rows, filled = recons.shape
    sr = model_rate
    # Loudness back to input_db (each decoded channel measured on its own, as the reference).
    meter = StreamingMeter(rows, filled, sr)
    for s0 in range(0, filled, _READ_BLOCK):  # block by block: no signal-sized temporaries
        meter.feed(recons[:, s0 : s0 + _READ_BLOCK])
    target = np.repeat(dac_file.input_db, rows // dac_file.input_db.shape[0])
    recons *= normalize_gain(target, meter.loudness())[:, None]

    # Resample to the file's rate straight into the output; the reference's signal may be
    # shorter than original_length (16/24 kHz decoders), the rest stays zero.
    n, channels = dac_file.original_length, dac_file.channels
    out = np.zeros((rows // channels, n, channels), np.float32)
    signal = Resampler(recons, sr, dac_file.sample_rate)
    for s0 in range(0, min(n, signal.length), _READ_BLOCK):
        s1 = min(s0 + _READ_BLOCK, n, signal.length)
        y = signal.read(s0, s1)
        for r in range(rows):
            out[r // channels, s0:s1, r % channels] = y[r]
    return out
