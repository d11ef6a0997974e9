"""Wall time of ``jaxlatent encode`` against the official package, run as a user runs them.

Run from the repository root (needs torch and descript-audio-codec)::

    python -m benchmarks.bench_cli [--rounds 5] [--out FILE]
    python -m benchmarks.bench_cli --smoke     # a tiny model, one round: checks the harness

Setup (not timed): the 16 kHz release architecture with random weights, saved by the
reference itself (``dac.DAC(**kwargs).save(path, package=False)``), then converted with
``jaxlatent convert dac`` into a directory. Every timed run is a fresh process coding the
bundled 2.9 s speech clip (``jaxlatent/data/speech_16k_spk1_snt1.wav``) into a ``.dac`` file:

* jaxlatent, first run: ``python -m jaxlatent encode CLIP --model DIR --output OUT --quiet
  --compile-cache CACHE`` with an empty ``CACHE`` (everything compiled);
* jaxlatent, second run: the same command again, with the cache the first run filled;
* official: a Python script as a user writes it: ``import dac``, ``dac.DAC.load(PTH)``,
  ``compress(AudioSignal(CLIP), win_duration=5.0)`` (the official ``dac encode`` window; the
  same as ``jaxlatent encode``'s default) and ``save``. Run twice per round, like jaxlatent.

Each round runs both tools, alternating which goes first; the table gives the median and the
min-max spread over the rounds, and the share of codes on which the two files agree (a
check that both did the same work). Timings are only comparable within one run on one
machine; run it alone on the machine.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: A tiny architecture for ``--smoke`` (seconds per run, mostly imports).
SMOKE_KWARGS = {
    "encoder_dim": 2,
    "encoder_rates": [2, 5],
    "latent_dim": 6,
    "decoder_dim": 8,
    "decoder_rates": [5, 2],
    "n_codebooks": 3,
    "codebook_size": 16,
    "codebook_dim": 2,
    "sample_rate": 8000,
}

#: Installs the one torchaudio stub (``converters.torchaudio_stub``; its ``lfilter`` is
#: scipy's, which the official compress's loudness meter calls) where torchaudio is missing.
_TORCHAUDIO = """
from converters.torchaudio_stub import install_torchaudio_stub

install_torchaudio_stub()
"""

#: Writes a release-format checkpoint with random weights: ``SCRIPT KWARGS_JSON PTH``.
_SAVE = (
    _TORCHAUDIO
    + """
import json, sys
import dac
import torch

torch.manual_seed(0)
dac.DAC(**json.loads(sys.argv[1])).save(sys.argv[2], package=False)
"""
)

#: The official path, as a user writes it: ``SCRIPT PTH CLIP OUT.dac``.
_OFFICIAL = (
    _TORCHAUDIO
    + """
import sys
import dac
from audiotools import AudioSignal

