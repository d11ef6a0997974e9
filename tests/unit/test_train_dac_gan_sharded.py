"""`jaxlatent train --model dac` with DAC's adversarial recipe: shard_map on the 8 CPU devices
equals one device (batch 8; both compile their own programs)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxlatent import training
from tests.tolerances import TOLERANCES, assert_close
from tests.unit import dac_gan_runs as runs


@pytest.mark.slow
def test_shard_map_equals_one_device(tmp_path):
    """shard_map (explicit collectives, both losses pmean-ed) on the 8 CPU devices; the tiny
    codec has no quantizer dropout, so the per-device keys draw nothing. Two steps (the
    second from the first's update of both models and their moments): batch 8 costs seconds
    a step on the CPU, and the comparison is about the collectives, not a long run."""
    run = ("--steps", 2, "--checkpoint-every", 2, "--batch-size", 8)
    single_run = runs.run(tmp_path / "single", "--parallel", "single", run=run)
    out = runs.run(tmp_path / "run", "--parallel", "shard_map", run=run)
    for (path, a), (_, b) in zip(
        runs.leaves(runs.state(out, 2)), runs.leaves(runs.state(single_run, 2)), strict=True
    ):
        if np.issubdtype(a.dtype, np.floating):
            moments = "['opt_state']" in path
            tol = TOLERANCES["train_dac_gan_parallel" + ("_moments" if moments else "")]
            scale = float(np.max(np.abs(b))) or 1.0
            np.testing.assert_allclose(a / scale, b / scale, tol.rtol, tol.atol, err_msg=path)
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)
    logged = training.read_jsonl(str(out / "metrics.jsonl"))
    reference = training.read_jsonl(str(single_run / "metrics.jsonl"))
    assert [r["step"] for r in logged] == [1, 2]
    for got, want in zip(logged, reference, strict=True):
        for k in set(want) - {"time", "examples_per_sec"}:
            assert_close(got[k], want[k], "train_dac_gan_parallel_metrics", err_msg=k)
