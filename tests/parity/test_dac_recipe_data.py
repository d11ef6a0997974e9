"""DAC's training data pipeline (`jaxlatent.apps.dac_data`, `jaxlatent.apps.dac_transforms`) vs
descript-audiotools 0.7.2's ``AudioLoader`` / ``AudioDataset`` and transforms, on real clips.

The random numbers differ by design (numpy streams, not audiotools' ``RandomState``), so each
test gives both sides the same drawn values: the transforms' parameters from audiotools'
``instantiate``, the excerpt offsets through a ``RandomState`` whose ``uniform`` replays
chosen offsets, or the offset and shift a real ``AudioDataset`` item drew. The stub
torchaudio (tests/conftest.py) has no ``info``, so ``audiotools.core.util.info`` (the file's
rate and length, used by ``AudioSignal.excerpt``) is patched to read them with soundfile.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from jaxlatent.apps.dac_data import (
    DACData,
    DACDataIterator,
    RecipeClip,
    salient_excerpt,
    to_model_rate,
    transform,
)
from jaxlatent.apps.dac_transforms import rescale_audio, shift_phase, volume_norm
from jaxlatent.codec.loudness import loudness
from tests import reference
from tests.real_audio import read_clip
from tests.tolerances import assert_close

pytestmark = [
    pytest.mark.parity,
    # librosa (AudioSignal's file reader) imports audioread, which imports these modules
    pytest.mark.filterwarnings("ignore:'(aifc|sunau|audioop)' is deprecated:DeprecationWarning"),
]

CLIPS = [
    ("speech_16k_spk1_snt1.wav", 16000),
    ("music_48k_stereo.wav", 44100),
    ("music_24k.wav", 24000),
]


def _audiotools():
    reference.dac()  # imports torch and audiotools (the stub torchaudio is installed)
    import audiotools
    from audiotools.data import transforms

    return audiotools, transforms


def _signal(x_tc: np.ndarray, sr: int):
    audiotools, _ = _audiotools()
    return audiotools.AudioSignal(reference.to_torch(np.ascontiguousarray(x_tc.T)[None]), sr)


def _audio(signal) -> np.ndarray:
    return reference.to_numpy(signal.audio_data[0]).T  # [channels, time] -> [time, channels]


def _recipe_transform():
    """``build_transform`` of ``scripts/train.py`` with ``conf/base.yml``'s values."""
    _, tfm = _audiotools()
    return tfm.Compose(
        tfm.Compose(tfm.Identity(), name="preprocess"),
        tfm.Compose(tfm.Identity(), name="augment", prob=0.0),
        tfm.Compose(
            tfm.VolumeNorm(db=("const", -16)), tfm.RescaleAudio(), tfm.ShiftPhase(),
            name="postprocess",
        ),
    )  # fmt: skip


