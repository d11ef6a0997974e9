"""Unit tests of jaxlatent.codec's resampler, loudness meter and chunk plan (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxlatent.codec import chunking
from jaxlatent.codec.loudness import StreamingMeter, integrated_loudness, loudness
from jaxlatent.codec.resample import Resampler, resample, resampled_length
from jaxlatent.models.dac import DACConfig


def test_resample_identity_and_shapes(rng):
    x = rng.uniform(-1, 1, (3, 2, 1000)).astype(np.float32)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    y = resample(x, 16000, 44100)
    assert y.shape == (3, 2, resampled_length(1000, 16000, 44100)) == (3, 2, 2756)
    # rows are independent
    np.testing.assert_array_equal(y[1, 0], resample(x[1, 0], 16000, 44100))
    assert resample(np.zeros((2, 0), np.float32), 48000, 44100).shape == (2, 0)


def test_resample_preserves_a_low_tone(rng):
    t = np.arange(48000) / 48000
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = resample(x, 48000, 16000)
    t2 = np.arange(16000) / 16000
    inner = slice(100, -100)  # edges see the replicate padding
    np.testing.assert_allclose(y[inner], np.sin(2 * np.pi * 440 * t2)[inner], atol=2e-3)


def test_resample_blocks_equal_whole(rng, monkeypatch):
    """Block-wise processing (memory) gives exactly the samples of one block (float64
    accumulation: no dependence on the block shape)."""
    from jaxlatent.codec import resample as mod

    x = rng.uniform(-1, 1, 20011).astype(np.float32)
    whole = resample(x, 48000, 44100)
    monkeypatch.setattr(mod, "_BLOCK_FRAMES", 7)
    np.testing.assert_array_equal(resample(x, 48000, 44100), whole)


@pytest.mark.parametrize(("old", "new"), [(48000, 44100), (16000, 44100), (8000, 8000)])
def test_resampler_reads_any_range(rng, old, new):
    x = rng.uniform(-1, 1, (2, 3001)).astype(np.float32)
    whole = resample(x, old, new)
    r = Resampler(x, old, new)
    assert r.length == whole.shape[1]
    for start, stop in [(0, 10), (5, 777), (-50, 20), (r.length - 3, r.length + 40), (-9, -2)]:
        expected = np.zeros((2, stop - start), np.float32)
        lo, hi = max(start, 0), min(stop, r.length)
        if hi > lo:
            expected[:, lo - start : hi - start] = whole[:, lo:hi]
        np.testing.assert_array_equal(r.read(start, stop), expected)


def test_streaming_meter_matches_loudness(rng):
    x = rng.standard_normal((2, 40000, 2)).astype(np.float32) * 0.1
    meter = StreamingMeter(4, 40000, 16000, channels=2)
    rows = x.transpose(0, 2, 1).reshape(4, 40000)
    for s0 in range(0, 40000, 9999):
        meter.feed(rows[:, s0 : s0 + 9999])
    np.testing.assert_array_equal(meter.loudness(), loudness(x, 16000))
    with pytest.raises(ValueError, match="next"):
        meter.feed(rows[:, :10])  # more than announced
    with pytest.raises(ValueError, match="channels"):
        StreamingMeter(3, 100, 16000, channels=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "44100"])
def test_resample_bad_rates(bad):
    with pytest.raises(ValueError, match="sample rate"):
        resample(np.zeros(10, np.float32), bad, 16000)


def test_loudness_block_processing_is_exact(rng, monkeypatch):
    from jaxlatent.codec import loudness as mod

    x = rng.standard_normal((1, 16000 * 3 + 17, 2)).astype(np.float32) * 0.1
    whole = integrated_loudness(x, 16000)
    monkeypatch.setattr(mod, "_BLOCK", 1001)
    np.testing.assert_allclose(integrated_loudness(x, 16000), whole, rtol=0, atol=2e-6)


def test_loudness_gain_and_floor(rng):
    x = rng.standard_normal((1, 32000, 1)).astype(np.float32) * 0.1
    l0 = float(loudness(x, 16000)[0])
    l1 = float(loudness(x * np.float32(2.0), 16000)[0])
    assert abs(l1 - l0 - 20 * np.log10(2.0)) < 1e-3
    assert loudness(np.zeros((2, 8000, 1), np.float32), 16000).tolist() == [-70.0, -70.0]


@pytest.mark.parametrize(
    ("audio", "match"),
    [
        (np.zeros((10, 1), np.float32), r"\[batch, time, channels\]"),
        (np.zeros((1, 10, 1), np.int16), "floating point"),
        (np.zeros((1, 10, 6), np.float32), "at most 5 channels"),
    ],
)
def test_loudness_bad_input(audio, match):
    with pytest.raises(ValueError, match=match):
        loudness(audio, 16000)


def test_chunk_plan_unchunked_and_chunked():
    config = DACConfig.dac_44khz_8kbps()
    plan = chunking.chunk_plan(config, 44100, 1.0)
    assert not plan.chunked and (plan.window, plan.hop, plan.n_chunks, plan.delay) == (
        44100,
        44100,
        1,
        0,
    )
    assert not chunking.chunk_plan(config, 10**6, None).chunked
    plan = chunking.chunk_plan(config, 441000, 1.0)
    assert plan.chunked and plan.delay == 7904 and plan.window % config.hop_length == 0
    # windows cover the padded signal: the last one starts before the end of the audio
    assert (plan.n_chunks - 1) * plan.hop < 441000 <= plan.n_chunks * plan.hop
    assert plan.padded_length == (plan.n_chunks - 1) * plan.hop + plan.window


def test_chunk_plan_bad_windows():
    config = DACConfig.dac_16khz()
    with pytest.raises(ValueError, match=r"too short.*at least 0\.\d+ s"):
        chunking.chunk_plan(config, 160000, 0.3)  # reference issue #49
    for bad in [0, -1.0, float("nan"), float("inf"), "1"]:
        with pytest.raises(ValueError, match="win_duration"):
            chunking.chunk_plan(config, 160000, bad)
    with pytest.raises(ValueError, match="at least one sample"):
        chunking.chunk_plan(config, 0, 1.0)
