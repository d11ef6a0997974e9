"""librosa's mel filterbank, as audiotools 0.7.2 takes it (``AudioSignal.get_mel_filters``)."""

from __future__ import annotations

import functools

import numpy as np


@functools.cache
def mel_filters(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)``.

    Slaney mel scale and area normalisation (librosa's defaults), computed once per argument
    tuple in numpy (librosa is imported here, lazily: ``pip install ".[losses]"``).

    Args:
      sample_rate: Hz.
      n_fft: FFT size, samples (``n_fft // 2 + 1`` frequency bins).
      n_mels: mel bands.
      fmin: lowest band edge, Hz.
      fmax: highest band edge, Hz (``None``: ``sample_rate / 2``).

    Returns:
      float32 ``[n_mels, n_fft // 2 + 1]``, read-only.

    Raises:
      ModuleNotFoundError: if librosa is not installed.
    """
    from librosa.filters import mel

    basis = np.asarray(mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax))
    basis = basis.astype(np.float32)
    basis.setflags(write=False)
    return basis
