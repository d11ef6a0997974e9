"""Access to the PyTorch reference implementations used by the parity tests.

Import through these helpers so that a missing reference package skips the parity tests
with a clear reason instead of failing at collection. torch, speechbrain and dac are only
ever imported here and in the converters.
"""

from __future__ import annotations

import numpy as np
import pytest


def torch():
    return pytest.importorskip("torch")


def sb_losses():
    return pytest.importorskip("speechbrain.nnet.losses")


def sb_autoencoders():
    return pytest.importorskip("speechbrain.nnet.autoencoders")


def to_torch(x, dtype=None):
    t = torch()
    out = t.from_numpy(np.ascontiguousarray(x))
    return out if dtype is None else out.to(dtype)


def to_numpy(x):
    return x.detach().cpu().numpy()


def speechbrain(module: str):
    """Any SpeechBrain submodule, e.g. ``speechbrain("nnet.CNN")`` (skips if unavailable)."""
    return pytest.importorskip(f"speechbrain.{module}")


# --- dac ---------------------------------------------------------------------------------------
def dac():
    """The official descript-audio-codec package (``dac``)."""
    return pytest.importorskip("dac")


def sb_dac():
    """SpeechBrain's DAC port (``speechbrain.lobes.models.discrete.dac``)."""
    return pytest.importorskip("speechbrain.lobes.models.discrete.dac")


# --- quantizers ---------------------------------------------------------------------------------


def dac_quantize():
    """The official `dac.nn.quantize` (descript-audio-codec 1.0.0, legacy weight-norm keys)."""
    return pytest.importorskip("dac.nn.quantize")


def sb_piq():
    """SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ`."""
    return pytest.importorskip("speechbrain.lobes.models.PIQ")


def vector_quantize_pytorch():
    """lucidrains' vector-quantize-pytorch (EMA codebooks, k-means init, dead-code restarts)."""
    return pytest.importorskip("vector_quantize_pytorch")
