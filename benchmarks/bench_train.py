"""Training-step throughput: jaxlatent (jit) vs the torch references (eager), and DP scaling.

Run from the repository root::

    python -m benchmarks.bench_train [--models vae vqvae dac] [--devices 1,2,4,8] [--out FILE]

Part 1 (each framework in its own processes, `benchmarks.common`): for each model of
`benchmarks.train_models` (a SpeechBrain VAE, a conv VQ-VAE with DAC's quantizer, the DAC
generator), one training step — forward, loss, backward, Adam update — on a fixed batch,
torch eager vs a jaxlatent `SingleDevice` trainer (``jax.jit``, state donated). A ``prepare``
worker builds the torch reference (`benchmarks.train_pairs`, torch seed 0), converts it with
the production converters and writes both weight sets to a temporary folder. Then
``--rounds`` alternating rounds (torch, jax; jax, torch; ...), each one fresh worker process
per framework that loads those weights, runs two steps (step-1 and step-2 losses reported;
the first jaxlatent step, trace + compile + one step, is its compile time), ``--warmup``
untimed steps and ``--iters`` timed steps (median; wall and process CPU time). The parent
asserts that every round's step-1 losses agree within `LOSS_RTOL` (the same work is
compared; the run stops otherwise), and reports the median of the rounds' medians with its
spread (min to max over the rounds) and the speed-up's spread.

Part 2 (one worker process per device count): the jaxlatent step under
`ShardedDataParallel` (``jax.jit`` over a 1-D ``Mesh``, batch sharded, state replicated)
with a fixed per-device batch (weak scaling); efficiency = throughput(n) / (n ·
throughput(1)). On a CPU backend with fewer devices than asked for, the workers get
``--xla_force_host_platform_device_count=n``: virtual devices sharing the same cores, which
tests the code path but is not a scaling measurement (the table says so). On GPU/TPU hosts
the workers use the first n real devices.

``--smoke`` runs everything on tiny models (one or two steps) in well under a minute: the
structure, not the numbers (tests/unit/test_bench_train.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import sys
import tempfile
import time

from benchmarks import common
from benchmarks.common import Spread, markdown_table, ratios, report

MODULE = "benchmarks.bench_train"
MODELS = ("vae", "vqvae", "dac")
TARGET = 1.5
LOSS_RTOL = 1e-4  # step-1 loss, float32 on both sides: only accumulation order differs


# -- workers (one framework per process) ---------------------------------------------------------
def _size(name: str, args):
    from benchmarks import train_models as tm

    if name == "dac":
        base = tm.TINY_DAC if args.smoke else tm.DACSize()
        over = {"batch": args.dac_batch, "seconds": args.dac_seconds}
    else:
        base = tm.TINY_CONV if args.smoke else tm.ConvSize()
        over = {"batch": args.conv_batch}
    return dataclasses.replace(base, **{k: v for k, v in over.items() if v is not None})


def _paths(args) -> tuple[str, str]:
    stem = os.path.join(args.workdir, args.model)
    return stem + ".pt", stem + ".npz"


def worker_prepare(args) -> dict:
    """Build the torch reference, convert it, write both weight sets (torch process)."""
    torch = common.torch_threads(args.threads)
    from benchmarks import train_pairs

    size = _size(args.model, args)
    t0 = time.perf_counter()
    ref = train_pairs.torch_reference(args.model, size)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jmodel = train_pairs.convert(ref, size)
    convert_s = time.perf_counter() - t0
    pt, npz = _paths(args)
    torch.save(ref.model.state_dict(), pt)
    common.save_state(npz, jmodel)
    if args.model == "dac":
        example = f"{size.seconds:g} s at {size.config.sample_rate // 1000} kHz"
    else:
        example = f"{size.frames} x {size.freq} frames"
    return {
        "params": train_pairs.param_count(ref.model),
        "examples": size.batch,
        "example": example,
        "build_s": build_s,
        "convert_s": convert_s,
    }


def worker_torch(args) -> dict:
    torch = common.torch_threads(args.threads)
    from benchmarks import train_pairs

    size = _size(args.model, args)
    ref = train_pairs.torch_reference(args.model, size)
    ref.model.load_state_dict(torch.load(_paths(args)[0]))  # the weights that were converted

    def block(x):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return x

    step = train_pairs.torch_stepper(ref)
    r = common.run_steps(step, block, args.warmup, args.iters, loss_of=float)
    return dict(r, env=common.torch_environment())


def worker_jax(args) -> dict:
    import jax

    from benchmarks import train_models as tm

    counter = common.CompileCounter()
    size = _size(args.model, args)
    model = tm.jax_model(args.model, size, abstract=True)
    common.load_state(_paths(args)[1], model)
    step = tm.jax_trainer_stepper(args.model, model, size)

    def loss_of(out):
        return float(out[1]["loss"])

    def compiles():
        return counter.count

    r = common.run_steps(
        step, jax.block_until_ready, args.warmup, args.iters, compiles, loss_of=loss_of
    )
    r.update(worker_devices(args), env=common.jax_environment())
    return r


def worker_devices(args) -> dict:
    import jax

    return {"backend": jax.default_backend(), "count": jax.device_count()}


def worker_scaling(args) -> dict:
    """One jaxlatent step under ShardedDataParallel on the first `n` devices (this process)."""
    import jax

    from benchmarks import train_models as tm
    from jaxlatent import training

    n, name = args.scaling_n, args.model
    size = _size(name, args)
    devices = jax.devices()[:n]
    if len(devices) < n:
        raise SystemExit(f"scaling worker: {n} devices needed, {jax.device_count()} available")
    tx = training.make_optimizer("adam", size.learning_rate)
    trainer = training.ShardedDataParallel(tm.LOSS_FNS[name], tx, devices=devices)
    batch = tm.batch_for(name, size, batch=n * args.scaling_batch)
    step = tm.jax_stepper(trainer, tm.jax_model(name, size), tx, batch)
    t = common.time_jax(step, warmup=2, iters=args.iters)
    return {
        "devices": n,
        "device_kind": devices[0].device_kind,
        "global_batch": n * args.scaling_batch,
        "median_s": t.median_s,
        "compile_s": t.compile_s,
    }


WORKERS = {
    "prepare": worker_prepare,
    "torch": worker_torch,
    "jax": worker_jax,
    "devices": worker_devices,
    "scaling": worker_scaling,
}


# -- parent: part 1 ------------------------------------------------------------------------------
def check_losses(name: str, results: dict[str, list[dict]]) -> dict:
    """The step-1 losses of every round's torch and jax workers must agree (same weights, same
    batch: the same work is compared); returns them and the largest step-2 relative difference.

    Raises:
      AssertionError: if a round's step-1 losses differ by more than ``LOSS_RTOL`` (relative).
    """
    for t, j in zip(results["torch"], results["jax"], strict=True):
        t1, j1 = t["losses"][0], j["losses"][0]
        if not abs(j1 - t1) <= LOSS_RTOL * abs(t1):
            raise AssertionError(
                f"{name}: jaxlatent and torch compute different losses on the same batch "
                f"({j1!r} vs {t1!r}): the benchmark would compare different work"
            )
    step2 = [
        abs(j["losses"][1] - t["losses"][1]) / abs(t["losses"][1])
        for t, j in zip(results["torch"], results["jax"], strict=True)
    ]
    first = results["jax"][0]["losses"][0], results["torch"][0]["losses"][0]
    return {"loss_jax": first[0], "loss_torch": first[1], "step2_rel": max(step2)}


def pair_row(name: str, prep: dict, results: dict, check: dict) -> tuple[list, float]:
    jax_s = [r["median_s"] for r in results["jax"]]
    torch_s = [r["median_s"] for r in results["torch"]]
    j, t, speedup = Spread.of(jax_s), Spread.of(torch_s), ratios(torch_s, jax_s)
    n = prep["examples"]

    def cores_busy(side):
        return statistics.median(r["cpu_median_s"] / r["median_s"] for r in results[side])

    row = [
        name,
        f"{prep['params'] / 1e6:.2f} M",
        f"{n} x {prep['example']}",
        f"{n / j.median:.2f} ({j.fmt()} s)",
        f"{n / t.median:.2f} ({t.fmt()} s)",
        f"**{speedup.median:.2f}x**",
        f"{speedup.low:.2f} to {speedup.high:.2f}x",
        "yes" if speedup.median >= TARGET else "**no**",
        f"{cores_busy('jax'):.2f} / {cores_busy('torch'):.2f}",
        f"{statistics.median(r['first_s'] for r in results['jax']):.1f}",
        f"{check['loss_jax']:.6g} / {check['loss_torch']:.6g}",
        f"{check['step2_rel']:.1e}",
    ]
    return row, speedup.median


PAIR_HEADER = [
    "model",
    "params",
    "batch",
    "jaxlatent examples/s (step s: median, min to max)",
    "torch examples/s (step s)",
    "speed-up",
    "per round",
    f">= {TARGET:g}x",
    "busy cores jax / torch (CPU s / wall s)",
    "jax first step s (compile)",
    "step-1 loss jax / torch",
    "step-2 loss rel. diff",
]


def _size_args(args) -> list:
    out = ["--smoke"] if args.smoke else []
    for flag in ("conv_batch", "dac_batch", "dac_seconds"):
        if getattr(args, flag) is not None:
            out += ["--" + flag.replace("_", "-"), getattr(args, flag)]
    return out


def _worker_args(args, name: str, workdir: str) -> list:
    return ["--model", name, "--workdir", workdir, "--threads", args.threads, *_size_args(args)]


# -- parent: part 2 ------------------------------------------------------------------------------
def child_env(n: int, virtual: bool) -> dict:
    env = dict(os.environ)
    if virtual:
        flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    return env


def run_scaling(args, info: dict | None) -> tuple[str, list[str], bool]:
    """`info`: a jax worker's result (its backend and device count), or None to ask one."""
    info = info or common.run_worker(MODULE, "devices")
    backend, count = info["backend"], info["count"]
    rows, notes = [], []
    for name in args.scaling_models:
        base = None
        for n in args.devices:
            virtual = backend == "cpu" and count < n
            if backend != "cpu" and count < n:
                notes.append(f"{name}: {n} devices skipped ({count} available)")
                continue
            wargs = ["--model", name, "--scaling-n", n, "--scaling-batch", args.scaling_batch]
            wargs += ["--iters", args.scaling_iters, "--threads", args.threads]
            wargs += _size_args(args)
            r = common.run_worker(MODULE, "scaling", wargs, env=child_env(n, virtual))
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
            done = f"<!-- scaling {name} x{n} done, {common.load()} -->"
            print(done, file=sys.stderr, flush=True)
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
    return markdown_table(header, rows), notes, backend == "cpu"


