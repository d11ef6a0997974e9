"""The model registry of `jaxlatent train`: name → `ModelSpec` (builder, loss, pictures, data).

Each `ModelSpec` builds its model from a frozen preset, adapts the model's loss to the training
core's signature ``loss_fn(model, batch, *, key, train) -> (loss, aux)`` and says how to
reconstruct and sample at eval time. The models themselves live in `jaxlatent.models`;
their registrations in three modules:

* `jaxlatent.apps.registry_image` — the PyTorch-VAE family (`ImagePreset`; data: digits or a
  folder of images);
* `jaxlatent.apps.registry_audio` — SpeechBrain autoencoders (variational, plain,
  normalizing), VQ-VAEs (EMA or gradient codebook) and a small DAC (`AudioPreset`; data:
  the bundled speech or a folder of audio files);
* `jaxlatent.apps.registry_piq` — SpeechBrain's PIQ, a classifier and its class-partitioned VQ
  interpreter (`PIQPreset`; data: the bundled speech, one class per speaker, or a folder
  with one subfolder per class).

Example:
  >>> sorted(MODELS)  # doctest: +NORMALIZE_WHITESPACE
  ['beta_vae', 'conditional_vae', 'dac', 'piq', 'sb_autoencoder', 'sb_normalizing_ae',
   'sb_vae', 'vanilla_vae', 'vq_vae', 'vq_vae_ema', 'vqvae', 'wae_mmd']
  >>> spec = get_model("vqvae", "tiny")[0]
  >>> spec.data_kind, spec.presets["tiny"].img_size
  ('image', 16)
  >>> spec, name, preset = get_model("vq_vae_ema")
  >>> spec.data_kind, name, preset.feature
  ('audio', 'tiny', 'spectrogram')
"""

from __future__ import annotations

from typing import Any

from jaxlatent.apps.registry_audio import AUDIO_MODELS
from jaxlatent.apps.registry_audio import AudioPreset as AudioPreset
from jaxlatent.apps.registry_image import IMAGE_MODELS
from jaxlatent.apps.registry_image import PRESETS as PRESETS
from jaxlatent.apps.registry_image import ImagePreset as ImagePreset
from jaxlatent.apps.registry_piq import PIQ_MODELS
from jaxlatent.apps.spec import ModelSpec as ModelSpec

MODELS: dict[str, ModelSpec] = {s.name: s for s in (*IMAGE_MODELS, *AUDIO_MODELS, *PIQ_MODELS)}


def models_of_kind(kind: str) -> list[str]:
    """Sorted names of the models that take `kind` data (``"image"`` or ``"audio"``)."""
    return sorted(name for name, spec in MODELS.items() if spec.data_kind == kind)


def get_model(name: str, preset: str | None = None) -> tuple[ModelSpec, str, Any]:
    """``(spec, preset name, preset)`` of a registered model (default preset ``"tiny"``).

    Raises:
      ValueError: for an unknown model or preset, listing the choices.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    spec = MODELS[name]
    preset = preset or "tiny"
    if preset not in spec.presets:
        raise ValueError(
            f"unknown preset {preset!r} for model {name!r}; choose one of: "
            f"{', '.join(spec.presets)}"
        )
    return spec, preset, spec.presets[preset]
