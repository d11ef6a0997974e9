"""Audio data for `jaxlatent train`: the bundled speech or a folder of audio files, in segments.

Sources:

* ``"speech"`` — the four 16 kHz utterances shipped in `jaxlatent/data`
  (`jaxlatent.datasets.bundled_speech`, about 10 s of read English speech);
* a folder — every audio file below it (sorted paths; suffixes
  `jaxlatent.codec.files.AUDIO_SUFFIXES`, read with soundfile), mixed down to mono and
  resampled to the model's rate with `jaxlatent.codec.resample.resample` (the julius filter
  of the DAC codec).

Features (``AudioPreset.feature``):

* ``"spectrogram"`` — log-magnitude spectrograms ``[frames, n_fft // 2 + 1]``
  (`log_spectrogram`), standardised with the mean and standard
  deviation of all frames of the data, cut into segments of ``segment`` frames;
* ``"log1p_spectrogram"`` — the same ``log(1 + |STFT|)`` spectrograms as they are (>= 0, not
  standardised; PIQ thresholds them to make its mask targets);
* ``"waveform"`` — the samples ``[samples, 1]``, cut into segments of ``segment`` samples.

Segments do not overlap; the last segment of each clip is zero-padded and its relative length
(`make_segments`) is < 1, so SpeechBrain's length masking applies,
or, with ``AudioPreset.whole_segments`` (the quantized models), dropped.

Classes (`segment_labels`, for models conditioned on classes): the bundled speech has one class
per speaker (``spk1``, ``spk2``, from the file names); a folder has one class per first-level
subfolder (sorted names), and audio files directly in the folder are refused.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import Any, NamedTuple

import numpy as np

from jaxlatent.apps.folders import data_files
from jaxlatent.codec.files import AUDIO_SUFFIXES
from jaxlatent.datasets import Clip


class AudioData(NamedTuple):
    """Segments ``x`` float32 ``[n, time, features]``, relative lengths ``[n]``, source, info,
    the clip of each segment (int32 ``[n]``, an index into ``names``) and the clip names
    (file paths relative to the folder, or the bundled file names)."""

    x: np.ndarray
    length: np.ndarray
    source: str
    info: dict[str, Any]
    clip: np.ndarray
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class AudioFeatures:
    """The data settings every audio model's preset shares (what `load_audio` reads).

    Attributes:
      feature: ``"spectrogram"`` (standardised ``log(1 + |STFT|)``), ``"log1p_spectrogram"``
        (the same, not standardised) or ``"waveform"``.
      sample_rate: rate in Hz the audio is resampled to.
      n_fft: STFT window in samples (spectrogram features, and the pictures of waveform
        models).
      hop_length: STFT hop in samples.
      segment: segment length: frames (spectrograms) or samples (waveform).
      whole_segments: drop each clip's zero-padded last segment (models whose losses or code
        statistics have no length mask).
    """

    feature: str = "spectrogram"
    sample_rate: int = 16000
    n_fft: int = 256
    hop_length: int = 128
    segment: int = 32
    whole_segments: bool = False

    @property
    def bins(self) -> int:
        """Spectrogram bins ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1


def audio_files(folder: str) -> list[str]:
    """Audio files below `folder` (sorted, hidden files skipped)."""
    return data_files(folder, AUDIO_SUFFIXES)


