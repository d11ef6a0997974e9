"""`jaxlatent.cli.main` runs a command with a larger young-generation GC threshold (fewer
collections during start-up) and restores the caller's thresholds afterwards."""

from __future__ import annotations

import gc

import pytest

from jaxlatent import cli


@pytest.mark.parametrize("result", [0, ValueError("bad input")])
def test_main_raises_gc_threshold_while_the_command_runs(monkeypatch, result):
    seen = []

    def fake_decode(args):
        seen.append(gc.get_threshold())
        if isinstance(result, Exception):
            raise result
        return result

    monkeypatch.setattr(cli, "_decode", fake_decode)
    before = gc.get_threshold()
    argv = ["decode", "x.dac", "--model", "m", "--output", "o", "--no-compile-cache"]
    assert cli.main(argv) == (0 if result == 0 else 2)
    assert seen == [(max(cli._GC_YOUNG_THRESHOLD, before[0]), *before[1:])]
    assert gc.get_threshold() == before
