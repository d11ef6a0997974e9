"""The audio models of `jaxlatent train`: SpeechBrain autoencoders, an EMA VQ-VAE, a small DAC.

Audio batches are dicts ``{"x": [batch, time, features] float32, "length": [batch] float32}``
(`jaxlatent.apps.audio_data`: standardised log spectrograms, or waveform ``[.., samples, 1]``,
with SpeechBrain relative lengths). Every loss is a mean over examples (SpeechBrain's
``"batchmean"``, or means over fixed-size segments), so data-parallel runs give the same
updates as one device.

* ``sb_vae`` — SpeechBrain's `VariationalAutoencoder` over convolutions
  (`jaxlatent.models.conv_variational_autoencoder`) with `VariationalAutoencoderLoss`.
* ``sb_autoencoder`` — a convolutional `Autoencoder` (`jaxlatent.models.ConvAutoencoder`) with
  SpeechBrain's `AutoencoderLoss` over `l1_loss`, masked by relative length.
* ``sb_normalizing_ae`` — SpeechBrain's `NormalizingAutoencoder` over the encoder and decoder
  of ``sb_autoencoder`` (`conv_encoder_decoder`) with its default `GlobalNorm` on the latent
  (``length_dim=1``: one mean/std accumulated over every unpadded latent element seen, logged
  as ``latent_running_mean`` / ``latent_running_std``) and the same loss. The GlobalNorm
  statistics (``running_mean``, ``running_std``, ``weight``, ``step_count``) are model state
  (`nnx.BatchStat`), never seen by the optimizer, and are those of the global batch under
  every ``--parallel`` mode (under pmap / shard_map the training core sets the norm's
  ``axis_name`` and it `psum`s the statistics). Evaluation
  departs from SpeechBrain on purpose: SpeechBrain updates the statistics on every call,
  evaluation included, but here the eval loss and the eval reconstructions and pictures call
  the model with ``train=False``, i.e. normalise with the statistics of the training batches
  only. An evaluation thus never depends on the eval batch's own statistics or on how
  it is split over devices; it cannot change the training state in any case (the eval step
  and the pictures discard the model state they compute).
* ``vq_vae_ema`` — `jaxlatent.models.ConvVQVAE` with the generic `VectorQuantizer` and an EMA
  codebook (k-means init from the first batch, dead-code restarts); the EMA state is model state,
  never seen by the optimizer, and is computed on the global batch under every ``--parallel`` mode.
* ``vq_vae`` — the same `ConvVQVAE` with a gradient-trained codebook (van den Oord et al.
  2017: codebook loss ``mean((sg(z) - q)²)`` + 0.25 x commitment; the codebook rows are
  parameters updated by the optimizer; no k-means init, no dead-code restarts) and cosine
  codes (latents and codes l2-normalised, as in ViT-VQGAN, Yu et al. 2021). With plain l2
  codes from a random init the encoder outgrows the codebook, whose Adam steps are bounded by
  the learning rate: the codebook loss went from 0.009 to 53 in 40 steps of the tiny preset.
* ``--quantizer NAME`` swaps the quantizer of both VQ-VAEs (`jaxlatent.apps.vq_quantizers`:
  fsq, rfsq, lfq, rlfq, simvq, rsimvq, rvq; ``vq`` is the default above); its auxiliary loss
  joins the objective and each codebook's usage and perplexity are logged.
* ``dac`` — `jaxlatent.models.dac.DAC` on waveform segments. Default objective (``recipe``):
  DAC's adversarial recipe against `jaxlatent.models.dac.Discriminator`
  (`jaxlatent.apps.dac_recipe`: mel 15, feature matching 2, adversarial 1, commitment 0.25,
  codebook 1; AdamW with exponential decay for both models) on the recipe's data
  (`jaxlatent.apps.dac_data`: salient excerpts with the -40 LUFS cutoff, VolumeNorm -16,
  RescaleAudio, ShiftPhase; ``--no-recipe-data``: the plain segments).
  ``--objective reconstruction``: waveform L1 + 15 x multi-scale STFT L1
  (`jaxlatent.losses.multiscale_stft_l1`, in the place and with the weight of DAC's mel
  loss) + commitment (x0.25) and codebook (x1) losses, no GAN
  (reconstructions stay smoother than a released codec's). Presets: ``tiny`` (CI; its
  discriminator is one MRD), ``small`` (the recipe's discriminator at 16 kHz) and one per
  released variant at full size (``44khz_8kbps``, ``44khz_16kbps``, ``24khz``, ``16khz``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxlatent.apps.audio_data import AudioFeatures
from jaxlatent.apps.dac_data import DACData
from jaxlatent.apps.dac_init import choose_preset, load_discriminator, load_generator
from jaxlatent.apps.dac_recipe import DACRecipe, dac_gan_objective
from jaxlatent.apps.metrics import codes_used
from jaxlatent.apps.spec import ModelSpec
from jaxlatent.apps.vq_quantizers import (
    QUANTIZERS,
    quantizer_factory,
    quantizer_loss,
    usage_metrics,
    vq_config,
)
from jaxlatent.losses import (
    AutoencoderLoss,
    VariationalAutoencoderLoss,
    l1_loss,
    multiscale_stft_l1,
)
from jaxlatent.losses.dac import MelSpectrogramLoss, MultiScaleSTFTLoss, SISDRLoss
from jaxlatent.masking import clean_padding
from jaxlatent.models import (
    AutoencoderOutput,
    ConvAutoencoder,
    ConvVQVAE,
    NormalizingAutoencoder,
    conv_encoder_decoder,
    conv_variational_autoencoder,
)
from jaxlatent.models.dac import DAC, DACConfig, Discriminator, DiscriminatorConfig
from jaxlatent.quantizers import VectorQuantizerOutput, code_counts

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class AudioPreset(AudioFeatures):
    """Data and size settings of an audio model.

    The data fields (``feature``: ``"spectrogram"`` or ``"waveform"`` here; ``sample_rate``,
    ``n_fft``, ``hop_length``, ``segment``, ``whole_segments``) and ``bins`` come from
    `jaxlatent.apps.audio_data.AudioFeatures`; the quantized models set ``whole_segments``
    (their code statistics have no length mask, so padding would claim codes).

    Attributes:
      hidden: hidden channels of the convolutional models.
      latent: latent channels (VQ-VAE: the code dimension).
      kernel_size: odd kernel size of the time convolutions.
      codebook_size: VQ-VAE codebook size.
      codebook_update: VQ-VAE codebook training: ``"ema"`` (model state) or ``"gradient"``
        (parameters, trained by the codebook loss).
      ema_decay: VQ-VAE EMA decay.
      dead_code_threshold: VQ-VAE: EMA cluster size under which a code is restarted.
      dist_loss_weight: VAE KL weight.
      stft_n_ffts: windows of the multi-scale STFT loss (DAC).
      dac: the DAC configuration (DAC only).
      discriminator: DAC's discriminator of ``--objective recipe`` (DAC only).
      recipe: the optimizer and loss settings of ``--objective recipe`` (DAC only).
      recipe_data: the data pipeline of ``--objective recipe`` (DAC only;
        `jaxlatent.apps.dac_data`: salient excerpts of ``duration`` seconds, the recipe's
        transforms); ``int(duration * sample_rate)`` equals ``segment``.
      learning_rate: default Adam learning rate (``--objective reconstruction``; the recipe
        has its own).
      quantizer: VQ-VAE quantizer, a name of `jaxlatent.apps.vq_quantizers.QUANTIZERS`
        (``jaxlatent train --quantizer``; ``"vq"``: the `VectorQuantizer` of
        `codebook_update`).
    """

    hidden: int = 64
    latent: int = 16
    kernel_size: int = 5
    codebook_size: int = 32
    codebook_update: str = "ema"
    ema_decay: float = 0.9
    dead_code_threshold: float = 0.5
    dist_loss_weight: float = 1e-3
    stft_n_ffts: tuple[int, ...] = ()
    dac: DACConfig | None = None
    discriminator: DiscriminatorConfig | None = None
    recipe: DACRecipe | None = None
    recipe_data: DACData | None = None
    learning_rate: float = 2e-3
    quantizer: str = "vq"


#: SpeechBrain autoencoders: tiny (8 ms hop, 0.26 s segments); small = the demo's net.
SB_PRESETS = {
    "tiny": AudioPreset(),
    "small": AudioPreset(n_fft=512, hop_length=160, segment=64, hidden=256, latent=32),
}
VQ_PRESETS = {
    "tiny": AudioPreset(latent=8, whole_segments=True),
    "small": AudioPreset(
        n_fft=512, hop_length=160, segment=64, whole_segments=True, hidden=128, latent=16,
        codebook_size=128, ema_decay=0.95,
    ),
}  # fmt: skip
VQ_GRADIENT_PRESETS = {
    name: dataclasses.replace(p, codebook_update="gradient") for name, p in VQ_PRESETS.items()
}
#: `tiny`'s discriminator: one MRD (32 channels) at a 128-sample window, no MPD (whose
#: 1024-channel convolutions cost ~40x the tiny codec per step on a CPU).
TINY_DISCRIMINATOR = DiscriminatorConfig(periods=(), fft_sizes=(128,), sample_rate=16000)


def _released(name: str) -> AudioPreset:
    """A released variant at full size: its codec config, the recipe's discriminator at its
    sample rate and the recipe's 0.38 s clips (``conf/base.yml``)."""
    dac = DACConfig.preset(name)
    rate = dac.sample_rate
    return AudioPreset(
        feature="waveform",
        sample_rate=rate,
        segment=int(0.38 * rate),
        whole_segments=True,
        n_fft=2048,
        hop_length=512,
        stft_n_ffts=(512, 2048),
        learning_rate=1e-4,
        dac=dac,
        discriminator=dataclasses.replace(DiscriminatorConfig.recipe(), sample_rate=rate),
        recipe=DACRecipe(),
        recipe_data=DACData(duration=0.38),
    )


