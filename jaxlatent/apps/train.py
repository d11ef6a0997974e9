"""`jaxlatent train`: train a registered model on its bundled data or a folder, resumably.

Image models train on scikit-learn's digits or a folder of images, audio models on the
bundled speech or a folder of audio files (`jaxlatent.apps.train_data`).

Everything the user can get wrong is checked before anything is written: the model and
preset names, the data, the batch size against the device count and the data size, the
output folder (a previous run is only continued with ``resume`` or replaced with
``overwrite``) and, when resuming, that the checkpoint belongs to the same model and preset.

Output folder (besides `jaxlatent.training.fit`'s checkpoints/, metrics.jsonl,
tensorboard/ and summary.json)::

    run.json                    model, preset, data and settings of the run
    eval.jsonl                  reconstruction MSE (and the model's eval metrics, e.g.
                                codebook usage) on a fixed eval batch, per eval
    pictures/step_<N>_reconstructions.png   image grid, or input vs reconstructed log
                                            spectrograms of a few audio segments
    pictures/step_<N>_samples.png           prior samples (models without a learnt prior
                                            have none; run.json says why)
    audio/input_<i>.wav, audio/step_<N>_decoded_<i>.wav
                                waveform models: a few eval segments and their decodings

``--model dac`` trains with DAC's adversarial recipe by default (``--objective recipe``:
codec and discriminator, `jaxlatent.apps.dac_recipe`, on the recipe's data pipeline,
`jaxlatent.apps.dac_data`, unless ``--no-recipe-data``; its eval batch is 16 examples of the
pipeline's eval stream; ``--objective reconstruction``: the non-adversarial loss on plain
segments), can start from released or converted weights (``--init-from``) and a
discriminator file (``--init-discriminator``); its evals add mel and STFT distances, SI-SDR,
waveform L1 and per-codebook usage and perplexity.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlatent import training
from jaxlatent.apps.pictures import save_grid, save_spectrograms
from jaxlatent.apps.registry import get_model
from jaxlatent.apps.runs import GRID, PARALLEL, initial_gan_state, initial_state
from jaxlatent.apps.spec import DATA_KINDS
from jaxlatent.apps.train_data import load_recipe_train_data, load_train_data
from jaxlatent.atomic import atomic_write
from jaxlatent.precision import DEFAULT_PRECISION, resolve_precision

#: what this app writes besides `fit`'s artefacts (deleted by ``overwrite``).
APP_ARTIFACTS = ("run.json", "eval.jsonl", "pictures", "audio")
AUDIO_PICTURES = 4  # segments per spectrogram picture


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one `jaxlatent train` run (see ``jaxlatent train --help``)."""

    model: str
    out: str
    steps: int
    batch_size: int
    preset: str | None = None
    quantizer: str | None = None  # None: the preset's (VQ-VAE models only)
    data: str | None = None  # None: the model's bundled data ("digits" or "speech")
    resume: bool = False
    overwrite: bool = False
    eval_every: int | None = None
    checkpoint_every: int | None = None
    learning_rate: float | None = None
    parallel: str = "auto"
    seed: int = 0
    progress: bool = True
    objective: str | None = None  # None: the model's first (``recipe`` where it has one)
    init_from: str | None = None  # pretrained generator (``--init-from``)
    init_discriminator: str | None = None  # pretrained discriminator (``--init-discriminator``)
    recipe_data: bool = True  # --objective recipe: the recipe's data pipeline (--no-recipe-data)
    precision: str = DEFAULT_PRECISION  # the models' convolutions and matmuls (``--precision``)


def _check_out_dir(cfg: TrainConfig) -> None:
    if cfg.resume and cfg.overwrite:
        raise ValueError("pass at most one of --resume and --overwrite")
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise ValueError(f"output folder {cfg.out!r} exists and is not a folder")
    if os.path.isdir(cfg.out) and os.listdir(cfg.out) and not (cfg.resume or cfg.overwrite):
        raise ValueError(
            f"output folder {cfg.out!r} exists and is not empty; pass --resume to continue "
            "its run or --overwrite to replace it"
        )


