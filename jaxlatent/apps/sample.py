"""`jaxlatent sample` and `jaxlatent generate`: use a trained `jaxlatent train` run.

Both restore a checkpoint of a run folder (the latest, or a chosen step) as
``jaxlatent train --resume`` does — `run.json` names the model, preset and classes, and
`jaxlatent.training.Checkpointer.restore` fills every array of a template with the shapes of
the run's initial state (traced, not computed), refusing a checkpoint of another model —
and put the model in eval mode (BatchNorm running statistics):

* `sample` draws images from the model's prior with its own ``sample(num_samples, *,
  rngs)`` (ConditionalVAE: with one class per image, given or cycling through the classes;
  VQ-VAE, which has no prior over codes, decodes uniformly random codes as the training
  pictures do);
* `generate` reconstructs images of the data (chosen at random by the seed, in data order)
  with the model's ``generate(x)`` (the original's: a posterior sample for the Gaussian
  VAEs, drawn from the seed) and reports the reconstruction MSE.

Outputs: ``.png`` (a grid, 16 images a row) and/or ``.npy`` (float32; `sample`:
``[num, H, W, C]``, `generate`: ``[2, num, H, W, C]``, inputs then reconstructions). Every
check runs before anything is computed or written, and each file is written atomically.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

from jaxlatent import training
from jaxlatent.apps import pictures
from jaxlatent.apps.image_data import load_images
from jaxlatent.apps.registry import MODELS, ImagePreset, ModelSpec, get_model
from jaxlatent.apps.runs import GRID, initial_state

OUTPUT_SUFFIXES = (".png", ".npy")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Settings of `jaxlatent sample` (see ``jaxlatent sample --help``).

    Attributes:
      run: the `jaxlatent train` output folder.
      num_samples: images to draw.
      seed: seed of the prior noise (or of the random codes).
      step: checkpoint step (None: the latest).
      labels: ConditionalVAE class names, cycled over the samples (None: all classes in turn).
      outputs: ``.png`` / ``.npy`` files (empty: ``<run>/pictures/sample_step<K>_seed<S>.png``).
      overwrite: replace existing output files.
    """

    run: str
    num_samples: int = 16
    seed: int = 0
    step: int | None = None
    labels: tuple[str, ...] | None = None
    outputs: tuple[str, ...] = ()
    overwrite: bool = False


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """Settings of `jaxlatent generate` (see ``jaxlatent generate --help``).

    Attributes:
      run: the `jaxlatent train` output folder.
      data: ``"digits"`` or a folder of images (None: the run's training data).
      num: images to reconstruct (drawn from the data without replacement by `seed`).
      seed: seed of the image choice and of the posterior noise.
      step: checkpoint step (None: the latest).
      outputs: ``.png`` / ``.npy`` files (empty: ``<run>/pictures/generate_step<K>_seed<S>.png``).
      overwrite: replace existing output files.
    """

    run: str
    data: str | None = None
    num: int = 16
    seed: int = 0
    step: int | None = None
    outputs: tuple[str, ...] = ()
    overwrite: bool = False


class RunInfo(NamedTuple):
    """What `run.json` says about a run, and its checkpoint steps."""

    folder: str
    model: str
    preset_name: str
    preset: ImagePreset
    spec: ModelSpec
    classes: tuple[str, ...]
    data: str
    learning_rate: float
    steps: tuple[int, ...]


class Restored(NamedTuple):
    """A run restored at one checkpoint: its `RunInfo`, the step and the model (eval mode)."""

    info: RunInfo
    step: int
    model: nnx.Module


class Result(NamedTuple):
    """What `sample` / `generate` computed and wrote.

    Attributes:
      images: `sample`: ``[num, H, W, C]``; `generate`: ``[2, num, H, W, C]`` (inputs,
        reconstructions); float32.
      step: the restored checkpoint's step.
      outputs: the files written.
      mse: `generate`: mean squared reconstruction error over every pixel (else None).
    """

    images: np.ndarray
    step: int
    outputs: tuple[str, ...]
    mse: float | None = None