DAC_PRESETS = {
    # hop 32 samples (2 ms), 3 codebooks of 64 codes, 0.128 s segments; ~13k parameters; the
    # recipe at lr 1e-3
    "tiny": AudioPreset(
        feature="waveform", segment=2048, whole_segments=True, n_fft=256, hop_length=64,
        stft_n_ffts=(64, 256), learning_rate=1e-3,
        dac=DACConfig(
            encoder_dim=4, encoder_rates=(4, 8), decoder_dim=16, decoder_rates=(8, 4),
            n_codebooks=3, codebook_size=64, codebook_dim=4, sample_rate=16000,
        ),
        discriminator=TINY_DISCRIMINATOR,
        recipe=DACRecipe(learning_rate=1e-3),
        recipe_data=DACData(duration=0.128),  # short excerpts (the recipe's are 0.38 s)
    ),
    # hop 64, 4 codebooks of 256 codes with quantizer dropout 0.5 (as the releases), 0.128 s;
    # the recipe's discriminator (5 MPDs, 3 MRDs) at 16 kHz
    "small": AudioPreset(
        feature="waveform", segment=2048, whole_segments=True, n_fft=256, hop_length=64,
        stft_n_ffts=(64, 256, 1024), learning_rate=1e-3,
        dac=DACConfig(
            encoder_dim=8, encoder_rates=(2, 4, 8), decoder_dim=32, decoder_rates=(8, 4, 2),
            n_codebooks=4, codebook_size=256, codebook_dim=8, quantizer_dropout=0.5,
            sample_rate=16000,
        ),
        discriminator=dataclasses.replace(DiscriminatorConfig.recipe(), sample_rate=16000),
        recipe=DACRecipe(),
        recipe_data=DACData(duration=0.128),
    ),
    **{name: _released(name) for name in ("44khz_8kbps", "44khz_16kbps", "24khz", "16khz")},
}  # fmt: skip


