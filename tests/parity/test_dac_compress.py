"""`compress` / `decompress` and `.dac` files against the official ``dac`` package.

The reference is descript-audio-codec 1.0.0's ``CodecMixin.compress`` / ``decompress`` (with
audiotools 0.7.2, julius resampling and the CPU loudness meter whose ``lfilter`` comes from
the stub torchaudio of conftest.py), on the real clips (``tests/real_audio.py``). The models are
written by the reference itself in the release format (``dac.DAC(**kwargs).save(path,
package=False)``) and read back through the production converter (``converters.dac``).

Weights are the reference's random initialisation with every Snake alpha, weight-norm
magnitude and bias perturbed (as ``test_dac_layers.py`` does). This matters: the reference's
``init_weights`` zeroes every ``Conv1d`` bias, so a window of digital silence (the zero
padding of the last chunk) encodes to ``z_e = 0`` exactly; all cosine distances then tie and
the code each framework picks depends on the last bit of ``‖codebook_row / ‖row‖‖²``
(measured: 20 of 72 frames of the last chunk differ on such a model). Trained checkpoints
have non-zero biases, and so do the models here.

The fast tests use the released strides, codebook count and codebook size with narrow layers
(``encoder_dim=2``, ``decoder_dim=16``, ``latent_dim=16``): the window geometry, resampling,
loudness and quantization are those of the released models, and the torch side stays within
seconds on CPU. More clips, ``n_quantizers`` and the full-size variants run under ``-m slow``.
"""

from __future__ import annotations

import functools
import pathlib

import numpy as np
import pytest

from converters import dac as cdac
from jaxlatent.codec import DACFile, compress, decompress
from jaxlatent.models.dac import DAC, DACConfig
from tests import reference
from tests.real_audio import read_clip
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

NARROW = {"encoder_dim": 2, "decoder_dim": 16, "latent_dim": 16}


def _perturb(module, seed: int) -> None:
    torch = reference.torch()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("alpha"):
                p.copy_(torch.rand(p.shape, generator=gen) * 1.5 + 0.3)
            elif name.endswith("weight_g"):
                p.mul_(torch.rand(p.shape, generator=gen) + 0.5)
            elif name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def _load_converted(path) -> DAC:
    """A release ``.pth`` through the production converter (strict, every key)."""
    config, model = cdac.convert_checkpoint(path)
    assert model.config == config
    return model


@functools.cache
def _models(preset: str, narrow: bool, tmp: str, seed: int = 0):
    """(reference model in eval mode, converted jaxlatent model)."""
    dac, torch = reference.dac(), reference.torch()
    kwargs = DACConfig.preset(preset).to_kwargs()
    if narrow:
        kwargs.update(NARROW)
    torch.manual_seed(seed)
    tmodel = dac.DAC(**kwargs)
    _perturb(tmodel, seed)
    path = pathlib.Path(tmp) / f"{preset}-{int(narrow)}.pth"
    tmodel.save(str(path), package=False)  # the release format
    return tmodel.eval(), _load_converted(path)


@pytest.fixture(scope="module")
def tmp_models(tmp_path_factory):
    return str(tmp_path_factory.mktemp("dac_models"))


def _official_compress(tmodel, x, sr, **kw):
    reference.dac()
    from audiotools import AudioSignal

    signal = AudioSignal(reference.to_torch(np.ascontiguousarray(x.T))[None], sr)
    return tmodel.compress(signal, **kw)


def _official_decompress(tmodel, path) -> np.ndarray:
    """[1, time, channels] from the official decompress of a file on disk."""
    signal = tmodel.decompress(str(path))
    return np.moveaxis(reference.to_numpy(signal.audio_data), 1, -1)


def _check_same_file(ours: DACFile, official, err: str = "") -> None:
    codes = reference.to_numpy(official.codes)
    assert ours.codes.shape == codes.shape, err
    flips = int((ours.codes != codes).sum())
    assert flips == 0, f"{err}: {flips} of {codes.size} codes differ"
    for name in ("chunk_length", "original_length", "channels", "sample_rate", "padding"):
        assert getattr(ours, name) == getattr(official, name), (err, name)
    assert_close(ours.input_db, reference.to_numpy(official.input_db), "dacio_loudness_db")


def _compress_and_cross_decode(tmp_path, tmodel, model, x, sr, win, err):
    """Same codes and metadata as the official compress; each package decodes the other's
    .dac file to the same audio."""
    official = _official_compress(tmodel, x, sr, win_duration=win)
    ours = compress(model, x, sr, win_duration=win)
    _check_same_file(ours, official, err)
    assert ours.padding == (x.shape[0] / sr <= win)
    ours_path = ours.save(tmp_path / "ours.dac")
    official_path = official.save(tmp_path / "official")
    audio_ours = decompress(model, DACFile.load(official_path))  # official file -> jaxlatent
    audio_official = _official_decompress(tmodel, ours_path)  # jaxlatent file -> official
    assert audio_ours.shape == audio_official.shape == (1, x.shape[0], x.shape[1])
    assert_close(audio_ours, audio_official, "dacio_decoded_audio", err_msg=err)


