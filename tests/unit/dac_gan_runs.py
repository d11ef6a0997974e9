"""What the `jaxlatent train --model dac` test files share (tests/unit/test_train_dac_gan*.py):
the CLI arguments of a tiny quiet run and the reading back of its checkpoints."""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from jaxlatent import cli

COMMON = ("--model", "dac", "--quiet")
SMALL = ("--batch-size", 1, "--parallel", "single")  # the programs of the 200-step run
RUN = ("--steps", 4, "--checkpoint-every", 2)


def train(out: pathlib.Path, *args, steps: int) -> int:
    """`jaxlatent train` of the tiny DAC for `steps` into `out`: the exit status."""
    argv = ["train", *map(str, COMMON), "--steps", str(steps), "--out", str(out)]
    return cli.main([*argv, *map(str, args)])


def run(out: pathlib.Path, *args, run=RUN) -> pathlib.Path:
    """A run with the `run` arguments (default: 4 steps, checkpoints at 2 and 4) that must
    succeed: its folder `out`."""
    argv = ["train", *map(str, COMMON), "--out", str(out), *map(str, run), *map(str, args)]
    assert cli.main(argv) == 0
    return out


def state(out: pathlib.Path, step: int) -> dict:
    """The training state a run in `out` checkpointed at `step`, as saved (numpy leaves)."""
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore((out / "checkpoints" / str(step) / "state").resolve())


def leaves(tree) -> list[tuple[str, np.ndarray]]:
    """(key path, array) of every leaf of `tree`, in tree order."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(p), np.asarray(x)) for p, x in flat]
