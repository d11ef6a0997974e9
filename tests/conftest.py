"""Test configuration shared by the whole suite.

* 8 CPU devices, so data-parallel code (pmap, sharded jit, shard_map) is tested on any machine.
  XLA reads the flag when the backend starts, so it is set before jax is imported.
* The stub `torchaudio` of `converters.torchaudio_stub`: torchaudio has no CPU build for
  torch 2.13 on our machines, but SpeechBrain 1.1.2 and `dac`/`audiotools` import it at import
  time. The stub provides the one function the references call here (the official
  `compress`'s `torchaudio.functional.lfilter`, through scipy) and any other attribute access
  raises, so an unexpected use cannot go unnoticed.
"""

from __future__ import annotations

import os

from converters.torchaudio_stub import install_torchaudio_stub

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# `jaxlatent.cli.main` (encode, decode, parity, train) would otherwise turn on JAX's persistent
# compilation cache in the user's cache folder for the whole test process.
os.environ.setdefault("JAXLATENT_COMPILE_CACHE", "off")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()


install_torchaudio_stub()

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
