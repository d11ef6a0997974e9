"""DAC's training data pipeline: salient excerpts of the audio files, then the recipe's transforms.

Ported from descript-audio-codec 1.0.0 ``scripts/train.py`` (``build_dataset``,
``build_transform``, ``train_loop``) with ``conf/base.yml`` / ``conf/final/*.yml`` and
descript-audiotools 0.7.2 ``audiotools.data.datasets`` (``AudioDataset``, ``AudioLoader``,
``AudioSignal.salient_excerpt`` / ``excerpt``). Example number ``i`` of a run (global: step
``p`` takes examples ``p * batch .. (p + 1) * batch - 1``, as the recipe's sequential sampler
with ``start_idx = step * batch_size``) is a pure function of ``(seed, i)``:

1. the file: ``files[order[i % n_files]]`` with ``order`` a permutation of the sorted files
   drawn once from the seed (``AudioLoader(shuffle=True)`` with
   ``AudioDataset(without_replacement=True)``: ``global_idx = i``);
2. the excerpt (``salient_excerpt``, `DACData.loudness_cutoff` -40, `DACData.num_tries` 8):
   an offset ``uniform(0, max(file_seconds - duration, 0))`` seconds, the samples
   ``[int(offset * rate), int(offset * rate) + int(duration * rate))`` of the file at its own
   rate and channels (librosa 0.11's ``load(offset, duration)`` arithmetic), kept when its
   loudness (`jaxlatent.codec.loudness.loudness`, all channels) is above the cutoff,
   otherwise redrawn, the last try kept whatever its loudness;
3. mixed down to mono (channel mean), resampled to the model's rate
   (`jaxlatent.codec.resample.resample`, julius), zero-padded at the end to
   ``int(duration * sample_rate)`` samples;
4. the post-process transforms (`jaxlatent.apps.dac_transforms`): ``VolumeNorm(-16)``,
   ``RescaleAudio(1.0)``, ``ShiftPhase(uniform(-pi, pi))``; the preprocess and augment
   stages of the conf are ``Identity`` (augment probability 0) and do nothing.

Batches are ``{"x": float32 [batch, samples, 1], "length": float32 [batch]}`` (all ones: every
excerpt is whole). `DACDataIterator` has `jaxlatent.training.ArrayDataIterator`'s interface
(``batch_size``, ``get_state`` / ``set_state`` of the position), so a resumed run continues
with exactly the examples of an uninterrupted one.

Differences from the recipe (by design or scope):

* random numbers: numpy ``default_rng([seed, stream, i])`` per example instead of
  audiotools' ``RandomState(i)`` (which ignores the run's seed), and the file order is drawn
  from the seed instead of ``RandomState(0)``: the same distributions, not the same numbers;
* the recipe draws one transform mask per transform (all probability 1 or, for the augment
  stage, Identity) — nothing to draw here;
* one source: the recipe balances several folder groups (``ConcatDataset`` cycles through
  them) and weights; here every file of the folder is one group;
* validation: the recipe validates on separate folders with 5 s excerpts; `jaxlatent train`'s
  eval batch is the first 16 examples of another stream (`EVAL_STREAM`) of the same files,
  training-length excerpts through the same transforms;
* several processes: the recipe's DDP run samples with torch's ``DistributedSampler``
  (shuffled, rank-strided indices); here every process takes its contiguous slice of the
  same sequential global batch, so the global batch does not depend on the process count;
* where it runs: the recipe loads excerpts in DataLoader workers and applies the transforms
  to the collated batch on the training device; here the iterator computes each example on
  the host (float32 numpy, the CPU loudness port) while the device runs the previous step
  (JAX dispatches steps asynchronously); ``num_channels`` is the recipe's 1 (mono).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxlatent.apps.dac_transforms import draw_shift, rescale_audio, shift_phase, volume_norm
from jaxlatent.codec.loudness import CHANNEL_GAINS, loudness
from jaxlatent.codec.resample import resample

#: ``DACDataIterator`` streams: training examples and the eval batch.
TRAIN_STREAM, EVAL_STREAM = 0, 1


@dataclasses.dataclass(frozen=True)
class DACData:
    """Settings of the recipe's data pipeline (defaults: ``conf/base.yml`` train).

    Attributes:
      duration: excerpt length in seconds (``train/AudioDataset.duration``).
      loudness_cutoff: LUFS an excerpt must exceed (``AudioDataset.loudness_cutoff``), None:
        any excerpt.
      num_tries: excerpts drawn at most per example (``salient_excerpt``).
      volume_db: ``VolumeNorm.db`` target loudness in LUFS.
      rescale_val: ``RescaleAudio.val`` peak bound.
      shift_range: ``ShiftPhase.shift`` uniform bounds in radians.
    """

    duration: float = 0.38
    loudness_cutoff: float | None = -40.0
    num_tries: int = 8
    volume_db: float = -16.0
    rescale_val: float = 1.0
    shift_range: tuple[float, float] = (-math.pi, math.pi)

    def samples(self, sample_rate: int) -> int:
        """Excerpt length at the model's rate: ``int(duration * sample_rate)``."""
        return int(self.duration * sample_rate)


