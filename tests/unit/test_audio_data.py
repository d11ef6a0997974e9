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


def test_recipe_data_refuses_bad_input_with_one_line(tmp_path):
    """`jaxlatent.apps.dac_data`: six-channel files (BS.1770 weighs at most 5), excerpts too
    short for ShiftPhase's STFT, a batch the processes cannot split, bad transform input."""
    import soundfile as sf

    from jaxlatent.apps import dac_data, dac_transforms

    sf.write(tmp_path / "six.wav", np.zeros((1000, 6), np.float32), 16000)
    with pytest.raises(ValueError, match=r"six.wav: 6 channels; the recipe's loudness takes"):
        dac_data.load_recipe_clips(str(tmp_path))
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="no usable audio files"):
        dac_data.load_recipe_clips(str(tmp_path / "none"))
    clips = [dac_data.RecipeClip(np.zeros((4000, 1), np.float32), 16000)]
    with pytest.raises(ValueError, match="too short for ShiftPhase's STFT at 16000 Hz"):
        dac_data.DACDataIterator(clips, dac_data.DACData(duration=0.01), 16000, 2)
    with pytest.raises(ValueError, match="not divisible by the 2 processes"):
        dac_data.DACDataIterator(
            clips, dac_data.DACData(duration=0.128), 16000, 3, process_index=0, process_count=2
        )
    with pytest.raises(ValueError, match=r"audio must be float \[time, channels\]"):
        dac_transforms.shift_phase(np.zeros(4000, np.float32), 16000, 1.0)
    # a silent file: every try is below the cutoff, the last is kept, VolumeNorm's gain is
    # capped by RescaleAudio (nothing to scale in zeros): the example is silence, finite
    it = dac_data.DACDataIterator(
        clips, dac_data.DACData(duration=0.128), 16000, 2, process_index=0, process_count=1
    )
    x = next(it)["x"]
    assert x.shape == (2, 2048, 1) and np.isfinite(x).all() and not x.any()
