"""The user's jaxlatent cache folder (private): one rule for every cache jaxlatent keeps."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def cache_root(environ: Mapping[str, str] = os.environ) -> Path:
    """``$JAXLATENT_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxlatent``, else
    ``~/.cache/jaxlatent`` (``~`` from ``$HOME``); the caches are subfolders of it."""
    root = environ.get("JAXLATENT_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache"
    )
    return Path(xdg) / "jaxlatent"