def read_run(folder: str) -> RunInfo:
    """Read `run.json` and list the finalized checkpoint steps of a run folder.

    Raises:
      ValueError: if `folder` is missing or holds no `jaxlatent train` run, its `run.json`
        is unreadable or names an unknown model, or it has no finalized checkpoint.
    """
    if not os.path.isdir(folder):
        raise ValueError(f"run folder {folder!r} does not exist (or is not a folder)")
    path = os.path.join(folder, "run.json")
    if not os.path.isfile(path):
        raise ValueError(f"{folder!r} holds no `jaxlatent train` run (no run.json)")
    try:
        with open(path) as f:
            run = json.load(f)
        spec, preset_name, preset = get_model(run["model"], run["preset"])
        if spec.data_kind != "image":
            raise ValueError(
                f"model {run['model']!r} is an {spec.data_kind} model; `sample` and `generate` "
                "draw images, so they take runs of image models only"
            )
        if "preset_settings" in run:  # the sizes the run was trained with
            settings = dict(run["preset_settings"])
            settings["hidden_dims"] = tuple(settings["hidden_dims"])
            preset = ImagePreset(**settings)
        info = dict(
            classes=tuple(str(c) for c in run["classes"]),
            data=str(run["data"]),
            learning_rate=float(run["learning_rate"]),
        )
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a readable `jaxlatent train` run.json ({e})") from None
    ckpt_dir = os.path.join(folder, "checkpoints")
    steps: list[int] = []
    if os.path.isdir(ckpt_dir):
        with training.Checkpointer(ckpt_dir, keep=None) as ckpt:
            steps = ckpt.all_steps()
    if not steps:
        raise ValueError(f"run {folder!r} has no finalized checkpoint yet")
    return RunInfo(folder, run["model"], preset_name, preset, spec, steps=tuple(steps), **info)


def _pick_step(info: RunInfo, step: int | None) -> int:
    if step is None:
        return info.steps[-1]
    if step not in info.steps:
        have = ", ".join(map(str, info.steps))
        raise ValueError(f"run {info.folder!r} has no checkpoint of step {step} (it has: {have})")
    return step


@functools.lru_cache(maxsize=8)
def _state_shapes(model: str, preset: ImagePreset, num_classes: int, learning_rate: float):
    """Shapes and dtypes of a run's `TrainState` (traced, not run; cached per process)."""
    spec = MODELS[model]
    tx = training.make_optimizer("adam", learning_rate)
    return jax.eval_shape(lambda: initial_state(spec, preset, num_classes, tx, 0))


def _placeholder(leaf: jax.ShapeDtypeStruct) -> jax.Array:
    """A zero array (or PRNG key) of `leaf`'s shape and dtype on the first local device.

    The restore template only gives shapes, dtypes and placement (restoring replaces every
    array), so it is built from the initial state's shapes without running the initialiser.
    """
    device = jax.local_devices()[0]
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = jax.eval_shape(jax.random.key_data, leaf)
        key = jax.random.wrap_key_data(jax.device_put(np.zeros(data.shape, data.dtype), device))
        if key.dtype != leaf.dtype:
            raise ValueError(f"unexpected PRNG key type {leaf.dtype} in the train state")
        return key
    return jax.device_put(np.zeros(leaf.shape, leaf.dtype), device)


def restore(info: RunInfo, step: int) -> Restored:
    """Restore checkpoint `step` of a run (as ``train --resume`` does).

    The model's calls evaluate by default (``train=False``: BatchNorm running statistics).

    Raises:
      ValueError: if the checkpoint does not fit the model `run.json` describes.
    """
    shapes = _state_shapes(info.model, info.preset, len(info.classes), info.learning_rate)
    template = jax.tree.map(_placeholder, shapes)
    with training.Checkpointer(os.path.join(info.folder, "checkpoints"), keep=None) as ckpt:
        state, _ = ckpt.restore(template, step)
    model = state.merge()
    return Restored(info, step, model)