class RecipeClip(NamedTuple):
    """A file's audio float32 ``[time, channels]`` at its own rate (Hz)."""

    audio: np.ndarray
    sample_rate: int


def load_recipe_clips(source: str) -> tuple[list[RecipeClip], list[str]]:
    """The clips of ``"speech"`` (bundled) or every audio file below a folder, at their own
    rates and channels, and their names (sorted paths relative to the folder).

    Raises:
      ValueError: if `source` is neither ``"speech"`` nor a folder, the folder has no audio
        files, a file is unreadable (not audio, empty, NaN/Inf) or has more than 5 channels
        (BS.1770 loudness weights 5).
    """
    from jaxlatent.apps.audio_data import read_clips

    clips, names = read_clips(source)
    for clip, name in zip(clips, names, strict=True):
        if clip.audio.shape[1] > len(CHANNEL_GAINS):
            raise ValueError(
                f"{os.path.join(source, name)}: {clip.audio.shape[1]} channels; the recipe's "
                f"loudness takes at most {len(CHANNEL_GAINS)}"
            )
    return [RecipeClip(c.audio, c.sample_rate) for c in clips], names


def excerpt(audio: np.ndarray, rate: int, offset: float, duration: float) -> np.ndarray:
    """Samples ``[int(offset * rate), int(offset * rate) + int(duration * rate))`` of `audio`
    ``[time, channels]`` (fewer at the end of the file), as ``librosa.load(offset=,
    duration=)`` reads them."""
    start = int(offset * rate)
    return audio[start : start + int(duration * rate)]


def salient_excerpt(
    audio: np.ndarray, rate: int, duration: float, rng, cutoff: float | None, num_tries: int
) -> tuple[np.ndarray, float]:
    """``AudioSignal.salient_excerpt``: draw offsets until an excerpt is louder than `cutoff`.

    Args:
      audio: float32 ``[time, channels]`` at `rate` Hz.
      rate: sample rate of `audio`.
      duration: excerpt length in seconds.
      rng: anything with numpy's ``uniform(low, high)`` (a `numpy.random.Generator`).
      cutoff: loudness (LUFS) to exceed; None: the first excerpt.
      num_tries: excerpts drawn at most (the last is kept whatever its loudness).

    Returns:
      ``(excerpt [<= int(duration * rate), channels], offset in seconds)``.
    """
    upper = max(audio.shape[0] / rate - duration, 0.0)
    tries = 0
    while True:
        offset = float(rng.uniform(0.0, upper))
        piece = excerpt(audio, rate, offset, duration)
        tries += 1
        if cutoff is None or tries >= num_tries:
            return piece, offset
        if loudness(piece[None], rate)[0] > cutoff:
            return piece, offset


def to_model_rate(piece: np.ndarray, rate: int, sample_rate: int, samples: int) -> np.ndarray:
    """``AudioLoader``'s mono mixdown, resampling and zero padding: float32 ``[samples, 1]``."""
    mono = np.mean(piece, axis=1, dtype=np.float32)
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    mono = mono[:samples]
    return np.pad(mono, (0, samples - mono.shape[0]))[:, None]


