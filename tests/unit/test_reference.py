"""`tests.reference.require`: a missing reference fails, and skips only when asked to."""

from __future__ import annotations

import pathlib
import re

import pytest

from tests import reference

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOWHERE = "jaxlatent_no_such_reference_module"


def test_require_returns_the_module():
    import json

    assert reference.require("json") is json


@pytest.mark.parametrize("value", [None, "", "0"])
def test_a_missing_reference_fails_by_default(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(reference.SKIP_ENV, raising=False)
    else:
        monkeypatch.setenv(reference.SKIP_ENV, value)
    with pytest.raises(pytest.fail.Exception) as info:
        reference.require(NOWHERE)
    message = str(info.value)
    assert NOWHERE in message and "ModuleNotFoundError" in message
    assert f"{reference.SKIP_ENV}=1" in message and "bash .ci/setup" in message


@pytest.mark.parametrize("value", ["1", "true"])
def test_a_missing_reference_skips_when_opted_out(monkeypatch, value):
    monkeypatch.setenv(reference.SKIP_ENV, value)
    with pytest.raises(pytest.skip.Exception) as info:
        reference.require(NOWHERE)
    assert NOWHERE in str(info.value) and reference.SKIP_ENV in str(info.value)
    assert info.value.allow_module_level  # `sf = require("soundfile")` at module level works


def test_a_present_reference_is_imported_even_when_opted_out(monkeypatch):
    monkeypatch.setenv(reference.SKIP_ENV, "1")
    assert reference.require("numpy.linalg").__name__ == "numpy.linalg"


def test_no_test_imports_around_require():
    """Every optional import of the tests goes through `require` (or `missing`): no
    `pytest.importorskip` or hand-written skip on an ImportError that would hide a broken
    reference install."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        text = path.read_text()
        for pattern in (r"importorskip\(", r"except (Module)?(NotFound|Import)Error"):
            if path.name != "reference.py" and re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert not offenders, offenders


def test_another_release_of_a_reference_fails(monkeypatch):
    monkeypatch.delenv(reference.SKIP_ENV, raising=False)
    monkeypatch.setattr(reference, "installed_version", lambda distribution: "1.34.1")
    with pytest.raises(pytest.fail.Exception) as info:
        reference.require("vector_quantize_pytorch")
    message = str(info.value)
    assert "vector-quantize-pytorch==1.32.0" in message and "1.34.1 is installed" in message
    assert reference.require("numpy.linalg").__name__ == "numpy.linalg"  # not pinned: no check


@pytest.mark.parametrize("module", sorted(reference.REFERENCE_VERSIONS))
def test_the_pinned_releases_are_installed_and_are_what_setup_installs(module):
    distribution, version = reference.REFERENCE_VERSIONS[module]
    assert reference.installed_version(distribution) == version
    pins = (ROOT / ".ci" / "setup").read_text() + (ROOT / "pyproject.toml").read_text()
    assert f'"{distribution}=={version}"' in pins
