"""The data of a `jaxlatent train` run, by the model's data kind, with the kind checked first.

``--data`` defaults to ``"digits"`` for image models and ``"speech"`` for audio models. A source
of the other kind (the other bundled set, or a folder that holds only files of the other kind)
is refused with a message naming the mismatch, before anything is loaded or written.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from jaxlatent.apps.folders import data_files
from jaxlatent.apps.image_data import IMAGE_EXTENSIONS, load_images
from jaxlatent.apps.spec import DATA_KINDS, ModelSpec

_BUNDLED_KIND = {bundled: kind for kind, bundled in DATA_KINDS.items()}
_WHAT = {"image": "images", "audio": "audio"}


def _extensions(kind: str) -> tuple[str, ...]:
    if kind == "image":
        return IMAGE_EXTENSIONS
    from jaxlatent.codec.files import AUDIO_SUFFIXES  # imports scipy: only for audio

    return AUDIO_SUFFIXES


class TrainData(NamedTuple):
    """Arrays with a shared example axis (the batches' leaves), and what they came from."""

    arrays: dict[str, np.ndarray]
    source: str
    class_names: tuple[str, ...]
    info: dict[str, Any]

    @property
    def examples(self) -> int | None:
        """Examples of the arrays (None: no arrays, the data draws endless excerpts)."""
        return len(self.arrays["x"]) if "x" in self.arrays else None


def check_data_kind(spec: ModelSpec, source: str) -> None:
    """Refuse a source of the other data kind than `spec` takes.

    Raises:
      ValueError: for the other kind's bundled data, or a folder with files of the other kind
        and none of the model's.
    """
    from jaxlatent.apps.registry import models_of_kind

    kind = spec.data_kind
    other = "audio" if kind == "image" else "image"
    found = None
    if _BUNDLED_KIND.get(source) == other:
        found = f"--data {source} is the bundled {other} data"
    elif os.path.isdir(source):
        if not data_files(source, _extensions(kind)):
            n = len(data_files(source, _extensions(other)))
            if n:
                found = f"data folder {source!r} holds {n} {other} file(s) and no {kind} files"
    if found:
        raise ValueError(
            f"model {spec.name!r} takes {_WHAT[kind]} but {found}; use --data "
            f"{DATA_KINDS[kind]} or a folder of {kind} files, or a model that takes "
            f"{_WHAT[other]} ({', '.join(models_of_kind(other))})"
        )


def load_train_data(spec: ModelSpec, preset: Any, source: str | None) -> TrainData:
    """The data for `spec` (``source=None``: the kind's bundled default).

    Returns:
      `TrainData`: images ``{"x": [n, H, W, C], "labels": [n, classes]}`` or audio segments
      ``{"x": [n, time, features], "length": [n]}``, plus one-hot ``"labels": [n, classes]``
      (`jaxlatent.apps.audio_data.segment_labels`: speakers, or first-level subfolders) for a
      model conditioned on classes.

    Raises:
      ValueError: a source of the wrong kind (`check_data_kind`), or the loaders' errors (not
        a folder, no usable files, unreadable files, wrong channel count); for an audio model
        conditioned on classes, audio without at least 2 classes (see `segment_labels`).
    """
    source = DATA_KINDS[spec.data_kind] if source is None else source
    check_data_kind(spec, source)
    if spec.data_kind == "image":
        data = load_images(source, preset.img_size, preset.channels)
        arrays = {"x": data.images, "labels": data.labels}
        return TrainData(arrays, data.source, data.class_names, {})
    from jaxlatent.apps.audio_data import load_audio, segment_labels

    audio = load_audio(source, preset)
    arrays = {"x": audio.x, "length": audio.length}
    class_names: tuple[str, ...] = ()
    if spec.needs_labels:
        try:
            class_names, labels = segment_labels(audio)
        except ValueError as e:
            raise ValueError(f"model {spec.name!r} is conditioned on classes but {e}") from None
        arrays["labels"] = np.eye(len(class_names), dtype=np.float32)[labels]
    return TrainData(arrays, audio.source, class_names, audio.info)


def load_recipe_train_data(spec: ModelSpec, source: str | None) -> tuple[TrainData, list]:
    """The audio files of DAC's recipe data pipeline (`jaxlatent.apps.dac_data`), at their own
    rates and channels (``source=None``: the bundled speech).

    Returns:
      ``(TrainData, clips)``: no arrays (the pipeline draws excerpts from the clips), the
      source, no classes, and info (files, seconds, ``pipeline``); the
      `jaxlatent.apps.dac_data.RecipeClip` list.

    Raises:
      ValueError: a source of the wrong kind (`check_data_kind`) or the loader's errors (see
        `jaxlatent.apps.dac_data.load_recipe_clips`).
    """
    from jaxlatent.apps.dac_data import load_recipe_clips

    source = DATA_KINDS[spec.data_kind] if source is None else source
    check_data_kind(spec, source)
    clips, names = load_recipe_clips(source)
    info = {
        "files": len(names),
        "seconds": round(sum(c.audio.shape[0] / c.sample_rate for c in clips), 3),
        "pipeline": "dac_recipe",
    }
    return TrainData({}, source, (), info), clips
