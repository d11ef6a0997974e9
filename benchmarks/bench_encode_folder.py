"""Throughput of ``jaxlatent encode`` on a folder against a loop of the official ``compress``.

Run from the repository root, alone on the machine (needs torch and descript-audio-codec)::

    python -m benchmarks.bench_encode_folder [--clips 32] [--rounds 3] [--out FILE]
    python -m benchmarks.bench_encode_folder --smoke   # a tiny model, 4 clips: the harness

Setup (not timed): the 16 kHz release architecture with random weights (biases perturbed,
:data:`_SAVE`), saved by the reference (``dac.DAC(**kwargs).save``) and converted with
``jaxlatent convert dac`` (:func:`prepare_models`); a folder of ``--clips`` clips of mixed lengths
(:data:`LENGTHS`, 2 to 20 s) and rates (:data:`RATES`, 8 to 48 kHz; every fourth clip
stereo), made from the bundled speech (tiled, resampled with julius' filter, a little noise
added so that no two clips are the same); and one untimed ``jaxlatent encode`` run that fills
the compile cache, as a user's second run finds it.

Each round runs two worker processes (:func:`benchmarks.common.alternate`, the order swapped
every round):

* ``jax``: ``jaxlatent encode FOLDER --model DIR --output OUT --overwrite --quiet
  --batch-size B --compile-cache CACHE`` (``jaxlatent.cli.main`` in the worker);
* ``torch``: ``import dac``, ``DAC.load(PTH)``, then for every file ``compress(AudioSignal(f),
  win_duration=5.0).save(...)``: the official loop.

Throughput is audio seconds per wall second, of the coding (after the model is loaded: the
jax worker's ``summary.json`` ``wall_seconds``, the torch loop's time) and of the whole
process (start-up, imports, model load and, for jax, loading the compiled code). The target
(issue 14) is at least 3x the official loop. The share of equal codes over all files checks
that both coded the same thing. Timings are comparable only within one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

MODULE = "benchmarks.bench_encode_folder"

#: Clip lengths in seconds, cycled.
LENGTHS = (2.0, 7.5, 13.0, 3.5, 20.0, 5.5, 9.0, 16.5)

#: Clip sample rates in Hz, cycled (a different period from LENGTHS: every pair occurs).
RATES = (16000, 44100, 22050, 48000, 24000, 8000)

#: ``--smoke``: clips and their lengths (seconds).
SMOKE_CLIPS, SMOKE_LENGTHS = 4, (0.3, 1.1, 0.7, 2.3)


#: Writes a release-format checkpoint, random weights with every bias perturbed (as the parity
#: tests do: the reference's init zeroes the biases, so the zero padding of a last window
#: encodes to ``z_e = 0`` and ties every codebook distance, and the agreement check would
#: count the tie-breaks): ``SCRIPT KWARGS_JSON PTH``.
_SAVE = """
from converters.torchaudio_stub import install_torchaudio_stub

install_torchaudio_stub()
import json, sys
import dac
import torch

