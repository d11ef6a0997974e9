"""Models and train steps of `bench_train`: torch references and their jaxlatent twins.

Three models, each built twice with the same weights (the jaxlatent one through the
production converters, never by hand):

* ``vae`` — a convolutional VAE over spectrogram frames ``[batch, frames, freq]``: SpeechBrain
  1.1.2 `speechbrain.nnet.autoencoders.VariationalAutoencoder` made of
  `speechbrain.nnet.CNN.Conv1d` ('same' reflect padding) and `speechbrain.nnet.linear.Linear`
  vs `jaxlatent.models.VariationalAutoencoder` of `jaxlatent.nn.SpeechBrainConv1d` /
  `nnx.Linear` (`converters.speechbrain`); loss SpeechBrain's `VariationalAutoencoderLoss` vs
  `jaxlatent.losses.VariationalAutoencoderLoss` (MSE + 1e-3 KL, 'batchmean', relative lengths
  with a quarter of the batch padded). The reparameterisation noise is part of the batch on
  both sides (torch's ``randn_like`` returns it), so both compute the same loss.
* ``vqvae`` — the same convolutional encoder and decoder with DAC's factorised vector
  quantizer between them: `dac.nn.quantize.VectorQuantize` vs
  `jaxlatent.quantizers.dac.VectorQuantize` (`converters.dac_quantizer`); loss
  MSE + 0.25 commitment + 1.0 codebook (DAC's weights of the two VQ terms).
* ``dac`` — the DAC generator: `dac.DAC` vs `jaxlatent.models.dac.DAC`
  (`converters.dac.convert_checkpoint` of the reference's release-layout checkpoint):
  encode + quantize (every codebook) + decode, loss L1(waveform) + 0.25 commitment +
  1.0 codebook. Quantizer dropout is off so that both sides draw nothing at random (it only
  changes masks, not the work: every quantizer runs in training either way).

This module holds the jaxlatent side (models, losses, sizes, batches, the step closure)
and imports no torch, so the scaling child processes need none; the torch references and
the conversions are in `benchmarks.train_pairs`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent import training
from jaxlatent.losses import VariationalAutoencoderLoss
from jaxlatent.models import VariationalAutoencoder
from jaxlatent.models.dac import DAC, DACConfig
from jaxlatent.quantizers.dac import VectorQuantize

MODELS = ("vae", "vqvae", "dac")
COMMITMENT_WEIGHT = 0.25  # DAC's lambdas for "vq/commitment_loss" and "vq/codebook_loss"
CODEBOOK_WEIGHT = 1.0
KL_WEIGHT = 1e-3


@dataclasses.dataclass(frozen=True)
class ConvSize:
    """Sizes of the convolutional VAE / VQ-VAE (defaults: log spectrograms of 16 kHz speech,
    n_fft 512, 64 frames of 10 ms, the shapes of `jaxlatent demo`)."""

    batch: int = 16
    frames: int = 64
    freq: int = 257
    hidden: int = 256
    latent: int = 32
    kernel: int = 5
    codebook_size: int = 512
    codebook_dim: int = 64
    learning_rate: float = 1e-3


@dataclasses.dataclass(frozen=True)
class DACSize:
    """The DAC generator run: the 16 kHz release geometry (74 M parameters), dropout off, on
    0.38 s excerpts (the training excerpt length of DAC's ``conf/base.yml``)."""

    batch: int = 2
    seconds: float = 0.38
    config: DACConfig = dataclasses.field(
        default_factory=lambda: dataclasses.replace(DACConfig.dac_16khz(), quantizer_dropout=0.0)
    )
    learning_rate: float = 1e-4

    @property
    def samples(self) -> int:
        return round(self.seconds * self.config.sample_rate)


#: Tiny sizes for the smoke test (tests/unit/test_bench_train.py).
TINY_CONV = ConvSize(
    batch=4, frames=8, freq=6, hidden=8, latent=4, kernel=3, codebook_size=16, codebook_dim=4
)
TINY_DAC = DACSize(
    batch=2,
    seconds=0.032,
    config=DACConfig(
        encoder_dim=2,
        encoder_rates=(2,),
        decoder_dim=4,
        decoder_rates=(2,),
        n_codebooks=2,
        codebook_size=8,
        codebook_dim=2,
        sample_rate=1000,
    ),
)


# -- data ----------------------------------------------------------------------------------------
def conv_batch(size: ConvSize, seed: int = 0, *, batch: int | None = None) -> dict[str, np.ndarray]:
    """``x [batch, frames, freq]`` ~ N(0, 1), relative ``length`` (every 4th item 0.75) and the
    VAE's reparameterisation ``noise [batch, frames, latent]``."""
    n = size.batch if batch is None else batch
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((n, size.frames, size.freq), dtype=np.float32),
        "length": np.where(np.arange(n) % 4 == 3, 0.75, 1.0).astype(np.float32),
        "noise": rng.standard_normal((n, size.frames, size.latent), dtype=np.float32),
    }


def dac_batch(size: DACSize, seed: int = 0, *, batch: int | None = None) -> dict[str, np.ndarray]:
    """``audio [batch, samples, 1]``: noise at -20 dBFS RMS, clipped to [-1, 1]."""
    n = size.batch if batch is None else batch
    rng = np.random.default_rng(seed)
    audio = 0.1 * rng.standard_normal((n, size.samples, 1), dtype=np.float32)
    return {"audio": np.clip(audio, -1.0, 1.0)}


