"""Atomic file writes: a temporary file in the target's folder, then a rename.

Every file jaxlatent and its converters write (``.dac`` and audio files, checkpoints, logs,
pictures, reports) goes through :func:`atomic_write`, so an interrupted or failed write
never leaves a partial file at the target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike,
    content: bytes | str | Callable[[str], object],
    suffix: str | None = None,
) -> Path:
    """Write `path` atomically: to a temporary file next to it, flushed, then renamed.

    Args:
      path: the target file; its folder is created if missing.
      content: bytes, text (written as UTF-8), or ``write(tmp_path)``, a function that
        writes the file at ``tmp_path`` (for writers that take a path: soundfile,
        ``torch.save``, matplotlib).
      suffix: the temporary file's suffix (writers such as soundfile pick the format from
        it); default: the target's suffix.

    Returns:
      `path` as a :class:`~pathlib.Path`.

    Raises:
      OSError: if the folder or file cannot be written; whatever `content` raises. In every
        case the temporary file is removed and `path` is left as it was.

    The file gets the usual permissions (``0o666`` minus the umask, as ``open`` gives).

    Example:
      >>> import tempfile
      >>> with tempfile.TemporaryDirectory() as d:
      ...     atomic_write(Path(d) / "a.txt", "hello").read_text()
      'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = path.suffix
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=suffix)
    try:
        if callable(content):
            os.close(fd)
            fd = -1
            content(tmp)
            fd = os.open(tmp, os.O_RDONLY)
        else:
            data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
