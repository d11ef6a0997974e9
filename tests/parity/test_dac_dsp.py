"""Resampling, loudness and chunk geometry of `jaxlatent.codec` vs the official DAC stack.

The official ``compress`` resamples with ``julius.resample_frac`` (through audiotools), measures
loudness with audiotools' ``Meter`` (CPU IIR path, lfilter from the stub torchaudio of
conftest.py) and cuts windows with ``CodecMixin.get_delay`` / ``get_output_length``.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxlatent.codec import chunking
from jaxlatent.codec.loudness import loudness, normalize_gain
from jaxlatent.codec.resample import resample
from jaxlatent.models.dac import DACConfig
from tests import reference
from tests.real_audio import read_clip
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity


def _signal(x_bct, sr):
    reference.dac()
    from audiotools import AudioSignal

    return AudioSignal(reference.to_torch(np.ascontiguousarray(x_bct)), sr)


@pytest.mark.parametrize(
    ("name", "new_sr"),
    [
        ("music_48k_stereo.wav", 44100),
        ("music_24k.wav", 16000),
        ("speech_16k_spk1_snt1.wav", 44100),
        ("speech_16k_spk2_snt2.wav", 24000),
    ],
)
def test_resample_matches_julius(name, new_sr):
    x, sr = read_clip(name)
    x_ct = np.ascontiguousarray(x[: 4 * sr].T)  # 4 s keep the torch side quick
    ours = resample(x_ct, sr, new_sr)
    ref = _signal(x_ct[None], sr).resample(new_sr).audio_data[0]
    ref = reference.to_numpy(ref)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert_close(ours, ref, "dacio_resample")
    # and back (decompress resamples from the model rate to the file's rate)
    back = reference.to_numpy(_signal(ref[None], new_sr).resample(sr).audio_data[0])
    assert_close(resample(ours, new_sr, sr), back, "dacio_resample")


@pytest.mark.parametrize("length", [1, 7, 159, 160, 161, 4801])
def test_resample_short_and_odd_lengths(rng, length):
    x = rng.uniform(-1, 1, (2, length)).astype(np.float32)
    ref = reference.to_numpy(_signal(x[None], 48000).resample(44100).audio_data[0])
    assert_close(resample(x, 48000, 44100), ref, "dacio_resample")


@pytest.mark.parametrize(
    "name",
    [
        "music_48k_stereo.wav",
        "music_24k.wav",
        "speech_16k_spk1_snt2.wav",
        "speech_16k_spk2_snt1.wav",
    ],
)
def test_loudness_matches_audiotools(name):
    x, sr = read_clip(name)
    x_ct = np.ascontiguousarray(x.T)
    ref = reference.to_numpy(_signal(x_ct[None], sr).loudness())
    ours = loudness(x[None], sr)
    assert ours.shape == (1,) and ours.dtype == np.float32
    assert_close(ours, ref, "dacio_loudness_db")
    # one row per channel, as decompress measures the decoded channels
    rows = reference.to_numpy(_signal(x_ct[:, None], sr).loudness())
    assert_close(loudness(x_ct[:, :, None], sr), rows, "dacio_loudness_db")


def test_loudness_short_quiet_silent(rng):
    cases = [
        rng.standard_normal((2, 3000, 1)).astype(np.float32) * 0.1,  # < 0.5 s: zero-padded
        np.zeros((1, 20000, 2), np.float32),  # silence: floored at -70
        rng.standard_normal((1, 30000, 2)).astype(np.float32) * 1e-4,  # under the gate
        rng.standard_normal((1, 16000 * 3, 5)).astype(np.float32) * 0.3,  # 5 channels (1.41)
    ]
    for x in cases:
        ref = reference.to_numpy(_signal(x.transpose(0, 2, 1), 16000).loudness())
        assert_close(loudness(x, 16000), ref, "dacio_loudness_db")


def test_normalize_gain_matches_audiotools(rng):
    x = rng.standard_normal((1, 2, 24000)).astype(np.float32) * 0.05
    sig = _signal(x, 24000)
    db = reference.to_numpy(sig.loudness())
    ref = reference.to_numpy(sig.normalize(-16).audio_data)
    assert_close(x * normalize_gain(-16, db)[:, None, None], ref, "dacio_resample")


@pytest.mark.parametrize("preset", ["44khz_8kbps", "44khz_16kbps", "24khz", "16khz"])
def test_chunk_geometry_matches_codec_mixin(preset):
    dac = reference.dac()
    # Lengths depend on strides, kernels and dilations only: small widths build fast.
    kwargs = DACConfig.preset(preset).to_kwargs()
    kwargs.update(encoder_dim=2, decoder_dim=32, latent_dim=4)
    model = dac.DAC(**kwargs)
    config = DACConfig.from_kwargs(kwargs)
    assert chunking.delay(config) == model.get_delay() == model.delay
    for n in [0, 1, 999, 16000, 24000, 44544, 120000, 220672]:
        assert chunking.output_length(config, n) == model.get_output_length(n), n
