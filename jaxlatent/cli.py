"""The `jaxlatent` command line.

Subcommands:
  demo   the main job on embedded defaults (today: train a VAE on the bundled speech).
  train  train a registered model (`jaxlatent.apps.registry`) on digits or a folder of images.

Errors in user input exit with status 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import sys


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

    t = sub.add_parser(
        "train",
        help="train a model on digits or a folder of images",
        description="Train a registered model; resumable, with metrics, checkpoints and "
        "pictures. Models: " + ", ".join(sorted(MODELS)) + ".",
    )
    t.add_argument("--model", required=True, help="model name (" + ", ".join(sorted(MODELS)) + ")")
    t.add_argument("--preset", default=None, help="model size preset (default: tiny)")
    t.add_argument(
        "--data", default="digits", help="'digits' (bundled, default) or a folder of images"
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxlatent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job on embedded defaults")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--steps", type=int, default=300, help="training steps (default: 300)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    _add_train_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        message = " ".join(str(e).split())  # one line
        print(f"jaxlatent {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
