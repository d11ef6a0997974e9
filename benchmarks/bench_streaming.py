"""Real-time factor and per-push latency of streaming DAC encode + decode.

Run from the repository root (jaxlatent only; no torch)::

    python -m benchmarks.bench_streaming [--variants 16khz 24khz 44khz_8kbps 44khz_16kbps]
        [--pushes-ms 10 20 40] [--min-step-frames 1 2 4] [--max-step-frames 16]
        [--seconds 10] [--narrow] [--out FILE]

Each variant (random weights of its released configuration; ``--narrow``: 2/16-channel
layers) runs in its own process. For every push duration and smallest step, ``seconds`` of
audio (a chirp plus noise at the model's rate) is pushed piece by piece into a
:class:`jaxlatent.codec.StreamingEncoder`, and the codes it returns at each push are pushed
at once into a :class:`jaxlatent.codec.StreamingDecoder` (a live codec: encode and decode on
one machine), both with ``min_step_frames`` (1: every frame as soon as it is final; more:
pushes coalesced into steps of at least that many frames). A first stream of the same pushes
compiles every step size (not timed). The table gives the real-time factor (wall time of all
pushes / audio duration; below 1 keeps up) and the median and 95th percentile of one push's
wall time (encode + decode), with the algorithmic lookahead of each side (the receptive
field, a property of the configuration) and the most that coalescing adds to it (both sides
together, ``coalescing_samples``).

The floor of a step: every step reads all weights of the encoder and the decoder whatever
its size. ``weights read`` is the best time of one jitted pass that reads them all (a sum
over the folded parameters), measured in the worker: steps of ``k`` frames cannot run faster
than real time unless ``weights read < k * frame duration`` (one frame: ``hop / rate``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NARROW = {"encoder_dim": 2, "decoder_dim": 16, "latent_dim": 16}


def _stream(enc, dec, audio, push: int) -> list[float]:
    times = []
    for s in range(0, audio.shape[0], push):
        t0 = time.perf_counter()
        codes = enc.push(audio[s : s + push])
        dec.push(codes)
        times.append(time.perf_counter() - t0)
    dec.push(enc.flush())
    dec.flush()
    return times


def weight_read_ms(model, repeats: int = 10) -> tuple[float, float]:
    """(MB of the encoder, quantizer and decoder weights as a stream holds them, best ms of
    one jitted pass reading them all)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxlatent.nn import fold_convolutions

    leaves = jax.tree.leaves(nnx.state(fold_convolutions(model), nnx.Param))
    read = jax.jit(lambda xs: sum(jnp.sum(x) for x in xs))
    read(leaves).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        read(leaves).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return sum(x.nbytes for x in leaves) / 1e6, 1000 * best


def worker(
    variant: str,
    narrow: bool,
    pushes_ms: list[float],
    seconds: float,
    min_steps: list[int],
    max_step: int,
) -> list[dict]:
    import numpy as np
    from flax import nnx

    from jaxlatent.codec import StreamingDecoder, StreamingEncoder
    from jaxlatent.models.dac import DAC, DACConfig

    kwargs = DACConfig.preset(variant).to_kwargs()
    if narrow:
        kwargs.update(NARROW)
    config = DACConfig.from_kwargs(kwargs)
    model = DAC(config, rngs=nnx.Rngs(0))
    rate = config.sample_rate
    t = np.arange(int(seconds * rate)) / rate
    audio = (0.3 * np.sin(2 * np.pi * (200 + 40 * t) * t)).astype(np.float32)
    audio += np.random.default_rng(0).standard_normal(audio.shape).astype(np.float32) * 0.02
    weights_mb, read_ms = weight_read_ms(model)
    rows = []
    for ms in pushes_ms:
        push = max(1, round(ms * rate / 1000))
        for m in min_steps:
            kw = {"min_step_frames": m, "max_step_frames": max(max_step, m)}
            warm = audio[: max(2 * rate, 4 * push)]
            _stream(StreamingEncoder(model, **kw), StreamingDecoder(model, **kw), warm, push)
            enc, dec = StreamingEncoder(model, **kw), StreamingDecoder(model, **kw)
            t0 = time.perf_counter()
            times = _stream(enc, dec, audio, push)
            total = time.perf_counter() - t0
            rows.append(
                {
                    "variant": variant,
                    "push_ms": ms,
                    "min_step": enc.step_frames[0],
                    "rtf": total / seconds,
                    "median_ms": 1000 * float(np.median(times)),
                    "p95_ms": 1000 * float(np.percentile(times, 95)),
                    "enc_lookahead_ms": enc.lookahead_ms,
                    "dec_lookahead_ms": dec.lookahead_ms,
                    "coalescing_ms": 1000
                    * (enc.coalescing_samples + dec.coalescing_samples)
                    / rate,
                    "frame_ms": 1000 * config.hop_length / rate,
                    "weights_mb": weights_mb,
                    "read_ms": read_ms,
                }
            )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variants", nargs="+", default=["16khz", "24khz", "44khz_8kbps", "44khz_16kbps"]
    )
    parser.add_argument("--pushes-ms", type=float, nargs="+", default=[10, 20, 40])
    parser.add_argument(
        "--min-step-frames", type=int, nargs="+", default=[1], help="smallest steps to measure"
    )
    parser.add_argument("--max-step-frames", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--narrow", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        rows = worker(
            args.worker,
            args.narrow,
            args.pushes_ms,
            args.seconds,
            args.min_step_frames,
            args.max_step_frames,
        )
        print(json.dumps(rows))
        return 0
    load = os.getloadavg()
    rows = []
    for variant in args.variants:
        cmd = [sys.executable, "-m", "benchmarks.bench_streaming", "--worker", variant]
        cmd += ["--seconds", str(args.seconds), "--pushes-ms", *map(str, args.pushes_ms)]
        cmd += ["--min-step-frames", *map(str, args.min_step_frames)]
        cmd += ["--max-step-frames", str(args.max_step_frames)]
        cmd += ["--narrow"] if args.narrow else []
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    width = "narrow (2/16 channels)" if args.narrow else "full size"
    lines = [
        f"streaming encode + decode ({width}), {args.seconds:g} s per stream; load average "
        f"{load} at the start, {os.getloadavg()} at the end",
        "",
        "| variant | push (ms) | min step (frames) | RTF | push median (ms) | push p95 (ms) "
        "| encoder lookahead (ms) | decoder lookahead (ms) | coalescing adds (ms) "
        "| frame (ms) | weights (MB) | weights read (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['push_ms']:g} | {r['min_step']} | {r['rtf']:.3f} | "
            f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['enc_lookahead_ms']:.1f} | "
            f"{r['dec_lookahead_ms']:.1f} | {r['coalescing_ms']:.1f} | {r['frame_ms']:.1f} | "
            f"{r['weights_mb']:.0f} | {r['read_ms']:.1f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
