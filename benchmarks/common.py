"""Shared benchmark harness: each framework timed in its own process, in alternating rounds.

Rules every benchmark follows:

* **one framework per process.** XLA's and torch's intra-op thread pools starve each other
  when both live in one process, so the parent process times nothing: it starts one worker
  subprocess per framework per round (``python -m benchmarks.<script> --worker torch|jax
  ...``, as a user runs each framework), alternating the order every round (torch, jax, then
  jax, torch, ...), and reads each worker's result from the JSON line it prints last
  (`run_worker`, `alternate`). A ``prepare`` worker builds the torch reference once and writes
  its weights and their jaxlatent conversion to a temporary folder, so the jax workers import
  no torch; the correctness checks (same weights, same losses, same codes) compare the
  workers' outputs in the parent;
* **threads**: both frameworks use the machine's available cores (`cores`: the CPU affinity
  of the process). torch gets ``torch.set_num_threads(n)``; XLA:CPU has no public thread-count
  option and sizes its pool from the CPU affinity, so a ``--threads n`` below the core count
  restricts the worker's affinity to its first n cores (`set_threads`, before any framework
  is imported), which binds both frameworks alike;
* compile time is measured separately from steady-state runs (first call vs later calls);
  every timed JAX region ends with `block_until_ready`; warm-up iterations are excluded;
* a number is a worker's median over its timed iterations; across rounds the median of those
  medians is reported with its spread (min to max over the rounds, `Spread`); results are
  ratios against the torch reference on the same machine, printed as one Markdown table,
  never asserted in tests; the machine, load and library versions are printed with the table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = ("torch", "jax")


# -- the machine ---------------------------------------------------------------------------------
def cores() -> int:
    """CPU cores this process may run on (its affinity), the thread count of both frameworks."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """One line naming the machine (the parent's view; the workers report their libraries)."""
    return f"python {platform.python_version()}; CPU {cpu_name()}, {cores()} cores available"


def set_threads(n: int) -> int:
    """Run this worker with `n` threads per framework; call before importing jax or torch.

    Restricts the process's CPU affinity to its first `n` cores when `n` is below `cores()`
    (XLA:CPU sizes its intra-op pool from the affinity) and sets ``torch.set_num_threads(n)``
    when torch is imported later through `torch_threads`. Returns `n`.

    Raises:
      ValueError: if `n` < 1.
    """
    if n < 1:
        raise ValueError(f"--threads must be >= 1, got {n}")
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if available and n < len(available):
        os.sched_setaffinity(0, available[:n])
    return n


def torch_threads(n: int):
    """Import torch with `n` intra-op threads; returns the module."""
    import torch

    torch.set_num_threads(n)
    return torch


def jax_environment() -> str:
    """The jax worker's libraries, backend and thread pool."""
    import flax
    import jax

    d = jax.devices()[0]
    return (
        f"jax {jax.__version__}, flax {flax.__version__}, backend {jax.default_backend()} "
        f"({d.device_kind}, {jax.device_count()} devices), XLA:CPU pool {cores()} threads"
    )


def torch_environment() -> str:
    import torch

    return f"torch {torch.__version__} ({torch.get_num_threads()} threads)"


# -- timing inside a worker ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Timing:
    median_s: float
    p10_s: float
    p90_s: float
    compile_s: float | None = None


def time_jax(fn: Callable[..., Any], *args, warmup: int = 2, iters: int = 10) -> Timing:
    """Time a jitted function: first call (trace + compile + run) reported as `compile_s`."""
    import jax

    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    for _ in range(warmup - 1):
        jax.block_until_ready(fn(*args))
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
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


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU is this process's time over all its threads."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def run_steps(
    step: Callable[[], Any],
    block: Callable[[Any], Any],
    warmup: int,
    iters: int,
    compiles: Callable[[], int] | None = None,
    loss_of: Callable[[Any], Any] = lambda out: out,
) -> dict:
    """A training benchmark's worker loop: two checked steps (``loss_of`` their blocked
    outputs; the first one's time, compilation included), `warmup` untimed steps, `iters`
    timed steps (wall and process CPU seconds per step, their medians).

    Raises:
      RuntimeError: if ``compiles()`` (a count of XLA compilations, `CompileCounter`) grew
        during the timed steps.
    """
    t0 = time.perf_counter()
    loss1 = loss_of(block(step()))
    first_s = time.perf_counter() - t0
    loss2 = loss_of(block(step()))
    for _ in range(warmup):
        block(step())
    before = compiles() if compiles else 0
    wall, cpu = [], []
    for _ in range(iters):
        w, c = timed(lambda: block(step()))
        wall.append(w)
        cpu.append(c)
    if compiles and compiles() != before:
        raise RuntimeError(f"{compiles() - before} XLA compilation(s) during the timed steps")
    return {
        "losses": [loss1, loss2],
        "first_s": first_s,
        "wall_s": wall,
        "cpu_s": cpu,
        "median_s": statistics.median(wall),
        "cpu_median_s": statistics.median(cpu),
    }


