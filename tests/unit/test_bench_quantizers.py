"""Smoke test of benchmarks/bench_quantizers.py: two tiny shapes timed by a torch and a jax
worker in two alternating rounds, the memory worker, the report. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys

from tests import reference as ref
from tests.unit.test_bench_train import smoke_env


def test_smoke_run_times_each_framework_in_its_own_processes(tmp_path):
    ref.torch()
    ref.sb_piq()
    ref.dac_quantize()
    out = tmp_path / "bench_quantizers.md"
    cmd = [sys.executable, "-m", "benchmarks.bench_quantizers", "--smoke", "--out", str(out)]
    proc = subprocess.run(cmd, env=smoke_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "| 512x256x64 | l2 search vs SpeechBrain PIQ |" in text
    assert "| 256x8x32 | straight-through fwd+bwd" in text
    assert "2 alternating rounds" in text and "Memory case 2048x8x1024" in text
    assert proc.stderr.count("<!-- quantizers round") == 2
