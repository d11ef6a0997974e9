"""Band-limited sinc resampling with the numerics of ``julius.resample_frac`` (numpy).

The official DAC ``compress`` / ``decompress`` resample with audiotools'
``AudioSignal.resample``, which is ``julius.resample_frac(x, old_sr, new_sr)`` (julius 0.2.8,
zeros=24, rolloff=0.945): after dividing both rates by their gcd, output phase ``i`` of every
``new_sr`` outputs is a windowed-sinc FIR filter (Hann-squared window, ``zeros`` zero
crossings, cut-off ``rolloff * min(old_sr, new_sr) / 2``, normalised to unit DC gain) applied
with stride ``old_sr`` to the input padded by edge replication. This module computes the same
filters (in float32, as julius does) and the same products, so codes computed from the
resampled audio match the official ones; soxr's polyphase filter is a different (better)
filter, and gives measurably different audio, so it is not used here.

Memory: the input is processed in blocks of output frames, so apart from the output only a
block-sized temporary is allocated, whatever the length.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["resample", "resample_kernels", "resampled_length"]

#: Output frames (groups of ``new_sr`` samples after gcd reduction) computed per block.
_BLOCK_FRAMES = 8192


@functools.lru_cache(maxsize=16)
def resample_kernels(
    old_sr: int, new_sr: int, zeros: int = 24, rolloff: float = 0.945
) -> tuple[np.ndarray, int]:
    """The polyphase filters of ``julius.ResampleFrac`` (rates already gcd-reduced).

    Returns:
      ``(kernels, width)``: float32 ``[new_sr, 2 * width + old_sr]`` filters (one per output
      phase) and the replicate-padding width on each side.
    """
    sr = min(new_sr, old_sr) * rolloff
    width = math.ceil(zeros * old_sr / sr)
    idx = np.arange(-width, width + old_sr, dtype=np.float32)
    kernels = []
    for i in range(new_sr):
        # julius: t = (-i / new_sr + idx / old_sr) * sr, in float32 (python scalars are cast).
        t = (np.float32(-i / new_sr) + idx / np.float32(old_sr)) * np.float32(sr)
        t = np.clip(t, -zeros, zeros).astype(np.float32) * np.float32(math.pi)
        window = np.cos(t / np.float32(zeros) / np.float32(2)) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            sinc = np.where(t == 0, np.float32(1), np.sin(t) / t).astype(np.float32)
        kernel = sinc * window
        kernels.append(kernel / kernel.sum(dtype=np.float32))
    return np.stack(kernels).astype(np.float32), width


def _reduced(old_sr: int, new_sr: int) -> tuple[int, int]:
    for name, value in (("old_sr", old_sr), ("new_sr", new_sr)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer sample rate, got {value!r}")
    gcd = math.gcd(int(old_sr), int(new_sr))
    return int(old_sr) // gcd, int(new_sr) // gcd


def resampled_length(length: int, old_sr: int, new_sr: int) -> int:
    """Samples ``julius.resample_frac`` returns for `length` input samples.

    ``floor(new_sr * length / old_sr)`` with the quotient rounded to float32 first, as julius
    does (``torch.as_tensor`` of a Python float), so for very long inputs it can exceed the
    exact floor by one.

    Example:
      >>> resampled_length(48000, 48000, 44100), resampled_length(1001, 16000, 48000)
      (44100, 3003)
    """
    old, new = _reduced(old_sr, new_sr)
    return int(np.floor(np.float32(new * length / old)))


def resample(x: np.ndarray, old_sr: int, new_sr: int) -> np.ndarray:
    """Resample along the last axis as ``julius.resample_frac(x, old_sr, new_sr)``.

    Args:
      x: ``[..., time]`` float array (computed in float32).
      old_sr: sample rate of `x` in Hz.
      new_sr: target sample rate in Hz.

    Returns:
      float32 ``[..., resampled_length(time, old_sr, new_sr)]`` (`x` itself, as float32, when
      the rates are equal).

    Raises:
      ValueError: if a rate is not a positive integer or `x` has no time axis.

    Source: julius 0.2.8 ``julius.resample.ResampleFrac`` (used by audiotools 0.7.2
    ``AudioSignal.resample`` in descript-audio-codec 1.0.0).

    Example:
      >>> y = resample(np.ones((2, 480), np.float32), 48000, 44100)
      >>> y.shape, bool(np.allclose(y, 1.0))
      ((2, 441), True)
    """
    x = np.asarray(x)
    if x.ndim < 1:
        raise ValueError(f"resample expects [..., time] audio, got shape {x.shape}")
    old, new = _reduced(old_sr, new_sr)
    x = x.astype(np.float32, copy=False)
    if old == new:
        return x
    kernels, width = resample_kernels(old, new)
    shape, length = x.shape[:-1], x.shape[-1]
    ksize = kernels.shape[1]
    # julius convolves the padded input (length + 2 * width + old) with stride `old`, then
    # keeps the first `resampled_length` outputs (fewer if the convolution gives fewer).
    n_frames = (length + 2 * width + old - ksize) // old + 1 if length else 0
    out_len = min(resampled_length(length, old_sr, new_sr), n_frames * new)
    n_frames = min(n_frames, -(-out_len // new))  # frames beyond out_len are discarded anyway
    rows = x.reshape(math.prod(shape), length)
    out = np.empty((rows.shape[0], out_len), np.float32)
    kt = np.ascontiguousarray(kernels.T)  # [ksize, new]
    for r, row in enumerate(rows):
        for f0 in range(0, n_frames, _BLOCK_FRAMES):
            f1 = min(n_frames, f0 + _BLOCK_FRAMES)
            # Input samples (in padded coordinates) [f0 * old, (f1 - 1) * old + ksize).
            lo, hi = f0 * old - width, (f1 - 1) * old + ksize - width
            seg = row[max(lo, 0) : min(hi, length)]
            seg = np.pad(seg, (max(0, -lo), max(0, hi - length)), mode="edge")
            frames = np.lib.stride_tricks.sliding_window_view(seg, ksize)[::old]
            y = (frames @ kt).reshape(-1)  # [frames * new], phase-major within a frame
            s0 = f0 * new
            n = min(y.shape[0], out_len - s0)
            out[r, s0 : s0 + n] = y[:n]  # blocks tile [0, out_len) exactly
    return out.reshape(*shape, out_len)
