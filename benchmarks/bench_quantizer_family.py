"""Forward + backward throughput of the vector-quantize-pytorch family: jaxlatent (jit) vs
vector-quantize-pytorch 1.32.0, each quantizer with the same arguments and the same weights.

Run from the repository root::

    python -m benchmarks.bench_quantizer_family [--rounds 4] [--threads N] [--out FILE]
        [--shape 64x512x1024] [--only FSQ,LFQ,...] [--smoke]

For each of FSQ, ResidualFSQ, LFQ, ResidualLFQ, SimVQ, ResidualSimVQ and ResidualVQ (`CASES`,
built with ``dim`` = D of the ``--shape`` B x T x D, a codec-like batch of B clips of T frames),
one training step's quantizer work is timed: the forward call in training mode and the
gradients of ``sum(losses) + sum(w * quantized)`` w.r.t. the input and every trainable
parameter (jaxlatent: one ``jax.jit`` of ``jax.grad``, its compile time reported apart, and
the EMA codebook state of ResidualVQ returned so its update is not dropped; torch: eager
``forward`` + ``backward``, which also updates the EMA buffers).

Harness (`benchmarks.common`): a ``prepare`` worker builds each torch module
(``torch.manual_seed(0)``) and writes its ``state_dict`` as numpy arrays; the jax workers
load them through `converters.vector_quantize.load_vector_quantize_pytorch` (no torch
import), the torch workers through ``load_state_dict``. ``--rounds`` alternating rounds of
one fresh process per framework; a number is a worker's median over ``--iters`` timed runs
after ``--warmup``; reported: the median of the rounds' medians, the speed-up's spread over
the rounds, and the fraction of indices equal at each framework's first call (first round).
``--smoke``: tiny shapes and sizes, one round (tests/unit/test_bench_quantizer_family.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from benchmarks import common
from benchmarks.common import Spread, markdown_table, ratios, report

MODULE = "benchmarks.bench_quantizer_family"
SHAPE = (64, 512, 1024)
SMOKE_SHAPE = (2, 16, 16)
LEVELS = [8, 5, 5, 5]


def cases(dim: int, smoke: bool = False) -> dict[str, tuple[str, dict]]:
    """name -> (vector-quantize-pytorch module path, keyword arguments) of every benchmarked
    quantizer at input dimension `dim` (8 residual layers, 1024-code codebooks; `smoke`: 2
    layers, 32 codes)."""
    q, k = (2, 32) if smoke else (8, 1024)
    vq = "vector_quantize_pytorch"
    return {
        "FSQ": (f"{vq}.finite_scalar_quantization", dict(levels=LEVELS, dim=dim)),
        "ResidualFSQ": (
            f"{vq}.residual_fsq",
            dict(levels=LEVELS, dim=dim, num_quantizers=q),
        ),
        "LFQ": (f"{vq}.lookup_free_quantization", dict(dim=dim, codebook_size=k)),
        "ResidualLFQ": (
            f"{vq}.residual_lfq",
            dict(dim=dim, codebook_size=k, num_quantizers=q),
        ),
        "SimVQ": (f"{vq}.sim_vq", dict(dim=dim, codebook_size=k)),
        "ResidualSimVQ": (
            f"{vq}.residual_sim_vq",
            dict(dim=dim, codebook_size=k, num_quantizers=q),
        ),
        "ResidualVQ": (
            f"{vq}.residual_vq",
            dict(dim=dim, codebook_size=k, num_quantizers=q),
        ),
    }


def _inputs(shape):
    """float32 input ``[B, T, D]`` and loss weights, the same in every worker."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    return x, rng.standard_normal(shape).astype(np.float32)


def _selected(args) -> dict[str, tuple[str, dict]]:
    all_cases = cases(args.shape[-1], args.smoke)
    return {name: all_cases[name] for name in args.only}


def _torch_module(path: str, name: str, kwargs: dict):
    import importlib

    return getattr(importlib.import_module(path), name)(**kwargs)


# -- workers -------------------------------------------------------------------------------------
def worker_prepare(args) -> dict:
    torch = common.torch_threads(args.threads)
    for name, (path, kwargs) in _selected(args).items():
        torch.manual_seed(0)
        t = _torch_module(path, name, kwargs)
        state = {k: v.detach().cpu().numpy() for k, v in t.state_dict().items()}
        np.savez(os.path.join(args.workdir, f"{name}.npz"), **state)
    return {}