torch.manual_seed(0)
model = dac.DAC(**json.loads(sys.argv[1]))
gen = torch.Generator().manual_seed(0)
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
model.save(sys.argv[2], package=False)
"""


def prepare_models(workdir: Path, kwargs: dict) -> tuple[Path, Path]:
    """The release ``.pth`` (written by the reference, :data:`_SAVE`) and its converted
    directory."""
    from benchmarks.bench_cli import _run

    pth, converted = workdir / "weights.pth", workdir / "converted"
    _run([sys.executable, "-c", _SAVE, json.dumps(kwargs), str(pth)])
    _run([sys.executable, "-m", "jaxlatent", "convert", "dac", str(pth), str(converted)])
    return pth, converted


def make_clips(folder: Path, n: int, lengths=LENGTHS, rates=RATES) -> float:
    """Write `n` WAV clips (``clip_000.wav``...) under `folder` (two subfolders); return the
    total audio seconds."""
    import numpy as np

    from jaxlatent.codec.files import write_audio
    from jaxlatent.codec.resample import resample
    from jaxlatent.datasets import bundled_speech

    speech = np.concatenate([c.audio[:, 0] for c in bundled_speech()])  # 16 kHz mono
    rng = np.random.default_rng(0)
    total = 0.0
    for i in range(n):
        seconds, rate = lengths[i % len(lengths)], rates[i % len(rates)]
        source = np.resize(np.roll(speech, 1000 * i), int(seconds * 16000))
        audio = resample(source, 16000, rate) if rate != 16000 else source
        audio = audio + 0.003 * rng.standard_normal(audio.shape).astype(np.float32)
        audio = audio[:, None] if i % 4 else np.stack([audio, 0.5 * audio], axis=1)
        write_audio(folder / f"part{i % 2}" / f"clip_{i:03d}.wav", audio, rate)
        total += audio.shape[0] / rate
    return total


def _jax_worker(args) -> dict:
    from jaxlatent import cli

    start = time.perf_counter()
    argv = ["encode", args.folder, "--model", args.converted, "--output", args.output]
    argv += ["--batch-size", str(args.batch_size), "--overwrite", "--quiet"]
    argv += ["--compile-cache", args.cache]
    code = cli.main(argv)
    if code != 0:
        raise RuntimeError(f"jaxlatent encode exited {code}")
    summary = json.loads((Path(args.output) / "summary.json").read_text())
    return {
        "coding_s": summary["wall_seconds"],
        "audio_s": summary["audio_hours"] * 3600,
        "in_process_s": time.perf_counter() - start,
        "files": len(summary["files"]),
    }


def _torch_worker(args) -> dict:
    from benchmarks.common import torch_threads
    from converters.torchaudio_stub import install_torchaudio_stub

    torch = torch_threads(args.threads)
    install_torchaudio_stub()
    import dac
    from audiotools import AudioSignal

    model = dac.DAC.load(args.pth).eval()
    files = sorted(Path(args.folder).rglob("*.wav"))
    out = Path(args.output)
    start = time.perf_counter()
    audio_s = 0.0
    with torch.inference_mode():
        for f in files:
            signal = AudioSignal(str(f))
            audio_s += signal.signal_duration
            target = out / f.relative_to(args.folder).with_suffix(".dac")
            target.parent.mkdir(parents=True, exist_ok=True)
            model.compress(signal, win_duration=5.0).save(target)
    return {"coding_s": time.perf_counter() - start, "audio_s": audio_s, "files": len(files)}


WORKERS = {"jax": _jax_worker, "torch": _torch_worker}


def agreement(ours: Path, official: Path) -> float:
    """Share of equal codes over every ``.dac`` file of the official output folder."""
    from jaxlatent.codec import DACFile

    equal = total = 0
    for b in sorted(official.rglob("*.dac")):
        codes_b = DACFile.load(b).codes
        a = ours / b.relative_to(official)
        codes_a = DACFile.load(a).codes if a.exists() else None
        total += codes_b.size
        if codes_a is not None and codes_a.shape == codes_b.shape:
            equal += int((codes_a == codes_b).sum())
    return equal / total if total else 0.0


def measure(workdir: Path, kwargs: dict, clips: int, lengths, rounds: int, args) -> dict:
    """Every round's worker results and the code agreement of the last round."""
    from benchmarks import common

    pth, converted = prepare_models(workdir, kwargs)
    folder = workdir / "clips"
    audio_s = make_clips(folder, clips, lengths)
    cache = workdir / "xla"
    wargs = ["--pth", pth, "--converted", converted, "--folder", folder, "--cache", cache]
    wargs += ["--batch-size", args.batch_size, "--threads", args.threads]
    # untimed: fills the compile cache
    common.run_worker(MODULE, "jax", [*wargs, "--output", workdir / "warmup"])
    results: dict[str, list[dict]] = {"jax": [], "torch": []}
    for r in range(rounds):
        order = ("torch", "jax") if r % 2 == 0 else ("jax", "torch")
        for role in order:
            out = workdir / f"{role}-{r}"
            results[role].append(common.run_worker(MODULE, role, [*wargs, "--output", out]))
        print(
            f"<!-- encode_folder round {r + 1}/{rounds} done, {common.load()} -->", file=sys.stderr
        )
    share = agreement(workdir / f"jax-{rounds - 1}", workdir / f"torch-{rounds - 1}")
    return {"results": results, "agreement": share, "audio_s": audio_s, "clips": clips}


