"""DAC codec: jaxlatent (jit) vs the official torch package (eager), and `compress` peak memory.

Part 1, speed: for each released variant (44 kHz 8 kbps, 44 kHz 16 kbps, 24 kHz, 16 kHz), a
model with random weights is made by the reference code (``dac.DAC(**kwargs)``, the release
layout ``{"state_dict", "metadata": {"kwargs"}}``) and converted with the production converter
(:func:`converters.dac.convert_checkpoint`; the JAX model is never initialised eagerly).
Both code the same 10 s of audio (``preprocess`` + ``encode`` with every codebook, then
``decode`` of ``z``): jaxlatent through ``DAC.encode``/``DAC.decode`` (jit; the first call,
trace + compile + run, is reported separately as compile time), torch eager under
``torch.no_grad`` with ``--torch-threads`` threads (one warm-up call each). The ``--iters``
timed rounds are interleaved: each round times the encode of both frameworks, then the decode
of both, alternating which framework goes first, so a load that changes during the run hits
both sides alike; a retrace of jaxlatent during the rounds is an error. Medians over the
rounds; real-time factor = wall time / audio duration (lower is faster); speed-up = torch /
jaxlatent, from wall time and, in the last column, from process CPU time (all threads), which
the load of a shared machine perturbs much less.

Part 2, memory: peak resident memory (the kernel's ``VmHWM`` of a fresh child process, reset
after the warm-up) of :func:`jaxlatent.codec.compress` on 1, 10 and 60 minutes of audio with
the 16 kHz model (and a narrow model of the same geometry), plus the child's RSS just before
`compress` (interpreter + jax + model + the input audio).

Run from the repository root: ``python benchmarks/bench_dac.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import environment, markdown_table, summarize
from converters.torchaudio_stub import install_torchaudio_stub

VARIANTS = ("dac_44khz_8kbps", "dac_44khz_16kbps", "dac_24khz", "dac_16khz")
TARGET_SPEEDUP = 2.0
MEMORY_LIMIT_GIB = 1.5


def import_dac():
    """The official ``dac`` package; a stub torchaudio is installed when none is present (``dac``
    imports torchaudio at import time; nothing used here calls it)."""
    install_torchaudio_stub()
    import dac

    return dac


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# --------------------------------------------------------------------------------------------
# Speed
# --------------------------------------------------------------------------------------------


def _timed(fn, *args) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU is this process's time over all its threads, which a
    shared machine's load perturbs much less than wall time."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w0, time.process_time() - c0


def timed_rounds(fns: dict, orders) -> tuple[dict, dict]:
    """Time the callables `fns` in rounds, each round calling them in the order of the key
    sequence `orders` yields for it; ``(wall, cpu)``: the samples (seconds) of each key."""
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for order in orders:
        for key in order:
            w, c = _timed(fns[key])
            wall[key].append(w)
            cpu[key].append(c)
    return wall, cpu


class VariantPair(NamedTuple):
    """One released variant built by the reference and converted, with its benchmark audio."""

    config: Any  # jaxlatent.models.dac.DACConfig
    kwargs: dict  # the reference's constructor arguments (``metadata["kwargs"]``)
    ref: Any  # dac.DAC in eval mode, torch seed 0
    model: Any  # jaxlatent DAC converted from `ref` by the production converter
    convert_s: float  # seconds the converter took
    audio: np.ndarray  # float32 noise [1, samples, 1] at the model's sample rate


def make_pair(name: str, seconds: float, precision=None) -> VariantPair:
    """The reference DAC of variant `name` (random weights, seed 0), converted with
    :func:`converters.dac.convert_checkpoint` from the release layout, and `seconds` of noise."""
    import torch

    from converters.dac import convert_checkpoint
    from jaxlatent.models.dac import DACConfig

    dac = import_dac()
    config = getattr(DACConfig, name)()
    kwargs = config.to_kwargs()
    torch.manual_seed(0)
    ref = dac.DAC(**kwargs).eval()
    checkpoint = {"state_dict": ref.state_dict(), "metadata": {"kwargs": kwargs}}
    t0 = time.perf_counter()
    _, model = convert_checkpoint(checkpoint, precision=precision)
    convert_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    audio = np.clip(0.1 * rng.standard_normal((1, int(seconds * config.sample_rate), 1)), -1, 1)
    return VariantPair(config, kwargs, ref, model, convert_s, audio.astype(np.float32))


def bench_variant(name: str, seconds: float, iters: int, precision) -> dict:
    import collections

    import jax
    import torch
    from flax import nnx

    from jaxlatent.compilation import compiled
    from jaxlatent.models.dac import DAC

    config, _, ref, model, convert_s, audio = make_pair(name, seconds, precision)
    sr = config.sample_rate

    # jaxlatent: the model's methods compiled as the codec and the CLI compile them
    # (`compiled`, traces counted here); the first call of each is trace + compile + run.
    trace_counts = collections.Counter()

    def counted(fn):
        def run(*args, **kwargs):
            trace_counts[fn.__name__] += 1
            return fn(*args, **kwargs)

        return run

    x = model.preprocess(audio, sr)
    graphdef, state = nnx.split(model)
    encode, decode = (
        compiled(counted(DAC.encode), graphdef),
        compiled(counted(DAC.decode), graphdef),
    )
    z = None

    def jax_enc():
        nonlocal z
        z = jax.block_until_ready(encode(state, x).z)

    def jax_dec():
        jax.block_until_ready(decode(state, z))

    enc_compile = _timed(jax_enc)[0]
    dec_compile = _timed(jax_dec)[0]
    traces = dict(trace_counts)

    # torch eager, same audio, channels-first; one warm-up call each
    xt = ref.preprocess(torch.from_numpy(audio.transpose(0, 2, 1).copy()), sr)
    zt = None

    def torch_enc():
        nonlocal zt
        with torch.no_grad():
            zt = ref.encode(xt)[0]

    def torch_dec():
        with torch.no_grad():
            ref.decode(zt)

    torch_enc()
    torch_dec()

    # Interleaved rounds: each round times encode then decode of both frameworks, alternating
    # which one goes first, so a load that changes during the run hits both sides alike.
    fns = {"jax_enc": jax_enc, "torch_enc": torch_enc, "jax_dec": jax_dec, "torch_dec": torch_dec}
    orders = [
        ("jax_enc", "torch_enc", "jax_dec", "torch_dec")
        if i % 2 == 0
        else ("torch_enc", "jax_enc", "torch_dec", "jax_dec")
        for i in range(iters)
    ]
    wall, cpu = timed_rounds(fns, orders)
    if dict(trace_counts) != traces:
        raise RuntimeError(f"jaxlatent retraced during the timed rounds: {dict(trace_counts)}")

    result = {
        "variant": name,
        "params_m": sum(p.numel() for p in ref.parameters()) / 1e6,
        "convert_s": convert_s,
        "load": os.getloadavg()[0],
    }
    for key in fns:
        compile_s = {"jax_enc": enc_compile, "jax_dec": dec_compile}.get(key)
        result[key] = summarize(wall[key], compile_s)
        result[key + "_cpu"] = summarize(cpu[key])
    return result


def speed_header() -> list[str]:
    return [
        "variant",
        "params",
        "compile enc / dec (s)",
        "jaxlatent enc / dec (s)",
        "torch enc / dec (s)",
        "jaxlatent RTF",
        "torch RTF",
        "speed-up enc / dec / total",
        f"≥ {TARGET_SPEEDUP:g}x",
        "CPU-time speed-up enc / dec / total",
    ]


def _speedups(r: dict, suffix: str = "") -> tuple[float, float, float]:
    def med(key):
        return r[key + suffix].median_s

    enc = med("torch_enc") / med("jax_enc")
    dec = med("torch_dec") / med("jax_dec")
    total = (med("torch_enc") + med("torch_dec")) / (med("jax_enc") + med("jax_dec"))
    return enc, dec, total


def speed_row(r: dict, seconds: float) -> list[str]:
    j = r["jax_enc"].median_s + r["jax_dec"].median_s
    t = r["torch_enc"].median_s + r["torch_dec"].median_s
    enc, dec, total = _speedups(r)
    cpu_enc, cpu_dec, cpu_total = _speedups(r, "_cpu")
    return [
        r["variant"],
        f"{r['params_m']:.1f} M",
        f"{r['jax_enc'].compile_s:.1f} / {r['jax_dec'].compile_s:.1f}",
        f"{r['jax_enc'].median_s:.2f} / {r['jax_dec'].median_s:.2f}",
        f"{r['torch_enc'].median_s:.2f} / {r['torch_dec'].median_s:.2f}",
        f"{j / seconds:.3f}",
        f"{t / seconds:.3f}",
        f"{enc:.2f}x / {dec:.2f}x / {total:.2f}x",
        "yes" if total >= TARGET_SPEEDUP else "**no**",
        f"{cpu_enc:.2f}x / {cpu_dec:.2f}x / {cpu_total:.2f}x",
    ]


# --------------------------------------------------------------------------------------------
# Memory (one child process per duration)
# --------------------------------------------------------------------------------------------


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(model_dir: str, minutes: float, win_duration: float) -> None:
    """Child process: load the converted model, compile `compress` on a short chunked input,
    then compress `minutes` of noise; print one JSON line."""
    from converters.dac import load_converted
    from jaxlatent.codec import compress

    model = load_converted(model_dir)
    sr = model.config.sample_rate
    rng = np.random.default_rng(0)
    warm = 0.1 * rng.standard_normal(int(3 * win_duration * sr), dtype=np.float32)
    compress(model, warm, sr, win_duration=win_duration)  # compiles the window function
    warm_peak = _status_mib("VmHWM")
    audio = 0.1 * rng.standard_normal(int(minutes * 60 * sr), dtype=np.float32)
    before = _status_mib("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    out = compress(model, audio, sr, win_duration=win_duration)
    elapsed = time.perf_counter() - t0
    run_peak = _status_mib("VmHWM") if reset else float("nan")
    # Lifetime peak of this process image. Not ru_maxrss: Linux keeps it across fork + execve,
    # so a child of a large parent would report the parent's RSS at fork time.
    life_peak = max(warm_peak, run_peak) if reset else _status_mib("VmHWM")
    record = {
        "minutes": minutes,
        "warm_peak_mib": warm_peak,
        "before_mib": before,
        "run_peak_mib": run_peak,
        "life_peak_mib": life_peak,
        "audio_mib": audio.nbytes / 2**20,
        "seconds": elapsed,
        "frames": int(out.codes.shape[-1]),
    }
    print(json.dumps(record))


def memory_config(kind: str):
    """The 16 kHz release configuration (``full``), or the same geometry (rates, kernels,
    hop, delay, window plan, codebooks) with narrow layers (``narrow``: encoder_dim 4,
    decoder_dim 16), cheap enough to code an hour of audio on a loaded 2-core CPU."""
    import dataclasses

    from jaxlatent.models.dac import DACConfig

    config = DACConfig.dac_16khz()
    if kind == "narrow":
        config = dataclasses.replace(config, encoder_dim=4, decoder_dim=16, latent_dim=64)
    return config


def bench_memory(minutes_list, win_duration: float, kind: str) -> list[dict]:
    import torch

    from converters.dac import convert_checkpoint, save_converted

    dac = import_dac()
    config = memory_config(kind)
    torch.manual_seed(0)
    ref = dac.DAC(**config.to_kwargs())
    ckpt = {"state_dict": ref.state_dict(), "metadata": {"kwargs": config.to_kwargs()}}
    _, model = convert_checkpoint(ckpt)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "model")
        save_converted(model_dir, config, model)
        for minutes in minutes_list:
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", model_dir]
            cmd += ["--minutes", str(minutes), "--win-duration", str(win_duration)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"memory child ({minutes} min) failed:\n{proc.stderr[-3000:]}")
            record = json.loads(proc.stdout.strip().splitlines()[-1])
            record["model"] = f"16 kHz ({kind}, {ref_params(ref):.1f} M params)"
            results.append(record)
            print(f"<!-- memory {kind} {minutes} min done ({load()}) -->", flush=True)
    return results


def ref_params(ref) -> float:
    return sum(p.numel() for p in ref.parameters()) / 1e6


def memory_table(results: list[dict]) -> str:
    header = [
        "model",
        "audio",
        "input array",
        "peak RSS of compile + warm-up",
        "RSS before compress",
        "peak RSS during compress",
        "process peak RSS",
        "compress wall time",
        f"process peak < {MEMORY_LIMIT_GIB} GiB",
    ]
    rows = [
        [
            r["model"],
            f"{r['minutes']:g} min",
            f"{r['audio_mib']:.0f} MiB",
            f"{r['warm_peak_mib']:.0f} MiB",
            f"{r['before_mib']:.0f} MiB",
            f"{r['run_peak_mib']:.0f} MiB",
            f"{r['life_peak_mib']:.0f} MiB",
            f"{r['seconds']:.0f} s",
            "yes" if r["life_peak_mib"] < MEMORY_LIMIT_GIB * 1024 else "**no**",
        ]
        for r in results
    ]
    return markdown_table(header, rows)


# --------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seconds", type=float, default=10.0, help="audio duration (speed part)")
    p.add_argument("--iters", type=int, default=3, help="timed runs per measurement")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--precision", default=None, help="jax.lax precision of the convolutions")
    p.add_argument(
        "--minutes",
        type=float,
        nargs="*",
        default=[1, 10, 60],
        help="durations for the compress memory part (none: skip it)",
    )
    p.add_argument(
        "--win-duration",
        type=float,
        default=5.0,
        help="compress window in seconds (the official CLI's default)",
    )
    p.add_argument(
        "--narrow-minutes",
        type=float,
        nargs="*",
        default=[1, 10, 60],
        help="durations for the narrow 16 kHz-geometry model (none: skip it)",
    )
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.memory_child:
        memory_child(args.memory_child, args.minutes[0], args.win_duration)
        return

    import torch

    torch.set_num_threads(args.torch_threads)
    print("# DAC benchmark: jaxlatent (jit) vs descript-audio-codec (torch eager)\n")
    print(f"- {environment()}")
    print(f"- {load()} at start ({os.cpu_count()} CPUs)")
    if not args.skip_speed:
        print(
            f"\n## Encode + decode of {args.seconds:g} s of audio "
            f"(median of {args.iters}; RTF = time / audio duration)\n"
        )
        header = speed_header()
        print(markdown_table(header, []), flush=True)
        for name in args.variants:
            r = bench_variant(name, args.seconds, args.iters, args.precision)
            row = markdown_table(header, [speed_row(r, args.seconds)]).splitlines()[-1]
            print(f"{row} <!-- {load()} after; converter {r['convert_s']:.1f} s -->", flush=True)
    mem = []
    if args.minutes:
        mem += bench_memory(args.minutes, args.win_duration, "full")
    if args.narrow_minutes:
        mem += bench_memory(args.narrow_minutes, args.win_duration, "narrow")
    if mem:
        print(
            f"\n## Peak RSS of `compress` (win_duration={args.win_duration:g} s, one fresh "
            "process per row)\n"
        )
        print(memory_table(mem))
    print(f"\n- {load()} at end")


if __name__ == "__main__":
    main()
