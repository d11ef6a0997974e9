"""Exact windowed coding: the codes and audio of the whole-signal DAC, window by window.

:func:`compress_exact` codes long audio in fixed windows of ``win_duration`` seconds (a whole
number of code frames) that each read the encoder's receptive field on both sides
(:func:`jaxlatent.models.dac.receptive_field`) and run every convolution exactly as the
whole-signal ``DAC.encode`` (padding on) does at those positions
(:mod:`jaxlatent.models.dac.windowed`): the codes are those of encoding the whole signal at
once, whatever the window, without the official chunked ``compress``'s dependence on
``win_duration`` nor its boundary artefacts (descript-audio-codec issues #39, #45). The
resampling, loudness normalisation and peak limit are the official ``compress``'s
(:func:`jaxlatent.codec.compress`, the same code). The result is an *unchunked* ``.dac`` file
(``padding=True``, ``chunk_length`` = all frames): the official ``DACFile.load`` and
``decompress`` read it and decode it in one pass to the same audio.

:func:`decompress_exact` decodes such a file window by window with the decoder's receptive
field of codes on both sides: the audio of the whole-signal ``DAC.decode`` (within float32
round-off), then the official loudness restoration and resampling. Files that are chunked, or
no longer than one window, are decoded by :func:`jaxlatent.codec.decompress` as they are.

Memory: the model sees one window shape (one compilation per window size, whatever the
length); besides the input (encode), the codes and the decoded signal at the model rate
(decode: the official algorithm measures the loudness of all of it before scaling), nothing
grows with the length of the audio.

A disagreement with whole-signal codes can only be a float32 near-tie of the quantizer's
nearest-code search: the windows' convolutions have other shapes than the whole signal's,
so XLA may sum in another order (a few ulps on the latents).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
from flax import nnx

from jaxlatent.codec.chunking import check_win_duration
from jaxlatent.codec.compression import (
    PreparedAudio,
    _config,
    _run_chunks,
    check_decodable,
    decompress,
    finish_decoding,
    prepare,
)
from jaxlatent.codec.dac_file import DACFile, window_codes
from jaxlatent.compilation import compiled
from jaxlatent.models.dac.receptive import decoder_stages, stage_lengths
from jaxlatent.models.dac.windowed import (
    WindowPlan,
    decode_window,
    decoder_plan,
    encode_window,
    encoder_plan,
    layer_lengths,
)

__all__ = [
    "ExactWindows",
    "compress_exact",
    "decompress_exact",
    "exact_windows",
    "window_frames",
]


def window_frames(config, win_duration: float) -> int:
    """Code frames per window of `win_duration` seconds: ``ceil(win * rate / hop)``, >= 1.

    Raises:
      ValueError: if `win_duration` is not a positive finite number of seconds.

    Example:
      >>> from jaxlatent.models.dac import DACConfig
      >>> window_frames(DACConfig.dac_44khz_8kbps(), 5.0)
      431
    """
    check_win_duration(win_duration)
    return max(1, math.ceil(win_duration * config.sample_rate / config.hop_length))


def _bucket(frames: int, limit: int) -> int:
    """Window frames for a signal of `frames`: `limit`, or the power of two >= `frames` when
    smaller (short signals do not pay for a long window; few shapes to compile)."""
    return min(limit, 1 << max(frames - 1, 0).bit_length())


@dataclasses.dataclass(frozen=True)
class ExactWindows:
    """The encoder windows of one prepared signal that :func:`compress_exact` codes.

    Every window has the same shapes for a given `window_frames` (its position and the
    signal's length are arrays, one per row), so windows of many signals can share a batch
    (:meth:`jaxlatent.codec.batch.BatchEncoder.encode_exact`) with the codes
    :func:`compress_exact` gives.

    Attributes:
      prep: the unchunked prepared signal (:func:`jaxlatent.codec.compression.prepare` with
        ``win_duration=None``).
      frames: code frames of the signal (``ceil(samples / hop)`` at the model's rate).
      window_frames: code frames per window: :func:`window_frames` of the window, or for a
        shorter signal the power of two that holds its frames (if smaller).
      plan: the windows' geometry (:func:`jaxlatent.models.dac.windowed.encoder_plan`).
      lengths: int32 ``[stages]``: the whole signal's input length of every stage.
      hop: samples per code frame.
    """

    prep: PreparedAudio
    frames: int
    window_frames: int
    plan: WindowPlan
    lengths: np.ndarray
    hop: int

    @property
    def n_windows(self) -> int:
        """Windows of the signal: ``ceil(frames / window_frames)``."""
        return -(-self.frames // self.window_frames)

    def window(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window `k` (in ``[0, n_windows)``) as the arguments of
        :func:`~jaxlatent.models.dac.windowed.encode_window`: float32 audio
        ``[rows, plan.input_size, 1]`` and int32 starts and lengths ``[rows, stages]``."""
        f0 = k * self.window_frames
        x = self.prep.read(f0 * self.hop + self.plan.input_start, self.plan.input_size)
        shape = (self.prep.rows, len(self.lengths))
        starts = np.broadcast_to(self.plan.starts(f0), shape)
        return x, starts, np.broadcast_to(self.lengths, shape)

    def dac_file(self, codes: Iterable[np.ndarray]) -> DACFile:
        """The unchunked :class:`DACFile` of every window's int codes
        ``[rows, n_q, window_frames]``, in order (frames past the signal's end dropped).

        Raises:
          ValueError: if the windows are not :attr:`n_windows` windows of
            ``[rows, n_q, window_frames]``.
        """
        prep = self.prep
        out, width = window_codes(codes, self.n_windows, self.frames)
        if out.shape[:2] != (prep.rows, prep.n_q) or width != self.window_frames:
            raise ValueError(
                f"windows of codes {(*out.shape[:2], width)}; expected "
                f"{(prep.rows, prep.n_q, self.window_frames)}"
            )
        return DACFile(
            codes=out,
            chunk_length=self.frames,
            original_length=prep.original_length,
            input_db=prep.input_db,
            channels=prep.channels,
            sample_rate=prep.sample_rate,
            padding=True,
        )


def exact_windows(model: nnx.Module, prep: PreparedAudio, win_duration: float) -> ExactWindows:
    """The :class:`ExactWindows` of `prep` in windows of `win_duration` seconds.

    Raises:
      ValueError: if `prep` is chunked (prepared with a ``win_duration``), or `win_duration`
        is not a positive finite number of seconds.
    """
    check_win_duration(win_duration)
    if prep.plan.chunked:
        raise ValueError("exact windows need audio prepared unchunked (win_duration=None)")
    config = _config(model)
    hop = config.hop_length
    frames = -(-prep.plan.window // hop)  # preprocess: zero-pad to a multiple of the hop
    n = _bucket(frames, window_frames(config, win_duration))
    plan = encoder_plan(config, n)
    return ExactWindows(prep, frames, n, plan, layer_lengths(plan, frames * hop), hop)


def compress_exact(
    model: nnx.Module,
    audio,
    sample_rate: int,
    *,
    win_duration: float = 5.0,
    n_quantizers: int | None = None,
    normalize_db: float | None = -16,
    verbose: bool = False,
) -> DACFile:
    """Code audio into an unchunked :class:`DACFile` with the whole-signal codes, in windows.

    Args:
      model: a :class:`~jaxlatent.models.dac.DAC`, in evaluation semantics.
      audio: float samples ``[time]``, ``[time, channels]`` or ``[batch, time, channels]``;
        any sample rate, at most 5 channels (as :func:`jaxlatent.codec.compress`).
      sample_rate: rate of `audio` in Hz.
      win_duration: window in seconds (rounded up to whole code frames); only speed and
        memory depend on it, not the codes.
      n_quantizers: codebooks to use (default all).
      normalize_db: loudness target in LUFS before coding; ``None`` skips it.
      verbose: progress bar over the windows (tqdm).

    Returns:
      A :class:`DACFile` with ``padding=True`` and ``chunk_length`` = frames: codes
      ``uint16 [batch * channels, n_q, ceil(time' / hop)]`` (``time'``: samples at the
      model's rate), equal to ``DAC.encode`` of each normalised, hop-padded channel at once.

    Raises:
      ValueError: for the bad inputs of :func:`jaxlatent.codec.compress`, or a
        `win_duration` that is not a positive finite number.

    Source: the normalisation of descript-audio-codec 1.0.0 ``CodecMixin.compress``; the
    windowing is this package's (see the module docstring).
    """
    check_win_duration(win_duration)
    prep = prepare(
        model,
        audio,
        sample_rate,
        win_duration=None,
        n_quantizers=n_quantizers,
        normalize_db=normalize_db,
    )
    windows = exact_windows(model, prep, win_duration)
    graphdef, state = nnx.split(model)
    fn = compiled(encode_window, graphdef, frames=windows.window_frames, n_q=prep.n_q)
    inputs = (windows.window(k) for k in range(windows.n_windows))
    run = _run_chunks(_call, (fn, state), inputs, windows.n_windows, verbose, "compress --exact")
    return windows.dac_file(run)


def _call(fn_state, args):
    fn, state = fn_state
    return fn(state, *args)


def decodes_in_windows(model: nnx.Module, dac_file: DACFile, *, win_duration: float = 5.0) -> bool:
    """Whether :func:`decompress_exact` decodes `dac_file` in windows (an unchunked file of
    more than one window of `win_duration` seconds) rather than as :func:`decompress`."""
    frames = dac_file.codes.shape[-1]
    return (
        bool(dac_file.padding)
        and dac_file.chunk_length == frames
        and frames > window_frames(_config(model), win_duration)
    )


def decompress_exact(
    model: nnx.Module,
    dac_file: DACFile,
    *,
    win_duration: float = 5.0,
    verbose: bool = False,
) -> np.ndarray:
    """Decode a :class:`DACFile`; unchunked files window by window with code context.

    Args:
      model: the DAC model the file was coded with.
      dac_file: the codes and metadata (e.g. from :func:`compress_exact`, or an official
        unchunked file).
      win_duration: decoding window in seconds (whole code frames); only speed and memory
        depend on it.
      verbose: progress bar over the windows (tqdm).

    Returns:
      float32 ``[batch, original_length, channels]`` at ``dac_file.sample_rate``, as
      :func:`jaxlatent.codec.decompress` returns for the same file (its one pass over an
      unchunked file, here in windows: equal within float32 round-off).

    Raises:
      ValueError: as :func:`jaxlatent.codec.decompress`, or for a `win_duration` that is not
        a positive finite number.
    """
    check_win_duration(win_duration)
    check_decodable(model, dac_file)
    config = _config(model)
    codes = dac_file.codes
    rows, n_q, frames = codes.shape
    n = window_frames(config, win_duration)
    if not decodes_in_windows(model, dac_file, win_duration=win_duration):
        return decompress(model, dac_file, verbose=verbose)
    hop, sr = config.hop_length, config.sample_rate
    plan = decoder_plan(config, n)
    lengths = layer_lengths(plan, frames)
    total = stage_lengths(decoder_stages(config), frames)[-1]
    graphdef, state = nnx.split(model)
    fn = compiled(decode_window, graphdef, frames=n)

    def windows():
        for f0 in range(0, frames, n):
            c0 = f0 + plan.input_start
            x = np.zeros((rows, n_q, plan.input_size), np.int32)
            lo, hi = max(c0, 0), min(c0 + plan.input_size, frames)
            x[:, :, lo - c0 : hi - c0] = codes[:, :, lo:hi]
            yield x, plan.starts(f0), lengths

    recons = np.empty((rows, total), np.float32)
    n_windows = -(-frames // n)
    run = _run_chunks(_call, (fn, state), windows(), n_windows, verbose, "decompress --exact")
    for k, y in enumerate(run):
        s0 = k * n * hop
        recons[:, s0 : s0 + n * hop] = y[:, : total - s0]
    return finish_decoding(dac_file, recons, sr)
