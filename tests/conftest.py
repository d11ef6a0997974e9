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

import collections
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


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """A persistent compilation cache for each test process (each xdist worker): tests build
    new jitted functions of the same tiny models again and again (every CLI run, every
    module's fixtures), and XLA then compiles the same programs again. Programs are the same
    whether compiled or loaded, so no result depends on it.

    The options are `jax.config`'s; JAX decides once per process whether (and where) the
    cache is used, so the documented `reset_cache` makes it read them again."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    options = {
        "jax_compilation_cache_dir": str(tmp_path_factory.mktemp("jax_cache")),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
    }
    before = {name: getattr(jax.config, name) for name in options}
    for name, value in options.items():
        jax.config.update(name, value)
    cc.reset_cache()
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    cc.reset_cache()


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator: inputs are made in numpy and fed to both frameworks."""
    return np.random.default_rng(0)


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


def pytest_configure(config: pytest.Config) -> None:
    """CI's `--dist loadfile` sends each file whole to one worker, in xdist's default order
    (`--loadscope-reorder`): most tests first. That puts last the one-test files that train a
    model for a minute or more, and on CI's 2 workers one of them then runs alone at the end.
    Here the controller keeps the collection's order instead, which the workers' collections
    make (`pytest_collection_modifyitems` below): heavy files first."""
    if getattr(config.option, "dist", "no") in ("loadfile", "loadscope"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: the files holding a `slow` test first, then xdist's own order
    (most tests first); each file's tests keep their order. A serial run is left as it is."""
    if not hasattr(config, "workerinput"):
        return
    count = collections.Counter(item.path for item in items)
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: (item.path not in slow, -count[item.path]))
