"""Real-time factor and per-push latency of streaming DAC encode + decode.

Run from the repository root (jaxlatent only; no torch)::

    python -m benchmarks.bench_streaming [--variants 16khz 24khz 44khz_8kbps 44khz_16kbps]
        [--pushes-ms 10 20 40] [--seconds 10] [--narrow] [--out FILE]

Each variant (random weights of its released configuration; ``--narrow``: 2/16-channel
layers) runs in its own process. For every push duration, ``seconds`` of audio (a chirp plus
noise at the model's rate) is pushed piece by piece into a
:class:`jaxlatent.codec.StreamingEncoder`, and the codes it returns at each push are pushed
at once into a :class:`jaxlatent.codec.StreamingDecoder` (a live codec: encode and decode on
one machine). A first stream of the same pushes compiles every step size (not timed). The
table gives the real-time factor (wall time of all pushes / audio duration; below 1 keeps up)
and the median and 95th percentile of one push's wall time (encode + decode), with the
algorithmic lookahead of each side (the receptive field, a property of the configuration).
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


def worker(variant: str, narrow: bool, pushes_ms: list[float], seconds: float) -> list[dict]:
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
    rows = []
    for ms in pushes_ms:
        push = max(1, round(ms * rate / 1000))
        _stream(StreamingEncoder(model), StreamingDecoder(model), audio[: 2 * rate], push)
        enc, dec = StreamingEncoder(model), StreamingDecoder(model)
        t0 = time.perf_counter()
        times = _stream(enc, dec, audio, push)
        total = time.perf_counter() - t0
        rows.append(
            {
                "variant": variant,
                "push_ms": ms,
                "rtf": total / seconds,
                "median_ms": 1000 * float(np.median(times)),
                "p95_ms": 1000 * float(np.percentile(times, 95)),
                "enc_lookahead_ms": enc.lookahead_ms,
                "dec_lookahead_ms": dec.lookahead_ms,
            }
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variants", nargs="+", default=["16khz", "24khz", "44khz_8kbps", "44khz_16kbps"]
    )
    parser.add_argument("--pushes-ms", type=float, nargs="+", default=[10, 20, 40])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--narrow", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.narrow, args.pushes_ms, args.seconds)))
        return 0
    rows = []
    for variant in args.variants:
        cmd = [sys.executable, "-m", "benchmarks.bench_streaming", "--worker", variant]
        cmd += ["--seconds", str(args.seconds), "--pushes-ms", *map(str, args.pushes_ms)]
        cmd += ["--narrow"] if args.narrow else []
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        rows += json.loads(done.stdout.strip().splitlines()[-1])
    width = "narrow (2/16 channels)" if args.narrow else "full size"
    lines = [
        f"streaming encode + decode ({width}), {args.seconds:g} s per stream; load average "
        f"{os.getloadavg()}",
        "",
        "| variant | push (ms) | RTF | push median (ms) | push p95 (ms) | encoder lookahead (ms) "
        "| decoder lookahead (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['push_ms']:g} | {r['rtf']:.3f} | {r['median_ms']:.1f} | "
            f"{r['p95_ms']:.1f} | {r['enc_lookahead_ms']:.1f} | {r['dec_lookahead_ms']:.1f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