# --- SpeechBrain VAE ----------------------------------------------------------------------


def _build_sb_vae(p: AudioPreset, num_classes, rngs):
    return conv_variational_autoencoder(p.bins, p.hidden, p.latent, p.kernel_size, rngs=rngs)


def _sb_vae_loss(p: AudioPreset):
    vae_loss = VariationalAutoencoderLoss(dist_loss_weight=p.dist_loss_weight)

    def loss_fn(model, batch, *, key, train):
        x, length = batch["x"], batch["length"]
        out = model.train_sample(x, length, key=key)
        d = vae_loss.details(out, x, length=length, reduction="batchmean")
        return d.loss, {"rec_loss": d.rec_loss, "dist_loss": d.dist_loss}

    return loss_fn


def _sb_vae_reconstruct(model, batch, key):
    rec = model.decode(model.encode(batch["x"]))  # the posterior mean, masked as in training
    return clean_padding(rec, batch["length"], len_dim=1)


def _sb_vae_sample(model, n, key, num_classes, p: AudioPreset):
    return model.decode(jax.random.normal(key, (n, p.segment, p.latent)))


# --- SpeechBrain autoencoder --------------------------------------------------------------


def _build_sb_ae(p: AudioPreset, num_classes, rngs):
    return ConvAutoencoder(p.bins, p.hidden, p.latent, p.kernel_size, rngs=rngs)


