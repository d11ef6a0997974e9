"""The `jaxlatent` command line.

Subcommands:
  train    train a registered model (`jaxlatent.apps.registry`) on its bundled data (digits,
           speech) or a folder of images or audio files.
  sample   draw images from a trained run's model (``--run DIR``).
  generate reconstruct images with a trained run's model (``--run DIR``).
  demo     the main job: DAC codec round trip on the bundled speech, then a VQ-VAE on digits.
  convert  convert a checkpoint: ``jaxlatent convert dac SRC.pth OUT_DIR``.
  encode   audio files/folders -> ``.dac`` files (``--model MODEL INPUT... --output DIR``),
           batched over devices and processes; resumable; ``DIR/summary.json``. Exit status
           1 when some inputs could not be read (listed in the summary, skipped).
           ``--exact``: the whole-signal codes, window by window.
  decode   ``.dac`` files/folders -> WAV files (``--model MODEL INPUT... --output DIR``),
           batched, resumable, ``DIR/summary.json`` and exit status 1 as ``encode``.
  parity   compare jaxlatent with the torch reference: ``jaxlatent parity dac --model SRC.pth``.

MODEL is a converted directory (``jaxlatent convert``), a DAC ``.pth``/``.safetensors`` or a
Hugging Face transformers ``DacModel`` folder (the format is detected; converted on the fly and
cached, see :func:`converters.dac_cache.load_model`).

Errors in user input exit with status 2 and a one-line message, never a traceback, and leave
no partial output file (every output is written to a temporary file and renamed).

``demo``, ``encode``, ``decode``, ``parity`` and ``train`` keep XLA's compiled executables in a
cache folder (:func:`jaxlatent.compilation.enable_persistent_cache`), so a second run loads
them instead of compiling again: ``$XDG_CACHE_HOME/jaxlatent/xla`` (``~/.cache/jaxlatent/xla``;
``$JAXLATENT_CACHE_DIR/xla`` when that is set). ``--compile-cache DIR`` moves it,
``--no-compile-cache`` turns it off, and so does the environment variable
``JAXLATENT_COMPILE_CACHE`` (a folder, or ``0``/``off`` to disable); the option wins.

``encode``, ``decode``, ``parity`` and ``train`` take ``--precision`` (:mod:`jaxlatent.precision`):
``highest`` (the default: float32 products on every backend, the reference's values and codes),
``high`` or ``default`` (TF32 on NVIDIA GPUs, bfloat16 passes on TPUs: faster); the
nearest-code search is exact whatever it is. An unknown name exits with status 2.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Mapping
from pathlib import Path

#: Environment variable: the compile-cache folder, or one of `_OFF` to disable it.
COMPILE_CACHE_ENV = "JAXLATENT_COMPILE_CACHE"
_OFF = ("0", "off", "false", "no", "none")
#: Young-generation threshold of the cyclic garbage collector while a command runs. Start-up
#: (importing jax, flax and orbax, building and tracing the model) allocates millions of
#: long-lived objects; with CPython's default (700) that runs about 700 collections, 5 of
#: them full, 0.3-0.4 s of CPU of a 5 s `jaxlatent encode`. Cycles are still collected, in
#: 10-20 collections and no full one.
_GC_YOUNG_THRESHOLD = 50_000


def compile_cache_dir(
    option: str | None, disabled: bool, environ: Mapping[str, str] = os.environ
) -> Path | None:
    """The persistent compilation cache folder for this run, or ``None`` when it is off.

    Args:
      option: ``--compile-cache DIR`` (``None`` when not given).
      disabled: ``--no-compile-cache``.
      environ: the environment (``JAXLATENT_COMPILE_CACHE``, ``JAXLATENT_CACHE_DIR``,
        ``XDG_CACHE_HOME``, ``HOME``).

    Returns:
      The option's folder; else ``None`` if the option or ``JAXLATENT_COMPILE_CACHE`` (``0``,
      ``off``, ``false``, ``no``, ``none``, any case) disables it; else that variable's
      folder; else ``$JAXLATENT_CACHE_DIR/xla``, ``$XDG_CACHE_HOME/jaxlatent/xla`` or
      ``~/.cache/jaxlatent/xla``.

    Raises:
      ValueError: if both ``--compile-cache`` and ``--no-compile-cache`` are given, or a
        folder is the empty string.
    """
    if disabled:
        if option is not None:
            raise ValueError("--compile-cache and --no-compile-cache exclude each other")
        return None
    if option is not None:
        if not option.strip():
            raise ValueError("--compile-cache needs a folder")
        return Path(option).expanduser()
    value = environ.get(COMPILE_CACHE_ENV)
    if value is not None:
        if value.strip().lower() in _OFF or not value.strip():
            return None
        return Path(value).expanduser()
    from jaxlatent._cache_root import cache_root

    return cache_root(environ) / "xla"


def _add_compile_cache_arguments(p) -> None:
    group = p.add_argument_group("compilation cache")
    group.add_argument(
        "--compile-cache",
        metavar="DIR",
        default=None,
        help=f"keep compiled code in DIR (default: ${COMPILE_CACHE_ENV}, else "
        "~/.cache/jaxlatent/xla)",
    )
    group.add_argument(
        "--no-compile-cache",
        action="store_true",
        help=f"compile everything anew (also: {COMPILE_CACHE_ENV}=off)",
    )
    p.set_defaults(compile_cache_option=True)


def _add_precision_argument(p) -> None:
    from jaxlatent.precision import DEFAULT_PRECISION, PRECISIONS

    p.add_argument(
        "--precision",
        default=DEFAULT_PRECISION,
        metavar="{" + ",".join(PRECISIONS) + "}",
        help=f"precision of the model's convolutions and matmuls (default {DEFAULT_PRECISION}: "
        "float32 products on every backend; default: TF32 on NVIDIA GPUs, bfloat16 on TPUs, "
        "faster); codes are searched exactly whatever it is",
    )


def _demo(args: argparse.Namespace) -> int:
    from jaxlatent.apps import demo

    cfg = demo.DemoConfig(
        out=args.out,
        steps=args.steps,
        checkpoint=args.checkpoint,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    summary = demo.run(cfg)
    print(demo.format_stage_summary(summary, args.out))
    return 0


def _train(args: argparse.Namespace) -> int:
    from jaxlatent.apps import train

    cfg = train.TrainConfig(
        model=args.model,
        preset=args.preset,
        quantizer=args.quantizer,
        data=args.data,
        steps=args.steps,
        batch_size=args.batch_size,
        out=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        learning_rate=args.lr,
        parallel=args.parallel,
        seed=args.seed,
        progress=not args.quiet,
        objective=args.objective,
        init_from=args.init_from,
        init_discriminator=args.init_discriminator,
        recipe_data=not args.no_recipe_data,
        precision=args.precision,
    )
    summary = train.run(cfg)
    print(train.format_run_summary(summary, args.out))
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose help may be completed only when it is shown: building the
    parser (every command's start-up) then imports nothing heavy."""

    complete_help = None

    def format_help(self) -> str:
        if self.complete_help is not None:
            complete, self.complete_help = self.complete_help, None
            complete(self)
        return super().format_help()


