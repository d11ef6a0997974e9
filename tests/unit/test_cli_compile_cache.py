"""The command line's persistent compilation cache: where it goes, how it is turned off, and
that a second `jaxlatent encode` process loads what the first compiled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxlatent import cli
from tests import reference
from tests.unit.test_cli_dac import model_dir  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("option", "disabled", "environ", "expected"),
    [
        (None, False, {"HOME": "/h"}, "/h/.cache/jaxlatent/xla"),
        (None, False, {"HOME": "/h", "XDG_CACHE_HOME": "/x"}, "/x/jaxlatent/xla"),
        (None, False, {"XDG_CACHE_HOME": "/x", "JAXLATENT_CACHE_DIR": "/j"}, "/j/xla"),
        (None, False, {"JAXLATENT_COMPILE_CACHE": "/c", "XDG_CACHE_HOME": "/x"}, "/c"),
        ("/o", False, {"JAXLATENT_COMPILE_CACHE": "/c"}, "/o"),
        ("/o", False, {"JAXLATENT_COMPILE_CACHE": "off"}, "/o"),  # the option wins
        (None, True, {"JAXLATENT_COMPILE_CACHE": "/c"}, None),
        (None, False, {"JAXLATENT_COMPILE_CACHE": "0"}, None),
        (None, False, {"JAXLATENT_COMPILE_CACHE": "OFF"}, None),
        (None, False, {"JAXLATENT_COMPILE_CACHE": ""}, None),
    ],
)
def test_compile_cache_dir(option, disabled, environ, expected):
    got = cli.compile_cache_dir(option, disabled, environ)
    assert got == (None if expected is None else Path(expected))


def test_compile_cache_options(tmp_path, capsys):
    parser = cli.build_parser()
    for command in (
        ["encode", "a.wav", "--model", "m", "--output", "o"],
        ["decode", "a.dac", "--model", "m", "--output", "o"],
        ["parity", "dac", "--model", "m.pth"],
        ["demo"],
        ["train", "--model", "vqvae", "--steps", "1", "--batch-size", "1", "--out", "o"],
    ):
        args = parser.parse_args([*command, "--compile-cache", str(tmp_path)])
        assert (args.compile_cache, args.no_compile_cache) == (str(tmp_path), False)
        assert parser.parse_args([*command, "--no-compile-cache"]).no_compile_cache
    argv = ["encode", "a.wav", "--model", "m", "--output", "o", "--no-compile-cache"]
    assert cli.main([*argv, "--compile-cache", str(tmp_path)]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _encode(model, wav, out, cache):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    argv = ["encode", str(wav), "--model", model, "--output", str(out), "--quiet"]
    result = subprocess.run(
        [sys.executable, "-m", "jaxlatent", *argv, "--compile-cache", str(cache)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return {p.name for p in cache.iterdir()}


def test_second_encode_process_loads_the_cache(tmp_path, rng, model_dir):  # noqa: F811
    sf = reference.require("soundfile")
    wav = tmp_path / "a.wav"
    sf.write(wav, (rng.standard_normal(4000) * 0.1).astype(np.float32), 8000)
    cache = tmp_path / "xla"
    first = _encode(model_dir, wav, tmp_path / "out1", cache)
    assert first, "the first run wrote no compiled executable"
    second = _encode(model_dir, wav, tmp_path / "out2", cache)
    assert second == first  # everything was found in the cache: nothing compiled anew
    assert (tmp_path / "out1" / "a.dac").read_bytes() == (tmp_path / "out2" / "a.dac").read_bytes()