def _sb_ae_loss(p: AudioPreset):
    ae_loss = AutoencoderLoss(rec_loss=l1_loss)

    def loss_fn(model, batch, *, key, train):
        x, length = batch["x"], batch["length"]
        loss = ae_loss(model.train_sample(x, length), x, length, reduction="batchmean")
        return loss, {}

    return loss_fn


def _sb_ae_reconstruct(model, batch, key):
    return model.train_sample(batch["x"], batch["length"]).rec


# --- SpeechBrain normalizing autoencoder ----------------------------------------------------


def _build_sb_nae(p: AudioPreset, num_classes, rngs):
    encoder, decoder = conv_encoder_decoder(p.bins, p.hidden, p.latent, p.kernel_size, rngs=rngs)
    return NormalizingAutoencoder(encoder, decoder, len_dim=1)  # norm: GlobalNorm(length_dim=1)


def _sb_nae_loss(p: AudioPreset):
    ae_loss = AutoencoderLoss(rec_loss=l1_loss)

    def loss_fn(model, batch, *, key, train):
        x, length = batch["x"], batch["length"]
        out = model.train_sample(x, length, train=train)  # train=False: no statistics update
        loss = ae_loss(out, x, length, reduction="batchmean")
        norm = model.norm  # the running statistics after this step (global, same everywhere)
        return loss, {
            "latent_running_mean": norm.running_mean[...],
            "latent_running_std": norm.running_std[...],
        }

    return loss_fn


def _sb_nae_reconstruct(model, batch, key):
    return model.train_sample(batch["x"], batch["length"], train=False).rec


# --- VQ-VAE with an EMA or a gradient-trained codebook -------------------------------------


def _build_vq(p: AudioPreset, num_classes, rngs):
    if p.quantizer == "vq":
        return ConvVQVAE(p.bins, p.hidden, vq_config(p), p.kernel_size, rngs=rngs)
    factory = quantizer_factory(p.quantizer, p)
    return ConvVQVAE(p.bins, p.hidden, p.latent, p.kernel_size, quantizer=factory, rngs=rngs)


def _vq_loss(p: AudioPreset):
    rec_loss = AutoencoderLoss()  # SpeechBrain's mse_loss, masked by relative length

    def loss_fn(model, batch, *, key, train):
        x, length = batch["x"], batch["length"]
        out = model(x, train=train, key=key)
        # "batchmean" sums a segment's errors: divided by the fixed segment size it is the
        # mean squared error per element with padded positions counted as 0
        per_element = x.shape[1] * x.shape[2]
        rec = rec_loss(AutoencoderOutput(out.rec, None, None), x, length) / per_element
        if p.quantizer != "vq":  # --quantizer: its auxiliary loss (summed over layers)
            aux = quantizer_loss(out.vq)
            return rec + aux, {"rec_loss": rec, "quantizer_loss": aux, **usage_metrics(out.vq)}
        return rec + out.vq.loss, {
            "rec_loss": rec,
            "commitment_loss": out.vq.commitment_loss,
            "perplexity": out.vq.perplexity,
            "codes_used": jnp.sum(out.vq.counts > 0).astype(jnp.float32),
            **({"codebook_loss": out.vq.codebook_loss} if p.codebook_update == "gradient" else {}),
        }

    return loss_fn


