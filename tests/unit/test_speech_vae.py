"""The speech VAE app (`jaxlatent.apps.speech_vae`, the main job before the DAC codec) and the
bundled speech it trains on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxlatent.apps import speech_vae
from jaxlatent.datasets import bundled_speech, read_audio


def test_bundled_speech_is_real_16k_mono():
    clips = bundled_speech()
    assert len(clips) == 4
    for c in clips:
        assert c.sample_rate == 16000 and c.audio.shape[1] == 1 and c.audio.shape[0] > 16000
        assert 0.01 < np.abs(c.audio).max() <= 1.0


def test_segments_carry_relative_lengths():
    specs = [np.ones((150, 3), np.float32), np.ones((64, 3), np.float32)]
    x, length = speech_vae.make_segments(specs, 64)
    assert x.shape == (4, 64, 3)
    np.testing.assert_allclose(length, [1.0, 1.0, 22 / 64, 1.0])
    assert x[2, 22:].sum() == 0


def test_speech_vae_trains_and_writes_outputs(tmp_path):
    cfg = speech_vae.SpeechVAEDemoConfig(steps=40)
    metrics = speech_vae.run(str(tmp_path), cfg, progress=False)
    assert metrics == json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["final_loss"] < 0.5 * metrics["first_loss"]
    png = (tmp_path / "reconstruction.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "reconstruction.png"]


def test_read_audio_rejects_non_audio(tmp_path):
    bad = tmp_path / "not_audio.wav"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="not a readable audio file"):
        read_audio(bad)