def summarize(samples: list[float], compile_s: float | None = None) -> Timing:
    """Median, p10 and p90 of timed `samples` (seconds), with the separate `compile_s`."""
    arr = np.asarray(samples)
    return Timing(
        statistics.median(samples),
        float(np.percentile(arr, 10)),
        float(np.percentile(arr, 90)),
        compile_s,
    )


class CompileCounter:
    """Counts XLA compilations in this process (``jax.monitoring``'s public compile event):
    a retrace + recompile during timed runs is an error of the benchmark."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self):
        import jax

        self.count = 0

        def listener(event: str, duration: float, **kwargs) -> None:
            if event == self.EVENT:
                self.count += 1

        jax.monitoring.register_event_duration_secs_listener(listener)


# -- jaxlatent weights between processes ---------------------------------------------------------
def _state_filter():
    from flax import nnx

    return nnx.Any(nnx.Param, nnx.BatchStat)


def save_state(path: str, model) -> None:
    """Write the parameters and batch statistics of an NNX `model` to an ``.npz`` file."""
    import jax
    from flax import nnx

    leaves = jax.tree_util.tree_flatten_with_path(nnx.state(model, _state_filter()))[0]
    np.savez(path, **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})


def load_state(path: str, model) -> None:
    """Load `save_state`'s file into `model` (same structure; an abstract `nnx.eval_shape`
    model is filled in place).

    Raises:
      ValueError: if the file's variables are not exactly the model's.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    state = nnx.state(model, _state_filter())
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    with np.load(path) as stored:
        keys = [jax.tree_util.keystr(k) for k, _ in leaves]
        if set(keys) != set(stored.files):
            diff = sorted(set(keys) ^ set(stored.files))[:5]
            raise ValueError(f"{path}: variables differ from the model's (e.g. {diff})")
        values = [jnp.asarray(stored[k]) for k in keys]
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, values))


# -- the parent: worker subprocesses in alternating rounds ---------------------------------------
def serve_worker(args, workers: dict[str, Callable[[Any], dict]]) -> bool:
    """In a worker process (``args.worker`` set): set the threads, run ``workers[args.worker]``
    and print its result as the last line, JSON (read by `run_worker`). Returns whether this
    process was a worker (the script's ``main`` then returns)."""
    if not args.worker:
        return False
    set_threads(args.threads)
    print(json.dumps(workers[args.worker](args)), flush=True)
    return True


def run_worker(
    module: str, role: str, args: Sequence[Any] = (), *, env: dict | None = None
) -> dict:
    """Run ``python -m <module> --worker <role> <args>`` from the repository root; its result.

    Returns the JSON object of the worker's last stdout line, with ``process_s`` (the wall time
    of the whole process: start-up, imports, compile and runs) added.

    Raises:
      RuntimeError: if the worker exits non-zero (with the end of its stderr) or prints no JSON.
    """
    cmd = [sys.executable, "-m", module, "--worker", role, *map(str, args)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{module} worker {role!r} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
            f"{proc.stderr[-4000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = proc.stdout[-2000:]
        raise RuntimeError(f"{module} worker {role!r} printed no JSON result:\n{tail}")
    return dict(json.loads(lines[-1]), process_s=elapsed)


def alternate(
    module: str,
    rounds: int,
    args: Sequence[Any],
    *,
    label: str = "",
    roles: Sequence[str] = ROLES,
) -> dict[str, list[dict]]:
    """The interleaving loop of every benchmark: `rounds` rounds of one worker per role, the
    order reversed every round (torch, jax; jax, torch; ...), so that a load that changes
    during the run hits both frameworks alike; `args` are every worker's arguments.
    Returns each role's results, one per round; progress goes to stderr."""
    results: dict[str, list[dict]] = {role: [] for role in roles}
    for r in range(rounds):
        order = list(roles) if r % 2 == 0 else list(roles)[::-1]
        for role in order:
            results[role].append(run_worker(module, role, args))
        done = f"<!-- {label} round {r + 1}/{rounds} done, {load()} -->"
        print(done, file=sys.stderr, flush=True)
    return results


@dataclasses.dataclass(frozen=True)
class Spread:
    """Median and range (min, max) of one quantity over the rounds."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def fmt(self, spec: str = ".3f", unit: str = "") -> str:
        return f"{self.median:{spec}}{unit} ({self.low:{spec}} to {self.high:{spec}})"


def ratios(torch_s: Sequence[float], jax_s: Sequence[float]) -> Spread:
    """The speed-up torch / jaxlatent: median of the rounds' medians' ratio; spread over the
    rounds (round r's torch time over round r's jaxlatent time)."""
    per_round = [t / j for t, j in zip(torch_s, jax_s, strict=True)]
    overall = statistics.median(torch_s) / statistics.median(jax_s)
    return Spread(overall, min(per_round), max(per_round))


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