# -- jaxlatent models and losses -----------------------------------------------------------------
def _leaky(x):
    return jax.nn.leaky_relu(x, 0.01)  # torch.nn.LeakyReLU's default slope


def _jax_conv_stack(
    size: ConvSize, rngs: nnx.Rngs, c_in: int, c_out: int, *, final_act: bool
) -> nnx.Sequential:
    k = size.kernel
    layers = [
        jnn.SpeechBrainConv1d(size.hidden, k, in_channels=c_in, rngs=rngs),
        _leaky,
        jnn.SpeechBrainConv1d(c_out, k, in_channels=size.hidden, rngs=rngs),
    ]
    return nnx.Sequential(*layers, *([_leaky] if final_act else []))


def jax_vae(size: ConvSize, rngs: nnx.Rngs) -> VariationalAutoencoder:
    """encoder conv-leaky-conv-leaky, Linear mean / log_var, decoder conv-leaky-conv."""
    return VariationalAutoencoder(
        encoder=_jax_conv_stack(size, rngs, size.freq, size.hidden, final_act=True),
        decoder=_jax_conv_stack(size, rngs, size.latent, size.freq, final_act=False),
        mean=nnx.Linear(size.hidden, size.latent, rngs=rngs),
        log_var=nnx.Linear(size.hidden, size.latent, rngs=rngs),
    )


class JaxVQVAE(nnx.Module):
    """``decoder(vq(encoder(x)))`` channels-last; returns ``(rec, commitment, codebook)``."""

    def __init__(self, encoder, vq: VectorQuantize, decoder):
        self.encoder = encoder
        self.vq = vq
        self.decoder = decoder

    def __call__(self, x):
        out = self.vq(self.encoder(x))
        return self.decoder(out.z_q), out.commitment_loss.mean(), out.codebook_loss.mean()


def jax_vqvae(size: ConvSize, rngs: nnx.Rngs) -> JaxVQVAE:
    encoder = _jax_conv_stack(size, rngs, size.freq, size.hidden, final_act=True)
    vq = VectorQuantize(size.hidden, size.codebook_size, size.codebook_dim, rngs=rngs)
    decoder = _jax_conv_stack(size, rngs, size.hidden, size.freq, final_act=False)
    return JaxVQVAE(encoder, vq, decoder)


_VAE_LOSS = VariationalAutoencoderLoss(dist_loss_weight=KL_WEIGHT)


def vae_loss_fn(model, batch, *, key, train):
    del key, train  # the noise is in the batch
    out = model.train_sample(batch["x"], batch["length"], noise=batch["noise"])
    d = _VAE_LOSS.details(out, batch["x"], length=batch["length"])
    return d.loss, {"rec_loss": d.rec_loss, "dist_loss": d.dist_loss}


def vqvae_loss_fn(model, batch, *, key, train):
    del key, train
    rec, commitment, codebook = model(batch["x"])
    mse = jnp.mean(jnp.square(rec - batch["x"]))
    loss = mse + COMMITMENT_WEIGHT * commitment + CODEBOOK_WEIGHT * codebook
    return loss, {"mse": mse, "commitment": commitment, "codebook": codebook}


def dac_loss_fn(model, batch, *, key, train):
    audio = batch["audio"]
    out = model(audio, train=train, key=key)
    l1 = jnp.mean(jnp.abs(out.audio - audio[:, : out.audio.shape[1]]))
    loss = l1 + COMMITMENT_WEIGHT * out.commitment_loss + CODEBOOK_WEIGHT * out.codebook_loss
    return loss, {"l1": l1, "commitment": out.commitment_loss, "codebook": out.codebook_loss}


LOSS_FNS = {"vae": vae_loss_fn, "vqvae": vqvae_loss_fn, "dac": dac_loss_fn}


def jax_model(name: str, size, seed: int = 0, *, abstract: bool = False) -> nnx.Module:
    """A randomly initialised jaxlatent model (the scaling runs need no torch); with
    `abstract`, its `nnx.eval_shape` (no arrays), to be filled by `common.load_state`."""

    def build():
        rngs = nnx.Rngs(seed)
        if name == "vae":
            return jax_vae(size, rngs)
        if name == "vqvae":
            return jax_vqvae(size, rngs)
        return DAC(size.config, rngs=rngs)

    return nnx.eval_shape(build) if abstract else build()


def batch_for(name: str, size, seed: int = 0, *, batch: int | None = None) -> dict:
    return (dac_batch if name == "dac" else conv_batch)(size, seed, batch=batch)


def jax_stepper(trainer: training.DataParallel, model: nnx.Module, tx, batch) -> Callable:
    """``step() -> (state, metrics)`` running `trainer` on a fixed placed batch."""
    box = [trainer.put_state(training.TrainState.create(model, tx, key=0))]
    placed = trainer.put_batch(batch)

    def step():
        box[0], metrics = trainer(box[0], placed)
        return box[0], metrics

    return step


def jax_trainer_stepper(name: str, model: nnx.Module, size, seed: int = 0) -> Callable[[], Any]:
    """``step() -> (state, metrics)``: a `SingleDevice` trainer (``jax.jit``, state donated,
    ``optax.adam`` at the reference's learning rate) on the fixed batch of `size` and `seed`."""
    tx = training.make_optimizer("adam", size.learning_rate)
    trainer = training.SingleDevice(LOSS_FNS[name], tx)
    return jax_stepper(trainer, model, tx, batch_for(name, size, seed))
