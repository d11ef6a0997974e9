"""Exact windowed coding (`compress_exact` / `decompress_exact`) and the receptive field on a
tiny random DAC (no torch): the codes of the whole signal whatever the window, the audio of
the whole-signal decoder, one compilation per window size, flat memory, bad input.

Window sizes are shared between the tests (1, 4 and 32 code frames of 10 samples at 8 kHz;
the tiny model's receptive field is 14 frames each side) so that each compiles once."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent.codec import (
    DACFile,
    compress,
    compress_exact,
    compression,
    decompress,
    decompress_exact,
    exact,
)
from jaxlatent.compilation import compiled
from jaxlatent.models.dac import receptive_field, windowed
from tests.tolerances import assert_close
from tests.unit.test_dac_compress import TINY, tiny_dac
from tests.unit.test_dac_model import _Traced

#: win_duration of windows of 1, 4 and 32 frames of the tiny model.
W1, W4, W32 = 0.001, 0.004, 0.032


@pytest.fixture(scope="module")
def model():
    return tiny_dac()


def _audio(rng, shape):
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)


def _unit_norm(x):
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _similarities(model, audio):
    residual = model.encoder(audio)
    sims = []
    for q in model.quantizer.quantizers:
        out = q(residual)
        sims.append(_unit_norm(out.z_e) @ _unit_norm(q.codebook[...]).T)
        residual = residual - out.z_q
    return jnp.stack(sims, axis=1)


def similarities(model, audio) -> np.ndarray:
    """float32 ``[rows, n_codebooks, frames, codebook_size]``: cosine similarity of every
    code to each quantizer's projected residual, in the whole-signal ``DAC.encode`` of
    `audio` ``[rows, samples, 1]`` (its codes are the argmax)."""
    graphdef, state = nnx.split(model)
    return np.asarray(compiled(_similarities, graphdef)(state, jnp.asarray(audio)))


def code_margins(model, audio, got, want) -> list[float]:
    """Similarity margins of the codes where `got` differs from `want`.

    `want` are the whole-signal codes of `audio` ``[rows, samples, 1]`` (hop-padded); at the
    first differing codebook of every differing frame, the margin is the whole signal's
    similarity of the wanted code minus that of the got one (later codebooks of that frame
    follow another residual and are not compared). A float32 near-tie has a margin of a few
    ulps."""
    differ = got != want
    first = np.where(differ.any(axis=1), differ.argmax(axis=1), -1)  # [rows, frames]
    sims = similarities(model, audio)
    return [
        float(
            sims[r, first[r, f], f, want[r, first[r, f], f]]
            - sims[r, first[r, f], f, got[r, first[r, f], f]]
        )
        for r, f in zip(*np.nonzero(first >= 0), strict=True)
    ]


def assert_codes_exact(model, audio, got, want, max_margin: float = 1e-5) -> None:
    """``got == want``, or every disagreement is a float32 near-tie (reported)."""
    if np.array_equal(got, want):
        return
    margins = code_margins(model, audio, got, want)
    print(f"{int((got != want).sum())} codes differ; near-tie margins {margins}")
    assert max(margins) < max_margin, f"codes differ beyond a near-tie: margins {margins}"


def _normalised(model, audio, sr):
    """The hop-padded normalised rows ``[rows, samples, 1]`` that ``compress`` codes."""
    prep = compression.prepare(model, audio, sr, win_duration=None)
    return prep.read(0, prep.window_samples)  # preprocess: zero-padded to whole hops


# ---------------------------------------------------------------------------------------------
def _support(fn, x, rows: slice, rng) -> np.ndarray:
    """Positions of `x` ``[1, time, channels]`` that ``fn(x)[:, rows]`` depends on: the
    non-zero entries of a vector-Jacobian product with a random cotangent (a derivative is a
    product of weights along the paths, so the farthest taps show, where a finite
    perturbation of them would be lost to rounding)."""
    y, vjp = jax.vjp(fn, jnp.asarray(x))
    cot = np.zeros(y.shape, np.float32)
    cot[:, rows] = rng.standard_normal(cot[:, rows].shape)
    (grad,) = jax.jit(vjp)(jnp.asarray(cot))
    return np.nonzero(np.abs(np.asarray(grad)).sum(axis=(0, 2)))[0]


def _encoder(model, x):
    return model.encoder(x)


def _decoder(model, z):
    return model.decoder(z)


def test_receptive_field_is_exact(model, rng):
    """Code frame f depends on exactly the samples the receptive field gives, and the decoded
    samples of frame f on exactly the code frames (latents) it gives."""
    rf = receptive_field(TINY)
    hop = TINY.hop_length
    frames = 2 * max(*rf.encoder_frames, *rf.decoder_frames) + 8
    f = frames // 2
    x = _audio(rng, (1, frames * hop, 1))
    left, right = rf.encoder_samples
    graphdef, state = nnx.split(model)
    encoder = compiled(_encoder, graphdef)
    support = _support(lambda x: encoder(state, x), x, slice(f, f + 1), rng)
    np.testing.assert_array_equal(support, np.arange(f * hop - left, (f + 1) * hop + right))

    z = encoder(state, x)
    decoder = compiled(_decoder, graphdef)
    support = _support(lambda z: decoder(state, z), z, slice(f * hop, (f + 1) * hop), rng)
    left, right = rf.decoder_frames
    np.testing.assert_array_equal(support, np.arange(f - left, f + right + 1))
    assert rf.decoder_samples == (left * hop, right * hop)
    assert rf.encoder_frames == tuple(-(-s // hop) for s in rf.encoder_samples)


def test_receptive_field_of_released_variants():
    from jaxlatent.models.dac import DACConfig

    for name in ("44khz_8kbps", "44khz_16kbps", "24khz", "16khz"):
        rf = receptive_field(DACConfig.preset(name))
        hop = DACConfig.preset(name).hop_length
        assert rf.encoder_frames == (8, 8) and rf.decoder_frames == (10, 10), (name, rf)
        assert 7 * hop < min(rf.encoder_samples), (name, rf)


@pytest.mark.parametrize(
    ("shape", "sr", "n_q", "windows"),
    [
        # 301 frames; windows of 1 and 4 frames (shorter than the 14-frame context) and 32
        # (the last one partial)
        ((3001, 1), 8000, None, (W1, W4, W32)),
        # two rows (stereo at another rate), 2 of 3 codebooks: 80 frames
        ((1103, 2), 11025, 2, (W4,)),
        ((31 * 10, 1), 8000, None, (W4, 5.0)),  # 31 frames: the long window is bucketed to 32
        ((35, 1), 8000, None, (W1, 1.0)),  # 4 frames, shorter than the context on both sides
    ],
)
def test_codes_equal_whole_signal(model, rng, shape, sr, n_q, windows):
    audio = _audio(rng, shape)
    whole = compress(model, audio, sr, win_duration=None, n_quantizers=n_q)  # DAC.encode
    assert whole.padding and whole.chunk_length == whole.codes.shape[-1]
    rows = _normalised(model, audio, sr)
    for win in windows:
        f = compress_exact(model, audio, sr, win_duration=win, n_quantizers=n_q)
        assert f.codes.shape == whole.codes.shape
        assert f.padding and f.chunk_length == f.codes.shape[-1]
        for name in ("original_length", "channels", "sample_rate"):
            assert getattr(f, name) == getattr(whole, name)
        np.testing.assert_array_equal(f.input_db, whole.input_db)
        assert_codes_exact(model, rows, f.codes, whole.codes)


def test_near_tie_check_can_fail(model, rng):
    audio = _audio(rng, (1, 200, 1))
    want = similarities(model, audio).argmax(-1)
    got = want.copy()
    got[0, 1, 5] = (got[0, 1, 5] + 1) % TINY.codebook_size
    assert code_margins(model, audio, got, want)[0] > 1e-3  # a real disagreement
    with pytest.raises(AssertionError, match="beyond a near-tie"):
        assert_codes_exact(model, audio, got, want)


def test_decode_equals_whole_signal(model, rng):
    """Windowed decoding with code context = the one-pass decode of the same unchunked file,
    every sample (window edges included) within dac_codec_f32."""
    audio = _audio(rng, (3001, 1))  # 301 frames (not a multiple of the windows)
    f = compress_exact(model, audio, 8000, win_duration=W32)
    want = decompress(model, f)
    for win in (W1, W32):
        got = decompress_exact(model, DACFile.from_bytes(f.to_bytes()), win_duration=win)
        assert got.shape == want.shape == (1, 3001, 1)
        assert_close(got, want, "dac_codec_f32")


def test_one_compilation_per_window_size(model, rng, monkeypatch):
    """The compiled window shapes do not depend on the audio's length."""
    encode = _Traced(windowed.encode_window)
    decode = _Traced(windowed.decode_window)
    monkeypatch.setattr(exact, "encode_window", encode)
    monkeypatch.setattr(exact, "decode_window", decode)
    frames = []
    for samples in (700, 1234, 2650):  # 3, 4 and 9 windows of 32 frames
        f = compress_exact(model, _audio(rng, samples), 8000, win_duration=W32)
        decompress_exact(model, f, win_duration=W32)
        frames.append(f.codes.shape[-1])
    assert encode.count == 1 and decode.count == 1
    assert frames == [70, 124, 265]


