"""Smoke test of benchmarks/bench_cli.py: the whole harness on a tiny model, one round, so the
benchmark cannot rot; no timing is asserted."""

from __future__ import annotations

from tests import reference as ref


def test_smoke_run(tmp_path, capsys):
    ref.torch()
    ref.dac()  # the reference writes the checkpoint and runs the official path
    from benchmarks import bench_cli

    bench_cli.main(["--smoke", "--workdir", str(tmp_path), "--out", str(tmp_path / "t.md")])
    table = (tmp_path / "t.md").read_text()
    assert table == capsys.readouterr().out
    for row in ("first run (empty compile cache)", "second run (compile cache filled)"):
        assert row in table
    assert "official, second run" in table
    # both tools coded the clip with the same weights: the files agree
    assert "Codes equal in both files: 100.0%" in table
    # the jaxlatent runs filled their compile cache; both wrote their .dac files
    assert any((tmp_path / "xla-0").iterdir())
    assert (tmp_path / "ours-0" / "speech_16k_spk1_snt1.dac").is_file()
    assert (tmp_path / "official-0.dac").is_file()