@pytest.mark.parametrize(("name", "rate"), CLIPS)
def test_each_transform_matches_audiotools(name, rate):
    _, tfm = _audiotools()
    x, sr = read_clip(name, seconds=2.0)
    x = x[sr // 2 : sr // 2 + int(0.38 * sr)]  # a training-length excerpt at the file's rate
    sig = _signal(x, sr)
    for seed in range(3):
        vn = tfm.VolumeNorm(db=("uniform", -30.0, -10.0))
        args = vn.instantiate(seed, sig)
        db = float(args["VolumeNorm"]["db"])
        assert_close(volume_norm(x, sr, db), _audio(vn(sig.clone(), **args)), "dac_recipe_gain")
        sp = tfm.ShiftPhase()
        args = sp.instantiate(seed, sig)
        shift = float(args["ShiftPhase"]["shift"])
        assert_close(
            shift_phase(x, sr, shift), _audio(sp(sig.clone(), **args)), "dac_recipe_shift_phase"
        )
    loud = x * np.float32(7.0)  # peaks above 1: RescaleAudio acts (per channel)
    ra = tfm.RescaleAudio()
    ref = _audio(ra(_signal(loud, sr), **ra.instantiate(0)))
    np.testing.assert_array_equal(rescale_audio(loud), ref)
    np.testing.assert_array_equal(rescale_audio(x * np.float32(0.5)), x * np.float32(0.5))


def test_shift_phase_at_the_release_rates_and_lengths():
    _, tfm = _audiotools()
    x, _ = read_clip("music_48k_stereo.wav", seconds=1.0)
    for rate, duration in [(44100, 0.38), (24000, 0.38), (16000, 0.128)]:
        piece = x[: int(duration * rate)]  # the rate only sets the STFT window here
        sp = tfm.ShiftPhase()
        args = sp.instantiate(1, _signal(piece, rate))
        ref = _audio(sp(_signal(piece, rate), **args))
        shift = float(args["ShiftPhase"]["shift"])
        assert_close(shift_phase(piece, rate, shift), ref, "dac_recipe_shift_phase")


@pytest.mark.parametrize(("name", "rate"), CLIPS)
def test_the_recipe_transform_matches_build_transform(name, rate):
    x, sr = read_clip(name, seconds=3.0)
    piece = x[sr : sr + int(0.38 * sr)]
    sig = _signal(piece, sr)
    compose = _recipe_transform()
    for seed in range(2):
        args = compose.instantiate(seed, sig)
        ref = _audio(compose(sig.clone(), **args))
        flat = {k: v for d in _nested(args) for k, v in d.items()}
        shift = float(flat["2.ShiftPhase"]["shift"])
        assert_close(transform(piece, sr, DACData(), shift), ref, "dac_recipe_shift_phase")


def _nested(args: dict):
    """Every dict nested in `args` (the transform arguments are keyed by transform name)."""
    yield args
    for v in args.values():
        if isinstance(v, dict):
            yield from _nested(v)


class _Replay(np.random.RandomState):
    """A RandomState whose ``uniform(low, high)`` returns ``low + f * (high - low)`` for the
    next fraction `f` of a list (the offsets both sides must draw)."""

    def __init__(self, fractions):
        super().__init__(0)
        self.fractions = list(fractions)

    def uniform(self, low=0.0, high=1.0, size=None):
        return low + self.fractions.pop(0) * (high - low)


@pytest.fixture
def soundfile_info(monkeypatch):
    _audiotools()
    from audiotools.core import util

    def info(path):
        i = sf.info(str(path))
        return util.Info(sample_rate=i.samplerate, num_frames=i.frames)

    monkeypatch.setattr(util, "info", info)


def _file_with_silence(tmp_path, name: str) -> tuple[str, np.ndarray, int]:
    """A folder with one file: 1 s of silence, then 2 s of `name`, then 1 s at -60 dB."""
    x, sr = read_clip(name, seconds=2.0)
    quiet = np.random.default_rng(0).standard_normal((sr, x.shape[1])).astype(np.float32)
    audio = np.concatenate([np.zeros((sr, x.shape[1]), np.float32), x, quiet * 1e-3])
    folder = tmp_path / "data"
    folder.mkdir()
    sf.write(folder / "clip.wav", audio, sr, subtype="FLOAT")
    return str(folder), audio, sr


@pytest.mark.parametrize(("name", "rate"), CLIPS)
def test_salient_excerpt_matches_audio_loader(name, rate, tmp_path, soundfile_info):
    from audiotools.data.datasets import AudioLoader

    folder, audio, sr = _file_with_silence(tmp_path, name)
    loader = AudioLoader(sources=[folder])
    total = audio.shape[0] / sr
    cases = [
        [0.1 / (total - 0.38), 1.8 / (total - 0.38)],  # silence: redrawn; then kept
        [3.2 / (total - 0.38)] * 8,  # -60 dB noise 8 times: the last try is kept anyway
        [1.0] * 7 + [0.5],  # the (quiet) end of the file 7 times, then the 8th try is kept
        [0.3, 0.6, 0.9],  # the first loud one of three is kept: the same tries are consumed
    ]
    for fractions in cases:
        theirs, mine = _Replay(fractions), _Replay(fractions)
        item = loader(theirs, rate, 0.38, loudness_cutoff=-40, global_idx=0)
        ref = _audio(item["signal"])
        piece, offset = salient_excerpt(audio, sr, 0.38, mine, -40.0, 8)
        assert offset == item["signal"].metadata["offset"]
        assert len(mine.fractions) == len(theirs.fractions)
        ours = to_model_rate(piece, sr, rate, int(0.38 * rate))
        assert ours.shape == ref.shape == (int(0.38 * rate), 1)
        assert_close(ours, ref, "dacio_resample")
    # the cutoff itself: the same loudness decides on both sides
    quiet = audio[int(3.2 * sr) : int(3.2 * sr) + int(0.38 * sr)]
    ref_db = reference.to_numpy(_signal(quiet, sr).loudness())
    assert_close(loudness(quiet[None], sr), ref_db, "dacio_loudness_db")
    assert ref_db[0] <= -40


def test_dataset_item_is_reproduced_from_its_offset_and_shift(tmp_path, soundfile_info):
    """A real ``AudioDataset`` item of the recipe (its own random offset, cutoff and draws):
    the same offset and shift through this pipeline give the same training example."""
    from audiotools.data.datasets import AudioDataset, AudioLoader

    folder, audio, sr = _file_with_silence(tmp_path, "music_48k_stereo.wav")
    compose = _recipe_transform()
    dataset = AudioDataset(AudioLoader(sources=[folder]), 44100, duration=0.38, transform=compose)
    for idx in range(3):
        item = dataset[idx]
        offset = item["signal"].metadata["offset"]
        ref = _audio(compose(item["signal"].clone(), **item["transform_args"]))
        flat = {k: v for d in _nested(item["transform_args"]) for k, v in d.items()}
        piece = audio[int(offset * sr) : int(offset * sr) + int(0.38 * sr)]
        ours = to_model_rate(piece, sr, 44100, 16758)
        ours = transform(ours, 44100, DACData(), float(flat["2.ShiftPhase"]["shift"]))
        assert_close(ours, ref, "dac_recipe_shift_phase")


def test_iterator_examples_are_pure_functions_of_seed_and_index():
    x, sr = read_clip("speech_16k_spk2_snt1.wav")
    clips = [
        RecipeClip(x, sr),
        RecipeClip(x[: sr // 10], sr),
    ]  # a clip shorter than the excerpt: padded
    cfg = DACData(duration=0.128)
    it = DACDataIterator(clips, cfg, 16000, 4, seed=3, process_index=0, process_count=1)
    first, second = next(it), next(it)
    state = it.get_state()
    third = next(it)
    again = DACDataIterator(clips, cfg, 16000, 4, seed=3, process_index=0, process_count=1)
    again.set_state(state)
    np.testing.assert_array_equal(next(again)["x"], third["x"])
    # two processes load the two halves of the same global batch
    halves = [
        DACDataIterator(clips, cfg, 16000, 4, seed=3, process_index=p, process_count=2)
        for p in range(2)
    ]
    np.testing.assert_array_equal(np.concatenate([next(h)["x"] for h in halves]), first["x"])
    assert first["x"].shape == (4, 2048, 1) and not np.array_equal(first["x"], second["x"])
    # (ShiftPhase runs after RescaleAudio, so peaks may exceed 1, as in the recipe)
    assert np.isfinite(first["x"]).all() and (first["length"] == 1).all()
    other = DACDataIterator(clips, cfg, 16000, 4, seed=4, process_index=0, process_count=1)
    assert not np.array_equal(next(other)["x"], first["x"])
    with pytest.raises(ValueError, match="batch_size=8"):
        DACDataIterator(clips, cfg, 16000, 8, seed=3, process_index=0, process_count=1).set_state(
            state
        )