model = dac.DAC.load(sys.argv[1]).eval()
artifact = model.compress(AudioSignal(sys.argv[2]), win_duration=5.0)
artifact.save(sys.argv[3])
"""
)


def clip_path() -> Path:
    """The bundled 2.9 s, 16 kHz speech clip."""
    return Path(str(importlib.resources.files("jaxlatent") / "data" / "speech_16k_spk1_snt1.wav"))


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{path}" if path else str(ROOT))


def _run(argv: list[str], timeout: float = 1800) -> float:
    """Wall seconds of one child process (raises with its stderr when it fails)."""
    start = time.perf_counter()
    result = subprocess.run(
        argv, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed:\n{result.stderr[-3000:]}")
    return seconds


def prepare(workdir: Path, kwargs: dict) -> tuple[Path, Path]:
    """The release ``.pth`` (written by the reference) and its converted directory."""
    import json

    pth, converted = workdir / "weights.pth", workdir / "converted"
    _run([sys.executable, "-c", _SAVE, json.dumps(kwargs), str(pth)])
    _run([sys.executable, "-m", "jaxlatent", "convert", "dac", str(pth), str(converted)])
    return pth, converted


def _jaxlatent(converted: Path, clip: Path, out: Path, cache: Path) -> float:
    argv = ["encode", str(clip), "--model", str(converted), "--output", str(out), "--quiet"]
    return _run([sys.executable, "-m", "jaxlatent", *argv, "--compile-cache", str(cache)])


def _official(pth: Path, clip: Path, out: Path) -> float:
    return _run([sys.executable, "-c", _OFFICIAL, str(pth), str(clip), str(out)])


def agreement(ours: Path, official: Path) -> float:
    """Share of equal codes in two ``.dac`` files (0 when their shapes differ)."""
    import numpy as np

    from jaxlatent.codec import DACFile

    a, b = DACFile.load(ours).codes, DACFile.load(official).codes
    return float(np.mean(a == b)) if a.shape == b.shape else 0.0


def measure(workdir: Path, kwargs: dict, rounds: int) -> dict:
    """Times of every run: ``{"jax_first", "jax_second", "official_first", "official_second"}``
    (lists of seconds, one per round) and the code agreement of the last round."""
    pth, converted = prepare(workdir, kwargs)
    clip = clip_path()
    times: dict[str, list[float]] = {
        k: [] for k in ("jax_first", "jax_second", "official_first", "official_second")
    }
    for r in range(rounds):
        cache = workdir / f"xla-{r}"
        shutil.rmtree(cache, ignore_errors=True)  # the first run starts from an empty cache
        ours = workdir / f"ours-{r}"
        official = workdir / f"official-{r}.dac"
        runs = {
            "jax": lambda ours=ours, cache=cache: _jaxlatent(converted, clip, ours, cache),
            "official": lambda official=official: _official(pth, clip, official),
        }
        for tool in ("jax", "official") if r % 2 == 0 else ("official", "jax"):
            times[f"{tool}_first"].append(runs[tool]())
            times[f"{tool}_second"].append(runs[tool]())
        share = agreement(ours / f"{clip.stem}.dac", official)
    return {**times, "agreement": share}


def _cell(samples: list[float]) -> str:
    return f"{statistics.median(samples):.2f} s ({min(samples):.2f}-{max(samples):.2f})"


def format_table(result: dict, rounds: int, label: str) -> str:
    from benchmarks.common import load, machine, markdown_table

    official = statistics.median(result["official_second"])
    rows = [
        [name, _cell(result[key]), f"{official / statistics.median(result[key]):.2f}x"]
        for name, key in [
            ("jaxlatent encode, first run (empty compile cache)", "jax_first"),
            ("jaxlatent encode, second run (compile cache filled)", "jax_second"),
            ("official (import dac, DAC.load, compress, save), first run", "official_first"),
            ("official, second run", "official_second"),
        ]
    ]
    lines = [
        f"# `jaxlatent encode` vs the official package ({label}, bundled 2.9 s speech clip)",
        "",
        markdown_table(
            ["run (fresh process)", f"wall, median (min-max) of {rounds}", "official / this"],
            rows,
        ),
        "",
        f"Codes equal in both files: {100 * result['agreement']:.1f}%.",
        "",
        f"{machine()}; {load()} at the end",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from benchmarks.common import report
    from jaxlatent.models.dac import DACConfig

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds (each: 2 runs per tool)")
    p.add_argument("--smoke", action="store_true", help="tiny model, one round")
    p.add_argument("--workdir", default=None, help="keep the files here (default: temporary)")
    p.add_argument("--out", default=None, help="also write the Markdown table here")
    args = p.parse_args(argv)
    if args.smoke:
        kwargs, rounds, label = SMOKE_KWARGS, 1, "tiny model (smoke run)"
    else:
        kwargs, rounds, label = DACConfig.dac_16khz().to_kwargs(), args.rounds, "16 kHz release"
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        result = measure(workdir, kwargs, rounds)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_cli-") as d:
            result = measure(Path(d), kwargs, rounds)
    report(format_table(result, rounds, label), args.out)


if __name__ == "__main__":
    main()
