"""`jaxlatent convert/encode/decode` (DAC) through `jaxlatent.cli.main`, with a tiny model."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from jaxlatent import cli
from jaxlatent.codec import DACFile
from tests import reference
from tests.unit.test_dac_compress import TINY, tiny_dac

sf = reference.require("soundfile")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from jaxlatent.models.dac import save_converted

    path = tmp_path_factory.mktemp("model") / "tiny"
    save_converted(path, TINY, tiny_dac())
    return str(path)


def _wav(path, rng, frames, rate, channels=1, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = (rng.standard_normal((frames, channels)) * 0.1).astype(np.float32)
    sf.write(path, audio, rate, subtype=subtype)
    return path


def _run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _files(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def test_encode_decode_files_and_folders(tmp_path, rng, model_dir, capsys):
    inputs = tmp_path / "in"
    _wav(inputs / "a.wav", rng, 4000, 8000)  # 0.5 s mono at the model rate
    _wav(inputs / "sub" / "b.flac", rng, 6000, 11025, channels=2)  # stereo, resampled
    single = _wav(tmp_path / "c.wav", rng, 3200, 16000)
    (inputs / "notes.txt").write_text("not audio")  # skipped in folders
    out = tmp_path / "codes"
    code, stdout, _ = _run(
        [
            "encode",
            str(inputs),
            str(single),
            "--model",
            model_dir,
            "--output",
            str(out),
            "--win-duration",
            "0.1",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0 and "encoded 3 file(s)" in stdout
    assert _files(out) == ["a.dac", "c.dac", os.path.join("sub", "b.dac"), "summary.json"]
    b = DACFile.load(out / "sub" / "b.dac")
    assert (b.channels, b.sample_rate, b.original_length, b.padding) == (2, 11025, 6000, False)

    code, stdout, _ = _run(
        ["decode", str(out), "--model", model_dir, "--output", str(tmp_path / "wav"), "--quiet"],
        capsys,
    )
    assert code == 0 and "decoded 3 file(s)" in stdout
    wav = tmp_path / "wav"
    assert _files(wav) == ["a.wav", "c.wav", os.path.join("sub", "b.wav"), "summary.json"]
    info = sf.info(wav / "sub" / "b.wav")
    assert (info.samplerate, info.channels, info.frames) == (11025, 2, 6000)
    assert sf.info(wav / "c.wav").frames == 3200

    # n_quantizers (0.5 s: the window shape compiled by test_dac_compress)
    code, _, _ = _run(
        [
            "encode",
            str(inputs / "a.wav"),
            "--model",
            model_dir,
            "--output",
            str(tmp_path / "nq"),
            "--n-quantizers",
            "2",
            "--win-duration",
            "0.1",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0 and DACFile.load(tmp_path / "nq" / "a.dac").codes.shape[1] == 2


def _bad_wavs(tmp_path, rng):
    bad = {}
    bad["text"] = tmp_path / "text.wav"
    bad["text"].write_text("RIFF? no")
    bad["empty"] = _wav(tmp_path / "empty.wav", rng, 0, 8000)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([[0.1], [np.nan], [0.2]] * 100, np.float32), 8000, subtype="FLOAT")
    bad["nan"] = nan
    return bad


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("missing", [], "input not found"),
        ("text", ["--fail-fast"], "not a readable audio file"),
        ("empty", ["--fail-fast"], "empty"),
        ("nan", ["--fail-fast"], "NaN or Inf"),
        ("good", ["--batch-size", "0"], "--batch-size must be at least 1"),
        ("good", ["--batch-size", "12"], "cannot be split over 8 devices"),
        ("list", [], "names 1 missing file(s)"),
        ("odd_rate", [], "cannot resample 44101 Hz to 8000 Hz"),
        ("good", ["--n-quantizers", "9"], "n_quantizers=9"),
        ("good", ["--n-quantizers", "0"], "--n-quantizers"),
        ("good", ["--win-duration", "0.001"], "too short"),
        ("model", [], "model not found"),
    ],
)
def test_encode_bad_input_exits_2_without_output(
    tmp_path, rng, model_dir, capsys, case, extra, message
):
    files = _bad_wavs(tmp_path, rng)
    files["good"] = _wav(tmp_path / "good.wav", rng, 8000, 8000)
    files["missing"] = tmp_path / "missing.wav"
    files["odd_rate"] = _wav(tmp_path / "odd.wav", rng, 100, 44101)
    listing = tmp_path / "list.txt"
    listing.write_text(f"good.wav\n# a comment\n\n{files['missing']}\n")
    files["list"] = f"@{listing}"
    source = files["good" if case == "model" else case]
    model = str(tmp_path / "nope") if case == "model" else model_dir
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        ["encode", str(source), "--model", model, "--output", str(out), "--quiet", *extra],
        capsys,
    )
    assert code == 2, stdout + stderr
    assert stderr.startswith("jaxlatent encode: error:") and message in stderr
    assert stderr.count("\n") == 1  # one line
    assert not out.exists() or _files(out) == []


def test_decode_bad_files_exit_2_without_output(tmp_path, rng, model_dir, capsys):
    corrupt = tmp_path / "corrupt.dac"
    corrupt.write_bytes(b"\x93NUMPY garbage")
    foreign = tmp_path / "foreign.dac"  # codes from a bigger model
    DACFile(
        np.full((1, 5, 4), 1000, np.uint16), 4, 100, np.array([-20.0], np.float32), 1, 8000, True
    ).save(foreign)
    for path, message in [(corrupt, "corrupt"), (foreign, "5 codebooks")]:
        out = tmp_path / f"out-{path.stem}"
        argv = ["decode", str(path), "--model", model_dir, "--output", str(out), "--quiet"]
        code, _, stderr = _run([*argv, "--fail-fast"], capsys)
        assert code == 2 and message in stderr and stderr.count("\n") == 1
        assert not out.exists() or _files(out) == []
    code, _, stderr = _run(
        ["decode", str(tmp_path / "in"), "--model", model_dir, "--output", str(tmp_path / "o")],
        capsys,
    )
    assert code == 2 and "input not found" in stderr


def test_convert_dac(tmp_path, capsys):
    reference.torch()
    from converters.dac import export_release_checkpoint
    from jaxlatent.models.dac import load_converted

    model = tiny_dac(seed=3)
    pth = tmp_path / "tiny.pth"
    export_release_checkpoint(model, None, pth)
    out = tmp_path / "converted"
    code, stdout, _ = _run(["convert", "dac", str(pth), str(out)], capsys)
    assert code == 0 and "converted" in stdout
    loaded = load_converted(out)
    np.testing.assert_array_equal(
        np.asarray(loaded.quantizer.quantizers[0].codebook[...]),
        np.asarray(model.quantizer.quantizers[0].codebook[...]),
    )
    code, _, stderr = _run(["convert", "dac", str(pth), str(out)], capsys)  # exists
    assert code == 2 and "exists" in stderr

    truncated = tmp_path / "trunc.pth"
    truncated.write_bytes(pth.read_bytes()[:100])
    code, _, stderr = _run(["convert", "dac", str(truncated), str(tmp_path / "t")], capsys)
    assert code == 2 and stderr.count("\n") == 1 and not (tmp_path / "t").exists()


def test_converted_directory_needs_no_converters_nor_torch(tmp_path, rng, model_dir):
    """Restoring a converted directory and `jaxlatent encode/decode --model DIR` import
    neither `converters` nor torch (only a ``.pth`` needs them)."""
    wav = _wav(tmp_path / "a.wav", rng, 4000, 8000)
    out = tmp_path / "codes"
    code = f"""
import json, sys
from jaxlatent.models.dac import load_converted
model = load_converted({model_dir!r})
argv = ["--model", {model_dir!r}, "--quiet", "--output"]
from jaxlatent import cli
assert cli.main(["encode", {str(wav)!r}, *argv, {str(out)!r}]) == 0
assert cli.main(["decode", {str(out / "a.dac")!r}, *argv, {str(tmp_path / "wav")!r}]) == 0
leaked = sorted(m for m in ("converters", "torch") if m in sys.modules)
print(json.dumps({{"sample_rate": model.config.sample_rate, "leaked": leaked}}))
"""
    root = pathlib.Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"sample_rate": TINY.sample_rate, "leaked": []}
    assert (out / "a.dac").is_file() and (tmp_path / "wav" / "a.wav").is_file()