def worker_torch(args) -> dict:
    torch = common.torch_threads(args.threads)
    x_np, w_np = _inputs(args.shape)
    w = torch.from_numpy(w_np)
    out = {}
    for name, (path, kwargs) in _selected(args).items():
        t = _torch_module(path, name, kwargs)
        with np.load(os.path.join(args.workdir, f"{name}.npz")) as f:
            t.load_state_dict({k: torch.from_numpy(f[k]) for k in f.files}, strict=True)
        t.train()
        params = [p for p in t.parameters() if p.requires_grad]

        def step(t=t, params=params):
            for p in params:
                p.grad = None
            x = torch.from_numpy(x_np).requires_grad_()
            res = t(x)
            loss = (res[0] * w).sum()
            if len(res) > 2:
                loss = loss + res[2].sum()
            loss.backward()
            return res[1]

        t0 = time.perf_counter()
        indices = step()
        first_s = time.perf_counter() - t0
        np.save(os.path.join(args.workdir, f"{name}-torch.npy"), indices.detach().numpy())
        samples = []
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            step()
            if i >= args.warmup:
                samples.append(time.perf_counter() - t0)
        out[name] = {"median_s": common.summarize(samples).median_s, "first_s": first_s}
    return {"cases": out, "env": common.torch_environment()}


def _objective(out, w):
    import jax.numpy as jnp

    loss = jnp.sum(w * out.quantized)
    for field in ("loss", "losses"):
        if getattr(out, field, None) is not None:
            loss = loss + jnp.sum(getattr(out, field))
    return loss


def jax_step(module):
    """``step(params, rest, x, w) -> ((param grads, input grad), indices, rest after the
    call)``, jitted: one training-mode call of `module` and the gradients of `_objective`."""
    import jax
    from flax import nnx

    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    train = "train" in _call_args(module)

    def objective(m, x, w):
        out = m(x, train=True) if train else m(x)
        return _objective(out, w), out.indices

    grad = nnx.grad(objective, argnums=(nnx.DiffState(0, nnx.Param), 1), has_aux=True)

    @jax.jit
    def step(params, rest, x, w):
        m = nnx.merge(graphdef, params, rest)
        grads, indices = grad(m, x, w)
        return grads, indices, nnx.state(m, nnx.Not(nnx.Param))

    return step, params, rest


def _call_args(module) -> tuple[str, ...]:
    import inspect

    return tuple(inspect.signature(module.__call__).parameters)


def worker_jax(args) -> dict:
    import importlib

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from converters.vector_quantize import load_vector_quantize_pytorch

    quantizers = importlib.import_module("jaxlatent.quantizers")
    x_np, w_np = _inputs(args.shape)
    x, w = jnp.asarray(x_np), jnp.asarray(w_np)
    counter = common.CompileCounter()
    out = {}
    for name, (_, kwargs) in _selected(args).items():
        j = getattr(quantizers, name)(**kwargs, rngs=nnx.Rngs(0))
        with np.load(os.path.join(args.workdir, f"{name}.npz")) as f:
            load_vector_quantize_pytorch(j, {k: f[k] for k in f.files})
        step, params, rest = jax_step(j)
        t0 = time.perf_counter()
        _, indices, _ = jax.block_until_ready(step(params, rest, x, w))
        first_s = time.perf_counter() - t0
        np.save(os.path.join(args.workdir, f"{name}-jax.npy"), np.asarray(indices))
        before = counter.count
        t = common.time_jax(step, params, rest, x, w, warmup=args.warmup + 1, iters=args.iters)
        if counter.count != before:
            raise RuntimeError(f"{name}: recompiled during the timed runs")
        out[name] = {"median_s": t.median_s, "first_s": first_s}
    return {"cases": out, "env": common.jax_environment()}


WORKERS = {"prepare": worker_prepare, "torch": worker_torch, "jax": worker_jax}


# -- the parent ----------------------------------------------------------------------------------
def _agreement(work: str, name: str) -> str:
    j, t = (np.load(os.path.join(work, f"{name}-{s}.npy")) for s in ("jax", "torch"))
    if j.shape != t.shape:
        return f"shapes differ ({j.shape} vs {t.shape})"
    return f"{np.mean(j == t):.2%}"


