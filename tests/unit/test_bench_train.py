"""Smoke test of benchmarks/bench_train.py: its builders, its loss check and its worker processes.

Tiny models, so the benchmark cannot rot; no timing is asserted.
"""

from __future__ import annotations

import os
import re

import jax
import numpy as np
import pytest

from tests import reference as ref


def smoke_env(cache: os.PathLike | None = None) -> dict:
    """The environment of a user's run: without the 8 virtual devices of tests/conftest.py.

    With `cache` (a folder of one test), its processes share JAX's persistent compilation
    cache there: a smoke run's later rounds load the programs its first round compiled
    instead of compiling them again (each worker still runs them; no timing is asserted).
    The processes of one smoke run run one after the other, so the cache is never written
    and read at once."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\d+", "", flags).strip()
    if cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = os.fspath(cache)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def report_section(name: str, tmp_path, monkeypatch, capsys) -> tuple[str, str]:
    """The accelerator report's bench section `name` at its ``--tiny`` sizes, run as
    benchmarks/accelerator_report.py runs it (the bench script as a subprocess, in the user's
    environment: `smoke_env`, with a compilation cache in `tmp_path`): (the section's
    Markdown, the progress it echoed on stderr).

    This is each bench's one smoke run in the suite: it checks the bench and the report's
    bench plumbing (tests/unit/test_accelerator_report.py runs the other sections)."""
    from benchmarks import accelerator_report as ar

    for key, value in smoke_env(tmp_path / "jax_cache").items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
    args = ar.parser().parse_args(["--tiny", "--sections", name])
    text, _ = ar.SECTION_FNS[name](args, ar.TINY, ar.TIMEOUTS[name][1])
    flags = " ".join(map(str, ar.TINY[name]))
    assert text.startswith(f"`python -m benchmarks.{name} {flags}`: its torch workers run on")
    assert "\n### " in text and "\n## " not in text  # the bench's headings, one level down
    return text, capsys.readouterr().err


@pytest.fixture(scope="module")
def bench():
    ref.torch()
    ref.sb_autoencoders()
    ref.dac_quantize()
    from benchmarks import bench_train, train_pairs
    from benchmarks import train_models as tm

    return bench_train, tm, train_pairs


@pytest.mark.parametrize("name", ["vae", "vqvae", "dac"])
def test_reference_and_conversion_agree_on_tiny_models(bench, name):
    """The torch reference and its conversion train from the same weights: same loss, twice."""
    _, tm, train_pairs = bench
    size = tm.TINY_DAC if name == "dac" else tm.TINY_CONV
    torch_ref = train_pairs.torch_reference(name, size)
    jmodel = train_pairs.convert(torch_ref, size)
    jax_step = tm.jax_trainer_stepper(name, jmodel, size)
    torch_step = train_pairs.torch_stepper(torch_ref)
    for _ in range(2):  # the second step follows one identical Adam update on both sides
        _, metrics = jax.block_until_ready(jax_step())
        np.testing.assert_allclose(float(metrics["loss"]), float(torch_step()), rtol=1e-4)


def test_saved_state_round_trips_into_an_abstract_model(bench, tmp_path):
    """What the jax workers load is what the prepare worker converted."""
    from benchmarks import common

    _, tm, _ = bench
    model = tm.jax_model("vqvae", tm.TINY_CONV, seed=1)
    common.save_state(str(tmp_path / "m.npz"), model)
    loaded = tm.jax_model("vqvae", tm.TINY_CONV, abstract=True)
    common.load_state(str(tmp_path / "m.npz"), loaded)
    x = tm.conv_batch(tm.TINY_CONV)["x"]
    np.testing.assert_array_equal(np.asarray(model(x)[0]), np.asarray(loaded(x)[0]))
    with pytest.raises(ValueError, match="variables differ"):
        common.load_state(str(tmp_path / "m.npz"), tm.jax_model("vae", tm.TINY_CONV))


def test_check_losses_rejects_different_losses(bench):
    bench_train, _, _ = bench
    same = {"torch": [{"losses": [1.0, 0.9]}], "jax": [{"losses": [1.00001, 0.9]}]}
    assert bench_train.check_losses("fake", same)["step2_rel"] == 0.0
    different = {"torch": [{"losses": [1.0, 0.9]}], "jax": [{"losses": [1.001, 0.9]}]}
    with pytest.raises(AssertionError, match="different losses"):
        bench_train.check_losses("fake", different)


def test_child_env_sets_one_device_count(bench):
    bench_train, _, _ = bench
    env = bench_train.child_env(4, virtual=True)
    assert env["XLA_FLAGS"].count("--xla_force_host_platform_device_count=4") == 1
    assert "device_count=8" not in env["XLA_FLAGS"]


def test_smoke_run_times_each_framework_in_its_own_processes(bench, tmp_path, monkeypatch, capsys):
    """The whole script at tiny size, as the accelerator report's bench_train section: prepare,
    2 alternating rounds of a torch and a jax worker, the loss check, one scaling worker on 2
    virtual devices, the report written."""
    text, err = report_section("bench_train", tmp_path, monkeypatch, capsys)
    assert "| vae | " in text and "2 alternating rounds" in text and "Target >= 1.5x" in text
    assert "| vae | 2 | virtual CPU | 4 |" in text
    assert err.count("<!-- vae round") == 2
    (row,) = [line for line in text.splitlines() if line.startswith("| vae | ")][:1]
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    loss_jax, loss_torch = (float(v) for v in cells[10].split(" / ")[:2])
    assert loss_jax == pytest.approx(loss_torch, rel=1e-4)  # the report's loss column