def _add_train_parser(sub) -> None:
    t = sub.add_parser(
        "train",
        help="train a model on bundled digits/speech or a folder of images/audio",
        description="Train a registered model; resumable, with metrics, checkpoints and pictures.",
    )
    model = t.add_argument("--model", required=True, help="model name")

    def list_models(parser: argparse.ArgumentParser) -> None:
        from jaxlatent.apps.registry import MODELS
        from jaxlatent.apps.spec import DATA_KINDS

        kinds = {k: [n for n in sorted(MODELS) if MODELS[n].data_kind == k] for k in DATA_KINDS}
        parser.description += (
            f" Image models: {', '.join(kinds['image'])}. Audio models: "
            f"{', '.join(kinds['audio'])}."
        )
        model.help = "model name (" + ", ".join(sorted(MODELS)) + ")"

    t.complete_help = list_models
    t.add_argument("--preset", default=None, help="model size preset (default: tiny)")
    t.add_argument(
        "--quantizer",
        default=None,
        help="VQ-VAE models (vq_vae, vq_vae_ema) only: vq (default: the model's VectorQuantizer), "
        "fsq (levels 8,5,5,5), rfsq (2-layer residual FSQ), lfq (2**8 codes), rlfq (2-layer "
        "residual LFQ), simvq, rsimvq (2-layer residual SimVQ), rvq (2-layer residual VQ); "
        "residual ones use quantizer dropout; usage and perplexity per codebook in eval.jsonl",
    )
    t.add_argument(
        "--data",
        default=None,
        help="image models: 'digits' (bundled, default) or a folder of images; audio models: "
        "'speech' (bundled, default) or a folder of wav/flac/... files (any rate, mono mixdown; "
        "models trained on classes, such as piq: one subfolder per class)",
    )
    t.add_argument("--steps", type=int, required=True, help="total training steps")
    t.add_argument("--batch-size", type=int, required=True, help="global batch size")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    t.add_argument("--eval-every", type=int, default=None, help="pictures every K steps")
    t.add_argument("--checkpoint-every", type=int, default=None, help="default: steps/4")
    t.add_argument(
        "--lr",
        type=float,
        default=None,
        help="initial learning rate (default: the preset's, or its recipe's)",
    )
    t.add_argument(
        "--objective",
        default=None,
        help="recipe: the model's adversarial training recipe (dac; its default); "
        "reconstruction: the model's non-adversarial loss (every model; the others' default)",
    )
    t.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="dac: start from a release .pth (needs torch) or a converted folder; its preset "
        "is inferred unless --preset names it",
    )
    t.add_argument(
        "--init-discriminator",
        default=None,
        metavar="FILE",
        help="dac --objective recipe: start the discriminator from this file (default: fresh)",
    )
    t.add_argument(
        "--no-recipe-data",
        action="store_true",
        help="dac --objective recipe: train on plain segments of the data instead of the "
        "recipe's pipeline (salient excerpts over -40 LUFS, VolumeNorm -16, RescaleAudio, "
        "ShiftPhase)",
    )
    t.add_argument(
        "--parallel",
        default="auto",
        help="single, sharded (jit over a mesh), pmap, shard_map; auto: sharded on >1 device",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_precision_argument(t)
    _add_compile_cache_arguments(t)
    t.set_defaults(func=_train)


def _sample(args: argparse.Namespace) -> int:
    from jaxlatent.apps import sample

    labels = None if args.labels is None else tuple(x.strip() for x in args.labels.split(","))
    cfg = sample.SampleConfig(
        run=args.run,
        num_samples=args.num_samples,
        seed=args.seed,
        step=args.step,
        labels=labels,
        outputs=tuple(args.output or ()),
        overwrite=args.overwrite,
    )
    result = sample.sample(cfg)
    print(
        f"sampled {cfg.num_samples} image(s) from {args.run} (step {result.step}, seed "
        f"{cfg.seed}); wrote {', '.join(result.outputs)}"
    )
    return 0


def _generate(args: argparse.Namespace) -> int:
    from jaxlatent.apps import sample

    cfg = sample.GenerateConfig(
        run=args.run,
        data=args.data,
        num=args.num,
        seed=args.seed,
        step=args.step,
        outputs=tuple(args.output or ()),
        overwrite=args.overwrite,
    )
    result = sample.generate(cfg)
    print(
        f"reconstructed {cfg.num} image(s) with {args.run} (step {result.step}): "
        f"reconstruction MSE {result.mse:.4g}; wrote {', '.join(result.outputs)}"
    )
    return 0


def _add_run_arguments(p) -> None:
    p.add_argument("--run", required=True, help="a `jaxlatent train` output folder")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--output",
        action="append",
        metavar="FILE",
        help="FILE.png (grid) or FILE.npy (float32 array); repeatable "
        "(default: RUN/pictures/<command>_step<K>_seed<S>.png)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _add_sample_parser(sub) -> None:
    s = sub.add_parser(
        "sample",
        help="draw images from a trained run's model",
        description="Restore a `jaxlatent train` checkpoint and draw images with the model's "
        "sample() (VQ-VAE: decoded uniformly random codes). The .npy array is "
        "[num, H, W, C] float32 in [0, 1].",
    )
    _add_run_arguments(s)
    s.add_argument("--num-samples", type=int, default=16, help="images to draw (default: 16)")
    s.add_argument(
        "--labels",
        default=None,
        help="conditional_vae: comma-separated class names cycled over the samples "
        "(default: every class in turn)",
    )
    s.set_defaults(func=_sample)


def _add_generate_parser(sub) -> None:
    g = sub.add_parser(
        "generate",
        help="reconstruct images with a trained run's model",
        description="Restore a `jaxlatent train` checkpoint, reconstruct images of the data "
        "with the model's generate() (eval mode) and print the reconstruction MSE. The .npy "
        "array is [2, num, H, W, C] float32: inputs, then reconstructions.",
    )
    _add_run_arguments(g)
    g.add_argument(
        "--data", default=None, help="'digits' or a folder of images (default: the run's data)"
    )
    g.add_argument("--num", type=int, default=16, help="images to reconstruct (default: 16)")
    g.set_defaults(func=_generate)


def _convert(args: argparse.Namespace) -> int:
    from converters.dac_formats import convert_any
    from jaxlatent.models.dac import save_converted

    config, model = convert_any(args.src)
    out = save_converted(args.out_dir, config, model, overwrite=args.overwrite, source=args.src)
    print(
        f"converted {args.src} ({config.sample_rate} Hz, {config.n_codebooks} codebooks) to {out}"
    )
    return 0


def _encode(args: argparse.Namespace) -> int:
    from jaxlatent.apps.batch_coding import encode_folder, join_processes

    join_processes(args.coordinator, args.num_processes, args.process_id)
    result = encode_folder(
        args.model,
        args.inputs,
        args.output,
        batch_size=args.batch_size,
        win_duration=args.win_duration,
        n_quantizers=args.n_quantizers,
        exact=args.exact,
        overwrite=args.overwrite,
        fail_fast=args.fail_fast,
        progress=not args.quiet,
        precision=args.precision,
    )
    print(f"encoded {_folder_report(result)} to {args.output}")
    return 1 if result.skipped else 0


def _decode(args: argparse.Namespace) -> int:
    from jaxlatent.apps.batch_coding import decode_folder, join_processes

    join_processes(args.coordinator, args.num_processes, args.process_id)
    result = decode_folder(
        args.model,
        args.inputs,
        args.output,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        fail_fast=args.fail_fast,
        progress=not args.quiet,
        precision=args.precision,
    )
    print(f"decoded {_folder_report(result)} to {args.output}")
    return 1 if result.skipped else 0


def _folder_report(result) -> str:
    """``N file(s) (M already done[, K skipped (see summary)]), ...`` of a FolderSummary."""
    skipped = f", {len(result.skipped)} skipped (see {result.summary_path})"
    return (
        f"{len(result.coded)} file(s) ({result.already_done} already done"
        f"{skipped if result.skipped else ''}), {result.audio_seconds:.1f} s of audio, in "
        f"{result.seconds:.1f} s ({result.audio_seconds_per_second:.1f} audio s/s)"
    )


def _add_folder_arguments(p) -> None:
    """--batch-size, --overwrite, --fail-fast, --quiet and the multi-process options."""
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per model call, split over this process's devices (a multiple of "
        "their count; default 16, rounded up to one)",
    )
    p.add_argument("--overwrite", action="store_true", help="redo existing outputs")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first unreadable input")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    group = p.add_argument_group(
        "several processes (default: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)"
    )
    group.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    group.add_argument("--num-processes", type=int, help="processes in the job")
    group.add_argument("--process-id", type=int, help="this process's index")


