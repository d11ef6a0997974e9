"""DAC's adversarial recipe, one full step: jaxlatent (jit) vs the official torch step (eager).

Run from the repository root::

    python -m benchmarks.bench_dac_recipe [--presets small 16khz] [--batch N] [--segment S]
        [--rounds 2] [--iters 3] [--out FILE]

One step of descript-audio-codec 1.0.0's ``scripts/train.py`` (``train_loop``) with
``conf/base.yml``: the codec's forward pass; one discriminator update on the detached output
(least-squares ``GANLoss.discriminator_loss``, gradients clipped to 10, AdamW lr 1e-4 betas
(0.8, 0.99), ``ExponentialLR`` gamma 0.999996); then one codec update against the updated
discriminator with 15 x mel + 2 x feature matching + 1 x adversarial + 0.25 x commitment +
1 x codebook (the multi-scale STFT and waveform L1 losses computed and logged, weight 0),
gradients clipped to 1e3, the same optimizer. Quantizer dropout as the preset configures it.

* torch: ``dac.DAC``, ``dac.model.discriminator.Discriminator``, the losses of
  ``dac.nn.loss`` on ``audiotools.AudioSignal``s, ``torch.optim.AdamW`` and
  ``torch.optim.lr_scheduler.ExponentialLR``, ``torch.nn.utils.clip_grad_norm_``: the
  official ``train_loop`` written out without its ``Accelerator`` (amp off, one CPU process:
  its ``backward``/``step`` are ``loss.backward()``/``optimizer.step()``) and its data
  transforms (`VolumeNorm`, `RescaleAudio`, `ShiftPhase`, which jaxlatent does not apply
  either: both get the same batch); where the codec decodes fewer samples than it was given
  (the 16 and 24 kHz strides), the target is cut to the output's length on both sides.
* jaxlatent: `jaxlatent.apps.dac_recipe.dac_gan_objective`'s ``train_step`` under
  ``jax.jit`` with the state donated, as ``jaxlatent train --model dac --parallel single``.

Same weights, same batch: a ``prepare`` worker builds the initial `GANTrainState` of
``jaxlatent train`` (`jaxlatent.apps.runs.initial_gan_state`, seed 0) and exports both models to
the reference's state_dicts with the production converters
(`converters.dac.export_state_dict`, `converters.dac_discriminator.discriminator_state_dict`,
loaded by torch with ``strict=True``); the batch is the first ``--batch`` whole segments of the
bundled speech (`jaxlatent.apps.audio_data.load_audio`). Quantizer dropout draws at random on
both sides; for the two checked steps the torch worker's draw (``torch.randint`` in
``ResidualVectorQuantize.forward``) is replaced by the depths jaxlatent draws from its step
keys (`jaxlatent.quantizers.dac.dropout_depths`, computed by ``prepare``), so that both
compute the same steps; the timed steps draw their own. The parent asserts that every
round's step-1 loss terms (mel, feature matching, adversarial of the generator,
discriminator, commitment, codebook, the generator's total, the logged STFT and waveform
losses) agree within `LOSS_RTOL` and both gradient norms within `GRAD_RTOL`
(`check_losses`); the largest step-2 difference (after one AdamW update of each model) is
reported.

Timing as every benchmark here (`benchmarks.common`): ``--rounds`` alternating rounds (torch,
jax; jax, torch; ...), one fresh worker process per framework per round; each runs two checked
steps (the first jaxlatent step, trace + compile + one step, is its compile time), ``--warmup``
untimed steps and ``--iters`` timed steps (median wall and process CPU time; an XLA
compilation during the timed steps is an error). Reported: the median of the rounds' medians
and its spread, the speed-up torch / jaxlatent, the load average at the start, after each
round (stderr) and at the end.

Sizes. The official conf trains the 44 kHz model on batches of 72 excerpts of 0.38 s
(``batch_size: 72``, ``train/AudioDataset.duration: 0.38``) on GPUs. On a 2-core CPU with
23 GB this script defaults to ``small`` at 4 x 2048 samples (0.128 s, the preset's
segment) and to the released ``16khz`` model at 2 x 6080 samples (0.38 s, the conf's
duration); ``--batch`` and ``--segment`` (samples, a multiple of the codec's hop) override
both. ``--smoke`` runs the ``tiny`` preset with quantizer dropout 0.5 (so that the matched
dropout draw is exercised) in one round of one step: the structure, not the numbers
(tests/unit/test_bench_dac_recipe.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

import numpy as np

from benchmarks import common
from benchmarks.common import Spread, markdown_table, ratios, report

MODULE = "benchmarks.bench_dac_recipe"
TARGET = 1.5
SEED = 0
#: the official conf's batch (``conf/base.yml``): 72 excerpts of 0.38 s, at 44.1 kHz
OFFICIAL_BATCH, OFFICIAL_SECONDS = 72, 0.38
#: default batch per preset on a 2-core CPU (23 GB); other presets: 2
DEFAULT_BATCH = {"tiny": 2, "small": 4}
#: step 1, float32 on both sides from the same weights and batch: only the order of
#: accumulation differs (convolutions, STFTs, sums over ~1e5 terms), no training yet. A term
#: passes when |jax - torch| <= LOSS_RTOL * |torch| + LOSS_ATOL (the absolute part for the
#: terms that start near 0: adversarial/feature terms of a fresh discriminator).
LOSS_RTOL = 1e-4
LOSS_ATOL = 1e-6
#: the two gradient norms (pre-clipping) of step 1: backward through the discriminator's
#: LeakyReLU kinks and the feature-matching L1's signs (tests/tolerance_tables/dac.py
#: ``dac_discriminator_param_grad``) and the mel loss's log10 near clamp_eps
#: (``dac_loss_mel_grad_near_clamp``: 1e-3 relative): measured 7.7e-4 (the 16 kHz codec's,
#: 1523.62 vs 1522.46) while every loss agrees to 1e-4
GRAD_RTOL = 5e-3

#: jaxlatent metric -> the official ``train_loop`` output key
TERMS = {
    "mel_loss": "mel/loss",
    "feature_matching_loss": "adv/feat_loss",
    "adversarial_loss": "adv/gen_loss",
    "disc_loss": "adv/disc_loss",
    "commitment_loss": "vq/commitment_loss",
    "codebook_loss": "vq/codebook_loss",
    "loss": "loss",
    "stft_loss": "stft/loss",
    "waveform_l1": "waveform/loss",
    "grad_norm": "other/grad_norm",
    "grad_norm_d": "other/grad_norm_d",
}


# -- sizes -----------------------------------------------------------------------------------
def preset(args):
    """The `AudioPreset` of ``args.preset`` with ``--segment`` and ``--quantizer-dropout``
    applied."""
    from jaxlatent.apps.registry_audio import DAC_PRESETS

    if args.preset not in DAC_PRESETS:
        raise SystemExit(f"unknown preset {args.preset!r}; choose one of {', '.join(DAC_PRESETS)}")
    p = DAC_PRESETS[args.preset]
    if args.segment is not None:
        hop = p.dac.hop_length
        if args.segment < hop or args.segment % hop:
            raise SystemExit(f"--segment must be a positive multiple of the hop {hop}")
        p = dataclasses.replace(p, segment=args.segment)
    if args.quantizer_dropout is not None:
        if not 0.0 <= args.quantizer_dropout <= 1.0:
            raise SystemExit("--quantizer-dropout must lie in [0, 1]")
        dac = dataclasses.replace(p.dac, quantizer_dropout=args.quantizer_dropout)
        p = dataclasses.replace(p, dac=dac)
    return p


def batch_size(args) -> int:
    return args.batch if args.batch is not None else DEFAULT_BATCH.get(args.preset, 2)


def _path(args, what: str) -> str:
    return os.path.join(args.workdir, f"{args.preset}-{what}")


# -- workers (one framework per process) -----------------------------------------------------
def worker_prepare(args) -> dict:
    """The initial state of ``jaxlatent train``, exported for torch; the batch; the
    quantizer-dropout depths of steps 1 and 2."""
    import jax

    from converters.dac import detect_style, export_state_dict
    from converters.dac_discriminator import discriminator_state_dict
    from jaxlatent.apps.audio_data import load_audio
    from jaxlatent.apps.registry import MODELS
    from jaxlatent.apps.runs import initial_gan_state
    from jaxlatent.quantizers.dac import dropout_depths

    p, n = preset(args), batch_size(args)
    spec = MODELS["dac"]
    objective = spec.adversarial(p, None)
    state = initial_gan_state(spec, p, objective, SEED)
    generator, discriminator = state.generator(), state.discriminator()
    common.save_state(_path(args, "generator.npz"), generator)
    common.save_state(_path(args, "discriminator.npz"), discriminator)

    common.torch_threads(args.threads)
    dac = import_dac()
    style = detect_style(dac.DAC(**p.dac.to_kwargs()).state_dict())
    np.savez(_path(args, "generator-torch.npz"), **export_state_dict(generator, style=style))
    disc_sd = discriminator_state_dict(discriminator, style=style)
    np.savez(_path(args, "discriminator-torch.npz"), **disc_sd)

    data = load_audio("speech", p)
    if len(data.x) < n:
        raise SystemExit(
            f"the bundled speech has {len(data.x)} segments of {p.segment} samples, "
            f"--batch {n} asks for more"
        )
    np.save(_path(args, "batch.npy"), data.x[:n])
    # each train step splits the state's key, keeps the first half and hands the second to
    # the codec, whose quantizer draws its dropout depths from it (jaxlatent.training.gan_step)
    key, depths = state.key, []
    for _ in range(2):
        key, step_key = jax.random.split(key)
        depths.append(dropout_depths(step_key, n, p.dac.n_codebooks, p.dac.quantizer_dropout))
    depths = np.stack([np.asarray(d) for d in depths])
    np.save(_path(args, "depths.npy"), depths)
    count = sum(x.size for x in jax.tree.leaves(state.g_params))
    count_d = sum(x.size for x in jax.tree.leaves(state.d_params))
    return {
        "params_g": int(count),
        "params_d": int(count_d),
        "examples": n,
        "segment": p.segment,
        "sample_rate": p.dac.sample_rate,
        "quantizer_dropout": p.dac.quantizer_dropout,
        "depths": depths.tolist(),
    }


def import_dac():
    """``dac`` with the torchaudio stub installed where torchaudio is missing."""
    from converters.torchaudio_stub import install_torchaudio_stub

    install_torchaudio_stub()
    import dac
    import dac.nn.loss
    import dac.nn.quantize

    return dac


def torch_recipe(args):
    """The official ``train_loop`` (one step) on the prepared weights and batch: ``step()``
    returns the step's outputs as floats, keyed as the official's. Its first two calls draw
    the prepared quantizer-dropout depths (jaxlatent's steps 1 and 2), later ones their own.

    Raises:
      RuntimeError: (from a checked step) if the quantizer did not draw its dropout once."""
    import contextlib
    import warnings
    from unittest import mock

    # as scripts/train.py: torch's weight_norm deprecation, audiotools' "stft_data changed
    # shape" (one AudioSignal analysed at several window sizes)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)

    torch = common.torch_threads(args.threads)
    dac = import_dac()
    from audiotools import AudioSignal
    from dac.model.discriminator import Discriminator

    p = preset(args)
    r, rate = p.recipe, p.dac.sample_rate
    generator = dac.DAC(**p.dac.to_kwargs())
    discriminator = Discriminator(**p.discriminator.to_kwargs())
    for model, what in ((generator, "generator"), (discriminator, "discriminator")):
        with np.load(_path(args, f"{what}-torch.npz")) as f:
            model.load_state_dict({k: torch.from_numpy(f[k]) for k in f.files}, strict=True)
    losses = dac.nn.loss
    n = len(r.mel_windows)
    mel_loss = losses.MelSpectrogramLoss(
        n_mels=list(r.mel_bands),
        window_lengths=list(r.mel_windows),
        mel_fmin=[0.0] * n,
        mel_fmax=[None] * n,
        pow=1.0,
        clamp_eps=1e-5,
        mag_weight=0.0,
    )
    stft_loss = losses.MultiScaleSTFTLoss(window_lengths=list(r.stft_windows))
    waveform_loss = losses.L1Loss()
    gan_loss = losses.GANLoss(discriminator)
    lambdas = {
        "mel/loss": r.mel,
        "adv/feat_loss": r.feature_matching,
        "adv/gen_loss": r.adversarial,
        "vq/commitment_loss": r.commitment,
        "vq/codebook_loss": r.codebook,
    }

    def adamw(model):
        return torch.optim.AdamW(
            model.parameters(), lr=r.learning_rate, betas=r.betas, weight_decay=r.weight_decay
        )

    optimizer_g, optimizer_d = adamw(generator), adamw(discriminator)
    scheduler_g = torch.optim.lr_scheduler.ExponentialLR(optimizer_g, r.lr_gamma)
    scheduler_d = torch.optim.lr_scheduler.ExponentialLR(optimizer_d, r.lr_gamma)
    audio = torch.from_numpy(np.load(_path(args, "batch.npy"))).permute(0, 2, 1).contiguous()
    checked = list(torch.from_numpy(np.load(_path(args, "depths.npy")).astype(np.int64)))

    def update(loss, optimizer, scheduler, params, clip):  # one side's update; its grad norm
        optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        scheduler.step()
        return grad_norm

    def train_loop():  # scripts/train.py's, without the Accelerator and the transforms
        generator.train()
        discriminator.train()
        output = {}
        signal = AudioSignal(audio.clone(), rate)
        out = generator(signal.audio_data, signal.sample_rate)
        recons = AudioSignal(out["audio"], signal.sample_rate)
        # the 16/24 kHz strides decode a few samples fewer than they encode (6072 of 6080 at
        # 16 kHz), where the official losses fail on mismatched frames; the target is cut to
        # the output, as jaxlatent's recipe does (dac_recipe._target)
        signal = AudioSignal(signal.audio_data[..., : recons.signal_length], rate)
        commitment_loss = out["vq/commitment_loss"]
        codebook_loss = out["vq/codebook_loss"]

        output["adv/disc_loss"] = gan_loss.discriminator_loss(recons, signal)
        output["other/grad_norm_d"] = update(
            output["adv/disc_loss"],
            optimizer_d,
            scheduler_d,
            discriminator.parameters(),
            r.clip_discriminator,
        )

        output["stft/loss"] = stft_loss(recons, signal)
        output["mel/loss"] = mel_loss(recons, signal)
        output["waveform/loss"] = waveform_loss(recons, signal)
        output["adv/gen_loss"], output["adv/feat_loss"] = gan_loss.generator_loss(recons, signal)
        output["vq/commitment_loss"] = commitment_loss
        output["vq/codebook_loss"] = codebook_loss
        output["loss"] = sum([v * output[k] for k, v in lambdas.items() if k in output])

        output["other/grad_norm"] = update(
            output["loss"], optimizer_g, scheduler_g, generator.parameters(), r.clip_generator
        )
        return {k: float(v.detach()) for k, v in output.items()}

    def step():
        if not checked:
            return train_loop()
        depths = checked.pop(0)
        real, drawn = torch.randint, []

        def randint(low, high, size, *a, **k):  # the quantizer's one draw per forward pass
            if (low, high, tuple(size)) == (1, p.dac.n_codebooks + 1, tuple(depths.shape)):
                drawn.append(True)
                return depths.clone()
            return real(low, high, size, *a, **k)

        dropout = int(len(depths) * p.dac.quantizer_dropout) > 0
        with mock.patch.object(torch, "randint", randint) if dropout else contextlib.nullcontext():
            out = train_loop()
        if dropout and len(drawn) != 1:
            raise RuntimeError(f"the quantizer drew its dropout {len(drawn)} times, not once")
        return out

    return step


def worker_torch(args) -> dict:
    r = common.run_steps(torch_recipe(args), lambda x: x, args.warmup, args.iters)
    return dict(r, env=common.torch_environment(), load=common.load())


def worker_jax(args) -> dict:
    import jax
    from flax import nnx

    from jaxlatent.apps.dac_recipe import dac_gan_objective
    from jaxlatent.models.dac import DAC, Discriminator

    counter = common.CompileCounter()
    p = preset(args)
    generator = nnx.eval_shape(lambda: DAC(p.dac, rngs=nnx.Rngs(0)))
    discriminator = nnx.eval_shape(lambda: Discriminator(p.discriminator, rngs=nnx.Rngs(0)))
    common.load_state(_path(args, "generator.npz"), generator)
    common.load_state(_path(args, "discriminator.npz"), discriminator)
    objective = dac_gan_objective(p.recipe, p.dac.sample_rate)
    state = [objective.init(generator, discriminator, key=SEED)]
    train_step = jax.jit(objective.train_step(), donate_argnums=(0,))
    batch = {"x": jax.device_put(np.load(_path(args, "batch.npy")))}

    def step():
        state[0], metrics = train_step(state[0], batch)
        return metrics

    def block(metrics):
        metrics = jax.block_until_ready(metrics)
        return {k: float(metrics[k]) for k in TERMS}

    r = common.run_steps(step, block, args.warmup, args.iters, lambda: counter.count)
    return dict(r, env=common.jax_environment(), load=common.load())


WORKERS = {"prepare": worker_prepare, "torch": worker_torch, "jax": worker_jax}


# -- parent ----------------------------------------------------------------------------------
def term_differences(jax_losses: dict, torch_losses: dict) -> dict[str, float]:
    """|jax - torch| / (rtol |torch| + LOSS_ATOL) per term (rtol: GRAD_RTOL for the gradient
    norms, LOSS_RTOL for the losses): <= 1 passes."""
    out = {}
    for name, key in TERMS.items():
        j, t = jax_losses[name], torch_losses[key]
        rtol = GRAD_RTOL if name.startswith("grad_norm") else LOSS_RTOL
        out[name] = abs(j - t) / (rtol * abs(t) + LOSS_ATOL)
    return out


def check_losses(label: str, results: dict[str, list[dict]]) -> dict:
    """Every round's step-1 terms must agree (same weights, same batch, same dropout draw:
    the same work is compared); returns the first round's step-1 losses, the largest relative
    difference of a step-1 term and of a step-2 term (after one AdamW update each).

    Raises:
      AssertionError: naming the terms that differ by more than the tolerance.
    """
    for t, j in zip(results["torch"], results["jax"], strict=True):
        ratio = term_differences(j["losses"][0], t["losses"][0])
        bad = {k: (j["losses"][0][k], t["losses"][0][TERMS[k]]) for k, v in ratio.items() if v > 1}
        if bad:
            detail = ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in bad.items())
            raise AssertionError(
                f"{label}: jaxlatent and torch compute different step-1 losses on the same "
                f"weights and batch ({detail}): the benchmark would compare different work"
            )

    def rel(step: int) -> float:
        return max(
            abs(j["losses"][step][k] - t["losses"][step][TERMS[k]])
            / max(abs(t["losses"][step][TERMS[k]]), 1e-12)
            for t, j in zip(results["torch"], results["jax"], strict=True)
            for k in TERMS
        )

    jax1, torch1 = results["jax"][0]["losses"][0], results["torch"][0]["losses"][0]
    return {"jax": jax1, "torch": {k: torch1[v] for k, v in TERMS.items()}, "step1_rel": rel(0),
            "step2_rel": rel(1)}  # fmt: skip


HEADER = [
    "preset",
    "params codec / disc.",
    "batch",
    "jaxlatent step s (median, min to max)",
    "torch step s",
    "speed-up",
    "per round",
    f">= {TARGET:g}x",
    "busy cores jax / torch",
    "speed-up (CPU time)",
    "jax first step s (compile)",
    "step-1 loss jax / torch",
    "max rel. diff step 1 / step 2",
]


def row(prep: dict, results: dict, check: dict, name: str) -> tuple[list, float]:
    jax_s = [r["median_s"] for r in results["jax"]]
    torch_s = [r["median_s"] for r in results["torch"]]
    j, t, speedup = Spread.of(jax_s), Spread.of(torch_s), ratios(torch_s, jax_s)

    def busy(side):
        return statistics.median(r["cpu_median_s"] / r["median_s"] for r in results[side])

    def cpu(side):
        return statistics.median(r["cpu_median_s"] for r in results[side])

    seconds = prep["segment"] / prep["sample_rate"]
    dropout = f", dropout {prep['quantizer_dropout']:g}" if prep["quantizer_dropout"] else ""
    return [
        name,
        f"{prep['params_g'] / 1e6:.2f} M / {prep['params_d'] / 1e6:.2f} M",
        f"{prep['examples']} x {prep['segment']} ({seconds:.3g} s at "
        f"{prep['sample_rate'] / 1000:g} kHz{dropout})",
        j.fmt(),
        t.fmt(),
        f"**{speedup.median:.2f}x**",
        f"{speedup.low:.2f} to {speedup.high:.2f}x",
        "yes" if speedup.median >= TARGET else "**no**",
        f"{busy('jax'):.2f} / {busy('torch'):.2f}",
        f"{cpu('torch') / cpu('jax'):.2f}x",
        f"{statistics.median(r['first_s'] for r in results['jax']):.1f}",
        f"{check['jax']['loss']:.6g} / {check['torch']['loss']:.6g}",
        f"{check['step1_rel']:.1e} / {check['step2_rel']:.1e}",
    ], speedup.median


def run(args) -> str:
    load_start = common.load()
    t_start = time.perf_counter()
    rows, speedups, envs, checks, loads = [], {}, set(), {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_dac_recipe-") as work:
        for name in args.presets:
            wargs = ["--preset", name, "--workdir", work, "--threads", args.threads]
            for flag in ("batch", "segment", "quantizer_dropout"):
                if getattr(args, flag) is not None:
                    wargs += ["--" + flag.replace("_", "-"), getattr(args, flag)]
            prep = common.run_worker(MODULE, "prepare", wargs)
            timing = [*wargs, "--iters", args.iters, "--warmup", args.warmup]
            results = common.alternate(MODULE, args.rounds, timing, label=name)
            checks[name] = check_losses(name, results)
            r, speedups[name] = row(prep, results, checks[name], name)
            rows.append(r)
            envs |= {results["jax"][0]["env"], results["torch"][0]["env"]}
            loads[name] = [(side, r["load"]) for side in ("torch", "jax") for r in results[side]]
    total = time.perf_counter() - t_start
    terms = "; ".join(
        f"{name}: " + ", ".join(f"{k} {c['jax'][k]:.6g} / {c['torch'][k]:.6g}" for k in TERMS)
        for name, c in checks.items()
    )
    met = all(s >= TARGET for s in speedups.values())
    return "\n".join(
        [
            "# bench_dac_recipe: one step of DAC's adversarial recipe, jaxlatent (jit) vs the "
            "official torch step (eager)",
            "",
            f"Environment: {common.machine()}; workers: {'; '.join(sorted(envs))}; "
            f"{args.threads} threads per framework.",
            "",
            f"Load at start: {load_start}; at end: {common.load()}. Total run time {total:.0f} s. "
            "At the end of each worker: "
            + "; ".join(
                f"{name} {side} {load.removeprefix('load average ')}"
                for name, pairs in loads.items()
                for side, load in pairs
            )
            + ".",
            "",
            "Step = codec forward + discriminator update (clip 10, AdamW) + codec update against "
            "the updated discriminator (15 mel + 2 feature matching + 1 adversarial + 0.25 "
            "commitment + 1 codebook, clip 1e3, AdamW), both ExponentialLR-stepped; the official "
            f"conf trains on {OFFICIAL_BATCH} x {OFFICIAL_SECONDS} s excerpts on GPUs. "
            f"{args.rounds} alternating rounds (one fresh process per framework per round) of "
            f"{args.iters} timed steps after 2 checked + {args.warmup} warm-up steps; a step "
            "time is the median of the rounds' medians (min to max over the rounds); busy "
            "cores = process CPU time / wall time of a step; speed-up (CPU time) = torch / "
            "jaxlatent process CPU time per step (all threads; less sensitive to other load "
            "than wall time); first jaxlatent step = trace + XLA compile + one step.",
            "",
            markdown_table(HEADER, rows),
            "",
            "Step-1 terms jax / torch (asserted within "
            f"{LOSS_RTOL:g} relative + {LOSS_ATOL:g}, the gradient norms {GRAD_RTOL:g} "
            f"relative, every round): {terms}.",
            "",
            f"Target >= {TARGET:g}x torch: "
            + ("met" if met else "**MISSED**")
            + " ("
            + ", ".join(f"{n} {s:.2f}x" for n, s in speedups.items())
            + ").",
        ]
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["small", "16khz"], help="dac presets")
    p.add_argument("--batch", type=int, help="examples per step (default: small 4, released 2)")
    p.add_argument("--segment", type=int, help="samples per example (default: the preset's)")
    p.add_argument(
        "--quantizer-dropout", type=float, help="override the preset's (default: the preset's)"
    )
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    p.add_argument("--iters", type=int, default=3, help="timed steps per worker")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per worker")
    p.add_argument("--threads", type=int, default=common.cores(), help="per framework")
    p.add_argument(
        "--smoke", action="store_true", help="tiny preset, quantizer dropout 0.5, 1 round of 1 step"
    )
    p.add_argument("--out", help="also write the Markdown here")
    # worker processes only
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    if common.serve_worker(args, WORKERS):
        return
    if args.batch is not None and args.batch < 1:
        raise SystemExit("--batch must be >= 1")
    if args.smoke:
        args.presets, args.rounds, args.iters, args.warmup = ["tiny"], 1, 1, 0
        if args.quantizer_dropout is None:
            args.quantizer_dropout = 0.5  # exercises the matched step-1 dropout draw
    report(run(args), args.out)


if __name__ == "__main__":
    main()
