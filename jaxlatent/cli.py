"""The `jaxlatent` command line.

Subcommands:
  train    train a registered model (`jaxlatent.apps.registry`) on its bundled data (digits,
           speech) or a folder of images or audio files.
  demo     the main job on embedded defaults (today: train a VAE on the bundled speech).
  convert  convert a checkpoint: ``jaxlatent convert dac SRC.pth OUT_DIR``.
  encode   audio files/folders -> ``.dac`` files (``--model MODEL INPUT... --output DIR``).
  decode   ``.dac`` files/folders -> WAV files (``--model MODEL INPUT... --output DIR``).
  parity   compare jaxlatent with the torch reference: ``jaxlatent parity dac --model SRC.pth``.

MODEL is a converted directory (``jaxlatent convert``) or a DAC ``.pth`` (converted on the fly
and cached, see :func:`converters.dac_store.load_model`).

Errors in user input exit with status 2 and a one-line message, never a traceback, and leave
no partial output file (every output is written to a temporary file and renamed).
"""

from __future__ import annotations

import argparse
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    from jaxlatent.apps import speech_vae

    cfg = speech_vae.SpeechVAEDemoConfig(steps=args.steps)
    metrics = speech_vae.run(args.out, cfg, progress=not args.quiet)
    print(
        f"speech VAE: {metrics['segments']} segments, loss {metrics['first_loss']:.3f} -> "
        f"{metrics['final_loss']:.3f} in {metrics['train_seconds']:.1f} s; "
        f"wrote {args.out}/metrics.json and {args.out}/reconstruction.png"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from jaxlatent.apps import train

    cfg = train.TrainConfig(
        model=args.model,
        preset=args.preset,
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
    )
    summary = train.run(cfg)
    print(train.format_run_summary(summary, args.out))
    return 0


def _add_train_parser(sub) -> None:
    from jaxlatent.apps.registry import MODELS
    from jaxlatent.apps.spec import DATA_KINDS as DATA

    kinds = {kind: [n for n in sorted(MODELS) if MODELS[n].data_kind == kind] for kind in DATA}
    t = sub.add_parser(
        "train",
        help="train a model on bundled digits/speech or a folder of images/audio",
        description="Train a registered model; resumable, with metrics, checkpoints and "
        "pictures. Image models: "
        + ", ".join(kinds["image"])
        + ". Audio models: "
        + ", ".join(kinds["audio"])
        + ".",
    )
    t.add_argument("--model", required=True, help="model name (" + ", ".join(sorted(MODELS)) + ")")
    t.add_argument("--preset", default=None, help="model size preset (default: tiny)")
    t.add_argument(
        "--data",
        default=None,
        help="image models: 'digits' (bundled, default) or a folder of images; audio models: "
        "'speech' (bundled, default) or a folder of wav/flac/... files (any rate, mono mixdown)",
    )
    t.add_argument("--steps", type=int, required=True, help="total training steps")
    t.add_argument("--batch-size", type=int, required=True, help="global batch size")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    t.add_argument("--eval-every", type=int, default=None, help="pictures every K steps")
    t.add_argument("--checkpoint-every", type=int, default=None, help="default: steps/4")
    t.add_argument("--lr", type=float, default=None, help="Adam learning rate (preset's)")
    t.add_argument(
        "--parallel",
        default="auto",
        help="single, sharded (jit over a mesh), pmap, shard_map; auto: sharded on >1 device",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)


def _load_dac(spec: str):
    from converters.dac_store import load_model

    return load_model(spec)


def _bar(items, enabled: bool, desc: str):
    if not enabled or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="file")


def _convert(args: argparse.Namespace) -> int:
    from converters.dac import convert_checkpoint
    from converters.dac_store import save_converted

    config, model = convert_checkpoint(args.src)
    out = save_converted(args.out_dir, config, model, overwrite=args.overwrite, source=args.src)
    print(
        f"converted {args.src} ({config.sample_rate} Hz, {config.n_codebooks} codebooks) to {out}"
    )
    return 0


