"""DAC's adversarial training recipe as a `jaxlatent.training.GANObjective`.

descript-audio-codec 1.0.0 ``scripts/train.py`` with ``conf/base.yml`` (Kumar et al. 2023,
"High-Fidelity Audio Compression with Improved RVQGAN", arXiv:2306.06546, section 3.4). Per
step: one discriminator update on the stop-gradient codec output (least-squares GAN loss,
`jaxlatent.losses.dac.GANLoss`), then one codec update with

    15 x mel + 2 x feature matching + 1 x adversarial + 0.25 x commitment + 1 x codebook

(`MelSpectrogramLoss.recipe`: 7 scales, log10 mel L1). Both models train with AdamW (lr
1e-4, betas (0.8, 0.99), weight decay 0.01 — torch's default, eps 1e-8) under an
`ExponentialLR` schedule (gamma 0.999996, stepped every iteration), the codec's gradients
clipped to a global norm of 1e3 and the discriminator's to 10. The multi-scale STFT loss and
the waveform L1 are logged with weight 0, as in the recipe. The codec's quantizer dropout is
its config's (``DACConfig.quantizer_dropout``), drawn from the step's key.

Data parallelism: every ``--parallel`` mode gives one device's result up to round-off when the
codec has no quantizer dropout (``tiny``): logged losses agree to ~3e-7; parameters and AdamW
moments drift further (AdamW amplifies round-off on near-zero gradients, and a near-tied code
may be chosen differently), see tests/tolerances.py ``train_dac_gan_parallel*``. With dropout
(``small``, the released variants), sharded jit draws one device's numbers exactly, while
pmap and shard_map draw each device's dropped items from its own key and shard (a
different, equally valid draw).

Data: `jaxlatent train` feeds the recipe's data pipeline (`jaxlatent.apps.dac_data`:
salient excerpts over -40 LUFS, then `VolumeNorm` to -16 LUFS, `RescaleAudio`, `ShiftPhase`;
its module docstring lists what differs), or with ``--no-recipe-data`` the plain segments of
`jaxlatent.apps.audio_data`.

Departures: torch clips by ``max_norm / (norm + 1e-6)``, optax by ``max_norm / norm``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxlatent.losses.dac import GANLoss, MelSpectrogramLoss, MultiScaleSTFTLoss
from jaxlatent.training import GANObjective

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class DACRecipe:
    """Optimizer and loss settings of DAC's adversarial recipe (defaults: ``conf/base.yml``).

    Attributes:
      learning_rate: initial AdamW learning rate of both models.
      betas: AdamW ``(b1, b2)``.
      weight_decay: AdamW decoupled weight decay (torch's default 0.01).
      lr_gamma: per-step decay of the learning rate (``ExponentialLR``).
      clip_generator: global gradient-norm clip of the codec.
      clip_discriminator: global gradient-norm clip of the discriminator.
      mel, feature_matching, adversarial, commitment, codebook: loss weights (``lambdas``).
      mel_windows: STFT windows of the mel loss (hop window // 4).
      mel_bands: mel bands per window.
      stft_windows: windows of the logged (weight 0) multi-scale STFT loss.
    """

    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    lr_gamma: float = 0.999996
    clip_generator: float = 1e3
    clip_discriminator: float = 10.0
    mel: float = 15.0
    feature_matching: float = 2.0
    adversarial: float = 1.0
    commitment: float = 0.25
    codebook: float = 1.0
    mel_windows: tuple[int, ...] = MelSpectrogramLoss.recipe().window_lengths
    mel_bands: tuple[int, ...] = MelSpectrogramLoss.recipe().n_mels
    stft_windows: tuple[int, ...] = MultiScaleSTFTLoss.recipe().window_lengths

    def schedule(self, learning_rate: float | None = None) -> optax.Schedule:
        """``step -> learning_rate * lr_gamma ** step`` (`learning_rate` None: the recipe's)."""
        lr = self.learning_rate if learning_rate is None else learning_rate
        return optax.exponential_decay(lr, transition_steps=1, decay_rate=self.lr_gamma)

    def optimizer(self, clip: float, learning_rate: float | None = None):
        """Global-norm clipping to `clip`, then AdamW under `schedule`."""
        b1, b2 = self.betas
        adamw = optax.adamw(
            self.schedule(learning_rate), b1=b1, b2=b2, eps=1e-8, weight_decay=self.weight_decay
        )
        return optax.chain(optax.clip_by_global_norm(clip), adamw)

    def mel_loss(self) -> MelSpectrogramLoss:
        """The recipe's mel loss over `mel_windows` / `mel_bands`."""
        n = len(self.mel_windows)
        return dataclasses.replace(
            MelSpectrogramLoss.recipe(),
            window_lengths=self.mel_windows,
            n_mels=self.mel_bands,
            mel_fmin=(0.0,) * n,
            mel_fmax=(None,) * n,
        )


def _target(batch: dict, audio: Array) -> Array:
    return batch["x"][:, : audio.shape[1]]  # 16/24 kHz-style strides decode a few fewer


def dac_gan_objective(
    recipe: DACRecipe, sample_rate: int, learning_rate: float | None = None
) -> GANObjective:
    """The `GANObjective` of DAC's recipe for batches ``{"x": [batch, samples, 1], ...}``.

    The generator is a `jaxlatent.models.dac.DAC`, the discriminator any module called as
    ``disc(audio[batch, samples, 1], train=...)`` returning per-sub-discriminator sequences of
    feature maps, the last one its logits (`jaxlatent.models.dac.Discriminator`).

    Args:
      recipe: the optimizer and loss settings.
      sample_rate: Hz of the audio (the mel filterbanks).
      learning_rate: overrides ``recipe.learning_rate`` (both models).
    """
    mel_loss = recipe.mel_loss()
    stft_loss = dataclasses.replace(MultiScaleSTFTLoss.recipe(), window_lengths=recipe.stft_windows)

    def generate(generator, batch, *, key, train):
        out = generator(batch["x"], train=train, key=key)
        fake = {
            "audio": out.audio,
            "commitment_loss": out.commitment_loss,
            "codebook_loss": out.codebook_loss,
        }
        return fake, {"codes": out.codes}

    def gan(discriminator, train) -> GANLoss:
        return GANLoss(lambda audio: discriminator(audio, train=train), joint=True)

    def discriminator_loss(discriminator, fake, batch, *, train):
        audio = fake["audio"]
        loss = gan(discriminator, train).discriminator_loss(audio, _target(batch, audio))
        return loss, {}

    def generator_loss(discriminator, fake, aux, batch, *, train):
        audio = fake["audio"]
        x = _target(batch, audio)
        adversarial, feature = gan(discriminator, train).generator_loss(audio, x)
        mel = mel_loss(audio, x, sample_rate)
        terms = {
            "mel_loss": mel,
            "feature_matching_loss": feature,
            "adversarial_loss": adversarial,
            "commitment_loss": fake["commitment_loss"],
            "codebook_loss": fake["codebook_loss"],
        }
        loss = (
            recipe.mel * mel
            + recipe.feature_matching * feature
            + recipe.adversarial * adversarial
            + recipe.commitment * fake["commitment_loss"]
            + recipe.codebook * fake["codebook_loss"]
        )
        logged = jax.lax.stop_gradient((audio, x))
        return loss, {
            **terms,
            "stft_loss": stft_loss(*logged),
            "waveform_l1": jnp.mean(jnp.abs(logged[0] - logged[1])),
        }

    return GANObjective(
        generate,
        discriminator_loss,
        generator_loss,
        generator_tx=recipe.optimizer(recipe.clip_generator, learning_rate),
        discriminator_tx=recipe.optimizer(recipe.clip_discriminator, learning_rate),
        generator_lr=recipe.schedule(learning_rate),
    )


def recipe_settings(recipe: DACRecipe) -> dict[str, Any]:
    """The recipe as JSON-ready settings (for ``run.json``)."""
    return dataclasses.asdict(recipe)
