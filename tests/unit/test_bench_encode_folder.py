"""Smoke test of benchmarks/bench_encode_folder.py: the whole harness on a tiny model and 4
clips, one round, so the benchmark cannot rot; no timing is asserted."""

from __future__ import annotations

import subprocess
import sys

from tests import reference as ref
from tests.unit.test_bench_train import smoke_env


def test_smoke_run(tmp_path):
    ref.torch()
    ref.dac()  # the reference writes the checkpoint and runs the official loop
    out = tmp_path / "t.md"
    cmd = [sys.executable, "-m", "benchmarks.bench_encode_folder", "--smoke", "--out", str(out)]
    cmd += ["--workdir", str(tmp_path / "work"), "--batch-size", "4"]
    proc = subprocess.run(cmd, env=smoke_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert "| coding (model loaded) |" in table and "| whole process |" in table
    assert "4 clips" in table and proc.stderr.count("<!-- encode_folder round") == 1
    # both coded every clip with the same weights: the files agree
    assert "Codes equal in both outputs: 100.00%" in table
    work = tmp_path / "work"
    assert len(list((work / "jax-0").rglob("*.dac"))) == 4
    assert len(list((work / "torch-0").rglob("*.dac"))) == 4
