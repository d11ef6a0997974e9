"""Shared benchmark harness: jaxlatent (jit) and the torch reference timed side by side.

Rules every benchmark follows:
* compile time is measured separately from steady-state runs (first call vs later calls);
* every timed JAX region ends with `block_until_ready`;
* warm-up iterations are excluded; median and p10/p90 are reported;
* results are ratios against the torch reference measured in the same process on the same
  machine, printed as one Markdown table, never asserted in tests;
* the device kind and library versions are printed with the table.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Timing:
    median_s: float
    p10_s: float
    p90_s: float
    compile_s: float | None = None


def _block(x: Any) -> Any:
    return jax.block_until_ready(x)


def time_jax(fn: Callable[..., Any], *args, warmup: int = 2, iters: int = 10) -> Timing:
    """Time a jitted function: first call (trace + compile + run) reported as `compile_s`."""
    t0 = time.perf_counter()
    _block(fn(*args))
    compile_s = time.perf_counter() - t0
    for _ in range(warmup - 1):
        _block(fn(*args))
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        _block(fn(*args))
        samples.append(time.perf_counter() - t0)
    return summarize(samples, compile_s)


def time_torch(fn: Callable[..., Any], *args, warmup: int = 2, iters: int = 10) -> Timing:
    """Time a torch callable (eager); synchronises CUDA when tensors live on a GPU."""
    import torch

    def run():
        out = fn(*args)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out

    with torch.no_grad():
        for _ in range(warmup):
            run()
        samples = []
        for _ in range(iters):
            t0 = time.perf_counter()
            run()
            samples.append(time.perf_counter() - t0)
    return summarize(samples)


def summarize(samples: list[float], compile_s: float | None = None) -> Timing:
    """Median, p10 and p90 of timed `samples` (seconds), with the separate `compile_s`."""
    arr = np.asarray(samples)
    return Timing(
        statistics.median(samples),
        float(np.percentile(arr, 10)),
        float(np.percentile(arr, 90)),
        compile_s,
    )


def environment() -> str:
    """One line naming the machine and the library versions."""
    import flax

    parts = [
        f"python {platform.python_version()}",
        f"jax {jax.__version__}",
        f"flax {flax.__version__}",
        f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}, "
        f"{jax.device_count()} devices)",
        f"cpu {platform.processor() or platform.machine()}",
    ]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    except ImportError:
        pass
    return "; ".join(parts)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(text: str, out: str | None) -> None:
    """Print a benchmark's Markdown and, when `out` is given, also write it there atomically."""
    from jaxlatent.atomic import atomic_write

    print(text)
    if out:
        atomic_write(out, text + "\n")
