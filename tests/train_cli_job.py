"""``python -m tests.train_cli_job --hang-at S -- <jaxlatent train arguments>``: run
`jaxlatent train` (`jaxlatent.cli.main`) in this process and, after step S, write
``<--out>/hang.marker`` and sleep until killed (the SIGKILL tests of `jaxlatent train`).

The hook wraps `jaxlatent.training.fit`'s ``on_step`` (the app's evaluator), so everything up
to and including step S — its checkpoint included — runs as in a plain ``jaxlatent train``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from converters.torchaudio_stub import install_torchaudio_stub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hang-at", type=int, required=True)
    parser.add_argument("train_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    out = train_args[train_args.index("--out") + 1]

    install_torchaudio_stub()
    from jaxlatent import cli, training

    fit = training.fit

    def hanging_fit(*a, on_step=None, **kw):
        def hook(step, state, metrics):
            if on_step is not None:
                on_step(step, state, metrics)
            if step == args.hang_at:
                open(os.path.join(out, "hang.marker"), "w").close()
                while True:
                    time.sleep(1)

        return fit(*a, on_step=hook, **kw)

    training.fit = hanging_fit
    return cli.main(["train", *train_args])


if __name__ == "__main__":
    sys.exit(main())
