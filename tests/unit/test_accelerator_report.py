"""benchmarks/accelerator_report.py: the tiny run on the CPU (real numbers; the bench sections
run in tests/unit/test_bench_{dac,quantizers,train}.py, where each bench's smoke run checks both
the bench and the report's section), and its failure handling (a failed, timed-out or skipped
section is recorded, the rest go on)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time

import jax
import pytest

from benchmarks import accelerator_report as ar
from tests import reference as ref
from tests.tolerances import TOLERANCES
from tests.unit.test_bench_train import smoke_env


def _rows(text: str, first_cell: str) -> list[list[str]]:
    """The cells of the Markdown table rows of `text` whose first cell is `first_cell`."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith(f"| {first_cell} |")
    ]


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _floats(cell: str) -> list[float]:
    return [float(v) for v in re.findall(r"[-+]?\d+\.?\d*(?:e[-+]?\d+)?", cell)]


#: What the script's own run covers; the bench sections: `report_section` in their tests.
RUN = ("environment", "matmul", "parity")


def test_bench_sections_run_in_the_bench_tests():
    assert set(ar.SECTIONS) - set(RUN) == {"bench_dac", "bench_quantizers", "bench_train"}
    for name in ("bench_dac", "bench_quantizers", "bench_train"):  # report_section's callers
        with open(os.path.join(ar.common.ROOT, "tests", "unit", f"test_{name}.py")) as f:
            assert f'report_section("{name}", ' in f.read()


