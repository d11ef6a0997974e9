"""Where the jaxlatent DAC spends its time: encode and decode split by layer type.

Every distinct layer of the encoder or decoder of a released configuration (batch 1,
``--seconds`` of audio) is built alone with random weights (the same jaxlatent modules the
model uses), jit-compiled and timed on an input of the shape it sees inside the model; the
times are multiplied by how often the layer occurs and summed per type (Snake, kernel-7
convolutions by dilation, 1x1 convolutions, strided / transposed convolutions, first and last
convolutions). Process CPU time (all threads) is reported next to wall time: on a shared
machine it is the steadier of the two. Fusion across layers inside the full model is not
captured, so the total is close to, not equal to, a full encode / decode.

Run from the repository root: ``python benchmarks/profile_dac_layers.py dac_44khz_8kbps``
(``--help`` for options).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import jax_environment, machine, markdown_table
from jaxlatent.models.dac import DACConfig, Snake1d
from jaxlatent.nn import WNConv1d, WNConvTranspose1d

VARIANTS = ("dac_44khz_8kbps", "dac_44khz_16kbps", "dac_24khz", "dac_16khz")


def _time(make, shape, iters: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of the jitted layer on a random input of `shape`."""
    graphdef, state = nnx.split(make(nnx.Rngs(0)))
    fn = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    x = jnp.asarray(np.random.default_rng(0).standard_normal(shape, np.float32))
    jax.block_until_ready(fn(state, x))
    wall, cpu = [], []
    for _ in range(iters):
        w0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(state, x))
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def _res_unit_layers(length, channels):
    """The layers of the three residual units of a block (dilations 1, 3, 9)."""
    out = []
    for d in (1, 3, 9):
        make = lambda r, c=channels, d=d: WNConv1d(c, c, 7, dilation=d, padding=3 * d, rngs=r)  # noqa: E731
        out.append((f"conv k7 dilation {d}", make, length, channels, 1))
    out.append(("conv 1x1", lambda r, c=channels: WNConv1d(c, c, 1, rngs=r), length, channels, 3))
    out.append(("snake", lambda r, c=channels: Snake1d(c), length, channels, 6))
    return out


def layers(config: DACConfig, seconds: float) -> dict[str, list]:
    """``{"encode": [...], "decode": [...]}``: (type, constructor, time, channels, count)."""
    length = int(seconds * config.sample_rate) // config.hop_length * config.hop_length
    enc, dec = [], []
    d = config.encoder_dim
    enc.append(
        ("first / last conv", lambda r, c=d: WNConv1d(1, c, 7, padding=3, rngs=r), length, 1, 1)
    )
    for s in config.encoder_rates:
        enc += _res_unit_layers(length, d)
        enc.append(("snake", lambda r, c=d: Snake1d(c), length, d, 1))
        make = lambda r, c=d, s=s: WNConv1d(c, 2 * c, 2 * s, s, (s + 1) // 2, rngs=r)  # noqa: E731
        enc.append(("strided / transposed conv", make, length, d, 1))
        length, d = length // s, 2 * d
    enc.append(("snake", lambda r, c=d: Snake1d(c), length, d, 1))
    make = lambda r, c=d: WNConv1d(c, config.latent_dim, 3, padding=1, rngs=r)  # noqa: E731
    enc.append(("first / last conv", make, length, d, 1))

    c = config.decoder_dim
    make = lambda r, c=c: WNConv1d(config.latent_dim, c, 7, padding=3, rngs=r)  # noqa: E731
    dec.append(("first / last conv", make, length, config.latent_dim, 1))
    for s in config.decoder_rates:
        dec.append(("snake", lambda r, c=c: Snake1d(c), length, c, 1))
        make = lambda r, c=c, s=s: WNConvTranspose1d(c, c // 2, 2 * s, s, (s + 1) // 2, rngs=r)  # noqa: E731
        dec.append(("strided / transposed conv", make, length, c, 1))
        length, c = length * s - s % 2, c // 2
        dec += _res_unit_layers(length, c)
    dec.append(("snake", lambda r, c=c: Snake1d(c), length, c, 1))
    dec.append(
        ("first / last conv", lambda r, c=c: WNConv1d(c, 1, 7, padding=3, rngs=r), length, c, 1)
    )
    return {"encode": enc, "decode": dec}


def profile(name: str, seconds: float, iters: int) -> str:
    config = getattr(DACConfig, name)()
    _time(lambda r: Snake1d(8), (1, 64, 8), 1)  # start the runtime's threads before timing
    lines = []
    for part, entries in layers(config, seconds).items():
        totals = collections.defaultdict(lambda: np.zeros(2))
        for kind, make, length, channels, count in entries:
            totals[kind] += count * np.asarray(_time(make, (1, length, channels), iters))
        wall, cpu = sum(totals.values())
        rows = [
            [kind, f"{w:.2f}", f"{c:.2f}", f"{100 * c / cpu:.0f} %"]
            for kind, (w, c) in sorted(totals.items(), key=lambda kv: -kv[1][1])
        ]
        rows.append(["**total**", f"{wall:.2f}", f"{cpu:.2f}", "100 %"])
        header = [f"{name} {part}, {seconds:g} s", "wall (s)", "CPU (s)", "share of CPU"]
        lines += [markdown_table(header, rows), ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="*", default=["dac_44khz_8kbps"], choices=VARIANTS)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--iters", type=int, default=2, help="timed runs per layer (median)")
    args = p.parse_args(argv)
    print(f"- {machine()}; {jax_environment()}")
    print(f"- load average {os.getloadavg()} at start ({os.cpu_count()} CPUs)\n")
    for name in args.variants:
        print(profile(name, args.seconds, args.iters), flush=True)
    print(f"- load average {os.getloadavg()} at end")


if __name__ == "__main__":
    main()
