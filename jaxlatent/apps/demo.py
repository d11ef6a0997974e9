"""`jaxlatent demo`: the README's main job, offline, on the bundled real speech and digits.

Stages (each timed, wall and CPU), all written into ``out`` (default ``out/demo``):

1. ``weights_16khz_random.pth``: a DAC checkpoint in the release format, made by the
   reference package itself with random weights (fixed torch seed), standing in for the
   released ``weights_16khz.pth`` that cannot be downloaded offline; skipped when a
   checkpoint (e.g. the released weights) is given;
2. ``model/``: the checkpoint converted by the production converter (what ``jaxlatent
   convert dac`` writes), then loaded back from disk;
3. ``clips/``: every bundled speech clip (its first `seconds`), coded as one folder
   into ``codes/`` (``jaxlatent encode --exact``'s code path,
   :func:`jaxlatent.apps.batch_coding.encode_folder`: exact windows with their receptive
   field, the whole-signal codes; ``codes/summary.json`` with the throughput);
4. the exact codes checked against the whole-signal ``DAC.encode`` of every clip (any
   difference stops the demo);
5. ``decoded/``: the codes decoded as one folder (``jaxlatent decode``'s code path,
   :func:`~jaxlatent.apps.batch_coding.decode_folder`: files longer than a window decoded
   in windows with code context, shorter ones in batches);
6. streaming: `clip` pushed `push_ms` at a time (its first `stream_seconds`) through
   :class:`jaxlatent.codec.StreamingEncoder` / ``StreamingDecoder``, codes checked against
   the exact codes, per-push latency and lookahead reported
   (:func:`jaxlatent.apps.demo_engine.stream_clip`);
7. ``parity.txt`` / ``parity.json``: ``jaxlatent parity dac`` on `clip`: the official
   ``dac.DAC`` against the jaxlatent model stage by stage (errors, code agreement, timings);
8. ``spectrograms.png``: input vs decoded spectrograms of `clip`;
9. ``vqvae/``: a short VQ-VAE training on scikit-learn's digits (``jaxlatent train --model
   vqvae``'s code path: checkpoints, metrics, pictures);
10. ``summary.json``: settings, timings, the folder coding, exactness and streaming numbers
    and the files written (last: its presence marks a complete demo).

Everything the user can get wrong (output folder, checkpoint path, settings, missing torch or
descript-audio-codec) is checked before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from jaxlatent.models.dac import DACConfig

__all__ = ["DemoConfig", "StageTime", "format_stage_summary", "run"]

RANDOM_NOTE = (
    "random weights (a release-format checkpoint made offline by the reference code): the "
    "decoded audio is not a meaningful reconstruction"
)


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Settings of `jaxlatent demo` (the defaults are the README's main job).

    Attributes:
      out: output folder; must be empty or missing unless `overwrite`.
      steps: VQ-VAE training steps.
      checkpoint: a DAC ``.pth`` to use instead of the random release-format checkpoint
        (e.g. the released ``weights_16khz.pth``).
      overwrite: replace the outputs of a previous demo in `out`.
      progress: progress bars.
      clip: the bundled clip (``jaxlatent/data``) of the parity report, the spectrograms
        and the stream (every bundled clip is coded).
      seconds: cut the clips to their first `seconds` (``None``: whole clips). Default 1.75 s,
        just under the shortest bundled clip (1.76 s): clips of one length need one compiled
        whole-signal encoder for the exactness check of all of them, shared with the parity
        report (the demo's slowest stages are compilations of the full-size model).
      codec: architecture of the random checkpoint (default: the 16 kHz release's).
      torch_seed: seed of the random checkpoint.
      win_duration: exact coding and decoding window in seconds (``jaxlatent encode --exact
        --win-duration``; the codes do not depend on it): 1 s, shorter than every bundled
        clip, so that one compiled encoder window and one decoder window serve all of them.
      coding_batch: rows per model call of the folder commands (``--batch-size``).
      stream_seconds: seconds of `clip` streamed (``None``: all of it, flushed).
      push_ms: audio per streaming push in milliseconds.
      vqvae_preset: VQ-VAE size preset (``jaxlatent train --preset``).
      batch_size: VQ-VAE global batch size.
      parallel: VQ-VAE data parallelism (``jaxlatent train --parallel``; ``auto``: sharded
        over several devices when they split the batch, else one device).
      seed: VQ-VAE training seed.
    """

    out: str = "out/demo"
    steps: int = 300
    checkpoint: str | None = None
    overwrite: bool = False
    progress: bool = True
    clip: str = "speech_16k_spk1_snt1.wav"
    seconds: float | None = 1.75
    codec: DACConfig = dataclasses.field(default_factory=DACConfig.dac_16khz)
    torch_seed: int = 0
    win_duration: float = 1.0
    coding_batch: int = 16
    stream_seconds: float | None = 0.5
    push_ms: float = 20.0
    vqvae_preset: str = "tiny"
    batch_size: int = 32
    parallel: str = "auto"
    seed: int = 0