def _mono(audio: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    from jaxlatent.codec.resample import resample

    mono = np.mean(audio, axis=1, dtype=np.float32)  # [time, channels] -> [time]
    return resample(mono, rate, sample_rate) if rate != sample_rate else mono


def read_clips(source: str) -> tuple[list[Clip], list[str]]:
    """The clips of ``"speech"`` (bundled) or of every audio file below a folder, as read
    (float32 ``[time, channels]`` at their own rates), and their names (the bundled file
    names, or the sorted paths relative to the folder).

    Raises:
      ValueError: if `source` is neither ``"speech"`` nor a folder, the folder holds no audio
        files, or a file cannot be read (not audio, empty, NaN/Inf).
    """
    from jaxlatent.datasets import bundled_speech, read_audio

    if source == "speech":
        clips = bundled_speech()
        return clips, [c.name for c in clips]
    if not os.path.isdir(source):
        raise ValueError(f"data source {source!r} is neither 'speech' nor a folder")
    paths = audio_files(source)
    if not paths:
        raise ValueError(
            f"data folder {source!r} has no usable audio files (looked for "
            f"{', '.join(AUDIO_SUFFIXES)})"
        )
    # read_audio: a ValueError naming the file when unreadable
    return [read_audio(p) for p in paths], [os.path.relpath(p, source) for p in paths]


def load_clips(source: str, sample_rate: int) -> tuple[list[np.ndarray], list[str]]:
    """Mono float32 clips ``[time]`` at `sample_rate` and their names (`read_clips`).

    Raises:
      ValueError: as `read_clips`.
    """
    clips, names = read_clips(source)
    return [_mono(c.audio, c.sample_rate, sample_rate) for c in clips], names


def log_spectrogram(audio: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """``log(1 + 100 |STFT|)`` of mono audio ``[samples]`` → float32 ``[frames, n_fft // 2 + 1]``.

    `scipy.signal.stft` with its default Hann window and scaling, ``boundary=None`` (no padding
    at the edges), hop `hop_length` samples.
    """
    import scipy.signal

    _, _, z = scipy.signal.stft(audio, nperseg=n_fft, noverlap=n_fft - hop_length, boundary=None)
    return np.log1p(np.abs(z).T * 100.0).astype(np.float32)


def make_segments(specs: list[np.ndarray], frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut arrays ``[time, features]`` into ``[n, frames, features]`` segments (each clip's last
    one zero-padded) plus relative lengths float32 ``[n]``, in clip order."""
    segments, lengths = [], []
    for s in specs:
        for start in range(0, s.shape[0], frames):
            piece = s[start : start + frames]
            lengths.append(piece.shape[0] / frames)
            segments.append(np.pad(piece, ((0, frames - piece.shape[0]), (0, 0))))
    return np.stack(segments), np.asarray(lengths, np.float32)


def log_spectrograms(clips: list[np.ndarray], preset) -> list[np.ndarray]:
    """``log(1 + |STFT|)`` of each clip ``[frames, n_fft // 2 + 1]`` (clips shorter than one
    window are zero-padded to it)."""
    n_fft, hop = preset.n_fft, preset.hop_length
    return [log_spectrogram(np.pad(c, (0, max(n_fft - len(c), 0))), n_fft, hop) for c in clips]


def _features(clips: list[np.ndarray], preset) -> tuple[list[np.ndarray], dict[str, Any]]:
    if preset.feature == "waveform":
        return [c[:, None] for c in clips], {}
    specs = log_spectrograms(clips, preset)
    if preset.feature == "log1p_spectrogram":
        return specs, {}
    frames = np.concatenate(specs)
    mean, std = float(frames.mean()), float(frames.std())
    std = std if std > 0 else 1.0  # silence: keep the zeros
    specs = [((s - mean) / std).astype(np.float32) for s in specs]
    return specs, {"feature_mean": mean, "feature_std": std}


def _load(source: str, preset) -> AudioData:
    clips, names = load_clips(source, preset.sample_rate)
    feats, info = _features(clips, preset)
    x, length = make_segments(feats, preset.segment)
    # make_segments cuts each clip into ceil(len / segment) segments, in clip order
    counts = [-(-len(f) // preset.segment) for f in feats]
    clip = np.repeat(np.arange(len(feats), dtype=np.int32), counts)
    if preset.whole_segments:
        x, length, clip = x[length == 1.0], length[length == 1.0], clip[length == 1.0]
        if not len(x):
            raise ValueError(
                f"data {source!r} has no audio as long as one segment ({preset.segment} "
                f"{'samples' if preset.feature == 'waveform' else 'frames'}); the model takes "
                "whole segments only"
            )
    info = {
        "files": len(names),
        "seconds": round(sum(len(c) for c in clips) / preset.sample_rate, 3),
        "sample_rate": preset.sample_rate,
        "feature": preset.feature,
        "segment": preset.segment,
        **info,
    }
    return AudioData(x.astype(np.float32), length, source, info, clip, tuple(names))


@functools.lru_cache(maxsize=8)
def _load_speech(preset) -> AudioData:
    data = _load("speech", preset)
    data.x.flags.writeable = False
    data.length.flags.writeable = False
    data.clip.flags.writeable = False
    return data


def load_audio(source: str, preset) -> AudioData:
    """Segments of ``"speech"`` or a folder of audio files (see the module docstring).

    Args:
      source: ``"speech"`` or a folder.
      preset: an `AudioFeatures` (every audio preset is one: `AudioPreset`,
        `jaxlatent.apps.registry_piq.PIQPreset`).

    Returns:
      `AudioData`; the bundled speech is cached per preset (read-only arrays).

    Raises:
      ValueError: see `load_clips`; also when ``whole_segments`` is set and no clip is as long
        as one segment.

    Example:
      >>> from jaxlatent.apps.registry_audio import SB_PRESETS
      >>> data = load_audio("speech", SB_PRESETS["tiny"])
      >>> data.x.shape[1:], data.x.dtype, data.info["files"]
      ((32, 129), dtype('float32'), 4)
    """
    if source == "speech":
        return _load_speech(preset)
    return _load(source, preset)


_SPEAKER = re.compile(r"_(spk\d+)_")


def _clip_class(data: AudioData, name: str) -> str:
    if data.source == "speech":
        match = _SPEAKER.search(name)
        if match is None:  # the bundled files are named speech_16k_spk<N>_snt<M>.wav
            raise ValueError(f"bundled speech file {name!r} names no speaker (spk<N>)")
        return match.group(1)
    return name.split(os.sep)[0]


def segment_labels(data: AudioData) -> tuple[tuple[str, ...], np.ndarray]:
    """The classes of `data` and the class of each segment (see the module docstring).

    Args:
      data: segments from `load_audio`.

    Returns:
      ``(class_names, labels)``: sorted class names (speakers ``spk1``, ``spk2`` of the bundled
      speech, or the first-level subfolders of a folder) and int32 ``[n]`` class indices.

    Raises:
      ValueError: if a folder has audio files directly in it (they have no class), the data
        has fewer than 2 classes, or a class has no segment (its audio is shorter than one
        segment and the preset keeps whole segments only).

    Example:
      >>> from jaxlatent.apps.registry_audio import SB_PRESETS
      >>> names, labels = segment_labels(load_audio("speech", SB_PRESETS["tiny"]))
      >>> names, labels.dtype, sorted(set(labels.tolist()))
      (('spk1', 'spk2'), dtype('int32'), [0, 1])
    """
    top = [n for n in data.names if os.sep not in n] if data.source != "speech" else []
    if top:
        shown = ", ".join(top[:3]) + (", ..." if len(top) > 3 else "")
        raise ValueError(
            f"data folder {data.source!r} has {len(top)} audio file(s) directly in it "
            f"({shown}); classes are its first-level subfolders, so put each file in the "
            "subfolder of its class"
        )
    keys = [_clip_class(data, n) for n in data.names]
    classes = tuple(sorted(set(keys)))
    if len(classes) < 2:
        raise ValueError(
            f"data {data.source!r} has {len(classes)} class ({', '.join(classes)}); at least 2 "
            "are needed (one first-level subfolder per class)"
        )
    index = {c: i for i, c in enumerate(classes)}
    labels = np.asarray([index[k] for k in keys], np.int32)[data.clip]
    empty = [c for i, c in enumerate(classes) if not (labels == i).any()]
    if empty:
        unit = "samples" if data.info["feature"] == "waveform" else "frames"
        raise ValueError(
            f"class(es) {', '.join(empty)} of data {data.source!r} have no audio as long as one "
            f"segment ({data.info['segment']} {unit}); the model takes whole segments only"
        )
    return classes, labels


def picture_spectrograms(x: np.ndarray, preset) -> np.ndarray:
    """Log spectrograms ``[n, frames, bins]`` of segments ``x`` for pictures: spectrogram
    features as they are, waveform segments ``[n, samples, 1]`` transformed."""
    x = np.asarray(x, np.float32)
    if preset.feature != "waveform":
        return x
    return np.stack(log_spectrograms(list(x[..., 0]), preset))
