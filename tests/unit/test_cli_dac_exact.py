"""`jaxlatent encode --exact` and `jaxlatent decode` of its (long, unchunked) files, with a
tiny model: the whole-signal codes, windowed decoding equal to the one-pass decoding, bad
windows exit 2 without output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxlatent.apps.batch_coding import decode_folder
from jaxlatent.codec import DACFile, compress, decompress
from jaxlatent.datasets import read_audio
from tests.unit.test_cli_dac import _files, _run, _wav, model_dir  # noqa: F401 (fixture)
from tests.unit.test_dac_compress import tiny_dac


def _encode_exact(source, model, out, win: str, capsys):
    args = ["encode", str(source), "--model", model, "--output", str(out), "--quiet"]
    return _run([*args, "--exact", "--win-duration", win], capsys)


def test_encode_exact_then_decode(tmp_path, rng, model_dir, capsys):  # noqa: F811
    source = _wav(tmp_path / "in" / "long.wav", rng, 6 * 8000 + 7, 8000)  # > one 5 s window
    out = tmp_path / "codes"
    code, stdout, stderr = _encode_exact(source, model_dir, out, "0.032", capsys)
    assert code == 0, stdout + stderr
    f = DACFile.load(out / "long.dac")
    clip = read_audio(source)
    model = tiny_dac()
    whole = compress(model, clip.audio, clip.sample_rate, win_duration=None)
    assert f.padding and f.chunk_length == f.codes.shape[-1] == 4801
    np.testing.assert_array_equal(f.codes, whole.codes)

    wavs = tmp_path / "wavs"
    code, stdout, stderr = _run(
        ["decode", str(out / "long.dac"), "--model", model_dir, "--output", str(wavs), "--quiet"],
        capsys,
    )
    assert code == 0, stdout + stderr
    decoded = read_audio(wavs / "long.wav")
    want = decompress(model, f)[0]  # the one-pass decoding of the official algorithm
    assert decoded.audio.shape == want.shape == (6 * 8000 + 7, 1)
    np.testing.assert_allclose(decoded.audio, want, atol=1.0 / 32768 + 1e-6)  # 16-bit WAV

    # decode_folder's window (the demo's 1 s; here 0.032 s): the same audio
    other = tmp_path / "wavs_short_windows"
    decode_folder(model_dir, [out], other, win_duration=0.032, progress=False)
    audio = read_audio(other / "long.wav").audio
    np.testing.assert_allclose(audio, want, atol=1.0 / 32768 + 1e-6)
    assert json.loads((other / "summary.json").read_text())["win_duration"] == 0.032
    with pytest.raises(ValueError, match="win_duration must be a positive"):
        decode_folder(model_dir, [out], tmp_path / "none", win_duration=0.0)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("value", "message"), [("0", "--win-duration"), ("inf", "win_duration"), ("nan", "--win")]
)
def test_encode_exact_bad_window_exits_2(tmp_path, rng, model_dir, capsys, value, message):  # noqa: F811
    source = _wav(tmp_path / "a.wav", rng, 800, 8000)
    out = tmp_path / "out"
    code, stdout, stderr = _encode_exact(source, model_dir, out, value, capsys)
    assert code == 2, stdout + stderr
    assert stderr.startswith("jaxlatent encode: error:") and message in stderr
    assert stderr.count("\n") == 1
    assert not out.exists() or _files(out) == []