# -- CLI -----------------------------------------------------------------------------------------
def run(args) -> str:
    load_start = common.load()
    t_start = time.perf_counter()
    rows, speedups, plans, envs, info = [], {}, {}, set(), None
    with tempfile.TemporaryDirectory(prefix="bench_train-") as work:
        for name in args.models:
            wargs = _worker_args(args, name, work)
            prep = common.run_worker(MODULE, "prepare", wargs)
            dac = name == "dac"
            rounds = args.dac_rounds if dac else args.rounds
            iters = args.dac_iters if dac else args.iters
            warmup = args.dac_warmup if dac else args.warmup
            timing = [*wargs, "--iters", iters, "--warmup", warmup]
            results = common.alternate(MODULE, rounds, timing, label=name)
            check = check_losses(name, results)
            row, speedups[name] = pair_row(name, prep, results, check)
            rows.append(row)
            plans[name] = (rounds, iters, warmup)
            envs |= {results["jax"][0]["env"], results["torch"][0]["env"]}
            info = results["jax"][0]
    scaling, notes, virtual = ("", [], False)
    if args.devices and args.scaling_models:
        scaling, notes, virtual = run_scaling(args, info)
    total = time.perf_counter() - t_start

    out = [
        "# bench_train: training-step throughput, jaxlatent (jit) vs torch (eager)",
        "",
        f"Environment: {common.machine()}; workers: {'; '.join(sorted(envs))}. Each "
        f"framework runs in its own worker processes with {args.threads} threads (torch "
        "set_num_threads; XLA:CPU one thread per core of the process's CPU affinity).",
        "",
        f"Load at start: {load_start}; at end: {common.load()}. Total run time {total:.0f} s.",
        "",
        "Step = forward + loss + backward + Adam update on a fixed batch. Timings: "
        + "; ".join(
            f"{n}: {r} alternating rounds (one fresh process per framework per round) of "
            f"{i} timed steps after 2 checked + {w} warm-up steps"
            for n, (r, i, w) in plans.items()
        )
        + ". A step time is the median of the rounds' medians (min to max over the rounds); "
        "'per round' is the spread of the speed-up over the rounds; busy cores = process CPU "
        "time / wall time of a step. First jaxlatent step = trace + XLA compile + one step.",
        "",
        markdown_table(PAIR_HEADER, rows),
        "",
        "Sanity check (asserted before reporting): every round's step-1 losses agree within "
        f"{LOSS_RTOL:g} relative (both workers load the same weights); step 2 (after one Adam "
        "update on each side) is reported, the largest over the rounds.",
        "",
        f"Target >= {TARGET:g}x torch in every row: "
        + ("met" if all(s >= TARGET for s in speedups.values()) else "**MISSED**")
        + " ("
        + ", ".join(f"{n} {s:.2f}x" for n, s in speedups.items())
        + ").",
    ]
    if scaling:
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
                f"--xla_force_host_platform_device_count partitions of the same "
                f"{common.cores()} cores: n devices do n times the work on the same cores, so "
                "once the cores are busy the examples/s stay flat (efficiency 1/n), and any "
                "gain over one device only means its step was too small to fill the cores; the "
                "rows only show that the sharded code path runs.",
                "",
            ]
        out += [scaling]
        if notes:
            out += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(out)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument(
        "--rounds", type=int, help="alternating rounds (vae, vqvae; default 4, --smoke 2)"
    )
    p.add_argument("--iters", type=int, default=10, help="timed steps per worker (vae, vqvae)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per worker (vae, vqvae)")
    p.add_argument("--dac-rounds", type=int, default=2)
    p.add_argument("--dac-iters", type=int, default=3)
    p.add_argument("--dac-warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=common.cores(), help="per framework")
    p.add_argument("--conv-batch", type=int, help="default: train_models.ConvSize")
    p.add_argument("--dac-batch", type=int, help="default: train_models.DACSize")
    p.add_argument("--dac-seconds", type=float, help="default: train_models.DACSize")
    p.add_argument("--devices", type=_ints, default=[1, 2, 4, 8], help="scaling: device counts")
    p.add_argument("--scaling-models", nargs="*", default=["vae"], choices=MODELS)
    p.add_argument("--scaling-batch", type=int, default=8, help="examples per device")
    p.add_argument("--scaling-iters", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="tiny models, 2 rounds of 1 step")
    p.add_argument("--out", help="also write the Markdown here")
    # worker processes only
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--scaling-n", type=int, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if common.serve_worker(args, WORKERS):
        return
    if args.smoke:
        args.rounds, args.dac_rounds = args.rounds or 2, 2
        args.iters, args.warmup, args.dac_iters, args.dac_warmup = 1, 0, 1, 0
        args.devices, args.scaling_batch, args.scaling_iters = [1, 2], 2, 1
    args.rounds = args.rounds or 4
    report(run(args), args.out)


if __name__ == "__main__":
    main()