def _parity(args: argparse.Namespace) -> int:
    from converters.dac_parity import parity_report

    report = parity_report(
        args.model,
        audio=args.audio,
        seconds=args.seconds,
        n_quantizers=args.n_quantizers,
        precision=args.precision,
    )
    print(report.format())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxlatent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="the main job: DAC codec round trip on bundled speech, then a VQ-VAE on digits",
        description="Offline: make a release-format DAC checkpoint with the reference code "
        "(random weights; or use --checkpoint), convert it, encode and decode the bundled "
        "speech, print the parity report against the reference, plot the spectrograms, then "
        "train a VQ-VAE on the digits. Needs torch and descript-audio-codec (.ci/setup).",
    )
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--steps", type=int, default=300, help="VQ-VAE steps (default: 300)")
    demo.add_argument(
        "--checkpoint",
        default=None,
        help="a DAC .pth (e.g. the released weights_16khz.pth) "
        "instead of the random release-format checkpoint",
    )
    demo.add_argument("--overwrite", action="store_true", help="replace a previous demo in --out")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_compile_cache_arguments(demo)
    demo.set_defaults(func=_demo)
    _add_train_parser(sub)
    _add_sample_parser(sub)
    _add_generate_parser(sub)

    convert = sub.add_parser("convert", help="convert a torch checkpoint to a jaxlatent model")
    convert.add_argument("family", choices=["dac"], help="model family")
    convert.add_argument(
        "src",
        help="checkpoint: .pth/.safetensors (release, SpeechBrain or fused weights), or a "
        "Hugging Face transformers DacModel folder or state_dict (format detected)",
    )
    convert.add_argument("out_dir", help="output directory (orbax checkpoint + config.json)")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT_DIR")
    convert.set_defaults(func=_convert)

    model_help = "converted model directory or DAC .pth (converted on the fly and cached)"
    encode = sub.add_parser("encode", help="audio files or folders -> .dac files")
    encode.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="audio files, folders or @LIST files of paths"
    )
    encode.add_argument("--model", required=True, help=model_help)
    encode.add_argument("--output", required=True, help="output folder")
    encode.add_argument("--n-quantizers", type=int, default=None, help="codebooks (default all)")
    encode.add_argument(
        "--win-duration",
        type=float,
        default=5.0,
        help="window in seconds (default 5.0, as the official `dac encode`)",
    )
    encode.add_argument(
        "--exact",
        action="store_true",
        help="exact windows: the codes of the whole signal at once, whatever --win-duration "
        "(an unchunked .dac file the official package decodes in one pass)",
    )
    _add_folder_arguments(encode)
    _add_precision_argument(encode)
    _add_compile_cache_arguments(encode)
    encode.set_defaults(func=_encode)

    decode = sub.add_parser("decode", help=".dac files or folders -> WAV files")
    decode.add_argument(
        "inputs", nargs="+", metavar="INPUT", help=".dac files, folders or @LIST files of paths"
    )
    decode.add_argument("--model", required=True, help=model_help)
    decode.add_argument("--output", required=True, help="output folder")
    _add_folder_arguments(decode)
    _add_precision_argument(decode)
    _add_compile_cache_arguments(decode)
    decode.set_defaults(func=_decode)

    parity = sub.add_parser(
        "parity", help="stage-by-stage comparison with the torch reference (needs torch, dac)"
    )
    parity.add_argument("family", choices=["dac"], help="model family")
    parity.add_argument(
        "--model",
        required=True,
        help="the checkpoint (.pth/.safetensors, or a transformers DacModel folder)",
    )
    parity.add_argument("--audio", default=None, help="audio file (default: bundled speech)")
    parity.add_argument("--seconds", type=float, default=2.0, help="seconds of audio (default 2)")
    parity.add_argument("--n-quantizers", type=int, default=None, help="codebooks (default all)")
    _add_precision_argument(parity)
    _add_compile_cache_arguments(parity)
    parity.set_defaults(func=_parity)
    return parser