def run(args) -> str:
    load_start = common.load()
    with tempfile.TemporaryDirectory(prefix="bench_quantizer_family-") as work:
        wargs = ["--workdir", work, "--threads", args.threads, "--iters", args.iters]
        wargs += ["--warmup", args.warmup, "--shape", _shape_str(args.shape)]
        wargs += ["--only", ",".join(args.only)] + (["--smoke"] if args.smoke else [])
        common.run_worker(MODULE, "prepare", wargs)
        results = common.alternate(MODULE, args.rounds, wargs, label="quantizer family")
        agreement = {name: _agreement(work, name) for name in args.only}
    b, t, d = args.shape
    frames = b * t
    rows, speedups = [], []
    for name in args.only:
        tj = [r["cases"][name]["median_s"] for r in results["jax"]]
        tt = [r["cases"][name]["median_s"] for r in results["torch"]]
        s = ratios(tt, tj)
        speedups.append(s.median)
        first = Spread.of([r["cases"][name]["first_s"] for r in results["jax"]])
        rows.append(
            [
                name,
                f"{frames / statistics.median(tj) / 1e3:.1f}",
                f"{frames / statistics.median(tt) / 1e3:.1f}",
                f"**{s.median:.2f}x**",
                f"{s.low:.2f} to {s.high:.2f}x",
                agreement[name],
                f"{first.median:.1f}",
            ]
        )
    envs = sorted({results["jax"][0]["env"], results["torch"][0]["env"]})
    header = [
        "quantizer",
        "jaxlatent k frames/s",
        "torch k frames/s",
        "speed-up",
        "per round (min to max)",
        "indices equal",
        "jax first call s (compile)",
    ]
    described = "; ".join(f"{n}: {kw}" for n, (_, kw) in _selected(args).items())
    out = [
        "# bench_quantizer_family",
        "",
        f"Environment: {common.machine()}; workers: {'; '.join(envs)}; {args.threads} threads "
        f"per framework. {load_start} at the start, {common.load()} at the end.",
        "",
        f"Input {b} x {t} frames x {d} dims float32; one training-mode forward + backward "
        "(gradients of sum(losses) + sum(w * quantized) w.r.t. the input and the parameters). "
        f"{args.rounds} alternating rounds, one fresh process per framework per round "
        f"({args.iters} runs after {args.warmup} warm-up, median); the median of the rounds' "
        "medians and the speed-up's spread over the rounds. Indices equal: the first call's "
        "indices of both frameworks (first round).",
        "",
        markdown_table(header, rows),
        "",
        f"Arguments: {described}.",
        "",
        f"Target >= 1.5x vector-quantize-pytorch for each quantizer: "
        f"{'met' if min(speedups) >= 1.5 else 'MISSED'} (lowest {min(speedups):.2f}x).",
    ]
    return "\n".join(out)


def _shape_str(shape) -> str:
    return "x".join(str(v) for v in shape)


def _shape(text: str) -> tuple[int, int, int]:
    parts = text.split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"--shape must be BxTxD positive integers, got {text!r}")
    return tuple(int(p) for p in parts)


def _count(minimum: int):
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return int(text)

    return parse


def _names(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = sorted(set(names) - set(cases(8)))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--only: unknown quantizer(s) {unknown or text!r}")
    return names


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=_count(1), default=4, help="alternating rounds of workers")
    parser.add_argument("--iters", type=_count(1), default=5, help="timed runs per worker")
    parser.add_argument("--warmup", type=_count(0), default=1, help="untimed runs per worker")
    parser.add_argument("--threads", type=int, default=common.cores(), help="per framework")
    parser.add_argument("--shape", type=_shape, default=SHAPE, help="B x T x D, e.g. 64x512x1024")
    parser.add_argument("--only", type=_names, default=list(cases(8)), help="e.g. FSQ,LFQ")
    parser.add_argument("--out", help="also write the Markdown here")
    parser.add_argument("--smoke", action="store_true", help="tiny shape and sizes, 1 round")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke and not args.worker:
        args.shape, args.rounds, args.iters, args.warmup = SMOKE_SHAPE, 1, 1, 0
    if common.serve_worker(args, WORKERS):
        return
    report(run(args), args.out)


if __name__ == "__main__":
    main()
