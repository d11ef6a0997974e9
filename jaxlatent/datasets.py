"""Bundled real data for demos and tests (no downloads).

`bundled_speech()` returns the four SpeechBrain test utterances shipped in `jaxlatent/data`
(16 kHz mono read English speech, Apache-2.0; see `jaxlatent/data/SOURCES.md`).
"""

from __future__ import annotations

import importlib.resources
from typing import NamedTuple

import numpy as np


class Clip(NamedTuple):
    """An audio clip: ``audio`` float32 ``[time, channels]`` in [-1, 1], rate in Hz."""

    name: str
    audio: np.ndarray
    sample_rate: int


def _soundfile():
    """The `soundfile` module (reads and writes audio files; the ``audio`` extra).

    Raises:
      ImportError: if soundfile is not installed, saying how to install it.
    """
    try:
        import soundfile
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading and writing audio needs soundfile: pip install soundfile "
            "(or the clone's audio extra: pip install '.[audio]')"
        ) from e
    return soundfile


def read_audio(path) -> Clip:
    """Read a wav/flac file with soundfile as float32 ``[time, channels]``.

    Raises:
      ImportError: if soundfile is not installed (``pip install soundfile``).
      ValueError: if the file is not readable audio, is empty, or contains NaN/Inf.
    """
    soundfile = _soundfile()
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise ValueError(f"{path}: not a readable audio file ({e})") from e
    if audio.shape[0] == 0:
        raise ValueError(f"{path}: audio file is empty")
    if not np.isfinite(audio).all():
        raise ValueError(f"{path}: audio contains NaN or Inf samples")
    return Clip(str(getattr(path, "name", path)), audio, int(rate))


def bundled_speech() -> list[Clip]:
    """The bundled 16 kHz speech clips, sorted by name."""
    folder = importlib.resources.files("jaxlatent") / "data"
    paths = sorted(p for p in folder.iterdir() if p.name.startswith("speech_"))
    return [read_audio(p) for p in paths]
