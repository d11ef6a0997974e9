"""`StreamingEncoder` / `StreamingDecoder` on a tiny random DAC (no torch): random push sizes
give the whole-signal codes exactly and the whole-signal audio within dac_codec_f32; a few
compiled steps serve every push; the lookahead is the receptive field; bad pushes."""

from __future__ import annotations

import numpy as np
import pytest

from jaxlatent.codec import StreamingDecoder, StreamingEncoder, streaming
from jaxlatent.models.dac import DACConfig, receptive_field
from jaxlatent.models.dac import streaming as model_streaming
from tests.tolerances import assert_close
from tests.unit.test_dac_compress import TINY, tiny_dac
from tests.unit.test_dac_exact import assert_codes_exact
from tests.unit.test_dac_model import _Traced


@pytest.fixture(scope="module")
def model():
    return tiny_dac()


def _sizes(rng, total: int, high: int) -> list[int]:
    """Random push sizes summing to `total`: ones, non-multiples of the hop, some large."""
    sizes = [1, 1, 3]
    while sum(sizes) < total:
        sizes.append(int(rng.integers(1, high)))
    sizes[-1] -= sum(sizes) - total
    return [s for s in sizes if s > 0]


def _encode_stream(model, x, sizes, max_step_frames=4, **kwargs):
    enc = StreamingEncoder(model, max_step_frames=max_step_frames, **kwargs)
    parts, s = [], 0
    for n in sizes:
        parts.append(enc.push(x[s : s + n]))
        s += n
    parts.append(enc.flush())
    return np.concatenate(parts, axis=-1)


