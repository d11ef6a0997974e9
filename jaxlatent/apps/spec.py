"""`ModelSpec`: how `jaxlatent train` builds, trains, evaluates and pictures one model.

The registries (`jaxlatent.apps.registry_image`, `jaxlatent.apps.registry_audio`,
`jaxlatent.apps.registry_piq`) fill one `ModelSpec` per model; `jaxlatent.apps.registry`
collects them. The training core only sees the loss function
``loss_fn(model, batch, *, key, train) -> (loss, aux)``; everything else here is for the app
(data, pictures, eval metrics).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

Array = jax.Array

#: the data kinds a model can take, and the default ``--data`` of each.
DATA_KINDS = {"image": "digits", "audio": "speech"}
#: ``--objective``: a model's adversarial training recipe (models with a discriminator), or
#: its non-adversarial loss (`ModelSpec.loss_fn`, every model).
OBJECTIVES = ("recipe", "reconstruction")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How `jaxlatent train` builds, trains and pictures one model.

    Attributes:
      name: registry name.
      description: one line for listings.
      data_kind: ``"image"`` (batches ``{"x": [batch, H, W, C], "labels": [batch, classes]}``)
        or ``"audio"`` (batches ``{"x": [batch, time, features], "length": [batch]}``, plus
        one-hot ``"labels": [batch, classes]`` when `needs_labels`; see
        `jaxlatent.apps.audio_data`).
      build: ``build(preset, num_classes, rngs) -> nnx.Module``.
      loss_fn: ``loss_fn(preset)`` → the training core's loss function.
      reconstruct: ``reconstruct(model, batch, key) -> x_hat`` (eval mode: the model's calls
        with ``train=False``, their default), shaped like ``batch["x"]``.
      sample: ``sample(model, n, key, num_classes, preset) -> x`` (eval mode), or None for a
        model without a learnt prior (no sample pictures are drawn; `sample_title` says why).
      sample_title: what the sample pictures show (or why there are none).
      needs_labels: the model is conditioned on class labels (audio data then needs at least
        2 classes: speakers of the bundled speech, or one subfolder per class).
      presets: the presets it accepts (frozen dataclasses; ``"tiny"`` is the default).
      eval_metrics: ``eval_metrics(model, batch, key) -> {name: scalar}`` computed on the
        eval batch in eval mode (e.g. codebook usage), or None.
      same_key_on_devices: under pmap / shard_map give every device the same step key
        (`make_train_step`'s ``per_device_keys=False``); needed by quantizers whose k-means
        init and dead-code restarts choose rows of the global batch with one key.
      adversarial: ``adversarial(preset, learning_rate) -> GANObjective`` (learning rate None:
        the preset's), the model's adversarial recipe (``--objective recipe``, then the
        default), or None.
      build_discriminator: ``build_discriminator(preset, rngs) -> nnx.Module``, with
        `adversarial`.
      load_pretrained: ``load_pretrained(path, preset_name) -> (preset_name, model)`` for
        ``--init-from`` (the preset named, checked against the weights, or inferred when
        None), or None (no ``--init-from``).
      load_discriminator: ``load_discriminator(path, preset) -> nnx.Module`` for
        ``--init-discriminator`` (checked against the preset's discriminator), or None.
      quantizers: the ``--quantizer`` names it accepts (its presets then have a ``quantizer``
        field); empty for a model without a swappable quantizer.
    """

    name: str
    description: str
    data_kind: str
    build: Callable[[Any, int, nnx.Rngs], nnx.Module]
    loss_fn: Callable[[Any], Callable[..., tuple[Array, dict[str, Array]]]]
    reconstruct: Callable[[Any, dict, Array], Array]
    sample: Callable[[Any, int, Array, int, Any], Array] | None
    sample_title: str = "samples from the prior"
    needs_labels: bool = False
    presets: dict[str, Any] = dataclasses.field(default_factory=dict)
    eval_metrics: Callable[[Any, dict, Array], dict[str, Array]] | None = None
    same_key_on_devices: bool = False
    quantizers: tuple[str, ...] = ()
    adversarial: Callable[[Any, float | None], Any] | None = None
    build_discriminator: Callable[[Any, nnx.Rngs], nnx.Module] | None = None
    load_pretrained: Callable[[str, str | None], tuple[str, nnx.Module]] | None = None
    load_discriminator: Callable[[str, Any], nnx.Module] | None = None

    @property
    def objectives(self) -> tuple[str, ...]:
        """The ``--objective`` choices of this model, the default first."""
        return OBJECTIVES if self.adversarial is not None else OBJECTIVES[1:]

    def __post_init__(self):
        if self.data_kind not in DATA_KINDS:
            raise ValueError(f"data_kind must be one of {sorted(DATA_KINDS)}, got {self.data_kind}")
        if (self.adversarial is None) != (self.build_discriminator is None):
            raise ValueError(f"model {self.name!r}: adversarial needs build_discriminator")
        if "tiny" not in self.presets:
            raise ValueError(f"model {self.name!r} needs a 'tiny' preset (the default)")
