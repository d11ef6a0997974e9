"""Audio and ``.dac`` files for the command line: finding inputs, atomic writing.

Audio is read with :func:`jaxlatent.datasets.read_audio` and written with soundfile
(libsndfile: WAV, FLAC, OGG, AIFF, ...; the ``audio`` extra). Every output is
written to a temporary file in the target folder and renamed into place, so an error never
leaves a partial file behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from jaxlatent.atomic import atomic_write
from jaxlatent.datasets import _soundfile

__all__ = ["AUDIO_SUFFIXES", "find_inputs", "output_path", "write_audio"]

#: File suffixes taken from folders given as audio inputs (files are taken whatever the suffix).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3")


def find_inputs(
    inputs: Sequence[str | os.PathLike], suffixes: Iterable[str]
) -> list[tuple[Path, Path]]:
    """Input files and their paths relative to what was given.

    A file is taken as given (relative path: its name); a folder contributes every file below
    it whose suffix is in `suffixes` (relative path: below the folder), sorted. ``@LIST``
    (an existing text file named after the ``@``) contributes the files and folders it names,
    one path a line (blank lines and lines starting with ``#`` ignored; relative paths are
    relative to the list's folder; relative path of a listed file: below the list's folder,
    else its name).

    Returns:
      ``[(path, relative_path), ...]``.

    Raises:
      FileNotFoundError: if an input, or a path an ``@LIST`` names, does not exist (the
        message names the missing paths).
      ValueError: if nothing is found, or two inputs map to the same relative path (their
        outputs would collide).
    """
    suffixes = tuple(s.lower() for s in suffixes)
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        if str(item).startswith("@") and not Path(item).exists():
            found += _listed(Path(str(item)[1:]), suffixes)
            continue
        path = Path(item)
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
            )
            found += [(p, p.relative_to(path)) for p in files]
        elif path.exists():
            found.append((path, Path(path.name)))
        else:
            raise FileNotFoundError(f"input not found: {path}")
    if not found:
        raise ValueError(f"no input files ({', '.join(suffixes)}) in {', '.join(map(str, inputs))}")
    seen: dict[Path, Path] = {}
    for path, rel in found:
        key = rel.with_suffix("")
        if key in seen and seen[key] != path:
            raise ValueError(f"{seen[key]} and {path} would both be written as {key}")
        seen[key] = path
    return found


def _listed(listing: Path, suffixes: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """The inputs an ``@LIST`` file names (see :func:`find_inputs`)."""
    if not listing.is_file():
        raise FileNotFoundError(f"input list not found: @{listing}")
    base = listing.parent
    paths = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            path = Path(line).expanduser()
            paths.append(path if path.is_absolute() else base / path)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise FileNotFoundError(
            f"@{listing} names {len(missing)} missing file(s): {', '.join(missing[:3])}{more}"
        )
    found = []
    for path in paths:
        if path.is_dir():
            found += find_inputs([path], suffixes)
        else:
            try:
                rel = path.relative_to(base)
            except ValueError:
                rel = Path(path.name)
            found.append((path, rel))
    return found


def output_path(out_dir: str | os.PathLike, relative: Path, suffix: str) -> Path:
    """``out_dir / relative`` with `suffix` (the input's folder layout is kept)."""
    return Path(out_dir) / relative.with_suffix(suffix)


def write_audio(path: str | os.PathLike, audio: np.ndarray, rate: int) -> Path:
    """Write ``[time, channels]`` audio as a 16-bit PCM WAV (as the official ``dac decode``),
    atomically."""
    sf = _soundfile()
    audio = np.asarray(audio, np.float32)
    return atomic_write(
        path, lambda tmp: sf.write(tmp, audio, rate, subtype="PCM_16", format="WAV"), ".wav"
    )