def _whole_codes(model, x, n_q=None):
    """``DAC.encode`` of the hop-padded rows of `x` ``[time, channels]``: ``[rows, n_q, F]``."""
    hop = TINY.hop_length
    frames = -(-x.shape[0] // hop)
    rows = np.zeros((x.shape[1], frames * hop, 1), np.float32)
    rows[:, : x.shape[0], 0] = x.T
    return rows, np.asarray(model.encode(rows, n_q).codes)


@pytest.mark.parametrize(("samples", "channels", "n_q"), [(1234, 1, None), (987, 2, 2)])
def test_encoder_equals_whole_signal(model, rng, samples, channels, n_q):
    x = (rng.standard_normal((samples, channels)) * 0.3).astype(np.float32)
    rows, want = _whole_codes(model, x, n_q)
    for high in (40, 400):  # mostly sub-frame pushes; pushes of many frames
        sizes = _sizes(rng, samples, high)
        got = _encode_stream(
            model, x if channels > 1 else x[:, 0], sizes, channels=channels, n_quantizers=n_q
        )
        assert got.shape == want.shape and got.dtype == np.int32
        assert_codes_exact(model, rows, got, want)


def test_decoder_equals_whole_signal(model, rng):
    codes = rng.integers(0, TINY.codebook_size, (2, 3, 77)).astype(np.int32)
    want = np.asarray(model.decode(model.from_codes(codes).z))[..., 0]  # [2, 768]
    for sizes in ([1] * 20 + [57], _sizes(rng, 77, 9)):
        dec = StreamingDecoder(model, channels=2, max_step_frames=4)
        parts, s = [], 0
        for n in sizes:
            parts.append(dec.push(codes[..., s : s + n]))
            s += n
        parts.append(dec.flush())
        got = np.concatenate(parts, axis=-1)
        assert got.shape == want.shape and got.dtype == np.float32
        assert_close(got, want, "dac_codec_f32")


def test_outputs_are_final_after_the_lookahead(model, rng):
    x = (rng.standard_normal(1000) * 0.3).astype(np.float32)
    enc = StreamingEncoder(model, max_step_frames=4)
    hop, ahead = TINY.hop_length, enc.lookahead_samples
    first = enc.push(x[: 30 * hop + ahead])
    assert first.shape[-1] == 30  # frame 29 ends at 30 hops: final once `ahead` more arrived
    assert enc.push(x[30 * hop + ahead : 30 * hop + ahead + 1]).shape[-1] == 0
    dec = StreamingDecoder(model, max_step_frames=4)
    codes = _whole_codes(model, x[:, None])[1]
    assert dec.push(codes[..., : 5 + dec.lookahead_samples // hop]).shape[-1] == 5 * hop


def test_lookahead_is_the_receptive_field(model):
    for config in (TINY, *(DACConfig.preset(n) for n in ("44khz_8kbps", "24khz", "16khz"))):
        rf = receptive_field(config)
        assert model_streaming.encoder_stream_plan(config).lookahead == rf.encoder_samples[1]
        assert model_streaming.decoder_stream_plan(config).lookahead == rf.decoder_frames[1]
    enc, dec = StreamingEncoder(model), StreamingDecoder(model)
    assert enc.lookahead_samples == receptive_field(TINY).encoder_samples[1]
    assert dec.lookahead_samples == receptive_field(TINY).decoder_samples[1]
    assert enc.lookahead_ms == pytest.approx(1000 * enc.lookahead_samples / 8000)


def test_few_compiled_steps_serve_every_push(model, rng, monkeypatch):
    step = _Traced(model_streaming.stream_step)
    monkeypatch.setattr(streaming, "stream_step", step)
    x = (rng.standard_normal(3000) * 0.3).astype(np.float32)
    _encode_stream(model, x, _sizes(rng, 3000, 300))
    assert step.count == 3  # steps of 1, 2 and 4 frames
    _encode_stream(model, x, _sizes(rng, 3000, 300))
    _encode_stream(model, x[:1777], _sizes(rng, 1777, 50))
    assert step.count == 3  # no retrace for other pushes, streams or lengths


def test_bad_pushes(model, rng):
    enc = StreamingEncoder(model, channels=2, n_quantizers=2, max_step_frames=4)
    with pytest.raises(ValueError, match="floating point"):
        enc.push(np.zeros((10, 2), np.int16))
    with pytest.raises(ValueError, match=r"channels=2"):
        enc.push(np.zeros((10, 3), np.float32))
    with pytest.raises(ValueError, match=r"channels=2"):
        enc.push(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        enc.push(np.full((10, 2), np.nan, np.float32))
    x = (rng.standard_normal((500, 2)) * 0.3).astype(np.float32)
    got = np.concatenate([enc.push(x), enc.flush()], axis=-1)  # unchanged by the bad pushes
    np.testing.assert_array_equal(got, _whole_codes(model, x, 2)[1])
    with pytest.raises(ValueError, match="flushed"):
        enc.push(x)

    dec = StreamingDecoder(model, n_quantizers=2)
    with pytest.raises(ValueError, match="integer"):
        dec.push(np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"n_q=2"):
        dec.push(np.zeros((1, 3, 4), np.int32))
    with pytest.raises(ValueError, match="codebook_size=16"):
        dec.push(np.full((1, 2, 4), 16, np.int32))
    with pytest.raises(ValueError, match="n_quantizers"):
        StreamingDecoder(model, n_quantizers=4)
    with pytest.raises(ValueError, match="channels"):
        StreamingEncoder(model, channels=0)
    with pytest.raises(ValueError, match="DAC model"):
        StreamingEncoder(object())


def test_min_step_frames_coalesces_pushes_and_stays_exact(model, rng):
    hop = TINY.hop_length
    x = (rng.standard_normal(1234) * 0.3).astype(np.float32)
    rows, want = _whole_codes(model, x[:, None])
    enc = StreamingEncoder(model, max_step_frames=4, min_step_frames=3)  # rounded up to 4
    assert enc.step_frames == (4,) and enc.coalescing_samples == 3 * hop
    assert StreamingEncoder(model, max_step_frames=4).step_frames == (1, 2, 4)
    assert StreamingEncoder(model, max_step_frames=4).coalescing_samples == 0
    parts, s = [], 0
    for n in _sizes(rng, 1234, 40):
        parts.append(enc.push(x[s : s + n]))
        s += n
    emitted = [p.shape[-1] for p in parts if p.shape[-1]]
    assert all(n % 4 == 0 for n in emitted[1:])  # steps of 4 (the first: frames < 0 dropped)
    parts.append(enc.flush())
    assert_codes_exact(model, rows, np.concatenate(parts, axis=-1), want)

    codes = rng.integers(0, TINY.codebook_size, (1, 3, 41)).astype(np.int32)
    audio = np.asarray(model.decode(model.from_codes(codes).z))[..., 0]
    dec = StreamingDecoder(model, max_step_frames=4, min_step_frames=2)
    out = [dec.push(codes[..., i : i + 1]) for i in range(41)]
    assert {o.shape[-1] % (2 * hop) for o in out if o.shape[-1]} == {0}  # steps of 2 frames
    assert_close(np.concatenate([*out, dec.flush()], axis=-1), audio, "dac_codec_f32")
    with pytest.raises(ValueError, match="min_step_frames=8 must not exceed max_step_frames=4"):
        StreamingEncoder(model, min_step_frames=8, max_step_frames=4)
    with pytest.raises(ValueError, match="min_step_frames"):
        StreamingDecoder(model, min_step_frames=0)
