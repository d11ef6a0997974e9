"""The post-process transforms of DAC's training recipe, per example, in numpy (channels-last).

descript-audio-codec 1.0.0 ``conf/base.yml`` (and every ``conf/final/*.yml``) builds the train
and val transform as ``Compose(Compose(Identity), Compose(Identity, prob=augment_prob),
Compose(VolumeNorm, RescaleAudio, ShiftPhase))`` (``scripts/train.py`` ``build_transform``)
with ``VolumeNorm.db: [const, -16]``; the Identity stages do nothing. This module ports the
three that act, from descript-audiotools 0.7.2 ``audiotools.data.transforms``:

* `volume_norm` — ``VolumeNorm`` → ``AudioSignal.normalize(db)``: gain
  ``exp((db - loudness) * ln(10) / 20)`` with the loudness of ``AudioSignal.loudness``
  (`jaxlatent.codec.loudness.loudness`: BS.1770, padded to 0.5 s, floored at -70 LUFS);
* `rescale_audio` — ``RescaleAudio(val=1.0)`` → ``AudioSignal.ensure_max_of_audio``: each
  channel whose peak exceeds `val` is scaled to peak `val`;
* `shift_phase` — ``ShiftPhase(shift=("uniform", -pi, pi))`` → ``AudioSignal.shift_phase``
  inside a ``SpectralTransform``: the STFT of ``AudioSignal``'s default parameters (periodic
  Hann window of ``2 ** ceil(log2(0.032 * rate))`` samples, hop a quarter of it,
  ``torch.stft(center=True)`` with reflect padding), every bin's phase plus `shift` (as
  ``magnitude * exp(1j * (angle + shift))``), then ``torch.istft`` (window-squared
  overlap-add normalisation) back to the input length.

Each takes one example ``audio`` float32 ``[time, channels]`` and returns the same shape and
dtype (float32 arithmetic as torch's). `draw_shift` draws ShiftPhase's parameter; the recipe's
random numbers come from numpy, not from audiotools' ``RandomState`` stream (by design: the
same *distributions*, not the same numbers; parity tests pass the same drawn values to both).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft
import scipy.signal

from jaxlatent.codec.loudness import loudness, normalize_gain

__all__ = [
    "draw_shift",
    "rescale_audio",
    "shift_phase",
    "stft_window_length",
    "volume_norm",
]


def _check(audio) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 2 or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(
            f"audio must be float [time, channels], got {audio.dtype} shape {audio.shape}"
        )
    return audio.astype(np.float32, copy=False)


def volume_norm(audio, sample_rate: int, db: float = -16.0) -> np.ndarray:
    """``VolumeNorm(db)``: scale `audio` ``[time, channels]`` to `db` LUFS (all channels by one
    gain; loudness as ``AudioSignal.loudness``, so silence reads -70 and gets the largest
    gain, which `rescale_audio` then caps).

    Raises:
      ValueError: for audio that is not float ``[time, channels]`` (at most 5 channels).

    Example:
      >>> x = np.random.default_rng(0).standard_normal((16000, 1)).astype(np.float32) * 0.01
      >>> y = volume_norm(x, 16000, -16.0)
      >>> round(float(loudness(y[None], 16000)[0]), 3)
      -16.0
    """
    audio = _check(audio)
    gain = normalize_gain(db, loudness(audio[None], sample_rate))[0]
    return audio * gain


def rescale_audio(audio, val: float = 1.0) -> np.ndarray:
    """``RescaleAudio(val)``: each channel of `audio` ``[time, channels]`` whose peak
    ``max |x|`` exceeds `val` is multiplied by ``val / peak``; the others are unchanged.

    Example:
      >>> rescale_audio(np.array([[2.0, 0.5], [-4.0, 0.1]], np.float32)).tolist()
      [[0.5, 0.5], [-1.0, 0.10000000149011612]]
    """
    audio = _check(audio)
    peak = np.abs(audio).max(axis=0, keepdims=True)
    gain = np.where(peak > val, np.float32(val) / np.maximum(peak, np.float32(val)), 1)
    return audio * gain.astype(np.float32)


def stft_window_length(sample_rate: int) -> int:
    """``AudioSignal``'s default STFT window: ``2 ** ceil(log2(0.032 * sample_rate))`` samples
    (512 at 16 kHz, 1024 at 24 kHz, 2048 at 44.1 kHz)."""
    return int(2 ** (np.ceil(np.log2(0.032 * sample_rate))))


@functools.lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    window = scipy.signal.get_window("hann", n).astype(np.float32)  # periodic, as audiotools
    window.flags.writeable = False
    return window


def _stft(x: np.ndarray, n: int, hop: int, window: np.ndarray) -> np.ndarray:
    """``torch.stft(x [rows, time], n, hop, window, center=True, pad_mode="reflect")`` →
    complex64 ``[rows, frames, n // 2 + 1]``."""
    padded = np.pad(x, ((0, 0), (n // 2, n // 2)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n, axis=1)[:, ::hop]
    return scipy.fft.rfft(frames * window, axis=-1)


def _istft(spec: np.ndarray, n: int, hop: int, window: np.ndarray, length: int) -> np.ndarray:
    """``torch.istft(spec, n, hop, window, center=True, length=length)`` of complex
    ``[rows, frames, n // 2 + 1]`` → float32 ``[rows, length]``."""
    frames = scipy.fft.irfft(spec, n=n, axis=-1).astype(np.float32) * window
    rows, count = frames.shape[:2]
    total = n + hop * (count - 1)
    out = np.zeros((rows, total), np.float32)
    envelope = np.zeros(total, np.float32)
    square = window * window
    for i in range(count):
        out[:, i * hop : i * hop + n] += frames[:, i]
        envelope[i * hop : i * hop + n] += square
    start = n // 2
    end = min(start + length, total)
    y = out[:, start:end] / envelope[start:end]
    return np.pad(y, ((0, 0), (0, length - y.shape[1])))


def shift_phase(audio, sample_rate: int, shift: float) -> np.ndarray:
    """``ShiftPhase``: add `shift` radians to the phase of every STFT bin of `audio`
    ``[time, channels]`` and resynthesise (see the module docstring for the STFT).

    Raises:
      ValueError: for audio that is not float ``[time, channels]``, or not longer than half
        the STFT window (reflect padding needs it, as torch's).

    Example:
      >>> x = np.sin(np.arange(8000) / 5.0).astype(np.float32)[:, None]
      >>> y = shift_phase(x, 16000, np.pi)  # a half-turn negates the signal
      >>> bool(np.abs(y + x).max() < 1e-4)
      True
    """
    audio = _check(audio)
    n = stft_window_length(sample_rate)
    if audio.shape[0] <= n // 2:
        raise ValueError(
            f"ShiftPhase needs more than {n // 2} samples at {sample_rate} Hz (its STFT "
            f"window is {n}), got {audio.shape[0]}"
        )
    window, hop = _hann(n), n // 4
    spec = _stft(audio.T, n, hop, window)
    magnitude, phase = np.abs(spec), np.angle(spec)
    shifted = magnitude * np.exp(1j * (phase + np.float32(shift)).astype(np.float32))
    return np.ascontiguousarray(_istft(shifted, n, hop, window, audio.shape[0]).T)


def draw_shift(rng: np.random.Generator, low: float = -math.pi, high: float = math.pi) -> float:
    """ShiftPhase's ``("uniform", -pi, pi)`` draw from `rng`."""
    return float(rng.uniform(low, high))
