"""Smoke test of benchmarks/bench_quantizer_family.py: the prepare worker, one round of a torch
and a jax worker over every quantizer at a tiny shape, the report with the indices of both
frameworks compared. No timing is asserted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import bench_quantizer_family as bench
from tests import reference as ref
from tests.unit.test_bench_train import smoke_env

NAMES = ("FSQ", "ResidualFSQ", "LFQ", "ResidualLFQ", "SimVQ", "ResidualSimVQ", "ResidualVQ")


def test_smoke_run_times_every_quantizer_against_the_reference(tmp_path):
    ref.torch()
    ref.vector_quantize_pytorch()
    out = tmp_path / "bench_quantizer_family.md"
    cmd = [sys.executable, "-m", "benchmarks.bench_quantizer_family", "--smoke", "--out", str(out)]
    proc = subprocess.run(
        cmd, env=smoke_env(tmp_path / "jax_cache"), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "Input 2 x 16 frames x 16 dims" in text and "1 alternating rounds" in text
    for name in NAMES:
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert "| 100.00% |" in row, row  # the same weights give the same codes
    assert proc.stderr.count("<!-- quantizer family round") == 1


def test_cases_are_the_codec_like_configurations():
    full = bench.cases(1024)
    assert tuple(full) == NAMES
    assert full["ResidualVQ"][1] == dict(dim=1024, codebook_size=1024, num_quantizers=8)
    assert full["LFQ"][1]["codebook_size"] == 2**10
    assert bench.SHAPE == (64, 512, 1024)


@pytest.mark.parametrize("bad", [["--shape", "64x512"], ["--only", "FSQ,Nope"], ["--rounds", "0"]])
def test_bad_arguments_exit_2(bad, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(bad)
    assert e.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: argument --" in last, last
