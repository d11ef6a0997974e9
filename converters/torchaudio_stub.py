"""A stand-in ``torchaudio`` for the reference packages that import it but barely use it.

torchaudio has no CPU build for this torch; SpeechBrain 1.1.2, ``dac`` and ``audiotools``
import it at import time. The code that the converters, the parity report, the benchmarks and
the tests run never calls it, except the official ``compress``, whose loudness meter calls
``torchaudio.functional.lfilter``: the stub provides that one function with scipy's
``lfilter`` (computed in float64 and cast back, as the reference's CPU path runs it in double
precision). Any other attribute of the stub raises an ``AttributeError`` that says so, so an
unexpected use cannot go unnoticed. The stub modules carry a ``__spec__``, so
``importlib.util.find_spec("torchaudio")`` works on them as on a real package.

One stub serves everyone: ``tests/conftest.py``, ``converters.dac_parity`` and the benchmarks
call `install_torchaudio_stub`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import sys
import types

__all__ = ["install_torchaudio_stub"]


class _StubModule(types.ModuleType):
    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        raise AttributeError(
            f"stub torchaudio has no attribute {item!r}: the reference code called a "
            "torchaudio function that jaxlatent does not expect it to call (only "
            "torchaudio.functional.lfilter is provided; install a real torchaudio for more)"
        )


def _module(name: str, *, package: bool) -> _StubModule:
    module = _StubModule(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
    if package:
        module.__path__ = []
    return module


def lfilter(waveform, a_coeffs, b_coeffs, clamp=True, batching=True):
    """``torchaudio.functional.lfilter`` on CPU through scipy, in float64 (torch tensors).

    Args:
      waveform: ``[..., time]`` (or ``[..., channels, time]`` with one filter per channel).
      a_coeffs, b_coeffs: ``[order + 1]`` or ``[channels, order + 1]`` denominator and
        numerator coefficients.
      clamp: clip the output to [-1, 1], as torchaudio does by default.
      batching: accepted for signature compatibility (per-channel filters are always batched).

    Returns:
      The filtered waveform in `waveform`'s dtype.
    """
    import numpy as np
    import scipy.signal
    import torch

    x = waveform.detach().cpu().double().numpy()
    a = a_coeffs.detach().cpu().double().numpy()
    b = b_coeffs.detach().cpu().double().numpy()
    if a.ndim == 1:
        y = scipy.signal.lfilter(b, a, x, axis=-1)
    else:  # one filter per channel (second-to-last axis), as torchaudio's batching mode
        y = np.stack(
            [scipy.signal.lfilter(b[i], a[i], x[..., i, :], axis=-1) for i in range(a.shape[0])],
            axis=-2,
        )
    if clamp:
        y = np.clip(y, -1.0, 1.0)
    return torch.from_numpy(y).to(waveform.dtype)


def _torch_version() -> str:
    """torchaudio 2.x is released with, and numbered as, the torch it is built for."""
    try:
        return importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def install_torchaudio_stub(version: str | None = None) -> None:
    """Register the stub ``torchaudio`` (and ``torchaudio.functional``) in `sys.modules`.

    Does nothing when a ``torchaudio`` is already imported or a real one imports. Call it
    before importing ``dac``, ``audiotools`` or SpeechBrain.

    Args:
      version: the stub's ``__version__`` (SpeechBrain parses it and warns about a version
        below 2.1); by default the installed torch's version, as a real torchaudio has.
    """
    if "torchaudio" in sys.modules:
        return
    try:  # a real torchaudio (e.g. on a GPU machine) is used as is.
        import torchaudio  # noqa: F401

        return
    except Exception:
        pass
    stub = _module("torchaudio", package=True)
    stub.__version__ = version or _torch_version()
    functional = _module("torchaudio.functional", package=False)
    functional.lfilter = lfilter
    stub.functional = functional
    sys.modules["torchaudio"] = stub
    sys.modules["torchaudio.functional"] = functional