def _trainer(cfg: TrainConfig, spec, loss_fn, tx):
    kind = cfg.parallel
    if kind not in PARALLEL:
        raise ValueError(f"unknown --parallel {kind!r}; choose one of: {', '.join(PARALLEL)}")
    if kind == "auto":
        kind = "sharded" if jax.device_count() > 1 else "single"
    cls = {
        "single": training.SingleDevice,
        "sharded": training.ShardedDataParallel,
        "pmap": training.PmapDataParallel,
        "shard_map": training.ShardMapDataParallel,
    }[kind]
    return cls(loss_fn, tx, per_device_keys=not spec.same_key_on_devices)


def _check_resume(
    cfg: TrainConfig,
    preset_name: str,
    objective: str,
    template,
    quantizer: str | None,
    pipeline: str = "segments",
) -> int | None:
    """Refuse to resume a run of another model, preset, objective, quantizer or data pipeline
    (before anything is written); `quantizer` is the preset's ``--quantizer`` (None for models
    without one), `pipeline` ``"dac_recipe"`` or ``"segments"``.

    Returns the step of the checkpoint the run will resume from (None: a fresh start).
    """
    run_json = os.path.join(cfg.out, "run.json")
    if os.path.exists(run_json):
        with open(run_json) as f:
            run = json.load(f)
        if (run.get("model"), run.get("preset")) != (cfg.model, preset_name):
            raise ValueError(
                f"the run in {cfg.out!r} trains model {run.get('model')!r} (preset "
                f"{run.get('preset')!r}), not {cfg.model!r} (preset {preset_name!r}); use "
                "another --out or --overwrite"
            )
        ran = run.get("objective", "reconstruction")
        if ran != objective:
            raise ValueError(
                f"the run in {cfg.out!r} trains with --objective {ran}, not {objective}; use "
                "another --out or --overwrite"
            )
        trained = run.get("preset_settings", {}).get("quantizer", "vq")  # older runs: vq
        if quantizer is not None and trained != quantizer:
            raise ValueError(
                f"the run in {cfg.out!r} trains with --quantizer {trained!r}, not "
                f"{quantizer!r}; pass the same --quantizer, another --out or --overwrite"
            )
        ran_data = run.get("data_pipeline", "segments")  # older runs: the plain segments
        if ran_data != pipeline:
            flag = "--no-recipe-data" if ran_data == "segments" else "the recipe's data"
            raise ValueError(
                f"the run in {cfg.out!r} trains on the {ran_data!r} data pipeline, not "
                f"{pipeline!r}; resume with {flag}, another --out or --overwrite"
            )
    ckpt_dir = os.path.join(cfg.out, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        return None
    with training.Checkpointer(ckpt_dir) as ckpt:
        latest = ckpt.latest_step()
        if latest is None:
            return None
        saved = ckpt.metadata()["signature"]
    if saved != training.state_signature(template):
        raise ValueError(
            f"the checkpoint in {ckpt_dir!r} is from another model or preset (its arrays "
            f"differ from {cfg.model!r} preset {preset_name!r}); use another --out or --overwrite"
        )
    return latest


def _recipe_data(cfg: TrainConfig, preset, objective: str):
    """The preset's `jaxlatent.apps.dac_data.DACData` when the run trains on the recipe's data
    pipeline (``--objective recipe`` of a model that has one, unless ``--no-recipe-data``).

    Raises:
      ValueError: ``--no-recipe-data`` for a run without the recipe's data pipeline.
    """
    own = getattr(preset, "recipe_data", None) if objective == "recipe" else None
    if not cfg.recipe_data and own is None:
        raise ValueError(
            f"--no-recipe-data needs --objective recipe of a model with the recipe's data "
            f"pipeline (model {cfg.model!r} trains with {objective!r} on plain segments)"
        )
    return own if cfg.recipe_data else None


def _truncate_eval_log(out: str, step: int | None) -> None:
    """Drop eval records after the resumed checkpoint (an interrupted run's)."""
    path = os.path.join(out, "eval.jsonl")
    if os.path.exists(path):
        kept = [r for r in training.read_jsonl(path) if step is not None and r["step"] <= step]
        atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))


