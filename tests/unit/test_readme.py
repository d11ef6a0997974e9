"""The README states facts the code must keep true."""

from __future__ import annotations

import pathlib
import re

from tests import tolerances

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_parity_table_matches_tolerances():
    readme = (ROOT / "README.md").read_text()
    assert tolerances.readme_with_table(readme) == readme, (
        "README parity table is stale: run `python -m tests.tolerances --update-readme`"
    )


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^bash \.ci/setup && .*$", readme, flags=re.M)
    assert len(commands) == 2, commands
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_every_loss_named_in_the_readme_count_is_exported():
    import types

    import jaxlatent.losses as losses

    public = [
        n
        for n in dir(losses)
        if not n.startswith("_") and not isinstance(getattr(losses, n), types.ModuleType)
    ]
    readme = (ROOT / "README.md").read_text()
    assert f"({len(public)} names)" in readme