class StageTime(NamedTuple):
    """Wall and CPU (all threads of this process) seconds of one stage."""

    stage: str
    wall_s: float
    cpu_s: float


class _Stopwatch:
    def __init__(self, log: Callable[[str], None]):
        self.stages: list[StageTime] = []
        self.log = log

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        self.log(f"[{len(self.stages) + 1}] {name} ...")
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        self.stages.append(StageTime(name, time.perf_counter() - wall, time.process_time() - cpu))
        return result


def _check(cfg: DemoConfig):
    """Every check that can fail on user input; returns (clip path, VQ-VAE preset name)."""
    import jax

    from jaxlatent.apps import codec_demo
    from jaxlatent.apps.registry import get_model

    if cfg.steps < 1:
        raise ValueError(f"--steps must be positive, got {cfg.steps}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {cfg.batch_size}")
    if cfg.seconds is not None and not cfg.seconds > 0:
        raise ValueError(f"seconds must be positive, got {cfg.seconds}")
    if not cfg.win_duration > 0:
        raise ValueError(f"win_duration must be positive, got {cfg.win_duration}")
    if cfg.stream_seconds is not None and not cfg.stream_seconds > 0:
        raise ValueError(f"stream_seconds must be positive, got {cfg.stream_seconds}")
    if not cfg.push_ms > 0:
        raise ValueError(f"push_ms must be positive, got {cfg.push_ms}")
    from jaxlatent.codec.batch import check_batch_size

    check_batch_size(cfg.coding_batch, jax.local_device_count())
    from jaxlatent.apps.runs import PARALLEL

    if cfg.parallel not in PARALLEL:
        raise ValueError(f"unknown parallel {cfg.parallel!r}; choose one of: {', '.join(PARALLEL)}")
    clip = codec_demo.bundled_clip(cfg.clip)
    _, preset, _ = get_model("vqvae", cfg.vqvae_preset)
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise ValueError(f"output folder {cfg.out!r} exists and is not a folder")
    if os.path.isdir(cfg.out) and os.listdir(cfg.out) and not cfg.overwrite:
        raise ValueError(
            f"output folder {cfg.out!r} exists and is not empty; pass --overwrite to replace "
            "the previous demo's outputs or choose another --out"
        )
    if cfg.checkpoint is not None and not os.path.exists(cfg.checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {cfg.checkpoint}")
    if cfg.checkpoint is not None and not os.path.isfile(cfg.checkpoint):
        raise ValueError(
            f"--checkpoint must be a DAC .pth file (the parity report runs it in torch), got "
            f"the folder {cfg.checkpoint!r}"
        )
    codec_demo.require_reference()  # ImportError with what to install
    return clip, preset


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def run(cfg: DemoConfig = DemoConfig(), log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo (module docstring) and return its summary (also ``summary.json``).

    Args:
      cfg: the settings.
      log: where progress lines and the parity report go.

    Returns:
      The summary: settings, ``stages`` (``StageTime`` dicts), ``files`` (name -> what, bytes),
      ``coding`` (throughput, exact-code agreement per clip), ``streaming``
      (:class:`jaxlatent.apps.demo_engine.StreamReport` fields), the parity headline and the
      VQ-VAE run's summary.

    Raises:
      ValueError: for a non-empty `out` without `overwrite`, a checkpoint that is a folder
        or unreadable, an unknown clip or preset, or non-positive settings (before anything
        is written).
      FileNotFoundError: for a missing checkpoint (before anything is written).
      ImportError: without torch / descript-audio-codec (before anything is written).
      RuntimeError: if the exact or the streamed codes differ from the whole-signal codes.
    """
    import jax
    import soundfile as sf

    from converters.dac import convert_checkpoint
    from converters.dac_parity import parity_report
    from jaxlatent.apps import codec_demo, demo_engine, train
    from jaxlatent.apps.batch_coding import decode_folder, encode_folder
    from jaxlatent.models.dac import load_converted, save_converted

    clip_src, preset = _check(cfg)
    out = Path(cfg.out)
    random_weights = cfg.checkpoint is None
    if cfg.overwrite and (out / "summary.json").exists():
        (out / "summary.json").unlink()  # the demo there is no longer complete
    timer = _Stopwatch(log)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    if random_weights:
        log(f"DAC codec with {RANDOM_NOTE}.")
    files: dict[str, str] = {}

    # 1-2. checkpoint, conversion (in memory first: a bad --checkpoint fails before writing)
    if random_weights:
        rate = f"{cfg.codec.sample_rate // 1000}khz"
        ckpt = out / f"weights_{rate}_random.pth"
        timer.stage(
            "release-format checkpoint (reference code, random weights)",
            lambda: codec_demo.make_release_checkpoint(ckpt, cfg.codec, cfg.torch_seed),
        )
        files[ckpt.name] = f"release-format DAC checkpoint, random weights (seed {cfg.torch_seed})"
    else:
        ckpt = Path(cfg.checkpoint)

    def convert():
        config, converted = convert_checkpoint(ckpt)
        save_converted(out / "model", config, converted, overwrite=cfg.overwrite, source=str(ckpt))
        return load_converted(out / "model")

    model = timer.stage("convert (jaxlatent convert dac)", convert)
    files["model/"] = "converted model (orbax + config.json; --model for encode/decode)"

    # 3-6. the bundled clips as one folder: exact codes, checked, decoded; one clip streamed
    stem = Path(cfg.clip).stem
    clips = demo_engine.copy_clips(out / "clips", cfg.seconds)
    wav = out / "clips" / clip_src.name
    files["clips/"] = f"input: the {len(clips)} bundled real speech clips" + (
        f", first {cfg.seconds} s" if cfg.seconds else ""
    )
    folder_options = {  # the folder commands' options, shared by encode and decode
        "batch_size": cfg.coding_batch,
        "win_duration": cfg.win_duration,
        "overwrite": True,
        "fail_fast": True,
        "progress": cfg.progress,
    }
    encoded = timer.stage(
        "encode folder (jaxlatent encode --exact)",
        lambda: encode_folder(model, [out / "clips"], out / "codes", exact=True, **folder_options),
    )
    files["codes/"] = "exact codes (.dac, readable by the official dac.DACFile.load), summary.json"
    dac_path = out / "codes" / f"{stem}.dac"
    check = timer.stage(
        "check exact codes (whole-signal DAC.encode)",
        lambda: demo_engine.check_exact(
            model, [(c, out / "codes" / f"{c.stem}.dac") for c in clips]
        ),
    )
    decoded = timer.stage(
        "decode folder (jaxlatent decode)",
        lambda: decode_folder(model, [out / "codes"], out / "decoded", **folder_options),
    )
    decoded_path = out / "decoded" / f"{stem}.wav"
    files["decoded/"] = "decoded audio, summary.json"
    stream = timer.stage(
        f"streaming ({cfg.push_ms:g} ms pushes)",
        lambda: demo_engine.stream_clip(
            model, wav, dac_path, seconds=cfg.stream_seconds, push_ms=cfg.push_ms
        ),
    )
    log(demo_engine.format_engine(encoded, decoded, check, stream))

    # 7. parity against the reference on the same clip
    info = sf.info(str(wav))
    seconds = info.frames / info.samplerate
    report = timer.stage(
        "parity (jaxlatent parity dac)",  # the whole clip (a margin against float rounding)
        lambda: parity_report(ckpt, audio=wav, seconds=seconds + 1e-3, model=model),
    )
    log(report.format())
    codec_demo.save_parity(report, out / "parity.txt", out / "parity.json")
    files["parity.txt"] = "parity report (as printed)"
    files["parity.json"] = "parity report (every number)"

    # 8. spectrograms
    note = RANDOM_NOTE if random_weights else f"weights: {ckpt}"
    timer.stage(
        "spectrograms",
        lambda: codec_demo.save_spectrograms(
            out / "spectrograms.png", wav, decoded_path, note=note
        ),
    )
    files["spectrograms.png"] = "input vs decoded spectrograms"

    # 9. VQ-VAE on the digits
    parallel = cfg.parallel
    if parallel == "auto" and cfg.batch_size % jax.device_count():
        parallel = "single"
    train_cfg = train.TrainConfig(
        model="vqvae",
        preset=preset,
        out=str(out / "vqvae"),
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        overwrite=cfg.overwrite,
        eval_every=max(cfg.steps // 3, 1),
        parallel=parallel,
        seed=cfg.seed,
        progress=cfg.progress,
    )
    vq_summary = timer.stage("VQ-VAE training (jaxlatent train)", lambda: train.run(train_cfg))
    log(train.format_run_summary(vq_summary, train_cfg.out))
    files["vqvae/"] = "VQ-VAE run: checkpoints/, metrics.jsonl, pictures/, summary.json"

    summary = {
        "config": {
            **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "codec"},
            "codec": cfg.codec.to_kwargs() if random_weights else None,
        },
        "random_weights": random_weights,
        "checkpoint": str(ckpt),
        "jax_backend": jax.default_backend(),
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "wall_s": time.perf_counter() - start_wall,
        "cpu_s": time.process_time() - start_cpu,
        "stages": [s._asdict() for s in timer.stages],
        "files": {
            name: {"what": what, "bytes": _size(out / name.rstrip("/"))}
            for name, what in files.items()
        },
        "coding": {
            "clips": [c.name for c in clips],
            "audio_seconds": encoded.audio_seconds,
            "encode_audio_seconds_per_second": encoded.audio_seconds_per_second,
            "decode_audio_seconds_per_second": decoded.audio_seconds_per_second,
            "exact_agreement": check.agreement,
            "exact_codes_compared": check.codes,
        },
        "streaming": stream._asdict(),
        "parity": {
            "code_agreement": report.code_agreement,
            "decoder_max_abs": report.stages[-1].max_abs,
            "seconds": report.seconds,
        },
        "vqvae": vq_summary,
    }
    text = json.dumps(summary, indent=2, default=str) + "\n"
    from jaxlatent.atomic import atomic_write

    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(text), ".json")
    return summary


def format_stage_summary(summary: dict[str, Any], out: str) -> str:
    """The lines `jaxlatent demo` prints at the end: stage timings and the files written."""
    lines = [
        "",
        f"jaxlatent demo: done in {summary['wall_s']:.1f} s wall, {summary['cpu_s']:.1f} s CPU "
        f"(JAX on {summary['jax_backend']}, {summary['cpu_count'] or '?'} CPU cores)",
        f"  {'stage':<58} {'wall s':>7} {'CPU s':>7}",
    ]
    for s in summary["stages"]:
        lines.append(f"  {s['stage']:<58} {s['wall_s']:7.1f} {s['cpu_s']:7.1f}")
    lines.append(f"written to {out}:")
    width = max(len(n) for n in summary["files"])
    for name, f in summary["files"].items():
        lines.append(f"  {name:<{width}} {f['bytes'] / 1e6:9.2f} MB  {f['what']}")
    lines.append(f"  {'summary.json':<{width}} {'':>12}  settings, timings, this list")
    if summary["random_weights"]:
        lines.append(f"note: {RANDOM_NOTE}.")
    return "\n".join(lines)