def test_tiny_run_reports_every_section_with_numbers(tmp_path):
    """The script as a user runs it (a path, not -m), at tiny sizes with one DAC variant."""
    ref.torch()
    ref.dac_quantize()
    out = tmp_path / "cpu-report.md"
    cmd = [sys.executable, os.path.join(ar.common.ROOT, "benchmarks", "accelerator_report.py")]
    cmd += ["--tiny", "--variants", "dac_16khz", "--sections", *RUN[1:], "--out", str(out)]
    proc = subprocess.run(cmd, env=smoke_env(), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# Accelerator report: cpu\n")
    states = ", ".join(f"{s} (ok)" for s in RUN)
    assert f"Sections: {states}." in text, text[:2000]
    assert "FAILED" not in text and "SKIPPED" not in text and "Not run yet" not in text
    for section in RUN:  # progress on stderr
        assert f"== {section}: ok in " in proc.stderr

    env = _section(text, ar.TITLES["environment"])
    assert _rows(env, "JAX backend") == [["JAX backend", "cpu"]]
    assert _rows(env, "jax") == [["jax", jax.__version__]]

    parity = _section(text, ar.TITLES["parity"])
    rows = _rows(parity, "dac_16khz")
    assert [r[1] for r in rows] == list(ar.PRECISIONS)
    assert parity.count("\nquantizer 1 ") == len(ar.PRECISIONS)  # every stage, in <details>
    tol = TOLERANCES["dac_model_small_f32"]  # a small model, float32 on the CPU
    for r in rows:
        assert r[2] == "cpu (float32)"
        assert r[4:7] == ["100.00%", "100.00%", "100.00% (0)"]  # codes are exact
        for cell in r[7:11]:  # encoder, worst quantizer, z, decoder: "abs / rel"
            max_abs, max_rel = _floats(cell)[:2]
            scale = max_abs / max_rel if max_rel > 0 else 0.0  # max |torch|
            assert 0 <= max_abs <= tol.atol + tol.rtol * scale, (r[0], r[1], cell)

    matmul = _section(text, ar.TITLES["matmul"])
    for label in ("float32 highest", "float32 default", "bfloat16 default"):
        (row,) = _rows(matmul, label)
        assert all(v > 0 and math.isfinite(v) for v in map(float, row[1:])), row
    for shape in ar.TINY["search_shapes"]:
        rows = _rows(matmul, "x".join(map(str, shape)))
        assert [r[1] for r in rows] == ["l2 (addmm)", "cosine (dac)"]
        for r in rows:
            assert float(r[3]) > 0 and float(r[5].rstrip("%")) > 0, r


def test_a_failed_precision_is_recorded_beside_the_other():
    stages = [["encoder", 1e-7, 1e-6, None], ["quantizer 0", 2e-7, 1e-7, 1.0]]
    stages += [["quantizer 1", 3e-7, 2e-7, 0.5], ["z", 4e-7, 1e-7, None]]
    stages += [["decoder", 5e-8, 4e-7, None]]
    ok = {"torch_flags": "allow_tf32=False", "seconds": 2.0, "sample_rate": 16000}
    ok |= {"code_agreement": 0.75, "stages": stages, "jax_compile_s": 3.0, "table": "stage ..."}
    result = {"variant": "dac_16khz", "torch_device": "cuda", "precisions": {}}
    result["precisions"] = {"highest": ok, "default": {"error": "RuntimeError: CUDA OOM"}}
    rows, details, failures = ar.parity_rows(result)
    assert rows == [
        [
            "dac_16khz",
            "highest",
            "cuda (allow_tf32=False)",
            "2.00 s",
            "75.00%",
            "100.00%",
            "50.00% (1)",
            "1.00e-07 / 1.00e-06",
            "3.00e-07 / 2.00e-07 (1)",
            "4.00e-07 / 1.00e-07",
            "5.00e-08 / 4.00e-07",
            "3.0",
        ]
    ]
    assert details == ["dac_16khz, highest, 2.00 s at 16000 Hz:\n\n```\nstage ...\n```"]
    assert failures == ["dac_16khz default: **FAILED**: RuntimeError: CUDA OOM"]


def _fake_sections(monkeypatch, **fns):
    def ok(name):
        return lambda args, sizes, timeout: (f"{name} numbers", {})

    table = {s: ok(s) for s in ar.SECTIONS}
    table["environment"] = lambda args, sizes, timeout: ("env table", {"backend": "cpu"})
    table.update(fns)
    monkeypatch.setattr(ar, "SECTION_FNS", table)


def _run(argv) -> str:
    args = ar.parser().parse_args(argv)
    args.sections = ["environment", *args.sections]
    with open(ar.run(args)) as f:
        return f.read()


def test_a_failed_section_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    def fails(args, sizes, timeout):
        raise ar.SectionFailed("exit status 1\nTraceback: the device is gone")

    def report_bug(args, sizes, timeout):
        raise KeyError("stages")

    _fake_sections(monkeypatch, matmul=fails, bench_dac=report_bug)
    text = _run(["--tiny", "--out", str(tmp_path / "r.md")])
    assert "matmul (failed), parity (ok), bench_dac (failed), bench_quantizers (ok)" in text
    assert "the device is gone" in _section(text, ar.TITLES["matmul"])
    assert "`KeyError: 'stages'`" in _section(text, ar.TITLES["bench_dac"])
    assert "bench_train numbers" in _section(text, ar.TITLES["bench_train"])


def test_budget_skips_what_does_not_fit(tmp_path, monkeypatch):
    def slow(args, sizes, timeout):
        time.sleep(0.3)
        return "matmul numbers", {}

    _fake_sections(monkeypatch, matmul=slow)
    text = _run(["--tiny", "--budget", "0.2", "--out", str(tmp_path / "r.md")])
    assert "matmul (ok), parity (skipped)" in text and "bench_train (skipped)" in text
    assert "**SKIPPED**: the --budget of 0.2 s was spent." in text


def test_update_keeps_the_sections_not_run(tmp_path, monkeypatch):
    out = str(tmp_path / "r.md")
    _fake_sections(monkeypatch)
    _run(["--tiny", "--sections", "matmul", "parity", "--out", out])
    _fake_sections(monkeypatch, bench_dac=lambda *a: ("bench_dac new numbers", {}))
    text = _run(["--tiny", "--sections", "bench_dac", "--update", "--out", out])
    assert "Kept from the earlier report (`--update`): matmul, parity." in text
    assert "matmul (ok), parity (ok), bench_dac (ok)" in text
    assert "matmul numbers" in text and "bench_dac new numbers" in text
    assert "bench_quantizers" not in text  # never run


def test_a_timed_out_section_is_killed_with_its_workers():
    """The whole process group goes: a bench's worker subprocesses do not outlive it."""
    child = "import subprocess, sys, time; "
    child += "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    child += "print('worker', p.pid, flush=True); time.sleep(60)"
    with pytest.raises(ar.SectionFailed, match="timed out after 3 s") as info:
        ar.run_process([sys.executable, "-c", child], 3, "test")
    pid = int(re.search(r"worker (\d+)", str(info.value)).group(1))
    time.sleep(0.5)
    try:
        with open(f"/proc/{pid}/status") as f:
            assert "State:\tZ" in f.read()  # killed, not yet reaped by its new parent
    except FileNotFoundError:
        pass  # killed and reaped