def _cycle(values, n: int) -> list:
    return [values[i % len(values)] for i in range(n)]


def _speed(results: list[dict], key: str) -> list[float]:
    return [r["audio_s"] / r[key] for r in results]


def format_table(result: dict, rounds: int, label: str, args) -> str:
    from benchmarks.common import Spread, load, machine, markdown_table

    jax, torch = result["results"]["jax"], result["results"]["torch"]
    rows = []
    for name, key in [("coding (model loaded)", "coding_s"), ("whole process", "process_s")]:
        ours, theirs = _speed(jax, key), _speed(torch, key)
        ratio = [o / t for o, t in zip(ours, theirs, strict=True)]
        rows.append(
            [
                name,
                Spread.of(ours).fmt(".1f"),
                Spread.of(theirs).fmt(".1f"),
                Spread.of(ratio).fmt(".2f", "x"),
                "met" if statistics.median(ratio) >= 3 else "**missed**",
            ]
        )
    lines = [
        f"# `jaxlatent encode` on a folder vs the official `compress` loop ({label})",
        "",
        f"{result['clips']} clips, {result['audio_s']:.0f} s of audio (lengths "
        f"{', '.join(map(str, sorted(set(_cycle(args.lengths, result['clips'])))))} s; rates "
        f"{', '.join(map(str, sorted(set(_cycle(RATES, result['clips'])))))} Hz; "
        "every fourth stereo); "
        f"`--batch-size {args.batch_size}`, {args.threads} threads per framework, "
        f"win_duration 5 s. Audio seconds per wall second, median (min-max) of {rounds} "
        "alternating rounds; target 3x.",
        "",
        markdown_table(
            ["throughput of", "jaxlatent encode", "official loop", "ratio", "3x target"], rows
        ),
        "",
        f"Codes equal in both outputs: {100 * result['agreement']:.2f}%.",
        "",
        f"{machine()}; {load()} at the end",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from benchmarks import common

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=32, help="clips in the folder (default 32)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--batch-size", type=int, default=16, help="jaxlatent encode --batch-size")
    p.add_argument("--threads", type=int, default=common.cores(), help="per framework")
    p.add_argument("--smoke", action="store_true", help="tiny model, 4 short clips, 1 round")
    p.add_argument("--workdir", default=None, help="keep the files here (default: temporary)")
    p.add_argument("--out", default=None, help="also write the Markdown table here")
    for name in ("worker", "pth", "converted", "folder", "cache", "output"):
        p.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if common.serve_worker(args, WORKERS):
        return
    from benchmarks.bench_cli import SMOKE_KWARGS
    from jaxlatent.models.dac import DACConfig

    if args.smoke:
        kwargs, label = SMOKE_KWARGS, "tiny model (smoke run)"
        args.clips, args.rounds, args.lengths = SMOKE_CLIPS, 1, SMOKE_LENGTHS
    else:
        kwargs, label, args.lengths = DACConfig.dac_16khz().to_kwargs(), "16 kHz release", LENGTHS
    if args.clips < 1 or args.rounds < 1:
        raise SystemExit("--clips and --rounds must be at least 1")
    with tempfile.TemporaryDirectory(prefix="bench_encode_folder-") as d:
        workdir = Path(args.workdir or d)
        workdir.mkdir(parents=True, exist_ok=True)
        result = measure(workdir, kwargs, args.clips, args.lengths, args.rounds, args)
        common.report(format_table(result, args.rounds, label, args), args.out)


if __name__ == "__main__":
    main()