def test_memory_is_flat(model, rng, monkeypatch):
    """Host memory of compress_exact does not grow with the audio beyond the codes."""
    import tracemalloc

    from jaxlatent.codec import loudness, resample

    monkeypatch.setattr(compression, "_READ_BLOCK", 4096)
    monkeypatch.setattr(loudness, "_BLOCK", 4096)
    monkeypatch.setattr(resample, "_BLOCK_FRAMES", 64)
    compress_exact(model, _audio(rng, 8000), 11025, win_duration=W32)  # compile first
    peaks = []
    for seconds in (5, 20):
        audio = _audio(rng, 11025 * seconds)
        tracemalloc.start()
        compress_exact(model, audio, 11025, win_duration=W32)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # 20 s of input is 880 kB (a copy would show); the 15 s more codes are 72 kB
    assert peaks[1] < peaks[0] + 400_000, peaks


@pytest.mark.parametrize("win", [0.0, -1.0, float("nan"), float("inf"), True, "1"])
def test_bad_window(model, win):
    audio = np.zeros(800, np.float32)
    with pytest.raises(ValueError, match="win_duration"):
        compress_exact(model, audio, 8000, win_duration=win)
    f = DACFile(np.zeros((1, 3, 80), np.uint16), 80, 800, np.zeros(1, np.float32), 1, 8000, True)
    with pytest.raises(ValueError, match="win_duration"):
        decompress_exact(model, f, win_duration=win)


