"""Demo: train a SpeechBrain-style variational autoencoder on real speech spectrograms.

The data are the bundled 16 kHz utterances (`jaxlatent.datasets.bundled_speech`), turned into
normalised log-magnitude spectrograms ``[time, freq]`` and cut into fixed-size segments; the
last segment of each utterance is zero-padded and carries a relative length < 1, so the
length masking of `VariationalAutoencoder.train_sample` and `VariationalAutoencoderLoss` is
exercised for real. The model is a convolutional VAE over time (channels-last
``[batch, time, freq]``), trained with optax Adam.

Outputs (written atomically into `out_dir`): ``metrics.json`` (loss curve and final numbers)
and ``reconstruction.png`` (input vs reconstructed spectrogram of one utterance).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.atomic import atomic_write
from jaxlatent.datasets import bundled_speech
from jaxlatent.losses import VariationalAutoencoderLoss
from jaxlatent.models import VariationalAutoencoder


@dataclasses.dataclass(frozen=True)
class SpeechVAEDemoConfig:
    """Settings of the demo (defaults run in about a minute on 2 CPU cores)."""

    n_fft: int = 512
    hop_length: int = 160  # samples (10 ms at 16 kHz)
    segment_frames: int = 64
    hidden: int = 256
    latent: int = 32
    kernel_size: int = 5
    steps: int = 300
    batch_size: int = 16
    learning_rate: float = 2e-3
    dist_loss_weight: float = 1e-3
    seed: int = 0


def log_spectrogram(audio: np.ndarray, cfg: SpeechVAEDemoConfig) -> np.ndarray:
    """log(1 + |STFT|) of mono audio ``[time]`` → ``[frames, n_fft//2 + 1]`` float32."""
    import scipy.signal

    _, _, z = scipy.signal.stft(
        audio, nperseg=cfg.n_fft, noverlap=cfg.n_fft - cfg.hop_length, boundary=None
    )
    return np.log1p(np.abs(z).T * 100.0).astype(np.float32)


def make_segments(specs: list[np.ndarray], frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut spectrograms into ``[n, frames, freq]`` segments plus relative lengths ``[n]``."""
    segments, lengths = [], []
    for s in specs:
        for start in range(0, s.shape[0], frames):
            piece = s[start : start + frames]
            lengths.append(piece.shape[0] / frames)
            segments.append(np.pad(piece, ((0, frames - piece.shape[0]), (0, 0))))
    return np.stack(segments), np.asarray(lengths, np.float32)


def build_model(freq: int, cfg: SpeechVAEDemoConfig, rngs: nnx.Rngs) -> VariationalAutoencoder:
    k, p = cfg.kernel_size, cfg.kernel_size // 2
    encoder = nnx.Sequential(
        jnn.Conv1d(freq, cfg.hidden, k, padding=p, rngs=rngs),
        nnx.leaky_relu,
        jnn.Conv1d(cfg.hidden, cfg.hidden, k, padding=p, rngs=rngs),
        nnx.leaky_relu,
    )
    decoder = nnx.Sequential(
        jnn.Conv1d(cfg.latent, cfg.hidden, k, padding=p, rngs=rngs),
        nnx.leaky_relu,
        jnn.Conv1d(cfg.hidden, freq, k, padding=p, rngs=rngs),
    )
    return VariationalAutoencoder(
        encoder=encoder,
        decoder=decoder,
        mean=jnn.Conv1d(cfg.hidden, cfg.latent, 1, rngs=rngs),
        log_var=jnn.Conv1d(cfg.hidden, cfg.latent, 1, rngs=rngs),
    )


def _save_figure(path: str, original: np.ndarray, rec: np.ndarray) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    for ax, data, title in ((axes[0], original, "input"), (axes[1], rec, "VAE reconstruction")):
        ax.imshow(data.T, origin="lower", aspect="auto", cmap="magma")
        ax.set_title(title)
        ax.set_ylabel("frequency bin")
    axes[1].set_xlabel("frame (10 ms)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def run(out_dir: str, cfg: SpeechVAEDemoConfig = SpeechVAEDemoConfig(), progress=True) -> dict:
    """Train the demo VAE and write its outputs; returns the metrics dict."""
    from tqdm import tqdm

    os.makedirs(out_dir, exist_ok=True)
    clips = bundled_speech()
    specs = [log_spectrogram(c.audio[:, 0], cfg) for c in clips]
    mu = np.mean(np.concatenate(specs))
    sigma = np.std(np.concatenate(specs))
    specs = [(s - mu) / sigma for s in specs]
    x_all, len_all = make_segments(specs, cfg.segment_frames)
    freq = x_all.shape[-1]

    model = build_model(freq, cfg, nnx.Rngs(cfg.seed))
    optimizer = nnx.Optimizer(model, optax.adam(cfg.learning_rate), wrt=nnx.Param)
    loss_fn = VariationalAutoencoderLoss(dist_loss_weight=cfg.dist_loss_weight)

    @nnx.jit
    def train_step(model, optimizer, x, length, key):
        def objective(model):
            out = model.train_sample(x, length, key=key)
            details = loss_fn.details(out, x, length=length, reduction="batchmean")
            return details.loss, details

        (_, details), grads = nnx.value_and_grad(objective, has_aux=True)(model)
        optimizer.update(model, grads)
        return details

    rng = np.random.default_rng(cfg.seed)
    key = jax.random.key(cfg.seed)
    history = []
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="speech VAE", disable=not progress)
    for step in bar:
        idx = rng.choice(len(x_all), size=cfg.batch_size, replace=len(x_all) < cfg.batch_size)
        key, sub = jax.random.split(key)
        d = train_step(model, optimizer, jnp.asarray(x_all[idx]), jnp.asarray(len_all[idx]), sub)
        if step % 10 == 0 or step == cfg.steps - 1:
            row = {k: float(v) for k, v in d._asdict().items()}
            history.append({"step": step, **row})
            bar.set_postfix(loss=f"{row['loss']:.3f}", rec=f"{row['rec_loss']:.3f}")
    seconds = time.perf_counter() - start

    # Reconstruct the first utterance from its posterior mean.
    spec = specs[0][None]
    rec = model.decode(model.encode(jnp.asarray(spec)))
    rec_err = float(np.mean((np.asarray(rec)[0] - spec[0]) ** 2))
    metrics = {
        "config": dataclasses.asdict(cfg),
        "segments": len(x_all),
        "train_seconds": round(seconds, 2),
        "first_loss": history[0]["loss"],
        "final_loss": history[-1]["loss"],
        "reconstruction_mse_utterance0": rec_err,
        "history": history,
    }
    atomic_write(os.path.join(out_dir, "metrics.json"), json.dumps(metrics, indent=2))
    _save_figure(os.path.join(out_dir, "reconstruction.png"), spec[0], np.asarray(rec)[0])
    return metrics
