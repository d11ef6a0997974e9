"""Smoke test of benchmarks/bench_quantizers.py: two tiny shapes timed by a torch and a jax
worker in two alternating rounds, the memory worker, the report (run as the accelerator
report's bench_quantizers section). No timing is asserted."""

from __future__ import annotations

from tests import reference as ref
from tests.unit.test_bench_train import report_section


def test_smoke_run_times_each_framework_in_its_own_processes(tmp_path, monkeypatch, capsys):
    ref.torch()
    ref.sb_piq()
    ref.dac_quantize()
    text, err = report_section("bench_quantizers", tmp_path, monkeypatch, capsys)
    assert "| 512x256x64 | l2 search vs SpeechBrain PIQ |" in text
    assert "| 256x8x32 | straight-through fwd+bwd" in text
    assert "2 alternating rounds" in text and "Memory case 2048x8x1024" in text
    assert err.count("<!-- quantizers round") == 2