def check_outputs(outputs: tuple[str, ...], overwrite: bool) -> None:
    """Refuse unknown suffixes, duplicates, folders and (without `overwrite`) existing files.

    Raises:
      ValueError: naming the offending output.
    """
    if len(set(map(os.path.abspath, outputs))) != len(outputs):
        raise ValueError(f"an output file is named twice: {', '.join(outputs)}")
    for out in outputs:
        if os.path.splitext(out)[1].lower() not in OUTPUT_SUFFIXES:
            raise ValueError(
                f"output {out!r} must end in .png (a picture grid) or .npy (the array)"
            )
        if os.path.isdir(out):
            raise ValueError(f"output {out!r} is a folder")
        if os.path.exists(out) and not overwrite:
            raise ValueError(f"output {out!r} exists; pass --overwrite to replace it")
        parent = os.path.dirname(os.path.abspath(out))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise ValueError(f"output {out!r} lies below {parent!r}, which is not a folder")


def _outputs(cfg_outputs: tuple[str, ...], folder: str, name: str) -> tuple[str, ...]:
    return cfg_outputs or (os.path.join(folder, "pictures", name),)


def _write(outputs: tuple[str, ...], array: np.ndarray, rows: list, slots: int) -> None:
    for out in outputs:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        if out.lower().endswith(".npy"):
            pictures.save_npy(out, array)
        else:
            pictures.save_grid(out, rows, slots=slots)


def _class_labels(names: list[str] | tuple[str, ...], classes: tuple[str, ...]) -> np.ndarray:
    """One-hot ``[len(names), len(classes)]`` float32 of class names."""
    index = {c: i for i, c in enumerate(classes)}
    return np.eye(len(classes), dtype=np.float32)[[index[n] for n in names]]


def sample_labels(info: RunInfo, labels: tuple[str, ...] | None, num: int) -> np.ndarray | None:
    """The one-hot labels ``[num, classes]`` of a ConditionalVAE's samples (None otherwise).

    `labels` (class names of the run) are cycled over the samples; None cycles through all
    classes in order.

    Raises:
      ValueError: labels for a model without classes, more labels than samples, empty
        labels or names that are not classes of the run.
    """
    if not info.spec.needs_labels:
        if labels is not None:
            raise ValueError(f"model {info.model!r} is not conditioned on classes; drop --labels")
        return None
    names = info.classes if labels is None else labels
    if not names or any(not n for n in names):
        raise ValueError("--labels must be a comma-separated list of class names, e.g. 0,1,2")
    if labels is not None and len(labels) > num:
        raise ValueError(f"--labels gives {len(labels)} labels for {num} samples")
    unknown = [n for n in names if n not in info.classes]
    if unknown:
        shown = ", ".join(info.classes[:20]) + (", ..." if len(info.classes) > 20 else "")
        raise ValueError(
            f"--labels {','.join(unknown)}: not a class of the run; its classes are: {shown}"
        )
    return _class_labels([names[i % len(names)] for i in range(num)], info.classes)


def draw_samples(restored: Restored, num: int, seed: int, labels: np.ndarray | None) -> np.ndarray:
    """``[num, H, W, C]`` float32 samples of a restored model (see the module docstring)."""
    info = restored.info

    @nnx.jit
    def draw(model, labels, key):
        rngs = nnx.Rngs(key)
        if labels is not None:
            return model.sample(num, rngs=rngs, labels=labels)
        try:
            return model.sample(num, rngs=rngs)
        except NotImplementedError:  # VQ-VAE: no prior over the codes
            return info.spec.sample(model, num, key, len(info.classes), info.preset)

    return np.asarray(draw(restored.model, labels, jax.random.key(seed)), np.float32)


