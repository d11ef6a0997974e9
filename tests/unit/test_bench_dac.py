"""Smoke test of benchmarks/bench_dac.py and benchmarks/dac_speed_bound.py: a tiny DAC coded
by a prepare worker and two alternating rounds of a torch and a jax worker each; the codes
check and the report. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests import reference as ref
from tests.unit.test_bench_train import report_section, smoke_env


@pytest.fixture(scope="module")
def bench_dac():
    ref.torch()
    ref.dac_quantize()
    from benchmarks import bench_dac

    return bench_dac


def test_code_agreement_rejects_different_models(bench_dac, tmp_path):
    codes = np.zeros((1, 2, 10), np.int64)
    np.save(tmp_path / "v-jax-codes.npy", codes)
    np.save(tmp_path / "v-torch-codes.npy", codes)
    assert bench_dac.code_agreement(str(tmp_path), "v") == (1.0, 1.0)
    other = codes.copy()
    other[0, 0, :2] = 1  # 80 % of the first codebook's codes agree
    np.save(tmp_path / "v-torch-codes.npy", other)
    with pytest.raises(AssertionError, match="different models"):
        bench_dac.code_agreement(str(tmp_path), "v")


def test_smoke_run_times_each_framework_in_its_own_processes(
    bench_dac, tmp_path, monkeypatch, capsys
):
    """bench_dac --smoke, as the accelerator report's bench_dac section runs it."""
    text, err = report_section("bench_dac", tmp_path, monkeypatch, capsys)
    assert "| dac_16khz | " in text and "2 alternating rounds" in text
    assert err.count("<!-- dac_16khz round") == 2
    assert "100.0% / 100.0% |" in text  # the tiny model's codes agree exactly


def test_speed_bound_smoke_run(bench_dac, tmp_path):
    out = tmp_path / "dac_speed_bound.md"
    cmd = [sys.executable, "-m", "benchmarks.dac_speed_bound", "--smoke", "--out", str(out)]
    proc = subprocess.run(
        cmd, env=smoke_env(tmp_path / "jax_cache"), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "| dac_16khz | " in text and "2 alternating rounds" in text
    assert proc.stderr.count("<!-- dac_16khz round") == 2
