"""Smoke test of benchmarks/bench_streaming.py: the narrow 16 kHz model streamed for 0.2 s at
20 ms pushes, with steps of one frame and coalesced into two; the report's rows. No timing
is asserted."""

from __future__ import annotations

import subprocess
import sys

from tests.unit.test_bench_train import smoke_env


def test_smoke_run_reports_both_step_sizes(tmp_path):
    out = tmp_path / "streaming.md"
    cmd = [sys.executable, "-m", "benchmarks.bench_streaming", "--narrow", "--variants", "16khz"]
    cmd += ["--seconds", "0.2", "--pushes-ms", "20", "--min-step-frames", "1", "2"]
    cmd += ["--max-step-frames", "2", "--out", str(out)]
    proc = subprocess.run(cmd, env=smoke_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 16khz | 20 |")]
    assert [r.split(" | ")[2] for r in rows] == ["1", "2"]
    assert rows[1].split(" | ")[8] == "40.0"  # one 20 ms frame of waiting on each side