def _remove_app_artifacts(out: str) -> None:
    for name in APP_ARTIFACTS:
        path = os.path.join(out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def _generator_arrays(state) -> tuple[Any, Any, Any]:
    """``(graphdef, params, model_state)`` of the model a run evaluates (a GAN's generator)."""
    if isinstance(state, training.GANTrainState):
        return state.g_graphdef, state.g_params, state.g_model_state
    return state.graphdef, state.params, state.model_state


class _Evaluator:
    """Pictures and eval metrics of a fixed eval batch, every `every` steps."""

    def __init__(self, spec, preset, cfg: TrainConfig, eval_batch: dict, num_classes: int):
        self.spec, self.preset, self.cfg, self.batch = spec, preset, cfg, eval_batch
        self.device = jax.local_devices()[0]
        self.pictures = os.path.join(cfg.out, "pictures")
        self.last: dict[str, Any] | None = None
        n_samples = GRID if spec.data_kind == "image" else AUDIO_PICTURES

        def pictures(graphdef, params, model_state, batch, key):
            model = nnx.merge(graphdef, params, model_state)  # the hooks call it with train=False
            k1, k2 = jax.random.split(key)
            k3 = jax.random.fold_in(key, 2)
            recons = spec.reconstruct(model, batch, k1)
            samples = None
            if spec.sample is not None:
                samples = spec.sample(model, n_samples, k2, num_classes, preset)
            metrics = {"reconstruction_mse": jnp.mean(jnp.square(recons - batch["x"]))}
            if spec.eval_metrics is not None:
                metrics.update(spec.eval_metrics(model, batch, k3))
            return recons, samples, metrics

        self._pictures = jax.jit(pictures, static_argnums=0)

    def compute(self, state: training.TrainState) -> tuple[np.ndarray, Any, dict[str, float]]:
        """Reconstructions and samples (numpy; samples None without a prior) and metrics."""
        graphdef, params, model_state = jax.device_put(_generator_arrays(state), self.device)
        key = jax.random.key(self.cfg.seed + 1)  # the same noise at every eval
        recons, samples, metrics = jax.device_get(
            self._pictures(graphdef, params, model_state, self.batch, key)
        )
        return recons, samples, {k: float(v) for k, v in metrics.items()}

    def _write_pictures(self, stem: str, step: int, recons, samples) -> None:
        x = self.batch["x"]
        if self.spec.data_kind == "image":
            save_grid(
                stem + "_reconstructions.png",
                [("input", x), (f"reconstruction (step {step})", recons)],
            )
            if samples is not None:
                title = f"{self.spec.sample_title} (step {step})"
                save_grid(stem + "_samples.png", [(title, samples)])
            return
        from jaxlatent.apps.audio_data import picture_spectrograms

        n, p = AUDIO_PICTURES, self.preset
        xlabel = f"frame ({1000 * p.hop_length / p.sample_rate:g} ms)"
        rows = [("input", x[:n]), (f"reconstruction, step {step}", recons[:n])]
        rows = [(title, picture_spectrograms(v, p)) for title, v in rows]
        save_spectrograms(stem + "_reconstructions.png", rows, xlabel=xlabel)
        if p.feature == "waveform":
            self._write_audio(step, recons[:n])
        if samples is not None:
            title = f"{self.spec.sample_title}, step {step}"
            rows = [(title, picture_spectrograms(samples[:n], p))]
            save_spectrograms(stem + "_samples.png", rows, xlabel=xlabel, panel="sample")

    def _write_audio(self, step: int, decoded: np.ndarray) -> None:
        from jaxlatent.codec.files import write_audio

        folder = os.path.join(self.cfg.out, "audio")
        os.makedirs(folder, exist_ok=True)
        rate = self.preset.sample_rate
        for i, (x, y) in enumerate(zip(self.batch["x"], decoded, strict=False)):
            name = os.path.join(folder, f"input_{i}.wav")
            if not os.path.exists(name):
                write_audio(name, np.clip(x, -1, 1), rate)
            write_audio(
                os.path.join(folder, f"step_{step:06d}_decoded_{i}.wav"), np.clip(y, -1, 1), rate
            )

    def __call__(self, step: int, state: training.TrainState, metrics: Any) -> None:
        every = self.cfg.eval_every
        if not (step == self.cfg.steps or (every and step % every == 0)):
            return
        recons, samples, values = self.compute(state)
        if jax.process_index() != 0:
            return
        os.makedirs(self.pictures, exist_ok=True)
        self._write_pictures(os.path.join(self.pictures, f"step_{step:06d}"), step, recons, samples)
        self.last = {"step": step, **values}
        with open(os.path.join(self.cfg.out, "eval.jsonl"), "a") as f:
            f.write(json.dumps(self.last) + "\n")


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Check everything, train, write pictures; returns the summary.

    Raises:
      ValueError: for any bad input (before anything is written).
    """
    resolve_precision(cfg.precision)  # an unknown name: ValueError before anything is done
    spec, preset_name, preset = get_model(cfg.model, cfg.preset)
    pretrained = None
    if cfg.init_from is not None:
        if spec.load_pretrained is None:
            raise ValueError(f"model {cfg.model!r} cannot start from a checkpoint (--init-from)")
        preset_name, pretrained = spec.load_pretrained(cfg.init_from, cfg.preset)
        preset = spec.presets[preset_name]
    if cfg.quantizer is not None:
        if not spec.quantizers:
            raise ValueError(f"--quantizer: model {cfg.model!r} has no quantizer to swap")
        if cfg.quantizer not in spec.quantizers:
            raise ValueError(
                f"unknown --quantizer {cfg.quantizer!r}; choose one of: "
                f"{', '.join(spec.quantizers)}"
            )
        preset = dataclasses.replace(preset, quantizer=cfg.quantizer)
    if cfg.steps < 1:
        raise ValueError(f"--steps must be positive, got {cfg.steps}")
    for name in ("eval_every", "checkpoint_every"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    _check_out_dir(cfg)
    objective = cfg.objective or spec.objectives[0]
    if objective not in spec.objectives:
        raise ValueError(
            f"unknown --objective {objective!r} for model {cfg.model!r}; choose one of: "
            f"{', '.join(spec.objectives)}"
        )
    recipe_data = _recipe_data(cfg, preset, objective)
    if recipe_data is not None:
        data, clips = load_recipe_train_data(spec, cfg.data)
    else:
        data = load_train_data(spec, preset, cfg.data)
    if spec.needs_labels and len(data.class_names) < 2:
        raise ValueError(
            f"model {cfg.model!r} is conditioned on classes but {data.source!r} has "
            f"{len(data.class_names)}; use --data {DATA_KINDS[spec.data_kind]} or a folder with "
            "one subfolder per class"
        )
    if cfg.init_discriminator is not None and objective != "recipe":
        raise ValueError(
            f"--init-discriminator needs --objective recipe (model {cfg.model!r} trains "
            f"with {objective!r}, which has no discriminator)"
        )
    if objective == "recipe":
        disc = None
        if cfg.init_discriminator is not None:
            if spec.load_discriminator is None:
                raise ValueError(f"model {cfg.model!r} cannot load a discriminator")
            disc = spec.load_discriminator(cfg.init_discriminator, preset)
        gan = spec.adversarial(preset, cfg.learning_rate)
        lr = float(gan.generator_lr(0))
        trainer = _trainer(cfg, spec, gan, None)
        trainer.check_batch_size(cfg.batch_size)
        state = initial_gan_state(
            spec,
            preset,
            gan,
            cfg.seed,
            generator=pretrained,
            discriminator=disc,
            precision=cfg.precision,
        )
    else:
        lr = cfg.learning_rate or preset.learning_rate
        tx = training.make_optimizer("adam", lr)
        trainer = _trainer(cfg, spec, spec.loss_fn(preset), tx)
        trainer.check_batch_size(cfg.batch_size)
        classes = len(data.class_names)
        state = initial_state(
            spec, preset, classes, tx, cfg.seed, model=pretrained, precision=cfg.precision
        )
    if recipe_data is not None:
        from jaxlatent.apps.dac_data import EVAL_STREAM, DACDataIterator

        it = DACDataIterator(clips, recipe_data, preset.sample_rate, cfg.batch_size, seed=cfg.seed)
    else:
        it = training.ArrayDataIterator(data.arrays, cfg.batch_size, seed=cfg.seed)
    pipeline = "dac_recipe" if recipe_data is not None else "segments"
    quantizer = getattr(preset, "quantizer", None) if spec.quantizers else None
    resume_step = (
        _check_resume(cfg, preset_name, objective, state, quantizer, pipeline)
        if cfg.resume
        else None
    )

    # --- all checks passed: write ---
    if cfg.overwrite and os.path.isdir(cfg.out):
        _remove_app_artifacts(cfg.out)
    os.makedirs(cfg.out, exist_ok=True)
    if cfg.resume:
        _truncate_eval_log(cfg.out, resume_step)
    run_info = {
        "model": cfg.model,
        "objective": objective,
        "data_kind": spec.data_kind,
        "preset": preset_name,
        "preset_settings": dataclasses.asdict(preset),
        "data": data.source,
        "examples": data.examples,
        "data_pipeline": pipeline,
        "classes": list(data.class_names),
        **({"data_info": data.info} if data.info else {}),
        "samples": spec.sample_title,
        "init_from": cfg.init_from,
        "init_discriminator": cfg.init_discriminator,
        "batch_size": cfg.batch_size,
        "learning_rate": lr,
        "seed": cfg.seed,
        "precision": cfg.precision,
        "trainer": type(trainer).__name__,
    }
    atomic_write(os.path.join(cfg.out, "run.json"), json.dumps(run_info, indent=2) + "\n")
    if recipe_data is not None:  # the recipe's examples from the eval stream
        eval_batch = it.batch(range(GRID), stream=EVAL_STREAM)
    else:
        eval_idx = np.random.default_rng(cfg.seed).permutation(data.examples)
        if "length" in data.arrays:  # audio: whole segments first (the pictures show a few)
            eval_idx = eval_idx[np.argsort(data.arrays["length"][eval_idx] < 1, kind="stable")]
        eval_idx = eval_idx[:GRID]
        eval_batch = {k: v[eval_idx] for k, v in data.arrays.items()}
    evaluator = _Evaluator(spec, preset, cfg, eval_batch, len(data.class_names))
    evaluator.compute(state)  # compile before training: the throughput excludes it
    result = training.fit(
        trainer,
        state,
        it,
        steps=cfg.steps,
        out_dir=cfg.out,
        checkpoint_every=cfg.checkpoint_every or max(cfg.steps // 4, 1),
        log_every=max(min(10, cfg.steps // 10), 1),
        resume=cfg.resume,
        overwrite=cfg.overwrite,
        progress=cfg.progress,
        on_step=evaluator,
    )
    summary = dict(result.summary)
    summary.update(
        model=cfg.model,
        preset=preset_name,
        objective=objective,
        data=data.source,
        eval=evaluator.last,
    )
    return summary


def format_run_summary(summary: dict[str, Any], out: str) -> str:
    """The few lines `jaxlatent train` prints at the end."""
    loss = summary["final_metrics"].get("loss")
    ev = summary["eval"]
    parts = [
        f"{summary['model']} ({summary['preset']}) on {summary['data']}: steps "
        f"{summary['start_step']}→{summary['final_step']}",
        f"loss {loss:.4g}" if loss is not None else "no steps run",
    ]
    if ev:
        parts.append(f"eval reconstruction MSE {ev['reconstruction_mse']:.4g}")
        if "codes_used" in ev:
            parts.append(f"codes used {ev['codes_used']:.4g}")
    if summary.get("examples_per_sec"):
        parts.append(f"{summary['examples_per_sec']:.0f} examples/s")
    return "; ".join(parts) + f"; outputs in {out}"
