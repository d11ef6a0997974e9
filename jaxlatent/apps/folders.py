"""The data files of a ``--data FOLDER``: every file below it with a wanted suffix, in order."""

from __future__ import annotations

import os

__all__ = ["data_files"]


def data_files(folder: str, suffixes: tuple[str, ...]) -> list[str]:
    """Paths of the files below `folder` whose lower-cased names end with one of `suffixes`.

    Hidden files (``.name``) are skipped; the order is stable: folders walked top-down in
    sorted order, files sorted by name within each. A missing folder gives ``[]``.

    Example:
      >>> import tempfile
      >>> with tempfile.TemporaryDirectory() as d:
      ...     for name in ("b.WAV", "a.wav", ".c.wav", "d.txt"):
      ...         open(os.path.join(d, name), "w").close()
      ...     [os.path.basename(p) for p in data_files(d, (".wav",))]
      ['a.wav', 'b.WAV']
    """
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        paths += [
            os.path.join(root, f)
            for f in sorted(files)
            if f.lower().endswith(suffixes) and not f.startswith(".")
        ]
    return paths
