"""How fast can the DAC codec get on this machine? The convolutions alone, against the full model.

`bench_dac.py` measures the speed-up of the jaxlatent DAC over the official torch package. This
script asks what bounds that speed-up: it times, in one process and in interleaved rounds,

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

Run from the repository root: ``python benchmarks/dac_speed_bound.py --variants dac_16khz``
(``--help`` for options). Results go in ``results/bench_dac-<device>.md`` beside the speed
table they explain.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_dac import VARIANTS, import_dac, load, make_pair, timed_rounds
from benchmarks.common import environment, markdown_table

FNS = ("torch", "torch_convs", "jax", "jax_convs")


def _torch_convs_only(dac, ref):
    """`ref` with Snake as the identity and weight norm removed (fused kernels); in place."""
    import torch

    for module in ref.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
        if isinstance(module, dac.nn.layers.Snake1d):
            module.forward = torch.nn.Identity()  # this instance only; `ref` keeps Snake
    return ref


def bench_variant(name: str, seconds: float, iters: int) -> dict:
    import jax
    import torch
    from flax import nnx

    import jaxlatent.models.dac.layers as dac_layers
    import jaxlatent.nn.weight_norm as weight_norm

    dac = import_dac()
    config, kwargs, ref, model, _, audio = make_pair(name, seconds)
    sr = config.sample_rate
    x = model.preprocess(audio, sr)
    xt = ref.preprocess(torch.from_numpy(audio.transpose(0, 2, 1).copy()), sr)

    # Full models first (compiled before anything is patched).
    from jaxlatent.compilation import compiled
    from jaxlatent.models.dac import DAC

    graphdef, state = nnx.split(model)
    encode, decode = compiled(DAC.encode, graphdef), compiled(DAC.decode, graphdef)

    def jax_full():
        z = encode(state, x).z
        jax.block_until_ready(decode(state, z))

    def torch_full(module):
        with torch.no_grad():
            module.decode(module.encode(xt)[0])

    jax_full()
    torch_full(ref)

    # Convolutions only: patch, then trace fresh jits (the compiled full model keeps its trace).
    original_snake, original_weight = dac_layers.snake, weight_norm._WeightNormMixin._weight
    dac_layers.snake = lambda x, alpha: x
    weight_norm._WeightNormMixin._weight = lambda self: self.weight_v[...]
    try:
        enc = jax.jit(lambda s, a: nnx.merge(graphdef, s).encoder(a))
        dec = jax.jit(lambda s, z: nnx.merge(graphdef, s).decoder(z))
        jax.block_until_ready(dec(state, enc(state, x)))
    finally:
        dac_layers.snake, weight_norm._WeightNormMixin._weight = original_snake, original_weight

    def jax_convs():
        jax.block_until_ready(dec(state, enc(state, x)))

    torch.manual_seed(0)
    ref_convs = _torch_convs_only(dac, dac.DAC(**kwargs).eval())
    torch_full(ref_convs)

    fns = {
        "torch": lambda: torch_full(ref),
        "torch_convs": lambda: torch_full(ref_convs),
        "jax": jax_full,
        "jax_convs": jax_convs,
    }
    wall, cpu = timed_rounds(fns, [FNS if i % 2 == 0 else FNS[::-1] for i in range(iters)])
    return {
        "variant": name,
        **{k: float(np.median(v)) for k, v in wall.items()},
        **{k + "_cpu": float(np.median(v)) for k, v in cpu.items()},
    }


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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seconds", type=float, default=10.0, help="audio duration")
    p.add_argument("--iters", type=int, default=5, help="interleaved timed rounds")
    p.add_argument("--torch-threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.torch_threads)
    print(f"# DAC speed bound: convolutions alone vs the full codec, {args.seconds:g} s of audio\n")
    print(f"- {environment()}")
    print(f"- {load()} at start ({os.cpu_count()} CPUs); medians of {args.iters} rounds\n")
    print(markdown_table(HEADER, []), flush=True)
    for name in args.variants:
        r = bench_variant(name, args.seconds, args.iters)
        print(markdown_table(HEADER, [row(r)]).splitlines()[-1], flush=True)
    print(f"\n- {load()} at end")


if __name__ == "__main__":
    main()