def _one_line(e: BaseException) -> str:
    """The error as one line: short messages joined, long ones (key lists) summarised.

    A converter's error that lists keys (``missing``/``unexpected``/``mismatched``, as
    ``converters.errors.ConversionError``) keeps its first line and the first two keys of
    each list, with the count of the others.
    """
    lines = str(e).strip().splitlines() or [type(e).__name__]
    lists = []
    for attr, title in (
        ("missing", "missing"),
        ("unexpected", "unexpected"),
        ("mismatched", "mis-shaped"),
    ):
        items = getattr(e, attr, None)
        if isinstance(items, list) and items:
            more = f" (+{len(items) - 2} more)" if len(items) > 2 else ""
            lists.append(f"{title} {len(items)}: {'; '.join(map(str, items[:2]))}{more}")
    if lists:
        return " ".join(lines[0].split()) + " -- " + "; ".join(lists)
    if len(lines) <= 5:
        return " ".join(" ".join(lines).split())
    return f"{lines[0]} (+{len(lines) - 1} more lines)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threshold = gc.get_threshold()
    gc.set_threshold(max(_GC_YOUNG_THRESHOLD, threshold[0]), *threshold[1:])
    try:
        if hasattr(args, "precision"):  # an unknown name: one line, before anything is done
            from jaxlatent.precision import resolve_precision

            resolve_precision(args.precision)
        if getattr(args, "compile_cache_option", False):
            directory = compile_cache_dir(args.compile_cache, args.no_compile_cache)
            if directory is not None:
                from jaxlatent.compilation import enable_persistent_cache

                enable_persistent_cache(directory)
        return args.func(args)
    except (ValueError, OSError, ImportError) as e:  # OSError covers FileNotFound/FileExists
        print(f"jaxlatent {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    finally:
        gc.set_threshold(*threshold)


if __name__ == "__main__":
    sys.exit(main())