def _vq_reconstruct(model, batch, key):
    return model(batch["x"]).rec


def _vq_eval_metrics(model, batch, key):
    vq = model(batch["x"]).vq
    if not isinstance(vq, VectorQuantizerOutput):  # --quantizer: per-codebook usage
        return usage_metrics(vq)
    return {"codes_used": jnp.sum(vq.counts > 0), "perplexity": vq.perplexity}


# --- DAC -----------------------------------------------------------------------------------


def _build_dac(p: AudioPreset, num_classes, rngs):
    return DAC(p.dac, rngs=rngs)


def _dac_loss(p: AudioPreset):
    def loss_fn(model, batch, *, key, train):
        out = model(batch["x"], train=train, key=key)
        x = batch["x"][:, : out.audio.shape[1]]  # 16/24 kHz-style strides decode 8 fewer
        wave = jnp.mean(jnp.abs(out.audio - x))
        stft = multiscale_stft_l1(out.audio[..., 0], x[..., 0], p.stft_n_ffts)
        # the weights of DAC's recipe (conf/base.yml: mel 15, commitment 0.25, codebook 1)
        loss = wave + 15.0 * stft + 0.25 * out.commitment_loss + 1.0 * out.codebook_loss
        return loss, {
            "waveform_l1": wave,
            "stft_l1": stft,
            "commitment_loss": out.commitment_loss,
            "codebook_loss": out.codebook_loss,
            "codes_used": _dac_codes_used(model, out.codes),
        }

    return loss_fn


def _build_discriminator(p: AudioPreset, rngs):
    return Discriminator(p.discriminator, rngs=rngs)


def _dac_adversarial(p: AudioPreset, learning_rate: float | None):
    return dac_gan_objective(p.recipe, p.dac.sample_rate, learning_rate)


def _dac_pretrained(path: str, preset: str | None):
    model = load_generator(path)
    return choose_preset(path, model.config, DAC_PRESETS, preset), model


def _dac_discriminator(path: str, p: AudioPreset):
    return load_discriminator(path, p.discriminator)


def _dac_codes_used(model, codes) -> Array:
    """Distinct codes per codebook, averaged over the codebooks (codes ``[b, n_q, frames]``)."""
    size = model.config.codebook_size
    per_book = [codes_used(codes[:, i], size) for i in range(codes.shape[1])]
    return jnp.mean(jnp.stack(per_book))


def _dac_reconstruct(model, batch, key):
    audio = model(batch["x"]).audio
    return jnp.pad(audio, ((0, 0), (0, batch["x"].shape[1] - audio.shape[1]), (0, 0)))


def _perplexity(codes: Array, size: int) -> Array:
    """``exp(entropy)`` of the code histogram of ``codes`` (any shape), float32."""
    counts = code_counts(codes, size).astype(jnp.float32)
    p = counts / jnp.sum(counts)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)))


