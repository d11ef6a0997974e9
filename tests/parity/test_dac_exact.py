"""`compress_exact` / `decompress_exact` against the official ``dac`` package.

The exact windowed codes must be those of the official ``compress`` run on the whole signal
in one pass (``win_duration=None``: one padded pass, an unchunked file), whatever our window;
the ``.dac`` file we write is read by the official ``DACFile.load`` / ``decompress`` (one
unchunked pass) and decodes there to the audio our windowed ``decompress_exact`` gives. Models,
weights and clips as ``test_dac_compress.py`` (the reference's release format through the
production converter; narrow layers, released strides and codebooks).
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxlatent.codec import DACFile, compress_exact, decompress_exact
from tests import reference
from tests.parity.test_dac_compress import (  # noqa: F401 (tmp_models: fixture)
    _check_same_file,
    _models,
    _official_compress,
    _official_decompress,
    tmp_models,
)
from tests.real_audio import read_clip
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity


@pytest.mark.parametrize(
    ("preset", "clip", "seconds", "wins", "narrow"),
    [
        # 48 kHz stereo into 44.1 kHz: 104 frames in windows of 5
        ("44khz_8kbps", "music_48k_stereo.wav", 1.2, (0.05,), True),
        # odd strides (the decoder's 8 missing samples), 65 frames in windows of 3 and 32
        ("16khz", "speech_16k_spk2_snt1.wav", 1.29, (0.05, 0.64), True),
        # full size (1024-channel latents, 1536-channel decoder)
        pytest.param(
            "16khz", "speech_16k_spk2_snt2.wav", 1.29, (0.25,), False, marks=pytest.mark.slow
        ),
    ],
)
def test_exact_codes_are_the_official_whole_signal_codes(
    tmp_path,
    tmp_models,  # noqa: F811
    preset,
    clip,
    seconds,
    wins,
    narrow,
):
    tmodel, model = _models(preset, narrow, tmp_models)
    x, sr = read_clip(clip, seconds)
    official = _official_compress(tmodel, x, sr, win_duration=None)
    assert official.padding and official.chunk_length == official.codes.shape[-1]
    for win in wins:
        ours = compress_exact(model, x, sr, win_duration=win)
        _check_same_file(ours, official, f"{preset} exact win={win}")

        # Our file through the official loader and one-pass decompress; ours in windows.
        path = ours.save(tmp_path / "exact.dac")
        loaded = reference.dac().model.base.DACFile.load(path)
        assert loaded.padding and loaded.chunk_length == ours.codes.shape[-1]
        np.testing.assert_array_equal(reference.to_numpy(loaded.codes), ours.codes)
        # (a clip the official decompress can return in full: see test_dac_compress.py)
        assert preset != "16khz" or ours.codes.shape[-1] * 320 - 8 >= x.shape[0]
        audio_official = _official_decompress(tmodel, path)
        audio_ours = decompress_exact(model, DACFile.load(path), win_duration=win)
        assert audio_ours.shape == audio_official.shape == (1, x.shape[0], x.shape[1])
        assert_close(audio_ours, audio_official, "dacio_decoded_audio", err_msg=f"win={win}")
