"""Access to the PyTorch reference implementations used by the parity tests.

Import every reference (and every optional package a test needs) through `require` or the
helpers below. A missing one **fails** the test, naming the module and how to get it, so a
broken reference install cannot turn the parity suite into skips. People who run the unit
tests without torch or the references opt out explicitly: with ``JAXLATENT_SKIP_PARITY=1``
in the environment, those tests skip instead (with the same message). torch, speechbrain,
dac and transformers are only ever imported here and in the converters.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import warnings
from types import ModuleType
from typing import NoReturn

import numpy as np
import pytest

#: The environment variable that turns a missing reference from a failure into a skip.
SKIP_ENV = "JAXLATENT_SKIP_PARITY"


def skipping() -> bool:
    """Whether missing references skip (``JAXLATENT_SKIP_PARITY`` set, and not to ``0``)."""
    return os.environ.get(SKIP_ENV, "") not in ("", "0")


def missing(what: str) -> NoReturn:
    """Stop the current test (or test module) because `what` it compares against is missing.

    Fails by default; skips when `skipping()`. Either way the message names `what` and
    the environment variable.
    """
    if skipping():
        pytest.skip(f"{what} ({SKIP_ENV} is set: skipped)", allow_module_level=True)
    pytest.fail(
        f"{what}. Install it (`bash .ci/setup` installs every reference), or set "
        f"{SKIP_ENV}=1 to skip the tests that need it",
        pytrace=False,
    )


#: The release each parity reference is pinned to (in `.ci/setup` and pyproject's ``test``
#: extra): top-level module -> (distribution, version). Another release fails `require` with
#: one line naming both, instead of a page of parity mismatches (vector-quantize-pytorch 1.34
#: changed its EMA update, for one).
REFERENCE_VERSIONS = {
    "speechbrain": ("speechbrain", "1.1.2"),
    "dac": ("descript-audio-codec", "1.0.0"),
    "audiotools": ("descript-audiotools", "0.7.2"),
    "vector_quantize_pytorch": ("vector-quantize-pytorch", "1.32.0"),
}


def installed_version(distribution: str) -> str | None:
    """The installed version of `distribution`, or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_version(module: str) -> None:
    """Stop the test (see `missing`) if `module`'s reference is not its pinned release."""
    pinned = REFERENCE_VERSIONS.get(module.partition(".")[0])
    if pinned is None:
        return
    distribution, version = pinned
    found = installed_version(distribution)
    if found != version:
        missing(
            f"the parity tests compare against {distribution}=={version}, but "
            f"{distribution} {found or '(no distribution metadata)'} is installed"
        )


def require(module: str) -> ModuleType:
    """Import `module` (e.g. ``"dac"``, ``"speechbrain.nnet.losses"``) for a test.

    Warnings raised while the module is imported are ignored, as `pytest.importorskip`
    does: they are the third-party package's own, not the code under test's.

    Returns:
      The module.

    Raises:
      pytest.fail.Exception: when it cannot be imported (``ImportError``) or is another
        release than its pin in :data:`REFERENCE_VERSIONS`, unless
        ``JAXLATENT_SKIP_PARITY`` is set, then pytest.skip.Exception.
    """
    error = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            imported = importlib.import_module(module)
        except ImportError as e:
            error = f"{type(e).__name__}: {e}"
    if error is None:
        check_version(module)
        return imported
    missing(f"{module!r}, which this test needs, cannot be imported ({error})")


def torch():
    return require("torch")


def sb_losses():
    return require("speechbrain.nnet.losses")


def sb_autoencoders():
    return require("speechbrain.nnet.autoencoders")


def to_torch(x, dtype=None):
    t = torch()
    out = t.from_numpy(np.ascontiguousarray(x))
    return out if dtype is None else out.to(dtype)


def to_numpy(x):
    return x.detach().cpu().numpy()


def speechbrain(module: str):
    """Any SpeechBrain submodule, e.g. ``speechbrain("nnet.CNN")`` (see `require`)."""
    return require(f"speechbrain.{module}")


# --- dac ---------------------------------------------------------------------------------------
def dac():
    """The official descript-audio-codec package (``dac``)."""
    return require("dac")


def transformers_dac():
    """Hugging Face transformers' DAC (``transformers.models.dac``: ``DacConfig``,
    ``DacModel``; ``modeling_dac`` for its submodules), transformers >= 5."""
    torch()
    return require("transformers.models.dac.modeling_dac")


def sb_dac():
    """SpeechBrain's DAC port (``speechbrain.lobes.models.discrete.dac``)."""
    return require("speechbrain.lobes.models.discrete.dac")


# --- quantizers ---------------------------------------------------------------------------------


def dac_quantize():
    """The official `dac.nn.quantize` (descript-audio-codec 1.0.0, legacy weight-norm keys)."""
    return require("dac.nn.quantize")


def sb_piq():
    """SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ`."""
    return require("speechbrain.lobes.models.PIQ")


def vector_quantize_pytorch():
    """lucidrains' vector-quantize-pytorch (EMA codebooks, k-means init, dead-code restarts)."""
    return require("vector_quantize_pytorch")
