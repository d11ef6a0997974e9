"""Nearest-code search throughput and peak memory: jaxlatent (jit) vs the torch references.

Run from the repository root::

    python -m benchmarks.bench_quantizers [--rounds 4] [--threads N] [--out FILE]

Each framework is timed in its own worker processes (`benchmarks.common`: ``--rounds``
alternating rounds, torch, jax; jax, torch; ..., one fresh process per framework per round,
each timing every implementation of its framework on every shape), for (N vectors, D dims,
K codes) in
{(65536, 256, 1024), (65536, 8, 1024), (16384, 256, 16384), (4096, 64, 65536)}:

* **l2 search**: `jaxlatent.quantizers.nearest_code(form="addmm")` vs SpeechBrain 1.1.2
  `PIQ.VectorQuantization` (class partitioning off; it still builds its N x K
  irrelevant-region masks, which is part of its cost) and, for reference, the bare torch
  ``addmm`` + ``min`` it is built on;
* **cosine search + gather**: `nearest_code(metric="cosine")` + `lookup_codes` vs
  `dac.nn.quantize.VectorQuantize.decode_latents` (normalise, distances, max, embedding);
* **straight-through forward + backward**: search, gather, straight-through output, and the
  gradients of ``Σ w·out + Σ w·codes`` w.r.t. the inputs (identity) and the codebook (a
  scatter-add of the rows used), i.e. the work of SpeechBrain's
  `VectorQuantizationStraightThrough` backward, vs that class and vs DAC's
  ``z + (q - z).detach()`` with an embedding lookup.

Also measured by the same workers: a plain float32 GEMM (``[4096, D] x [D, 4096]``, jax and torch;
the faster is the "GEMM peak") to report the search's fraction of it for D = 256, and the
262144 x 65536 search's peak memory (XLA's buffer assignment and the process RSS high-water
mark).

Timings: `benchmarks.common` (compile separate, `block_until_ready`, warm-up excluded,
median in a worker; median of the rounds' medians and their spread across rounds). The
indices of the searches are compared across the workers (a difference is noted: near-ties).
``--smoke``: two tiny shapes, 2 rounds (tests/unit/test_bench_quantizers.py).
Peak memory: the process's RSS high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs``) above the RSS before the call, for both frameworks; for jax also
the temporary buffers of the compiled program (`memory_analysis`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from benchmarks import common
from benchmarks.common import ROLES, Spread, markdown_table, ratios, report

MODULE = "benchmarks.bench_quantizers"

SHAPES = [(65536, 256, 1024), (65536, 8, 1024), (16384, 256, 16384), (4096, 64, 65536)]
BIG = (262144, 8, 65536)  # the memory case
SMOKE_SHAPES = [(512, 256, 64), (256, 8, 32)]
SMOKE_BIG = (2048, 8, 1024)
MIB = 1 << 20


# -- memory ------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def xla_temp_mib(jitted, *args) -> float:
    """Temporary buffers of the compiled program (XLA's buffer assignment), MiB."""
    return jitted.lower(*args).compile().memory_analysis().temp_size_in_bytes / MIB


def peak_rss_mib(fn, *args, block=lambda x: x) -> float | None:
    """RSS high-water mark during one call of `fn(*args)`, above the RSS before it (MiB)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
    except OSError:
        return None
    before = _status_kib("VmRSS")
    block(fn(*args))
    return (_status_kib("VmHWM") - before) / 1024


# -- jaxlatent ---------------------------------------------------------------------------------
def jax_fns() -> dict:
    """The jitted jaxlatent functions (jax is imported in the jax worker only)."""
    import jax
    import jax.numpy as jnp

    from jaxlatent.quantizers import lookup_codes, nearest_code, straight_through

    @jax.jit
    def l2(x, c):
        return nearest_code(x, c, form="addmm")

    @jax.jit
    def cosine_gather(x, c):
        idx = nearest_code(x, c, metric="cosine", form="dac")
        return lookup_codes(c, idx), idx

    @jax.jit
    def ste_grad(x, c, w):
        def loss(x, c):
            q = lookup_codes(c, nearest_code(x, c, form="addmm"))
            return jnp.sum(w * straight_through(x, q)) + jnp.sum(w * q)

        return jax.grad(loss, argnums=(0, 1))(x, c)

    @jax.jit
    def gemm(a, b):
        return jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST)

    return {"l2": l2, "cosine": cosine_gather, "ste": ste_grad, "gemm": gemm}


# -- torch references --------------------------------------------------------------------------
def torch_refs(threads: int):
    from converters.torchaudio_stub import install_torchaudio_stub

    torch = common.torch_threads(threads)
    install_torchaudio_stub("2.13.0")  # no old-torchaudio warning from SpeechBrain
    import dac.nn.quantize as dac_quantize
    from speechbrain.lobes.models import PIQ

    def piq_search(x4, c, labels):
        return PIQ.VectorQuantization.apply(x4, c, labels, 10, False, 10, False)

    def addmm_search(x, c):
        d = torch.addmm(
            torch.sum(c**2, dim=1) + torch.sum(x**2, dim=1, keepdim=True),
            x,
            c.t(),
            alpha=-2.0,
            beta=1.0,
        )
        return torch.min(d, dim=1)[1]

    def dac_module(d, k):
        vq = dac_quantize.VectorQuantize(d, k, d)
        vq.requires_grad_(False)
        return vq

    def piq_ste(x4, c, labels, w):
        with torch.enable_grad():
            x4 = x4.detach().requires_grad_()
            c = c.detach().requires_grad_()
            codes, _ = PIQ.VectorQuantizationStraightThrough.apply(
                x4, c, labels, 10, False, 10, False
            )
            (w * codes).sum().mul(2.0).backward()  # Σ w·out + Σ w·codes: same gradient
            return x4.grad, c.grad

    def dac_ste(vq, z, w):
        with torch.enable_grad():
            vq.codebook.weight.requires_grad_(True)
            vq.codebook.weight.grad = None
            z = z.detach().requires_grad_()
            z_q, _ = vq.decode_latents(z)
            out = z + (z_q - z).detach()
            ((w * out).sum() + (w * z_q).sum()).backward()
            vq.codebook.weight.requires_grad_(False)
            return z.grad, vq.codebook.weight.grad

    return torch, piq_search, addmm_search, dac_module, piq_ste, dac_ste


# -- workers: one framework each ---------------------------------------------------------------
GEMM_N = 4096


def _inputs(shape, rng_seed: int = 0):
    """The float32 inputs of a shape, the same in every worker: x, codebook c, weights w."""
    n, d, k = shape
    rng = np.random.default_rng(rng_seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    c = rng.standard_normal((k, d)).astype(np.float32)
    w = rng.standard_normal((n, d)).astype(np.float32)
    return x, c, w


def _gemm_inputs(d: int):
    rng = np.random.default_rng(d)
    a = rng.standard_normal((GEMM_N, d)).astype(np.float32)
    return a, rng.standard_normal((d, GEMM_N)).astype(np.float32)


def _gemm_ds(shapes) -> list[int]:
    return sorted({d for _, d, _ in shapes} | {256})


def _record(t, rss=None, xla=None) -> dict:
    return {"median_s": t.median_s, "compile_s": t.compile_s, "rss_mib": rss, "xla_mib": xla}


def worker_jax(args) -> dict:
    import jax
    import jax.numpy as jnp

    fns = jax_fns()
    it = {"warmup": args.warmup, "iters": args.iters}
    block = jax.block_until_ready
    gemm = {}
    for d in _gemm_ds(args.shapes):
        a, b = (jnp.asarray(v) for v in _gemm_inputs(d))
        gemm[d] = common.time_jax(fns["gemm"], a, b, **it).median_s
    shapes = {}
    for shape in args.shapes:
        x, c, w = (jnp.asarray(v) for v in _inputs(shape))
        calls = {"l2": (fns["l2"], x, c), "cosine": (fns["cosine"], x, c)}
        calls["ste"] = (fns["ste"], x, c, w)
        shapes[_shape_str(shape)] = {
            name: _record(
                common.time_jax(*call, **it),
                peak_rss_mib(*call, block=block),
                xla_temp_mib(*call),
            )
            for name, call in calls.items()
        }
        stem = os.path.join(args.workdir, _shape_str(shape))
        np.save(stem + "-jax-l2.npy", np.asarray(fns["l2"](x, c)))
        np.save(stem + "-jax-cosine.npy", np.asarray(fns["cosine"](x, c)[1]))
    vc, cc = _chunks()
    return {"gemm": gemm, "shapes": shapes, "chunks": [vc, cc], "env": common.jax_environment()}


def _chunks():
    from jaxlatent.quantizers import default_chunks

    return default_chunks()


def worker_torch(args) -> dict:
    torch, piq_search, addmm_search, dac_module, piq_ste, dac_ste = torch_refs(args.threads)
    it = {"warmup": args.warmup, "iters": args.iters}
    gemm = {}
    for d in _gemm_ds(args.shapes):
        a, b = (torch.from_numpy(v) for v in _gemm_inputs(d))
        gemm[d] = common.time_torch(torch.matmul, a, b, **it).median_s
    shapes = {}
    for shape in args.shapes:
        n, d, k = shape
        xt, ct, wt = (torch.from_numpy(v) for v in _inputs(shape))
        x4, w4 = xt.view(1, n, 1, d), wt.view(1, n, 1, d)
        labels = torch.zeros(1)
        vq = dac_module(d, k)
        with torch.no_grad():
            vq.codebook.weight.copy_(ct)
        z = xt.t().reshape(1, d, n).contiguous()  # dac: [batch, dim, time]
        wz = wt.t().reshape(1, d, n).contiguous()
        calls = {
            "piq": (piq_search, x4, ct, labels),
            "addmm": (addmm_search, xt, ct),
            "dac": (vq.decode_latents, z),
            "piq_ste": (piq_ste, x4, ct, labels, w4),
            "dac_ste": (dac_ste, vq, z, wz),
        }
        measured = {"piq", "dac", "piq_ste"}  # peak RSS of the rows' references
        shapes[_shape_str(shape)] = {
            name: _record(
                common.time_torch(*call, **it), peak_rss_mib(*call) if name in measured else None
            )
            for name, call in calls.items()
        }
        stem = os.path.join(args.workdir, _shape_str(shape))
        with torch.no_grad():
            np.save(stem + "-torch-l2.npy", piq_search(x4, ct, labels).reshape(-1).numpy())
            np.save(stem + "-torch-cosine.npy", vq.decode_latents(z)[1].reshape(-1).numpy())
    return {"gemm": gemm, "shapes": shapes, "env": common.torch_environment()}


def worker_memory(args) -> dict:
    return memory_probe(args.big)


WORKERS = {"torch": worker_torch, "jax": worker_jax, "memory": worker_memory}


# -- the parent --------------------------------------------------------------------------------
def _fmt_rate(n: int, seconds: float) -> str:
    r = n / seconds
    return f"{r / 1e6:.2f} M/s" if r >= 1e6 else f"{r / 1e3:.1f} k/s"


def _fmt_mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f}"


def run(args) -> str:
    load_start = common.load()
    with tempfile.TemporaryDirectory(prefix="bench_quantizers-") as work:
        wargs = ["--workdir", work, "--threads", args.threads, "--iters", args.iters]
        wargs += ["--warmup", args.warmup, "--shapes", ",".join(map(_shape_str, args.shapes))]
        results = common.alternate(MODULE, args.rounds, wargs, label="quantizers")
        notes = []
        for shape in map(_shape_str, args.shapes):
            for op, ref in (("l2", "SpeechBrain PIQ"), ("cosine", "dac decode_latents")):
                j, t = (np.load(os.path.join(work, f"{shape}-{s}-{op}.npy")) for s in ROLES)
                if not np.array_equal(j.reshape(-1), t.reshape(-1)):
                    frac = np.mean(j.reshape(-1) == t.reshape(-1))
                    notes.append(
                        f"{shape} {op}: {frac:.2%} of the indices equal {ref}'s (near-ties)"
                    )
    big = common.run_worker(MODULE, "memory", ["--big", _shape_str(args.big)])

    def times(side: str, shape: str, name: str) -> list[float]:
        return [r["shapes"][shape][name]["median_s"] for r in results[side]]

    def first(side: str, shape: str, name: str) -> dict:
        return results[side][0]["shapes"][shape][name]

    def first_s(shape: str, op: str) -> list[float]:
        return [r["shapes"][shape][op]["compile_s"] for r in results["jax"]]

    def gemm(side: str, d: int) -> float:
        return statistics.median(r["gemm"][str(d)] for r in results[side])

    gemm_rows = []
    for d in _gemm_ds(args.shapes):
        flops = 2 * GEMM_N * GEMM_N * d
        gemm_rows.append((d, flops / gemm("jax", d) / 1e9, flops / gemm("torch", d) / 1e9))
    peak_256 = max(g for d, *gs in gemm_rows if d == 256 for g in gs)

    rows, speedups, fractions = [], [], []
    for n, d, k in args.shapes:
        shape = _shape_str((n, d, k))
        flops = 2 * n * d * k
        for op, ref, label in (
            ("l2", "piq", "l2 search vs SpeechBrain PIQ"),
            ("cosine", "dac", "cosine search + gather vs dac decode_latents"),
            ("ste", "piq_ste", "straight-through fwd+bwd vs PIQ STE (dac STE)"),
        ):
            tj, tr = times("jax", shape, op), times("torch", shape, ref)
            j, s = Spread.of(tj), ratios(tr, tj)
            if op == "l2":
                extra = f"{ratios(times('torch', shape, 'addmm'), tj).median:.2f}x"
                speedups.append(s.median)
            elif op == "cosine":
                extra = ""
                speedups.append(s.median)
            else:
                dac = ratios(times("torch", shape, "dac_ste"), tj)
                extra = f"({dac.median:.2f}x dac)"
                speedups.append(min(s.median, dac.median))  # the faster reference
            gflops = flops / j.median / 1e9
            frac = (
                f" ({gflops / peak_256:.0%} of {peak_256:.0f})" if d == 256 and op != "ste" else ""
            )
            if frac:
                fractions.append(gflops / peak_256)
            mj, mr = first("jax", shape, op), first("torch", shape, ref)
            rows.append(
                [
                    shape,
                    label,
                    _fmt_rate(n, j.median),
                    _fmt_rate(n, statistics.median(tr)),
                    f"**{s.median:.2f}x**",
                    f"{s.low:.2f} to {s.high:.2f}x",
                    extra,
                    f"{gflops:.1f}{frac}",
                    f"{mj['xla_mib']:.1f}, {_fmt_mib(mj['rss_mib'])} / {_fmt_mib(mr['rss_mib'])}",
                    f"{statistics.median(first_s(shape, op)):.1f}",
                ]
            )
    n, d, k = args.big
    vc, cc = results["jax"][0]["chunks"]
    envs = sorted({results["jax"][0]["env"], results["torch"][0]["env"]})
    worst_fraction = min(fractions) if fractions else float("nan")
    header = [
        "NxDxK",
        "operation (jaxlatent vs torch reference)",
        "jaxlatent vectors/s",
        "torch vectors/s",
        "speed-up",
        "per round (min to max)",
        "vs bare torch addmm+min",
        "jaxlatent GFLOP/s (% of the D=256 GEMM peak)",
        "peak MiB: jax XLA temp, jax RSS / torch RSS",
        "jax compile s",
    ]
    out = [
        "# bench_quantizers",
        "",
        f"Environment: {common.machine()}; workers: {'; '.join(envs)}; {args.threads} threads "
        "per framework (torch set_num_threads; XLA:CPU one thread per core of the process's "
        f"CPU affinity). {load_start} at the start, {common.load()} at the end.",
        "",
        f"Search chunks: vector_chunk={vc}, code_chunk={cc}. Timings: {args.rounds} alternating "
        "rounds (torch, jax; jax, torch; ...), one fresh process per framework per round timing "
        f"every implementation of its framework ({args.iters} runs after {args.warmup} warm-up, "
        "median); reported: the median of the rounds' medians and the speed-up's spread over "
        "the rounds. Peak memory (first round's workers): XLA's temporary buffers of the "
        "compiled program; the RSS high-water mark of one call above the RSS before it (VmHWM "
        "reset through /proc/self/clear_refs; memory the process already holds and reuses is "
        "not counted, so small numbers read 0).",
        "",
        markdown_table(header, rows),
        "",
        f"GEMM ``[{GEMM_N}, D] x [D, {GEMM_N}]`` float32, GFLOP/s (jax / torch, medians over the "
        "rounds): "
        + "; ".join(f"D={d}: {gj:.1f} / {gt:.1f}" for d, gj, gt in gemm_rows)
        + f". The D=256 peak (the faster of the two) is {peak_256:.1f} GFLOP/s.",
        "",
        f"Memory case {n}x{d}x{k} (jaxlatent l2 search, default chunks, one call in a fresh "
        f"process, {big['seconds']:.1f} s): XLA temporary buffers {big['xla_temp_mib']:.1f} "
        f"MiB; the call raised the process RSS by {big['rss_increase_mib']:.0f} MiB above "
        f"{big['rss_before_mib']:.0f} MiB (Python, jax and the {(n + k) * d * 4 / MIB:.0f} MiB of "
        f"inputs), whole-process peak {big['peak_mib']:.0f} MiB "
        f"({'within' if big['peak_mib'] < 2048 else 'NOT within'} 2 GiB). A torch reference "
        f"that materialises the distances would need {n * k * 4 / 2**30:.0f} GiB for them alone.",
        "",
        f"Targets: >= 1.5x the torch reference in every row: "
        f"{'met' if min(speedups) >= 1.5 else 'MISSED'} (lowest {min(speedups):.2f}x, against "
        f"the faster torch reference of each row); >= 60% of the GEMM FLOP/s for D=256: "
        f"{'met' if worst_fraction >= 0.6 else 'MISSED'} (lowest {worst_fraction:.0%}).",
    ]
    if notes:
        out += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(out)


def memory_probe(shape: tuple[int, int, int]) -> dict:
    """Run the l2 search once on `shape` and report this process's memory (MiB) as JSON."""
    n, d, k = shape
    rng = np.random.default_rng(0)
    import jax
    import jax.numpy as jnp

    x = jnp.asarray(rng.standard_normal((n, d)).astype(np.float32))
    c = jnp.asarray(rng.standard_normal((k, d)).astype(np.float32))
    compiled = (
        jax_fns()["l2"].lower(x, c).compile()
    )  # compiled first: the RSS increase is the run's
    temp = compiled.memory_analysis().temp_size_in_bytes / MIB
    jax.block_until_ready((x, c))
    before = _status_kib("VmRSS") / 1024
    t0 = time.perf_counter()
    increase = peak_rss_mib(compiled, x, c, block=jax.block_until_ready)
    return {
        "xla_temp_mib": temp,
        "rss_before_mib": before,
        "rss_increase_mib": increase,
        "peak_mib": _status_kib("VmHWM") / 1024,
        "seconds": time.perf_counter() - t0,
    }


def _shape_str(shape) -> str:
    return "x".join(str(v) for v in shape)


def _shapes(text: str) -> list[tuple[int, int, int]]:
    return [tuple(int(v) for v in item.split("x")) for item in text.split(",")]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, help="alternating rounds of workers (default 4; --smoke: 2)"
    )
    parser.add_argument("--iters", type=int, default=3, help="timed runs per worker")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per worker")
    parser.add_argument("--threads", type=int, default=common.cores(), help="per framework")
    parser.add_argument("--out", help="also write the Markdown here")
    parser.add_argument("--shapes", type=_shapes, default=SHAPES, help="e.g. 1024x8x64,512x4x32")
    parser.add_argument("--big", type=lambda s: _shapes(s)[0], default=BIG, help="memory case")
    parser.add_argument("--smoke", action="store_true", help="two tiny shapes, 2 rounds")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if common.serve_worker(args, WORKERS):
        return
    if args.smoke:
        args.shapes, args.big, args.iters = SMOKE_SHAPES, SMOKE_BIG, 1
        args.rounds = args.rounds or 2
    args.rounds = args.rounds or 4
    report(run(args), args.out)


if __name__ == "__main__":
    main()
