"""`jaxlatent.codec.compress` / `decompress` on a tiny random DAC (no torch): shapes, lengths,
one compilation for every chunk, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from jaxlatent.codec import DACFile, chunking, compress, compression, decompress
from jaxlatent.models.dac import DAC, DACConfig
from tests.unit.test_dac_model import _Traced, random_model

TINY = DACConfig(
    encoder_dim=2,
    encoder_rates=(2, 5),
    latent_dim=6,
    decoder_dim=8,
    decoder_rates=(5, 2),
    n_codebooks=3,
    codebook_size=16,
    codebook_dim=2,
    sample_rate=8000,
)


def tiny_dac(seed: int = 0) -> DAC:
    """A concrete tiny DAC of this module's config with seeded random parameters."""
    return random_model(TINY, seed)


@pytest.fixture(scope="module")
def model() -> DAC:
    return tiny_dac()


def _audio(rng, shape):
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)


def test_shapes_and_round_trip_lengths(model, rng):
    # [time, channels] stereo at another rate and [batch, time, channels]: two rows each (one
    # compilation); mono [time] at the model's rate.
    for audio, sr in [
        (_audio(rng, (4410, 2)), 11025),
        (_audio(rng, (2, 2001, 1)), 16000),
        (_audio(rng, 3000), 8000),
    ]:
        shape = audio.shape if audio.ndim == 3 else (1, audio.shape[0], audio.size // len(audio))
        batch, time, channels = shape
        f = compress(model, audio, sr, win_duration=0.1)
        assert f.codes.dtype == np.uint16 and f.codes.shape[:2] == (batch * channels, 3)
        assert f.codes.shape[2] % f.chunk_length == 0
        assert (f.channels, f.original_length, f.sample_rate) == (channels, time, sr)
        assert f.input_db.shape == (batch,) and not f.padding
        out = decompress(model, DACFile.from_bytes(f.to_bytes()))
        assert out.shape == (batch, time, channels) and out.dtype == np.float32
        assert np.isfinite(out).all()


def test_unchunked_when_short(model, rng):
    audio = _audio(rng, 795)  # 0.099 s, padded to 800 samples = 80 frames
    f = compress(model, audio, 8000, win_duration=0.1)
    assert f.padding and f.codes.shape == (1, 3, 80) and f.chunk_length == 80
    g = compress(model, audio, 8000, win_duration=None)
    assert g.padding
    np.testing.assert_array_equal(f.codes, g.codes)
    assert decompress(model, f).shape == (1, 795, 1)


def test_one_compilation_serves_every_chunk(model, rng, monkeypatch):
    plan = chunking.chunk_plan(TINY, 8000 * 3, 0.1)
    assert plan.chunked and plan.n_chunks > 10
    encode = _Traced(compression._encode_chunk)
    decode = _Traced(compression._decode_chunk)
    monkeypatch.setattr(compression, "_encode_chunk", encode)
    monkeypatch.setattr(compression, "_decode_chunk", decode)
    compress(model, _audio(rng, 8000), 8000, win_duration=0.1)  # compile this window shape
    assert encode.count == 1
    before = {"encode": encode.count, "decode": decode.count}
    f1 = compress(model, _audio(rng, 8000 * 3), 8000, win_duration=0.1)
    f2 = compress(model, _audio(rng, 8000 * 2 + 123), 8000, win_duration=0.1)
    decompress(model, f1)
    decompress(model, f2)
    # another instance of the same configuration (e.g. the next file's model) too
    compress(tiny_dac(seed=1), _audio(rng, 8000 * 2), 8000, win_duration=0.1)
    assert encode.count == before["encode"]  # every window (the last one padded)
    assert decode.count <= before["decode"] + 1


def test_n_quantizers_and_no_normalization(model, rng):
    audio = _audio(rng, 2000)
    f = compress(model, audio, 8000, n_quantizers=2, win_duration=0.1)
    assert f.codes.shape[1] == 2
    full = compress(model, audio, 8000, win_duration=0.1)
    np.testing.assert_array_equal(f.codes, full.codes[:, :2])  # residual order
    g = compress(model, audio, 8000, normalize_db=None, win_duration=0.1)
    h = compress(model, audio * np.float32(0.5), 8000, normalize_db=None, win_duration=0.1)
    assert g.input_db[0] - h.input_db[0] == pytest.approx(20 * np.log10(2), abs=1e-3)


def test_input_is_not_modified(model, rng):
    audio = _audio(rng, (1500, 1)) * np.float32(30)  # loud: normalised and peak-limited
    copy = audio.copy()
    compress(model, audio, 8000, win_duration=0.1)
    np.testing.assert_array_equal(audio, copy)


def test_unpadded_calls_follow_the_chunk_geometry(model, rng):
    """``padding=False`` runs every convolution without padding (the reference's chunked
    compress): one window comes back as ``plan.hop`` samples; the model is unchanged."""
    plan = chunking.chunk_plan(TINY, 8000 * 3, 0.1)
    x = _audio(rng, (1, plan.window, 1))
    z = model.quantizer(model.encoder(x, padding=False)).z
    assert model.decoder(z, padding=False).shape == (1, plan.hop, 1)
    assert model.encoder(x).shape[1] == plan.window // TINY.hop_length
    assert model.encoder.conv1.padding == (3,)


@pytest.mark.parametrize(
    ("audio", "kwargs", "match"),
    [
        (np.zeros(0, np.float32), {}, "empty"),
        (np.zeros((0, 2), np.float32), {}, "empty"),
        (np.array([0.0, np.nan] * 50, np.float32), {}, "NaN or Inf"),
        (np.array([0.0, np.inf] * 50, np.float32), {}, "NaN or Inf"),
        (np.zeros(100, np.int16), {}, "floating point"),
        (np.zeros((1, 1, 100, 1), np.float32), {}, r"\[time\]"),
        (np.zeros((100, 6), np.float32), {}, "at most 5"),
        (np.zeros(100, np.float32), {"sample_rate": 0}, "sample_rate"),
        (np.zeros(100, np.float32), {"sample_rate": 8000.0}, "sample_rate"),
        (np.zeros(100, np.float32), {"n_quantizers": 0}, "n_quantizers"),
        (np.zeros(100, np.float32), {"n_quantizers": 4}, r"\[1, n_codebooks=3\]"),
        (np.zeros(100, np.float32), {"normalize_db": float("nan")}, "normalize_db"),
        (np.zeros(8000, np.float32), {"win_duration": 0.01}, "too short"),
        (np.zeros(8000, np.float32), {"win_duration": -1.0}, "win_duration"),
        (np.zeros(1, np.float32), {"sample_rate": 48000}, "empty at the model"),
    ],
)
def test_compress_bad_input(model, audio, kwargs, match):
    kwargs = {"sample_rate": 8000, **kwargs}
    sr = kwargs.pop("sample_rate")
    with pytest.raises(ValueError, match=match):
        compress(model, audio, sr, **kwargs)


def test_decompress_bad_files(model, rng):
    f = compress(model, _audio(rng, 1000), 8000, win_duration=0.1)
    too_many = DACFile(
        np.zeros((1, 4, 2), np.uint16), 2, 100, np.array([-20.0], np.float32), 1, 8000, True
    )
    with pytest.raises(ValueError, match="4 codebooks"):
        decompress(model, too_many)
    big = DACFile(f.codes + 16, f.chunk_length, 1000, f.input_db, 1, 8000, f.padding)
    with pytest.raises(ValueError, match=r"has code 2[0-9]"):
        decompress(model, big)
    with pytest.raises(ValueError, match="DACFile"):
        decompress(model, "x.dac")
    with pytest.raises(ValueError, match="DAC model"):
        compress(object(), np.zeros(10, np.float32), 8000)


def test_compress_memory_is_flat(model, rng, monkeypatch):
    """Host (numpy) memory of compress does not grow with the audio: no resampled, normalised
    or transposed copy of the input (device activations are one window by construction)."""
    import tracemalloc

    from jaxlatent.codec import compression, loudness, resample

    # small blocks, so that both lengths use full-size blocks
    monkeypatch.setattr(compression, "_READ_BLOCK", 4096)
    monkeypatch.setattr(loudness, "_BLOCK", 4096)
    monkeypatch.setattr(resample, "_BLOCK_FRAMES", 64)
    compress(model, _audio(rng, 11025 * 2), 11025, win_duration=1.0)  # compile first
    peaks = []
    for seconds in (10, 40):
        audio = rng.standard_normal(11025 * seconds, dtype=np.float32) * np.float32(0.1)
        tracemalloc.start()
        compress(model, audio, 11025, win_duration=1.0)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # 40 s of input is 1.8 MB: a copy of it shows (checked), block-sized temporaries do not.
    # What grows is the uint16 codes (51 kB at 10 s, 204 kB at 40 s); measured growth
    # 150-195 kB (it was 420-500 kB while the windows' int32 codes were concatenated).
    assert peaks[1] < peaks[0] + 500_000, peaks


def test_dac_file_takes_every_window_of_one_shape(model, rng):
    from jaxlatent.codec.compression import prepare

    prepared = prepare(model, _audio(rng, 11025 * 3), 11025, win_duration=1.0)
    n, n_q = prepared.plan.n_chunks, prepared.n_q
    windows = [np.full((1, n_q, 5), k, np.int32) for k in range(n)]
    f = prepared.dac_file(iter(windows))
    np.testing.assert_array_equal(f.codes, np.concatenate(windows, axis=-1))
    assert f.codes.dtype == np.uint16 and f.chunk_length == 5
    with pytest.raises(ValueError, match=f"codes of {n - 1} windows; expected {n}"):
        prepared.dac_file(windows[:-1])
    with pytest.raises(ValueError, match=f"window {n} has codes"):
        prepared.dac_file([*windows, windows[0]])
    with pytest.raises(ValueError, match="window 1 has codes of shape"):
        prepared.dac_file([windows[0], windows[1][..., :4], *windows[2:]])
