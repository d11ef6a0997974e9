"""DAC codec: jaxlatent (jit) vs the official torch package (eager), and `compress` peak memory.

Part 1, speed, each framework in its own processes (`benchmarks.common`): for each released
variant (44 kHz 8 kbps, 44 kHz 16 kbps, 24 kHz, 16 kHz), a ``prepare`` worker makes a model
with random weights by the reference code (``dac.DAC(**kwargs)``, torch seed 0), converts it
with the production converter (:func:`converters.dac.convert_checkpoint`, the release layout
``{"state_dict", "metadata": {"kwargs"}}``) and writes both weight sets and 10 s of noise to a
temporary folder. Then ``--rounds`` alternating rounds (torch, jax; jax, torch; ...), each
one fresh worker process per framework that loads those weights and codes the audio
(``preprocess`` + ``encode`` with every codebook, then ``decode`` of ``z``): jaxlatent
through ``DAC.encode``/``DAC.decode`` (jit; the first call, trace + compile + run, is its
compile time; an XLA compilation during the timed calls is an error), torch eager under
``torch.no_grad`` (one warm-up call each); then ``--iters`` timed encode + decode pairs
(medians, wall and process CPU time). Reported: the median of the rounds' medians, real-time
factor = wall time / audio duration (lower is faster), speed-up = torch / jaxlatent from wall
time with its spread over the rounds and, in the last column, from process CPU time (all
threads). The codes of both frameworks are compared (the first codebook must agree on at
least `MIN_CODE_AGREEMENT` of the frames: the same weights code the same audio).

Part 2, memory: peak resident memory (the kernel's ``VmHWM`` of a fresh worker process, reset
after the warm-up) of :func:`jaxlatent.codec.compress` on 1, 10 and 60 minutes of audio with
the 16 kHz model (and a narrow model of the same geometry), plus the worker's RSS just before
`compress` (interpreter + jax + model + the input audio).

Run from the repository root: ``python -m benchmarks.bench_dac`` (``--help`` for options);
``--smoke`` codes 0.1 s with a tiny model in two rounds (tests/unit/test_bench_dac.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks import common
from benchmarks.common import load, markdown_table, ratios, report

MODULE = "benchmarks.bench_dac"
VARIANTS = ("dac_44khz_8kbps", "dac_44khz_16kbps", "dac_24khz", "dac_16khz")
TARGET_SPEEDUP = 2.0
MEMORY_LIMIT_GIB = 1.5
MIN_CODE_AGREEMENT = 0.9  # first codebook; random weights leave rare near-ties in the search


def import_dac():
    """The official ``dac`` package; a stub torchaudio is installed when none is present (``dac``
    imports torchaudio at import time; nothing used here calls it)."""
    from converters.torchaudio_stub import install_torchaudio_stub

    install_torchaudio_stub()
    import dac

    return dac


# --------------------------------------------------------------------------------------------
# Speed: workers
# --------------------------------------------------------------------------------------------


def variant_config(name: str, smoke: bool = False):
    """The `DACConfig` preset `name`; with `smoke`, the same rates with tiny layers."""
    from jaxlatent.models.dac import DACConfig

    config = getattr(DACConfig, name)()
    if smoke:
        config = dataclasses.replace(
            config, encoder_dim=2, decoder_dim=16, codebook_size=16, codebook_dim=2, n_codebooks=2
        )
    return config


def _path(args, what: str) -> str:
    return os.path.join(args.workdir, f"{args.variant}-{what}")


def worker_prepare(args) -> dict:
    """The reference model (torch seed 0), its conversion and the audio, written to `workdir`."""
    torch = common.torch_threads(args.threads)
    from converters.dac import convert_checkpoint

    dac = import_dac()
    config = variant_config(args.variant, args.smoke)
    kwargs = config.to_kwargs()
    torch.manual_seed(0)
    ref = dac.DAC(**kwargs).eval()
    checkpoint = {"state_dict": ref.state_dict(), "metadata": {"kwargs": kwargs}}
    t0 = time.perf_counter()
    _, model = convert_checkpoint(checkpoint, precision=args.precision)
    convert_s = time.perf_counter() - t0
    torch.save(ref.state_dict(), _path(args, "torch.pt"))
    common.save_state(_path(args, "jax.npz"), model)
    rng = np.random.default_rng(0)
    audio = np.clip(
        0.1 * rng.standard_normal((1, int(args.seconds * config.sample_rate), 1)), -1, 1
    )
    np.save(_path(args, "audio.npy"), audio.astype(np.float32))
    return {"params_m": sum(p.numel() for p in ref.parameters()) / 1e6, "convert_s": convert_s}


def torch_model(args):
    """The reference DAC with the prepared weights, in eval mode (torch worker)."""
    import torch

    dac = import_dac()
    ref = dac.DAC(**variant_config(args.variant, args.smoke).to_kwargs()).eval()
    ref.load_state_dict(torch.load(_path(args, "torch.pt")))
    return ref


def jax_model(args):
    """The converted jaxlatent DAC, loaded into an abstract model (no eager initialisation)."""
    from flax import nnx

    from jaxlatent.models.dac import DAC

    config = variant_config(args.variant, args.smoke)
    model = nnx.eval_shape(lambda: DAC(config, precision=args.precision, rngs=nnx.Rngs(0)))
    common.load_state(_path(args, "jax.npz"), model)
    return model


def _rounds(enc, dec, iters: int) -> dict:
    """`iters` timed encode + decode pairs: wall and CPU seconds of each."""
    out = {k: [] for k in ("enc", "dec", "enc_cpu", "dec_cpu")}
    for _ in range(iters):
        for key, fn in (("enc", enc), ("dec", dec)):
            wall, cpu = common.timed(fn)
            out[key].append(wall)
            out[key + "_cpu"].append(cpu)
    return out


def worker_torch(args) -> dict:
    torch = common.torch_threads(args.threads)
    ref = torch_model(args)
    audio = np.load(_path(args, "audio.npy"))
    sr = variant_config(args.variant, args.smoke).sample_rate
    xt = ref.preprocess(torch.from_numpy(audio.transpose(0, 2, 1).copy()), sr)
    box = {}

    def enc():
        with torch.no_grad():
            box["z"], box["codes"] = ref.encode(xt)[:2]

    def dec():
        with torch.no_grad():
            ref.decode(box["z"])

    enc()  # warm-up
    dec()
    np.save(_path(args, "torch-codes.npy"), box["codes"].numpy())
    return dict(_rounds(enc, dec, args.iters), env=common.torch_environment())


def worker_jax(args) -> dict:
    import jax
    from flax import nnx

    from jaxlatent.compilation import compiled
    from jaxlatent.models.dac import DAC

    counter = common.CompileCounter()
    model = jax_model(args)
    audio = np.load(_path(args, "audio.npy"))
    x = model.preprocess(audio, variant_config(args.variant, args.smoke).sample_rate)
    # The model's methods compiled as the codec and the CLI compile them (`compiled`).
    graphdef, state = nnx.split(model)
    encode, decode = compiled(DAC.encode, graphdef), compiled(DAC.decode, graphdef)
    box = {}

    def enc():
        out = jax.block_until_ready(encode(state, x))
        box["z"], box["codes"] = out.z, out.codes

    def dec():
        jax.block_until_ready(decode(state, box["z"]))

    compile_enc = common.timed(enc)[0]
    compile_dec = common.timed(dec)[0]
    np.save(_path(args, "jax-codes.npy"), np.asarray(box["codes"]))
    before = counter.count
    out = _rounds(enc, dec, args.iters)
    if counter.count != before:
        raise RuntimeError(f"jaxlatent compiled {counter.count - before}x during the timed calls")
    return dict(out, compile_enc=compile_enc, compile_dec=compile_dec, env=common.jax_environment())


# --------------------------------------------------------------------------------------------
# Speed: the parent
# --------------------------------------------------------------------------------------------


def code_agreement(workdir: str, variant: str) -> tuple[float, float]:
    """Fraction of equal codes, (first codebook, all codebooks), jaxlatent vs torch.

    Raises:
      AssertionError: if the first codebook agrees on fewer than ``MIN_CODE_AGREEMENT`` of the
        frames (the two sides would not run the same model).
    """
    codes = [np.load(os.path.join(workdir, f"{variant}-{s}-codes.npy")) for s in ("jax", "torch")]
    if codes[0].shape != codes[1].shape:
        raise AssertionError(f"{variant}: codes of shapes {codes[0].shape} vs {codes[1].shape}")
    first = float(np.mean(codes[0][:, 0] == codes[1][:, 0]))
    if first < MIN_CODE_AGREEMENT:
        raise AssertionError(
            f"{variant}: jaxlatent and torch agree on {first:.1%} of the first codebook's codes "
            f"(< {MIN_CODE_AGREEMENT:.0%}): the benchmark would compare different models"
        )
    return first, float(np.mean(codes[0] == codes[1]))


def bench_variant(args, name: str, workdir: str) -> dict:
    wargs = ["--variant", name, "--workdir", workdir, "--threads", args.threads]
    wargs += ["--seconds", args.seconds, *(["--smoke"] if args.smoke else [])]
    wargs += ["--precision", args.precision] if args.precision else []
    prep = common.run_worker(MODULE, "prepare", wargs)
    results = common.alternate(MODULE, args.rounds, [*wargs, "--iters", args.iters], label=name)
    agreement = code_agreement(workdir, name)

    def per_round(side: str, key: str) -> list[float]:
        return [statistics.median(r[key]) for r in results[side]]

    r = {"variant": name, "agreement": agreement, **prep}
    for side in ("jax", "torch"):
        for key in ("enc", "dec", "enc_cpu", "dec_cpu"):
            r[f"{side}_{key}"] = per_round(side, key)
        for cpu in ("", "_cpu"):
            enc, dec = r[f"{side}_enc{cpu}"], r[f"{side}_dec{cpu}"]
            r[f"{side}_total{cpu}"] = [a + b for a, b in zip(enc, dec, strict=True)]
    r["compile"] = [
        statistics.median(x[k] for x in results["jax"]) for k in ("compile_enc", "compile_dec")
    ]
    r["env"] = {results["jax"][0]["env"], results["torch"][0]["env"]}
    return r


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
        "total speed-up over rounds (min to max)",
        f"≥ {TARGET_SPEEDUP:g}x",
        "CPU-time speed-up enc / dec / total",
        "equal codes: first codebook / all",
    ]


def speed_row(r: dict, seconds: float) -> list[str]:
    def med(key):
        return statistics.median(r[key])

    def speedups(suffix=""):
        return [
            ratios(r[f"torch_{k}{suffix}"], r[f"jax_{k}{suffix}"]) for k in ("enc", "dec", "total")
        ]

    wall, cpu = speedups(), speedups("_cpu")
    total = wall[2]
    return [
        r["variant"],
        f"{r['params_m']:.1f} M",
        f"{r['compile'][0]:.1f} / {r['compile'][1]:.1f}",
        f"{med('jax_enc'):.2f} / {med('jax_dec'):.2f}",
        f"{med('torch_enc'):.2f} / {med('torch_dec'):.2f}",
        f"{med('jax_total') / seconds:.3f}",
        f"{med('torch_total') / seconds:.3f}",
        " / ".join(f"{s.median:.2f}x" for s in wall),
        f"{total.low:.2f} to {total.high:.2f}x",
        "yes" if total.median >= TARGET_SPEEDUP else "**no**",
        " / ".join(f"{s.median:.2f}x" for s in cpu),
        f"{r['agreement'][0]:.1%} / {r['agreement'][1]:.1%}",
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


def worker_memory(args) -> dict:
    """Load the converted model, compile `compress` on a short chunked input, then compress
    ``args.minutes`` of noise (a fresh process: its peak RSS is the number)."""
    model_dir, minutes, win_duration = args.model_dir, args.minutes[0], args.win_duration
    from jaxlatent.codec import compress
    from jaxlatent.models.dac import load_converted

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
    return record


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

    from converters.dac import convert_checkpoint
    from jaxlatent.models.dac import save_converted

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
            wargs = ["--model-dir", model_dir, "--minutes", minutes]
            record = common.run_worker(MODULE, "memory", [*wargs, "--win-duration", win_duration])
            record["model"] = f"16 kHz ({kind}, {ref_params(ref):.1f} M params)"
            results.append(record)
            done = f"<!-- memory {kind} {minutes} min done ({load()}) -->"
            print(done, file=sys.stderr, flush=True)
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


# --------------------------------------------------------------------------------------------

WORKERS = {
    "prepare": worker_prepare,
    "torch": worker_torch,
    "jax": worker_jax,
    "memory": worker_memory,
}


def run(args) -> str:
    out = ["# DAC benchmark: jaxlatent (jit) vs descript-audio-codec (torch eager)", ""]
    out += [f"- {common.machine()}; {load()} at start"]
    t_start = time.perf_counter()
    speed, envs = [], set()
    if args.variants:
        with tempfile.TemporaryDirectory(prefix="bench_dac-") as work:
            for name in args.variants:
                r = bench_variant(args, name, work)
                envs |= r["env"]
                speed.append(speed_row(r, args.seconds))
                print(f"<!-- {name} done, {load()} -->", file=sys.stderr, flush=True)
        out += [
            f"- workers: {'; '.join(sorted(envs))}; {args.threads} threads per framework "
            "(torch set_num_threads; XLA:CPU one thread per core of the process's CPU affinity)",
            "",
            f"## Encode + decode of {args.seconds:g} s of audio",
            "",
            f"{args.rounds} alternating rounds (torch, jax; jax, torch; ...), one fresh process "
            f"per framework per round, each timing {args.iters} encode + decode pairs after its "
            "compile (jax) or warm-up call (torch); times are the median of the rounds' "
            "medians; RTF = time / audio duration; speed-up = torch / jaxlatent.",
            "",
            markdown_table(speed_header(), speed),
        ]
    mem = []
    if args.minutes:
        mem += bench_memory(args.minutes, args.win_duration, "full")
    if args.narrow_minutes:
        mem += bench_memory(args.narrow_minutes, args.win_duration, "narrow")
    if mem:
        out += [
            "",
            f"## Peak RSS of `compress` (win_duration={args.win_duration:g} s, one fresh "
            "process per row)",
            "",
            memory_table(mem),
        ]
    total = time.perf_counter() - t_start
    out += ["", f"- {load()} at end; total run time {total:.0f} s"]
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--seconds", type=float, default=10.0, help="audio duration (speed part)")
    p.add_argument(
        "--rounds", type=int, help="alternating rounds of workers (default 4; --smoke: 2)"
    )
    p.add_argument("--iters", type=int, default=3, help="timed encode + decode pairs per worker")
    p.add_argument("--threads", type=int, default=common.cores(), help="per framework")
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
    p.add_argument("--smoke", action="store_true", help="tiny dac_16khz, 0.1 s, 2 rounds")
    p.add_argument("--out", help="also write the Markdown here")
    # worker processes only
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if common.serve_worker(args, WORKERS):
        return
    if args.smoke:
        args.variants, args.seconds, args.iters = ["dac_16khz"], 0.1, 1
        args.rounds = args.rounds or 2
        args.minutes = args.narrow_minutes = []
    args.rounds = args.rounds or 4
    report(run(args), args.out)


if __name__ == "__main__":
    main()