def sample(cfg: SampleConfig) -> Result:
    """Check everything, restore the run, draw `cfg.num_samples` images and write them.

    Raises:
      ValueError: for any bad input (before anything is written).
    """
    if cfg.num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {cfg.num_samples}")
    info = read_run(cfg.run)
    step = _pick_step(info, cfg.step)
    labels = sample_labels(info, cfg.labels, cfg.num_samples)
    outputs = _outputs(cfg.outputs, cfg.run, f"sample_step{step:06d}_seed{cfg.seed}.png")
    check_outputs(outputs, cfg.overwrite)

    images = draw_samples(restore(info, step), cfg.num_samples, cfg.seed, labels)
    title = f"{info.model} step {step}, seed {cfg.seed}: {info.spec.sample_title}"
    if labels is not None:
        names = [info.classes[i] for i in labels.argmax(axis=1)]
        title = f"{info.model} step {step}, seed {cfg.seed}: classes {','.join(names[:GRID])}"
    rows = [(title if i == 0 else "", row) for i, row in enumerate(pictures.chunks(images, GRID))]
    _write(outputs, images, rows, min(cfg.num_samples, GRID))
    return Result(images, step, outputs)


def _generate_batch(info: RunInfo, cfg: GenerateConfig) -> tuple[np.ndarray, np.ndarray]:
    """`cfg.num` images ``[num, H, W, C]`` of the data and their one-hot labels in the run's
    classes."""
    data = load_images(cfg.data or info.data, info.preset.img_size, info.preset.channels)
    if info.spec.needs_labels:
        unknown = [c for c in data.class_names if c not in info.classes]
        if unknown:
            raise ValueError(
                f"{data.source!r} has classes the run was not trained on "
                f"({', '.join(unknown[:5])}); model {info.model!r} needs the run's classes"
            )
    if cfg.num > len(data.images):
        raise ValueError(f"--num {cfg.num} exceeds the {len(data.images)} images of {data.source}")
    idx = np.sort(np.random.default_rng(cfg.seed).permutation(len(data.images))[: cfg.num])
    names = [data.class_names[i] for i in data.labels[idx].argmax(axis=1)]
    labels = _class_labels(names, info.classes) if info.spec.needs_labels else None
    return np.asarray(data.images[idx]), labels


def reconstruct(restored: Restored, x: np.ndarray, labels: np.ndarray | None, seed: int) -> Any:
    """``model.generate(x)`` of a restored model as float32 numpy (labels for a
    ConditionalVAE; Gaussian VAEs draw their posterior noise from `seed`)."""

    @nnx.jit
    def run(model, x, labels, key):
        kwargs: dict[str, Any] = {"rngs": nnx.Rngs(key)}  # models without noise ignore it
        if labels is not None:
            kwargs["labels"] = labels
        return model.generate(x, **kwargs)

    return np.asarray(run(restored.model, x, labels, jax.random.key(seed)), np.float32)


def generate(cfg: GenerateConfig) -> Result:
    """Check everything, restore the run, reconstruct `cfg.num` images and write them.

    Raises:
      ValueError: for any bad input (before anything is written).
    """
    if cfg.num < 1:
        raise ValueError(f"--num must be at least 1, got {cfg.num}")
    info = read_run(cfg.run)
    step = _pick_step(info, cfg.step)
    outputs = _outputs(cfg.outputs, cfg.run, f"generate_step{step:06d}_seed{cfg.seed}.png")
    check_outputs(outputs, cfg.overwrite)
    x, labels = _generate_batch(info, cfg)

    recons = reconstruct(restore(info, step), x, labels, cfg.seed)
    mse = float(np.mean(np.square(recons - x)))
    rows = []
    pairs = zip(pictures.chunks(x, GRID), pictures.chunks(recons, GRID), strict=True)
    for i, (xs, rs) in enumerate(pairs):
        rows.append(("input" if i == 0 else "", xs))
        rows.append((f"{info.model} step {step} reconstruction" if i == 0 else "", rs))
    _write(outputs, np.stack([x, recons]), rows, min(cfg.num, GRID))
    return Result(np.stack([x, recons]), step, outputs, mse)
