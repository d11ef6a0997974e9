"""How fast can the DAC codec get on this machine? The convolutions alone, against the full model.

`bench_dac.py` measures the speed-up of the jaxlatent DAC over the official torch package. This
script asks what bounds that speed-up: it times, each framework in its own worker processes
in alternating rounds (`benchmarks.common`; the models are `bench_dac`'s ``prepare``
worker's),

* the official torch model (eager, ``torch.no_grad``) and jaxlatent (jit, the public
  ``encode``/``decode``), exactly as `bench_dac.py` does, and
* the **convolutions alone** of each framework: the same models with Snake replaced by the
  identity and weight norm skipped (torch: ``remove_weight_norm`` on every convolution;
  jaxlatent: the stored ``weight_v`` used as the kernel). Every convolution keeps its shape,
  stride, dilation and padding, so this is the time the model's convolution kernels take,
  with nothing else.

The last column, torch's full time over jaxlatent's convolutions-only time, bounds the
speed-up any change to jaxlatent's non-convolution work (Snake, weight norm, quantizer,
dispatch) could reach with the convolution kernels XLA uses on this machine. The outputs of
the convolutions-only models are meaningless; only their time is used.

Run from the repository root: ``python -m benchmarks.dac_speed_bound --variants dac_16khz``
(``--help`` for options; ``--smoke``: a tiny model, tests/unit/test_bench_dac.py). Results
go in ``results/bench_dac-<device>.md`` beside the speed table they explain.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile

import numpy as np

from benchmarks import bench_dac, common
from benchmarks.common import load, markdown_table, report

MODULE = "benchmarks.dac_speed_bound"
VARIANTS = bench_dac.VARIANTS


def _torch_convs_only(dac, ref):
    """`ref` with Snake as the identity and weight norm removed (fused kernels); in place."""
    import torch

    for module in ref.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
        if isinstance(module, dac.nn.layers.Snake1d):
            module.forward = torch.nn.Identity()  # this instance only
    return ref


def _interleaved(fns: dict, iters: int) -> dict:
    """`iters` rounds of the callables `fns` (order reversed every round): wall and CPU
    seconds of each, keyed ``name`` and ``name_cpu``."""
    out = {k + suffix: [] for k in fns for suffix in ("", "_cpu")}
    keys = list(fns)
    for i in range(iters):
        for key in keys if i % 2 == 0 else keys[::-1]:
            wall, cpu = common.timed(fns[key])
            out[key].append(wall)
            out[key + "_cpu"].append(cpu)
    return out


def worker_torch(args) -> dict:
    torch = common.torch_threads(args.threads)
    dac = bench_dac.import_dac()
    ref = bench_dac.torch_model(args)
    convs = _torch_convs_only(dac, bench_dac.torch_model(args))
    audio = np.load(bench_dac._path(args, "audio.npy"))
    sr = bench_dac.variant_config(args.variant, args.smoke).sample_rate
    xt = ref.preprocess(torch.from_numpy(audio.transpose(0, 2, 1).copy()), sr)

    def full(module):
        with torch.no_grad():
            module.decode(module.encode(xt)[0])

    fns = {"torch": lambda: full(ref), "torch_convs": lambda: full(convs)}
    for fn in fns.values():  # warm-up
        fn()
    return dict(_interleaved(fns, args.iters), env=common.torch_environment())


def worker_jax(args) -> dict:
    import jax
    from flax import nnx

    import jaxlatent.models.dac.layers as dac_layers
    import jaxlatent.nn.weight_norm as weight_norm

    model = bench_dac.jax_model(args)
    audio = np.load(bench_dac._path(args, "audio.npy"))
    x = model.preprocess(audio, bench_dac.variant_config(args.variant, args.smoke).sample_rate)

    from jaxlatent.compilation import compiled
    from jaxlatent.models.dac import DAC

    graphdef, state = nnx.split(model)
    encode, decode = compiled(DAC.encode, graphdef), compiled(DAC.decode, graphdef)

    def jax_full():  # compiled as the codec compiles it, traced before anything is patched
        z = encode(state, x).z
        jax.block_until_ready(decode(state, z))

    jax_full()
    # Convolutions only: patch, then trace fresh jits (the compiled full model keeps its trace).
    original_snake, original_weight = (
        dac_layers.snake,
        weight_norm._WeightNormMixin.effective_kernel,
    )
    dac_layers.snake = lambda x, alpha: x
    weight_norm._WeightNormMixin.effective_kernel = lambda self: self.weight_v[...]
    try:
        graphdef, state = nnx.split(model)
        enc = jax.jit(lambda s, a: nnx.merge(graphdef, s).encoder(a))
        dec = jax.jit(lambda s, z: nnx.merge(graphdef, s).decoder(z))
        jax.block_until_ready(dec(state, enc(state, x)))
    finally:
        dac_layers.snake, weight_norm._WeightNormMixin.effective_kernel = (
            original_snake,
            original_weight,
        )

    def jax_convs():
        jax.block_until_ready(dec(state, enc(state, x)))

    fns = {"jax": jax_full, "jax_convs": jax_convs}
    return dict(_interleaved(fns, args.iters), env=common.jax_environment())


WORKERS = {"prepare": bench_dac.worker_prepare, "torch": worker_torch, "jax": worker_jax}


def bench_variant(args, name: str, workdir: str) -> dict:
    wargs = ["--variant", name, "--workdir", workdir, "--threads", args.threads]
    wargs += ["--seconds", args.seconds, *(["--smoke"] if args.smoke else [])]
    common.run_worker(MODULE, "prepare", wargs)
    results = common.alternate(MODULE, args.rounds, [*wargs, "--iters", args.iters], label=name)
    r = {"variant": name, "env": {results["jax"][0]["env"], results["torch"][0]["env"]}}
    for side, keys in (("torch", ("torch", "torch_convs")), ("jax", ("jax", "jax_convs"))):
        for key in keys:
            for suffix in ("", "_cpu"):
                rounds = [statistics.median(x[key + suffix]) for x in results[side]]
                r[key + suffix] = statistics.median(rounds)
    return r


def row(r: dict) -> list[str]:
    def pair(key):
        return f"{r[key]:.2f} / {r[key + '_cpu']:.2f}"

    return [
        r["variant"],
        pair("torch"),
        pair("torch_convs"),
        pair("jax"),
        pair("jax_convs"),
        f"{r['torch'] / r['jax']:.2f}x / {r['torch_cpu'] / r['jax_cpu']:.2f}x",
        f"{r['torch'] / r['jax_convs']:.2f}x / {r['torch_cpu'] / r['jax_convs_cpu']:.2f}x",
    ]


HEADER = [
    "variant",
    "torch enc+dec (wall / CPU s)",
    "torch convolutions only",
    "jaxlatent enc+dec",
    "jaxlatent convolutions only",
    "speed-up (wall / CPU)",
    "bound: torch / jaxlatent convolutions only",
]


def run(args) -> str:
    out = [f"# DAC speed bound: convolutions alone vs the full codec, {args.seconds:g} s of audio"]
    out += ["", f"- {common.machine()}; {load()} at start"]
    rows, envs = [], set()
    with tempfile.TemporaryDirectory(prefix="dac_speed_bound-") as work:
        for name in args.variants:
            r = bench_variant(args, name, work)
            envs |= r["env"]
            rows.append(row(r))
            print(f"<!-- {name} done, {load()} -->", file=sys.stderr, flush=True)
    out += [
        f"- workers: {'; '.join(sorted(envs))}; {args.threads} threads per framework",
        f"- {args.rounds} alternating rounds (one fresh process per framework per round) of "
        f"{args.iters} interleaved full / convolutions-only calls; medians of the rounds' medians",
        "",
        markdown_table(HEADER, rows),
        "",
        f"- {load()} at end",
    ]
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seconds", type=float, default=10.0, help="audio duration")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds of workers")
    p.add_argument("--iters", type=int, default=3, help="timed calls of each model per worker")
    p.add_argument("--threads", type=int, default=common.cores(), help="per framework")
    p.add_argument("--smoke", action="store_true", help="tiny dac_16khz, 0.1 s, 2 rounds")
    p.add_argument("--out", help="also write the Markdown here")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.precision = None  # bench_dac's workers read it
    if common.serve_worker(args, WORKERS):
        return
    if args.smoke:
        args.variants, args.seconds, args.rounds, args.iters = ["dac_16khz"], 0.1, 2, 1
    report(run(args), args.out)


if __name__ == "__main__":
    main()
