"""Smoke test of benchmarks/bench_dac_recipe.py: the tiny preset (quantizer dropout 0.5) in one
round of one torch and one jax worker; the step-1 loss check on the official torch step and the
speed-up in the report. No timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests import reference as ref
from tests.tolerances import TOLERANCES
from tests.unit.test_bench_train import smoke_env


@pytest.fixture(scope="module")
def bench():
    ref.torch()
    ref.require("dac.nn.loss")
    ref.require("dac.model.discriminator")
    from benchmarks import bench_dac_recipe

    return bench_dac_recipe


def _results(bench, jax_value: float) -> dict:
    torch_losses = {key: 2.0 for key in bench.TERMS.values()}
    jax_losses = {name: 2.0 for name in bench.TERMS}
    jax_losses["mel_loss"] = jax_value
    return {
        "torch": [{"losses": [torch_losses, torch_losses]}],
        "jax": [{"losses": [jax_losses, jax_losses]}],
    }


def test_check_losses_rejects_a_differing_term(bench):
    assert bench.check_losses("same", _results(bench, 2.0))["step1_rel"] == 0.0
    with pytest.raises(AssertionError, match=r"different step-1 losses.*mel_loss 2\.01"):
        bench.check_losses("different", _results(bench, 2.01))


def test_smoke_run_compares_the_official_step_and_reports_the_speedup(bench, tmp_path):
    out = tmp_path / "bench_dac_recipe.md"
    cmd = [sys.executable, "-m", "benchmarks.bench_dac_recipe", "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, env=smoke_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert proc.stderr.count("<!-- tiny round") == 1
    line = next(x for x in text.splitlines() if x.startswith("| tiny | "))
    cells = dict(zip(bench.HEADER, (c.strip() for c in line.strip("|").split("|")), strict=True))
    assert cells["batch"] == "2 x 2048 (0.128 s at 16 kHz, dropout 0.5)"
    jax_s = float(cells["jaxlatent step s (median, min to max)"].split()[0])
    torch_s = float(cells["torch step s"].split()[0])
    speedup = float(re.fullmatch(r"\*\*([\d.]+)x\*\*", cells["speed-up"]).group(1))
    assert speedup == pytest.approx(torch_s / jax_s, rel=0.01, abs=0.01)
    # every step-1 term of the two frameworks, as the report prints them
    terms = re.search(r"tiny: (.*)\.\n", text).group(1)
    pairs = re.findall(r"(\w+) ([-\d.e+]+) / ([-\d.e+]+)", terms)
    assert {name for name, _, _ in pairs} == set(bench.TERMS)
    tol = TOLERANCES["bench_dac_recipe_step1"]
    for name, jax_value, torch_value in pairs:
        a, b = float(jax_value), float(torch_value)
        assert abs(a - b) <= tol.atol + tol.rtol * abs(b), (name, a, b)
    step1_rel = float(cells["max rel. diff step 1 / step 2"].split(" / ")[0])
    assert step1_rel <= bench.LOSS_RTOL