def test_chunked_files_decode_as_official(model, rng):
    f = compress(model, _audio(rng, 1000), 8000, win_duration=0.1)
    assert not f.padding
    got = decompress_exact(model, f, win_duration=W1)
    np.testing.assert_array_equal(got, decompress(model, f))


def test_exact_dac_file_takes_every_window_of_one_shape(model, rng):
    prep = compression.prepare(
        model, _audio(rng, (1, 300, 1))[0], TINY.sample_rate, win_duration=None
    )
    windows = exact.exact_windows(model, prep, W4)
    n, w = windows.n_windows, windows.window_frames
    assert n > 1 and windows.frames < n * w
    codes = [np.full((prep.rows, prep.n_q, w), k, np.int32) for k in range(n)]
    f = windows.dac_file(iter(codes))
    np.testing.assert_array_equal(f.codes, np.concatenate(codes, axis=-1)[..., : windows.frames])
    assert f.chunk_length == windows.frames and f.padding
    with pytest.raises(ValueError, match=f"codes of {n - 1} windows; expected {n}"):
        windows.dac_file(codes[:-1])
    other = [np.zeros((prep.rows, prep.n_q + 1, w), np.int32)] * n  # another n_q
    with pytest.raises(ValueError, match=re.escape(f"expected {(prep.rows, prep.n_q, w)}")):
        windows.dac_file(other)