def test_compress_stereo_48k_chunked(tmp_path, tmp_models):
    """44.1 kHz model on 48 kHz stereo music: resampling, two mono streams, two windows."""
    tmodel, model = _models("44khz_8kbps", True, tmp_models)
    x, sr = read_clip("music_48k_stereo.wav", 1.2)
    _compress_and_cross_decode(tmp_path, tmodel, model, x, sr, 1.0, "44khz stereo")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "clip", "seconds", "win"),
    [
        ("44khz_8kbps", "music_48k_stereo.wav", 3.0, 100.0),  # one padded pass, stereo
        ("44khz_16kbps", "music_24k.wav", 2.5, 1.0),  # 24 kHz -> 44.1 kHz
        ("24khz", "music_24k.wav", 2.5, 1.0),
        ("16khz", "speech_16k_spk1_snt1.wav", 2.87, 1.0),  # 34-frame chunks
        ("16khz", "speech_16k_spk2_snt1.wav", 2.01, 5.0),  # one padded pass
    ],
)
def test_compress_more_clips(tmp_path, tmp_models, preset, clip, seconds, win):
    tmodel, model = _models(preset, True, tmp_models)
    x, sr = read_clip(clip, seconds)
    _compress_and_cross_decode(tmp_path, tmodel, model, x, sr, win, f"{preset} {clip} {win}")


@pytest.mark.slow
def test_n_quantizers_matches_official(tmp_models):
    tmodel, model = _models("16khz", True, tmp_models)
    x, sr = read_clip("speech_16k_spk2_snt1.wav", 2.01)
    official = _official_compress(tmodel, x, sr, win_duration=1.0, n_quantizers=3)
    ours = compress(model, x, sr, win_duration=1.0, n_quantizers=3)
    assert ours.codes.shape[1] == 3
    _check_same_file(ours, official, "n_quantizers=3")


@pytest.mark.parametrize(
    ("clip", "length", "short"),
    [
        # 28160 samples = 88 frames exactly: the decoder returns 28152 at the model's rate.
        ("speech_16k_spk2_snt2.wav", 28160, 8),
        # 48 kHz stereo, 75 frames at 16 kHz: 23992 decoded samples are 71976 at 48 kHz.
        pytest.param("music_48k_stereo.wav", 72000, 24, marks=pytest.mark.slow),
    ],
)
def test_decompress_returns_original_length_where_official_crashes(
    tmp_path, tmp_models, clip, length, short
):
    """16 kHz model, one padded pass over a whole number of frames: the stride-5 decoder
    returns 8 samples short of ``hop * frames`` (24 after resampling 16 -> 48 kHz), the
    official ``decompress`` has fewer than ``original_length`` samples and its final reshape
    raises. jaxlatent returns exactly ``original_length`` (the missing tail zero-filled) and
    matches what the reference computes before the reshape."""
    tmodel, model = _models("16khz", True, tmp_models)
    x, sr = read_clip(clip, 2.0)
    x = x[:length]
    ours = compress(model, x, sr, win_duration=5.0)
    assert ours.padding
    path = ours.save(tmp_path / "x.dac")
    with pytest.raises(RuntimeError, match="is invalid for input of size"):
        _official_decompress(tmodel, path)
    audio = decompress(model, DACFile.load(path))
    assert audio.shape == (1, length, x.shape[1])

    official = reference.dac().model.base.DACFile.load(path)
    official.original_length = length - short  # the samples the reference has
    signal = tmodel.decompress(official)
    expected = np.moveaxis(reference.to_numpy(signal.audio_data), 1, -1)
    assert_close(audio[:, : length - short], expected, "dacio_decoded_audio")
    np.testing.assert_array_equal(audio[:, length - short :], 0.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("preset", "clip", "seconds", "win"),
    [
        ("44khz_8kbps", "music_48k_stereo.wav", 2.0, 1.0),
        ("44khz_16kbps", "music_24k.wav", 2.0, 1.0),
        ("24khz", "music_24k.wav", 2.0, 1.0),
        ("16khz", "speech_16k_spk2_snt2.wav", 1.76, 1.0),
    ],
)
def test_full_size_variants_on_real_clips(tmp_path, tmp_models, preset, clip, seconds, win):
    """Released configurations at full size (random perturbed weights, release format)."""
    tmodel, model = _models(preset, False, tmp_models)
    x, sr = read_clip(clip, seconds)
    official = _official_compress(tmodel, x, sr, win_duration=win)
    ours = compress(model, x, sr, win_duration=win)
    _check_same_file(ours, official, f"{preset} {clip}")
    ours_path = ours.save(tmp_path / "ours.dac")
    audio_official = _official_decompress(tmodel, ours_path)
    assert_close(decompress(model, ours), audio_official, "dacio_decoded_audio")
