"""The `jaxlatent` command line.

Subcommands:
  demo   the main job on embedded defaults (today: train a VAE on the bundled speech).

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxlatent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job on embedded defaults")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--steps", type=int, default=300, help="training steps (default: 300)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"jaxlatent {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
