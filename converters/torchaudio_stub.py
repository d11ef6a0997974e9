"""An empty ``torchaudio`` for the reference packages that import it but never call it here.

torchaudio has no CPU build for this torch; SpeechBrain 1.1.2, ``dac`` and ``audiotools``
import it at import time, and the code that the converters, the parity report and the
benchmarks run never calls it. (The tests install their own, stricter stub in
``tests/conftest.py``.)
"""

from __future__ import annotations

import sys
import types

__all__ = ["install_torchaudio_stub"]


def install_torchaudio_stub(version: str = "0.0.0-stub") -> None:
    """Register an empty ``torchaudio`` (and ``torchaudio.functional``) in `sys.modules`.

    Does nothing when a real torchaudio imports. Call it before importing ``dac`` or
    SpeechBrain.

    Args:
      version: the stub's ``__version__`` (SpeechBrain parses it and warns about a version
        below 2.1).
    """
    try:
        import torchaudio  # noqa: F401
    except Exception:
        stub = types.ModuleType("torchaudio")
        stub.__version__ = version
        stub.functional = types.ModuleType("torchaudio.functional")
        sys.modules.setdefault("torchaudio", stub)
        sys.modules.setdefault("torchaudio.functional", stub.functional)
