"""The bundled speech (`jaxlatent.datasets`) and how `jaxlatent train` cuts audio into
segments (`jaxlatent.apps.audio_data`)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxlatent.apps import audio_data
from jaxlatent.datasets import bundled_speech, read_audio


def test_bundled_speech_is_real_16k_mono():
    clips = bundled_speech()
    assert len(clips) == 4
    for c in clips:
        assert c.sample_rate == 16000 and c.audio.shape[1] == 1 and c.audio.shape[0] > 16000
        assert 0.01 < np.abs(c.audio).max() <= 1.0


def test_segments_carry_relative_lengths():
    specs = [np.ones((150, 3), np.float32), np.ones((64, 3), np.float32)]
    x, length = audio_data.make_segments(specs, 64)
    assert x.shape == (4, 64, 3)
    np.testing.assert_allclose(length, [1.0, 1.0, 22 / 64, 1.0])
    assert x[2, 22:].sum() == 0


def test_read_audio_rejects_non_audio(tmp_path):
    bad = tmp_path / "not_audio.wav"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="not a readable audio file"):
        read_audio(bad)
