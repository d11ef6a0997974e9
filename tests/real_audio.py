"""The real audio clips the tests use, read from this repository (never skipped).

The clips are those of the project's shared folder ``../shared/audio`` (sources and licenses in
each folder's SOURCES.md): the four 16 kHz speech clips ship with the package
(``jaxlatent/data/``), the two music clips are test data (``tests/data/audio/``). A missing
clip is an error, not a skip: a clone that lacks one would otherwise pass without the parity
tests on real audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "jaxlatent" / "data"
MUSIC = REPO / "tests" / "data" / "audio"


def clip_path(name: str) -> Path:
    """Path of the clip `name` (``speech_*`` from the package data, the others from the tests'
    data).

    Raises:
      FileNotFoundError: if the clip is not in the repository.
    """
    path = (SPEECH if name.startswith("speech_") else MUSIC) / name
    if not path.is_file():
        raise FileNotFoundError(f"real audio clip {name!r} is missing from the repository: {path}")
    return path


def read_clip(name: str, seconds: float | None = None) -> tuple[np.ndarray, int]:
    """``(samples float32 [time, channels], sample rate in Hz)`` of clip `name`, the first
    `seconds` only when given."""
    x, sr = sf.read(clip_path(name), dtype="float32", always_2d=True)
    if seconds is not None:
        x = x[: int(seconds * sr)]
    return np.ascontiguousarray(x), sr