def transform(audio: np.ndarray, sample_rate: int, cfg: DACData, shift: float) -> np.ndarray:
    """The recipe's post-process: ``VolumeNorm``, ``RescaleAudio``, ``ShiftPhase(shift)``."""
    audio = volume_norm(audio, sample_rate, cfg.volume_db)
    audio = rescale_audio(audio, cfg.rescale_val)
    return shift_phase(audio, sample_rate, shift)


class DACDataIterator:
    """Endless batches of the recipe's examples (see the module docstring), resumable.

    Args:
      clips: the files' audio (`load_recipe_clips`).
      cfg: the pipeline's settings.
      sample_rate: the model's rate in Hz.
      batch_size: the *global* batch size.
      seed: seed of the file order and of every example's draws.
      process_index, process_count: this process's slice of each global batch (default:
        ``jax.process_index()`` / ``jax.process_count()``).

    Raises:
      ValueError: no clips, a batch size < 1 or not divisible by `process_count`, or an
        excerpt too short for ShiftPhase's STFT.

    Example:
      >>> clips, _ = load_recipe_clips("speech")
      >>> it = DACDataIterator(clips, DACData(duration=0.128), 16000, 2, seed=0,
      ...                      process_index=0, process_count=1)
      >>> batch = next(it)
      >>> batch["x"].shape, batch["x"].dtype, it.get_state()["position"]
      ((2, 2048, 1), dtype('float32'), 1)
    """

    def __init__(
        self,
        clips: list[RecipeClip],
        cfg: DACData,
        sample_rate: int,
        batch_size: int,
        *,
        seed: int = 0,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        if not clips:
            raise ValueError("the recipe's data needs at least one audio file")
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if batch_size % self.process_count:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the {self.process_count} processes"
            )
        from jaxlatent.apps.dac_transforms import stft_window_length

        self.samples = cfg.samples(sample_rate)
        if self.samples <= stft_window_length(sample_rate) // 2:
            raise ValueError(
                f"the recipe's excerpts of {cfg.duration} s are too short for ShiftPhase's "
                f"STFT at {sample_rate} Hz"
            )
        self.clips, self.cfg, self.sample_rate = clips, cfg, sample_rate
        self.batch_size = batch_size
        self.local_batch_size = batch_size // self.process_count
        self.seed = seed
        self.order = np.random.default_rng([seed, 2]).permutation(len(clips))
        self.position = 0

    def example(self, index: int, stream: int = TRAIN_STREAM) -> np.ndarray:
        """Example `index` of `stream`: float32 ``[samples, 1]``."""
        rng = np.random.default_rng([self.seed, stream, index])
        clip = self.clips[self.order[index % len(self.clips)]]
        cfg = self.cfg
        piece, _ = salient_excerpt(
            clip.audio, clip.sample_rate, cfg.duration, rng, cfg.loudness_cutoff, cfg.num_tries
        )
        audio = to_model_rate(piece, clip.sample_rate, self.sample_rate, self.samples)
        return transform(audio, self.sample_rate, cfg, draw_shift(rng, *cfg.shift_range))

    def batch(self, indices, stream: int = TRAIN_STREAM) -> dict[str, np.ndarray]:
        """``{"x": [len(indices), samples, 1], "length": ones}`` of examples `indices`."""
        x = np.stack([self.example(int(i), stream) for i in indices]).astype(np.float32)
        return {"x": x, "length": np.ones(len(x), np.float32)}

    def __iter__(self) -> DACDataIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        lo = self.position * self.batch_size + self.process_index * self.local_batch_size
        self.position += 1
        return self.batch(range(lo, lo + self.local_batch_size))

    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable state: the position and what it depends on."""
        return {
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "pipeline": "dac_recipe",
            "files": len(self.clips),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a state returned by `get_state`.

        Raises:
          ValueError: if the state was saved with another pipeline, seed, batch size or
            number of files.
        """
        mine = self.get_state()
        for name in ("pipeline", "seed", "batch_size", "files"):
            if state.get(name) != mine[name]:
                raise ValueError(
                    f"data iterator state has {name}={state.get(name)} but this iterator has "
                    f"{name}={mine[name]}; resume with the same data and settings"
                )
        self.position = int(state["position"])
