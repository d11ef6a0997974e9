"""Peak memory of exact windowed coding against the audio's length (1, 10 and 60 minutes).

Run from the repository root (jaxlatent only; no torch)::

    python -m benchmarks.bench_exact_memory [--preset 16khz] [--narrow] [--minutes 1 10 60]
        [--win 5.0] [--out FILE]

For each length a fresh worker process builds the preset's model with random weights
(``--narrow``: the released strides and codebooks with 2/16-channel layers, as the parity
tests; fast enough for 60 minutes on a 2-core CPU), compiles by coding 10 s, then synthesises
the audio at the model's rate (a chirp plus noise) and runs
:func:`jaxlatent.codec.compress_exact` and :func:`jaxlatent.codec.decompress_exact` on it.
A thread samples the process's resident memory (``/proc/self/statm``) every 5 ms; the table
gives, per length, the resident memory before each call and its peak during the call, minus
what the call must hold by definition: the codes (encode), the decoded signal at the model
rate and the returned audio (decode). Flat in the length means those columns do not grow.
Wall times give the real-time factor (only comparable on an idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NARROW = {"encoder_dim": 2, "decoder_dim": 16, "latent_dim": 16}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Peak:
    """Peak resident memory while the `with` block runs (sampled every 5 ms)."""

    def __enter__(self):
        self.before = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _audio(n: int, rate: int):
    import numpy as np

    out = np.empty(n, np.float32)
    rng = np.random.default_rng(0)
    block = 1 << 20
    for s in range(0, n, block):  # block by block: no temporaries of the audio's size
        t = np.arange(s, min(s + block, n), dtype=np.float64) / rate
        y = 0.3 * np.sin(2 * np.pi * (200 + 20 * (t % 30)) * t) + 0.05 * rng.standard_normal(len(t))
        out[s : s + len(t)] = y
    return out


def worker(preset: str, narrow: bool, minutes: float, win: float) -> dict:
    from flax import nnx

    from jaxlatent.codec import compress_exact, decompress_exact
    from jaxlatent.models.dac import DAC, DACConfig

    kwargs = DACConfig.preset(preset).to_kwargs()
    if narrow:
        kwargs.update(NARROW)
    config = DACConfig.from_kwargs(kwargs)
    model = DAC(config, rngs=nnx.Rngs(0))
    rate = config.sample_rate
    warm = compress_exact(model, _audio(10 * rate, rate), rate, win_duration=win)
    decompress_exact(model, warm, win_duration=win)  # compiled both
    audio = _audio(int(minutes * 60 * rate), rate)
    with _Peak() as enc:
        t0 = time.perf_counter()
        f = compress_exact(model, audio, rate, win_duration=win)
        enc_s = time.perf_counter() - t0
    del audio
    with _Peak() as dec:
        t0 = time.perf_counter()
        out = decompress_exact(model, f, win_duration=win)
        dec_s = time.perf_counter() - t0
    seconds = minutes * 60
    decoded = 4 * f.codes.shape[0] * f.codes.shape[-1] * config.hop_length  # at the model rate
    return {
        "minutes": minutes,
        "encode_rss_before_mb": enc.before / 1e6,
        "encode_extra_mb": (enc.peak - enc.before - f.codes.nbytes) / 1e6,
        "decode_rss_before_mb": dec.before / 1e6,
        "decode_extra_mb": (dec.peak - dec.before - out.nbytes - decoded) / 1e6,
        "encode_rtf": enc_s / seconds,
        "decode_rtf": dec_s / seconds,
        "frames": int(f.codes.shape[-1]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="16khz")
    parser.add_argument("--narrow", action="store_true")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--win", type=float, default=5.0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args.preset, args.narrow, args.worker, args.win)))
        return 0
    rows = []
    for minutes in args.minutes:
        cmd = [sys.executable, "-m", "benchmarks.bench_exact_memory", "--preset", args.preset]
        cmd += ["--win", str(args.win), "--worker", str(minutes)]
        cmd += ["--narrow"] if args.narrow else []
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    width = "narrow (2/16 channels)" if args.narrow else "full size"
    lines = [
        f"exact windowed coding, {args.preset} ({width}), --win-duration {args.win}; "
        f"load average {os.getloadavg()}",
        "",
        "| minutes | frames | encode: RSS before (MB) | encode: peak extra (MB) | "
        "decode: RSS before (MB) | decode: peak extra (MB) | encode RTF | decode RTF |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['minutes']:g} | {r['frames']} | {r['encode_rss_before_mb']:.0f} | "
            f"{r['encode_extra_mb']:.0f} | {r['decode_rss_before_mb']:.0f} | "
            f"{r['decode_extra_mb']:.0f} | {r['encode_rtf']:.3f} | {r['decode_rtf']:.3f} |"
        )
    lines += [
        "",
        "peak extra = peak resident memory during the call - resident memory before it - the "
        "codes (encode) / the decoded signal at the model rate and the returned audio "
        "(decode); the input audio is resident before the encode call.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
