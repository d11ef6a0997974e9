"""Compilation at the edge: one jit cache for a model's functions, and XLA's cache on disk.

Models are plain NNX modules whose methods just compute; callers that run them many times
(the codec, the command line, the parity report, benchmarks) compile them here:

* :func:`compiled` jit-compiles ``fn(model, *args, **options)`` over the model's
  ``(graphdef, state)`` split, the graphdef and the options static. The compiled function is
  cached per ``(fn, graphdef, options)``, so every model of one configuration shares it, and
  ``jax.jit`` keeps one executable per argument shape and dtype.
* :func:`enable_persistent_cache` points JAX's persistent compilation cache (public
  ``jax.config`` options) at a folder, so that a new process (the next ``jaxlatent encode``)
  loads the executables instead of compiling them again.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["compiled", "enable_persistent_cache"]


@functools.lru_cache(maxsize=256)
def _jitted(fn: Callable, graphdef: Any, options: tuple[tuple[str, Any], ...]) -> Callable:
    import jax
    from flax import nnx

    kwargs = dict(options)

    def run(state, *args, **call_kwargs):
        return fn(nnx.merge(graphdef, state), *args, **call_kwargs, **kwargs)

    run.__name__ = getattr(fn, "__name__", "run")
    run.__qualname__ = getattr(fn, "__qualname__", run.__name__)
    return jax.jit(run)


def compiled(fn: Callable, graphdef: Any, /, **options: Any) -> Callable:
    """``fn(model, *args, **options)`` compiled with `jax.jit`, cached per graphdef and options.

    Args:
      fn: a function of the model and arrays, e.g. an unbound method (``DAC.encode``) or a
        module-level function (pass the same object every time: it is part of the cache key;
        a new lambda per call compiles anew). It must not update the model's state (the
        merged model is discarded).
      graphdef: the model's structure, ``nnx.split(model)[0]`` (hashable; equal for models
        of the same configuration).
      **options: static keyword arguments of `fn` (Python values such as ``n_quantizers=4``,
        ``padding=False``); each new value compiles once.

    Returns:
      ``f(state, *args, **kwargs)`` that runs ``fn(nnx.merge(graphdef, state), *args,
      **kwargs, **options)`` compiled; `args` and `kwargs` are arrays (pytrees of arrays or
      ``None``), traced: one compilation per shape and dtype, reused afterwards. The same
      ``f`` is returned for the same ``(fn, graphdef, options)``.

    Raises:
      ValueError: if an option value is not hashable.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp
      >>> graphdef, state = nnx.split(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
      >>> f = compiled(lambda m, x, *, scale: m(x) * scale, graphdef, scale=2.0)
      >>> f(state, jnp.ones((4, 2))).shape
      (4, 3)
    """
    key = tuple(sorted(options.items()))
    try:
        hash(key)
    except TypeError:
        raise ValueError(
            f"compiled: options must be hashable Python values, got {options!r}"
        ) from None
    return _jitted(fn, graphdef, key)


def enable_persistent_cache(directory: str | os.PathLike) -> Path:
    """Let JAX keep compiled executables in `directory` and reuse them in later processes.

    Sets the public options ``jax_compilation_cache_dir`` (created if missing),
    ``jax_persistent_cache_min_compile_time_secs`` = 0 and
    ``jax_persistent_cache_min_entry_size_bytes`` = 0 (every executable is kept: the
    defaults skip compilations under one second, which are most of a small model's), for
    this process. Call it before the first compilation.

    Returns:
      The directory, absolute.

    Raises:
      OSError: if the directory cannot be created.
    """
    import jax

    path = Path(directory).expanduser().absolute()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