def _fitting(loss, x):
    """`loss` with the scales whose reflect padding (half a window) fits ``x``'s length."""
    keep = [i for i, w in enumerate(loss.window_lengths) if w // 2 < x.shape[1]]
    fields = {"window_lengths": tuple(loss.window_lengths[i] for i in keep)}
    if isinstance(loss, MelSpectrogramLoss):
        for name in ("n_mels", "mel_fmin", "mel_fmax"):
            fields[name] = tuple(getattr(loss, name)[i] for i in keep)
    return dataclasses.replace(loss, **fields)


def _dac_eval_metrics(model, batch, key):
    """Held-out reconstruction quality (DAC's ``scripts/evaluate.py`` metrics but ViSQOL) and
    code usage: ``mel_distance`` (`MelSpectrogramLoss.recipe`), ``stft_distance``
    (`MultiScaleSTFTLoss.recipe`; both over the scales whose windows fit a segment),
    ``si_sdr`` (dB, higher is better), ``waveform_l1``, and per codebook ``codes_used_q{i}`` /
    ``perplexity_q{i}`` (of the eval batch's codes) with their means ``codes_used`` /
    ``perplexity``."""
    out = model(batch["x"])
    x = batch["x"][:, : out.audio.shape[1]]
    size = model.config.codebook_size
    mel, stft = _fitting(MelSpectrogramLoss.recipe(), x), _fitting(MultiScaleSTFTLoss.recipe(), x)
    metrics = {
        "mel_distance": mel(out.audio, x, model.config.sample_rate),
        "stft_distance": stft(out.audio, x),
        "si_sdr": -SISDRLoss()(x, out.audio),
        "waveform_l1": jnp.mean(jnp.abs(out.audio - x)),
    }
    used, perplexity = [], []
    for i in range(out.codes.shape[1]):
        used.append(codes_used(out.codes[:, i], size))
        perplexity.append(_perplexity(out.codes[:, i], size))
        metrics[f"codes_used_q{i}"] = used[-1]
        metrics[f"perplexity_q{i}"] = perplexity[-1]
    metrics["codes_used"] = jnp.mean(jnp.stack(used))
    metrics["perplexity"] = jnp.mean(jnp.stack(perplexity))
    return metrics


NO_PRIOR = "none: {} has no learnt prior (random codes would only show noise)"

VQ_VAE_EMA = ModelSpec(
    "vq_vae_ema",
    "conv VQ-VAE on log spectrograms, EMA codebook (k-means init, dead-code restarts)",
    "audio",
    _build_vq,
    _vq_loss,
    _vq_reconstruct,
    None,
    sample_title=NO_PRIOR.format("a VQ-VAE"),
    presets=VQ_PRESETS,
    eval_metrics=_vq_eval_metrics,
    same_key_on_devices=True,
    quantizers=tuple(QUANTIZERS),
)

AUDIO_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "sb_vae",
        "SpeechBrain VariationalAutoencoder (conv over time) on log spectrograms, "
        "VariationalAutoencoderLoss",
        "audio",
        _build_sb_vae,
        _sb_vae_loss,
        _sb_vae_reconstruct,
        _sb_vae_sample,
        sample_title="decoded samples of the N(0, I) prior",
        presets=SB_PRESETS,
    ),
    ModelSpec(
        "sb_autoencoder",
        "SpeechBrain Autoencoder (conv over time) on log spectrograms, AutoencoderLoss (l1)",
        "audio",
        _build_sb_ae,
        _sb_ae_loss,
        _sb_ae_reconstruct,
        None,
        sample_title=NO_PRIOR.format("a plain autoencoder"),
        presets=SB_PRESETS,
    ),
    ModelSpec(
        "sb_normalizing_ae",
        "SpeechBrain NormalizingAutoencoder (conv over time, GlobalNorm on the latent) on log "
        "spectrograms, AutoencoderLoss (l1)",
        "audio",
        _build_sb_nae,
        _sb_nae_loss,
        _sb_nae_reconstruct,
        None,
        sample_title="none: a normalizing autoencoder has no learnt prior (its latent is only "
        "standardised by one global mean and std)",
        presets=SB_PRESETS,
    ),
    VQ_VAE_EMA,
    # the same model and loss; the preset's codebook_update switches the codebook
    dataclasses.replace(
        VQ_VAE_EMA,
        name="vq_vae",
        description="conv VQ-VAE on log spectrograms, gradient-trained codebook "
        "(codebook + commitment loss)",
        presets=VQ_GRADIENT_PRESETS,
        same_key_on_devices=False,  # no k-means init or dead-code restarts to draw rows for
    ),
    ModelSpec(
        "dac",
        "DAC codec on waveform: the official adversarial recipe (default) or L1 + 15 x "
        "multi-scale STFT + RVQ losses (--objective reconstruction)",
        "audio",
        _build_dac,
        _dac_loss,
        _dac_reconstruct,
        None,
        sample_title=NO_PRIOR.format("the DAC codec"),
        presets=DAC_PRESETS,
        eval_metrics=_dac_eval_metrics,
        adversarial=_dac_adversarial,
        build_discriminator=_build_discriminator,
        load_pretrained=_dac_pretrained,
        load_discriminator=_dac_discriminator,
    ),
)
