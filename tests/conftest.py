"""Test configuration shared by the whole suite.

* 8 CPU devices, so data-parallel code (pmap, sharded jit, shard_map) is tested on any machine.
  XLA reads the flag when the backend starts, so it is set before jax is imported.
* A stub `torchaudio` module. torchaudio has no CPU build for torch 2.13 on our machines, but
  SpeechBrain 1.1.2 and `dac`/`audiotools` import it at import time. The modules we compare
  against (speechbrain.nnet.losses/autoencoders, speechbrain.lobes.models.PIQ/discrete.dac,
  dac.nn/dac.model) never call it, except the official `compress`, whose loudness meter calls
  `torchaudio.functional.lfilter`; the stub provides that one function with scipy's lfilter
  (computed in float64 and cast back, as the reference's CPU path does in double precision).
  Any other attribute access on the stub raises, so an unexpected use cannot go unnoticed.
"""

from __future__ import annotations

import os
import sys
import types

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# `jaxlatent.cli.main` (encode, decode, parity, train) would otherwise turn on JAX's persistent
# compilation cache in the user's cache folder for the whole test process.
os.environ.setdefault("JAXLATENT_COMPILE_CACHE", "off")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()


def _install_torchaudio_stub() -> None:
    if "torchaudio" in sys.modules:
        return
    try:  # a real torchaudio (e.g. on a GPU machine) is used as is.
        import torchaudio  # noqa: F401

        return
    except Exception:
        pass

    class _StubModule(types.ModuleType):
        def __getattr__(self, item):
            if item.startswith("__"):
                raise AttributeError(item)
            raise AttributeError(
                f"stub torchaudio has no attribute {item!r}: the reference code called a "
                "torchaudio function that the parity tests do not expect it to call"
            )

    def lfilter(waveform, a_coeffs, b_coeffs, clamp=True, batching=True):
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
                [
                    scipy.signal.lfilter(b[i], a[i], x[..., i, :], axis=-1)
                    for i in range(a.shape[0])
                ],
                axis=-2,
            )
        if clamp:
            y = np.clip(y, -1.0, 1.0)
        return torch.from_numpy(y).to(waveform.dtype)

    stub = _StubModule("torchaudio")
    stub.__version__ = "2.13.0"
    functional = _StubModule("torchaudio.functional")
    functional.lfilter = lfilter
    stub.functional = functional
    sys.modules["torchaudio"] = stub
    sys.modules["torchaudio.functional"] = functional


_install_torchaudio_stub()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator: inputs are made in numpy and fed to both frameworks."""
    return np.random.default_rng(0)


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)