def _encode(args: argparse.Namespace) -> int:
    from jaxlatent.codec import compress, files
    from jaxlatent.datasets import read_audio

    if args.n_quantizers is not None and args.n_quantizers < 1:
        raise ValueError(f"--n-quantizers must be at least 1, got {args.n_quantizers}")
    if not args.win_duration > 0:
        raise ValueError(f"--win-duration must be positive, got {args.win_duration}")
    inputs = files.find_inputs(args.inputs, files.AUDIO_SUFFIXES)
    model = _load_dac(args.model)
    start, seconds = time.perf_counter(), 0.0
    for path, rel in _bar(inputs, not args.quiet, "encode"):
        clip = read_audio(path)
        dac_file = compress(
            model,
            clip.audio,
            clip.sample_rate,
            win_duration=args.win_duration,
            n_quantizers=args.n_quantizers,
            verbose=not args.quiet and len(inputs) == 1,
        )
        dac_file.save(files.output_path(args.output, rel, ".dac"))
        seconds += clip.audio.shape[0] / clip.sample_rate
    took = time.perf_counter() - start
    print(
        f"encoded {len(inputs)} file(s), {seconds:.1f} s of audio, in {took:.1f} s to {args.output}"
    )
    return 0


def _decode(args: argparse.Namespace) -> int:
    from jaxlatent.codec import DACFile, decompress, files

    inputs = files.find_inputs(args.inputs, (".dac",))
    model = _load_dac(args.model)
    start = time.perf_counter()
    for path, rel in _bar(inputs, not args.quiet, "decode"):
        dac_file = DACFile.load(path)
        audio = decompress(model, dac_file, verbose=not args.quiet and len(inputs) == 1)
        for i, item in enumerate(audio):  # one file per batch item (one for our own files)
            name = rel if audio.shape[0] == 1 else rel.with_name(f"{rel.stem}-{i}")
            files.write_audio(
                files.output_path(args.output, name, ".wav"), item, dac_file.sample_rate
            )
    took = time.perf_counter() - start
    print(f"decoded {len(inputs)} file(s) in {took:.1f} s to {args.output}")
    return 0


def _parity(args: argparse.Namespace) -> int:
    from converters.dac_parity import parity_report

    report = parity_report(
        args.model, audio=args.audio, seconds=args.seconds, n_quantizers=args.n_quantizers
    )
    print(report.format())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxlatent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job on embedded defaults")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--steps", type=int, default=300, help="training steps (default: 300)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    _add_train_parser(sub)

    convert = sub.add_parser("convert", help="convert a torch checkpoint to a jaxlatent model")
    convert.add_argument("family", choices=["dac"], help="model family")
    convert.add_argument("src", help="checkpoint (.pth: release, SpeechBrain or fused weights)")
    convert.add_argument("out_dir", help="output directory (orbax checkpoint + config.json)")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT_DIR")
    convert.set_defaults(func=_convert)

    model_help = "converted model directory or DAC .pth (converted on the fly and cached)"
    encode = sub.add_parser("encode", help="audio files or folders -> .dac files")
    encode.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or folders")
    encode.add_argument("--model", required=True, help=model_help)
    encode.add_argument("--output", required=True, help="output folder")
    encode.add_argument("--n-quantizers", type=int, default=None, help="codebooks (default all)")
    encode.add_argument(
        "--win-duration",
        type=float,
        default=5.0,
        help="window in seconds (default 5.0, as the official `dac encode`)",
    )
    encode.add_argument("--quiet", action="store_true", help="no progress bars")
    encode.set_defaults(func=_encode)

    decode = sub.add_parser("decode", help=".dac files or folders -> WAV files")
    decode.add_argument("inputs", nargs="+", metavar="INPUT", help=".dac files or folders")
    decode.add_argument("--model", required=True, help=model_help)
    decode.add_argument("--output", required=True, help="output folder")
    decode.add_argument("--quiet", action="store_true", help="no progress bars")
    decode.set_defaults(func=_decode)

    parity = sub.add_parser(
        "parity", help="stage-by-stage comparison with the torch reference (needs torch, dac)"
    )
    parity.add_argument("family", choices=["dac"], help="model family")
    parity.add_argument("--model", required=True, help="the torch checkpoint (.pth)")
    parity.add_argument("--audio", default=None, help="audio file (default: bundled speech)")
    parity.add_argument("--seconds", type=float, default=2.0, help="seconds of audio (default 2)")
    parity.add_argument("--n-quantizers", type=int, default=None, help="codebooks (default all)")
    parity.set_defaults(func=_parity)
    return parser


def _one_line(e: BaseException) -> str:
    """The error as one line: short messages joined, long ones (key lists) summarised."""
    lines = str(e).strip().splitlines() or [type(e).__name__]
    if len(lines) <= 5:
        return " ".join(" ".join(lines).split())
    return f"{lines[0]} (+{len(lines) - 1} more lines)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, ImportError) as e:  # OSError covers FileNotFound/FileExists
        print(f"jaxlatent {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
