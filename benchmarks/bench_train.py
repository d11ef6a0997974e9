"""Training-step throughput: jaxlatent (jit) vs the torch references (eager), and DP scaling.

Run from the repository root::

    python -m benchmarks.bench_train [--models vae vqvae dac] [--devices 1,2,4,8] [--out FILE]

Part 1 (one process, both frameworks): for each model of `benchmarks.train_models` (a
SpeechBrain VAE, a conv VQ-VAE with DAC's quantizer, the DAC generator), one training step —
forward, loss, backward, Adam update — on a fixed batch, torch eager vs a jaxlatent
`SingleDevice` trainer (``jax.jit``, state donated). First both sides run two steps from the
same weights and the step-1 losses must agree (a sanity check: the same work is compared;
the run stops otherwise); the first jaxlatent call (trace + compile + one step) is reported
as compile time. Then the two sides are timed in alternating rounds (`benchmarks.common`:
warm-up excluded, ``block_until_ready``); the reported step time is the median of the rounds'
medians, and the speed-up's spread over the rounds is printed with it.

Part 2 (one child process per device count): the jaxlatent step under
`ShardedDataParallel` (``jax.jit`` over a 1-D ``Mesh``, batch sharded, state replicated)
with a fixed per-device batch (weak scaling); efficiency = throughput(n) / (n ·
throughput(1)). On a CPU backend with fewer devices than asked for, the children get
``--xla_force_host_platform_device_count=n``: virtual devices sharing the same cores, which
tests the code path but is not a scaling measurement (the table says so). On GPU/TPU hosts
the children use the first n real devices.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import jax

from benchmarks import train_models as tm
from benchmarks import train_pairs
from benchmarks.common import environment, markdown_table, report, time_jax

TARGET = 1.5
LOSS_RTOL = 1e-4  # step-1 loss, float32 on both sides: only accumulation order differs


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


# -- part 1 --------------------------------------------------------------------------------------
def sanity_check(pair: tm.TrainPair) -> dict:
    """Two steps on both sides from the same weights; step-1 losses must agree.

    Returns the losses and the first jaxlatent call's time (trace + compile + one step).

    Raises:
      AssertionError: if the step-1 losses differ by more than ``LOSS_RTOL`` (relative).
    """
    t0 = time.perf_counter()
    _, m1 = jax.block_until_ready(pair.jax_step())
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    t1 = float(pair.torch_step())
    torch_first_s = time.perf_counter() - t0
    _, m2 = jax.block_until_ready(pair.jax_step())
    t2 = float(pair.torch_step())
    j1, j2 = float(m1["loss"]), float(m2["loss"])
    if not abs(j1 - t1) <= LOSS_RTOL * abs(t1):
        raise AssertionError(
            f"{pair.name}: jaxlatent and torch compute different losses on the same batch "
            f"({j1!r} vs {t1!r}): the benchmark would compare different work"
        )
    return {
        "loss_jax": j1,
        "loss_torch": t1,
        "step2_rel": abs(j2 - t2) / abs(t2),
        "compile_s": compile_s,
        "torch_first_s": torch_first_s,
    }


def _median_step_s(step, block, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        block(step())
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        block(step())
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def time_pair(pair: tm.TrainPair, rounds: int, iters: int, warmup: int) -> dict:
    """Alternating rounds (the order flips every round); per-round medians of both sides.

    Runs after `sanity_check` (compile and two warm-up steps per side done), so a round's
    `warmup` steps may be 0. jax steps end with ``block_until_ready``; torch CPU steps are
    synchronous (``time_torch``'s CUDA synchronisation is added when torch runs on a GPU).
    """
    import torch

    def torch_block(x):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return x

    jax_s, torch_s = [], []
    for r in range(rounds):
        order = ("jax", "torch") if r % 2 == 0 else ("torch", "jax")
        for side in order:
            if side == "jax":
                jax_s.append(_median_step_s(pair.jax_step, jax.block_until_ready, warmup, iters))
            else:
                torch_s.append(_median_step_s(pair.torch_step, torch_block, warmup, iters))
        print(
            f"<!-- {pair.name} round {r + 1}: jax {jax_s[-1]:.3f} s, torch {torch_s[-1]:.3f} s, "
            f"load {_load()} -->",
            file=sys.stderr,
            flush=True,
        )
    return {"jax_s": jax_s, "torch_s": torch_s}


def pair_row(pair: tm.TrainPair, check: dict, t: dict) -> tuple[list, float]:
    j, tt = statistics.median(t["jax_s"]), statistics.median(t["torch_s"])
    per_round = [b / a for a, b in zip(t["jax_s"], t["torch_s"], strict=True)]
    speedup = tt / j
    row = [
        pair.name,
        f"{pair.params / 1e6:.2f} M",
        f"{pair.examples} x {pair.example}",
        f"{pair.examples / j:.2f} ({j:.3f} s)",
        f"{pair.examples / tt:.2f} ({tt:.3f} s)",
        f"**{speedup:.2f}x**",
        f"{min(per_round):.2f} to {max(per_round):.2f}x",
        "yes" if speedup >= TARGET else "**no**",
        f"{check['compile_s']:.1f}",
        f"{check['loss_jax']:.6g} / {check['loss_torch']:.6g}",
        f"{check['step2_rel']:.1e}",
    ]
    return row, speedup


PAIR_HEADER = [
    "model",
    "params",
    "batch",
    "jaxlatent examples/s (step)",
    "torch examples/s (step)",
    "speed-up",
    "per round",
    f">= {TARGET:g}x",
    "jax first step s (compile)",
    "step-1 loss jax / torch",
    "step-2 loss rel. diff",
]


# -- part 2 --------------------------------------------------------------------------------------
def scaling_child(name: str, n: int, per_device: int, iters: int, size) -> dict:
    """One jaxlatent step under ShardedDataParallel on the first `n` devices (this process)."""
    from jaxlatent import training

    devices = jax.devices()[:n]
    if len(devices) < n:
        raise SystemExit(f"--scaling-child: {n} devices needed, {jax.device_count()} available")
    tx = training.make_optimizer("adam", size.learning_rate)
    trainer = training.ShardedDataParallel(tm.LOSS_FNS[name], tx, devices=devices)
    batch = tm.batch_for(name, size, batch=n * per_device)
    step = tm.jax_stepper(trainer, tm.jax_model(name, size), tx, batch)
    t = time_jax(step, warmup=2, iters=iters)
    return {
        "devices": n,
        "device_kind": devices[0].device_kind,
        "platform": devices[0].platform,
        "global_batch": n * per_device,
        "median_s": t.median_s,
        "compile_s": t.compile_s,
    }


def _child_env(n: int, virtual: bool) -> dict:
    env = dict(os.environ)
    if virtual:
        flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    return env


def run_scaling(args, sizes: dict) -> tuple[str, list[str]]:
    backend = jax.default_backend()
    rows, notes = [], []
    for name in args.scaling_models:
        base = None
        for n in args.devices:
            virtual = backend == "cpu" and jax.device_count() < n
            if backend != "cpu" and jax.device_count() < n:
                notes.append(f"{name}: {n} devices skipped ({jax.device_count()} available)")
                continue
            cmd = [sys.executable, "-m", "benchmarks.bench_train", "--scaling-child", str(n)]
            cmd += ["--scaling-models", name, "--scaling-batch", str(args.scaling_batch)]
            cmd += ["--iters", str(args.scaling_iters), *_size_args(args)]
            proc = subprocess.run(
                cmd, env=_child_env(n, virtual), capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                raise RuntimeError(f"scaling child ({name}, {n}) failed:\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            thr = r["global_batch"] / r["median_s"]
            base = base or (thr, n)
            eff = thr / (base[0] * n / base[1])
            kind = "virtual CPU" if virtual else r["device_kind"]
            rows.append(
                [
                    name,
                    n,
                    kind,
                    r["global_batch"],
                    f"{r['median_s']:.3f}",
                    f"{thr:.2f}",
                    f"{eff:.0%}",
                    f"{r['compile_s']:.1f}",
                ]
            )
            print(f"<!-- scaling {name} x{n} done, load {_load()} -->", file=sys.stderr, flush=True)
    header = [
        "model",
        "devices",
        "device kind",
        "global batch",
        "step s (median)",
        "examples/s",
        "weak-scaling efficiency",
        "compile s",
    ]
    return markdown_table(header, rows), notes


# -- CLI -----------------------------------------------------------------------------------------
def _size_args(args) -> list[str]:
    out = ["--conv-batch", str(args.conv_batch), "--dac-batch", str(args.dac_batch)]
    return [*out, "--dac-seconds", str(args.dac_seconds)]


def _sizes(args) -> dict:
    import dataclasses

    conv = dataclasses.replace(tm.ConvSize(), batch=args.conv_batch)
    dac = dataclasses.replace(tm.DACSize(), batch=args.dac_batch, seconds=args.dac_seconds)
    return {"vae": conv, "vqvae": conv, "dac": dac}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def run(args) -> str:
    import torch

    torch.set_num_threads(args.torch_threads)
    train_pairs.install_torchaudio_stub()
    sizes = _sizes(args)
    load_start = _load()
    t_start = time.perf_counter()
    rows, speedups, checks = [], {}, {}
    for name in args.models:
        t0 = time.perf_counter()
        pair = train_pairs.BUILDERS[name](sizes[name])
        build_s = time.perf_counter() - t0
        check = sanity_check(pair)
        dac = name == "dac"
        rounds = args.dac_rounds if dac else args.rounds
        iters = args.dac_iters if dac else args.iters
        warmup = args.dac_warmup if dac else args.warmup
        t = time_pair(pair, rounds, iters, warmup)
        row, speedups[name] = pair_row(pair, check, t)
        rows.append(row)
        checks[name] = dict(check, build_s=build_s, rounds=rounds, iters=iters, warmup=warmup)
        del pair
    scaling, notes = ("", [])
    if args.devices and args.scaling_models:
        scaling, notes = run_scaling(args, sizes)
    total = time.perf_counter() - t_start

    out = [
        "# bench_train: training-step throughput, jaxlatent (jit) vs torch (eager)",
        "",
        f"Environment: {environment()}; CPU {_cpu_name()}, {_cores()} cores available; "
        f"threads: torch {torch.get_num_threads()} (set_num_threads), jax: XLA:CPU's "
        f"default intra-op pool (one thread per available core, {_cores()}).",
        "",
        f"Load average (1, 5, 15 min) at start: {load_start}; at end: {_load()}. "
        f"Total run time {total:.0f} s.",
        "",
        "Step = forward + loss + backward + Adam update on a fixed batch. Timings: "
        + "; ".join(
            f"{n}: {c['rounds']} alternating rounds of {c['iters']} steps after "
            f"{c['warmup']} warm-up"
            for n, c in checks.items()
        )
        + " (each after the sanity check's two steps per side). A step time is the median of "
        "the rounds' medians; 'per round' is the spread of the speed-up over the rounds. "
        "First jaxlatent step = trace + XLA compile + one step.",
        "",
        markdown_table(PAIR_HEADER, rows),
        "",
        "Sanity check (asserted before timing): the step-1 losses agree within "
        f"{LOSS_RTOL:g} relative; step 2 (after one Adam update on each side) is reported.",
        "",
        f"Target >= {TARGET:g}x torch in every row: "
        + ("met" if all(s >= TARGET for s in speedups.values()) else "**MISSED**")
        + " ("
        + ", ".join(f"{n} {s:.2f}x" for n, s in speedups.items())
        + ").",
    ]
    if scaling:
        virtual = jax.default_backend() == "cpu"
        out += [
            "",
            f"## Data-parallel scaling (ShardedDataParallel, {args.scaling_batch} examples per "
            f"device, median of {args.scaling_iters} steps, one process per row)",
            "",
        ]
        if virtual:
            out += [
                f"**Virtual CPU devices, not a multi-device machine: not a scaling "
                f"measurement.** The {max(args.devices)} devices are "
                f"--xla_force_host_platform_device_count partitions of the same {_cores()} "
                "cores: n devices do n times the work on the same cores, so once the cores are "
                "busy the examples/s stay flat (efficiency 1/n), and any gain over one device "
                "only means its step was too small to fill the cores; the rows only show that "
                "the sharded code path runs.",
                "",
            ]
        out += [scaling]
        if notes:
            out += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(tm.MODELS), choices=tm.MODELS)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (vae, vqvae)")
    p.add_argument("--iters", type=int, default=3, help="timed steps per round (vae, vqvae)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per round (vae, vqvae)")
    p.add_argument("--dac-rounds", type=int, default=2)
    p.add_argument("--dac-iters", type=int, default=1)
    p.add_argument("--dac-warmup", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=_cores())
    p.add_argument("--conv-batch", type=int, default=tm.ConvSize().batch)
    p.add_argument("--dac-batch", type=int, default=tm.DACSize().batch)
    p.add_argument("--dac-seconds", type=float, default=tm.DACSize().seconds)
    p.add_argument("--devices", type=_ints, default=[1, 2, 4, 8], help="scaling: device counts")
    p.add_argument("--scaling-models", nargs="*", default=["vae"], choices=tm.MODELS)
    p.add_argument("--scaling-batch", type=int, default=8, help="examples per device")
    p.add_argument("--scaling-iters", type=int, default=3)
    p.add_argument("--out", help="also write the Markdown here")
    p.add_argument("--scaling-child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.scaling_child:
        name = args.scaling_models[0]
        size = _sizes(args)[name]
        r = scaling_child(name, args.scaling_child, args.scaling_batch, args.iters, size)
        print(json.dumps(r))
        return
    report(run(args), args.out)


if __name__ == "__main__":
    main()
