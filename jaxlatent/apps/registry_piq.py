"""The PIQ model of `jaxlatent train`: an audio classifier and its class-partitioned VQ interpreter.

The model is `jaxlatent.models.piq.PIQInterpreter` (SpeechBrain's PIQ, Paissan, Subakan &
Ravanelli 2023, arXiv:2303.12659, with the classifier trained in the same run; its docstring
lists the differences from the recipe), trained with `jaxlatent.losses.piq_loss` (the
objective of SpeechBrain's ``recipes/ESC50/interpret/train_piq.py`` plus the classifier's
cross-entropy). Features: ``log(1 + |STFT|)`` spectrograms (`jaxlatent.apps.audio_data`,
feature ``"log1p_spectrogram"``, >= 0 as the recipe's ``log1p`` power spectra, not
standardised); classes: the speakers of the bundled speech, or one subfolder per class.

Every loss is a mean over examples of equal size, so data-parallel runs equal one device; the
BatchNorm statistics are model state, synchronised by the trainer through ``axis_name``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxlatent.apps.audio_data import AudioFeatures
from jaxlatent.apps.metrics import codes_used
from jaxlatent.apps.spec import ModelSpec
from jaxlatent.losses import piq_loss
from jaxlatent.models.piq import PIQInterpreter, codes_in_class_partition, psi_output_size

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PIQPreset(AudioFeatures):
    """Data and size settings of the PIQ model.

    The data fields are `jaxlatent.apps.audio_data.AudioFeatures`', with these defaults and
    bounds: ``feature`` ``"log1p_spectrogram"``; ``n_fft`` such that the ``n_fft // 2 + 1``
    bins are ``≡ 0 or 1 (mod 32)``; ``segment`` (frames) ``≡ 0 or 1 (mod 32)`` and >= 32;
    ``whole_segments`` always set (the losses have no length mask).

    Attributes:
      dim: channels of the classifier's representation and of the codes.
      K: codebook size (split evenly among the classes,
        `jaxlatent.quantizers.piq_partition.class_of_code`).
      shared_keys: codes shared by all classes (the recipe's 0).
      mask_th: relative threshold of the target mask (the recipe's 0.35).
      rec_loss_coef: weight of the mask BCE (the recipe's 1).
      learning_rate: default Adam learning rate.

    Raises:
      ValueError: if the segment or the bins are not covered by the PSI decoder.
    """

    feature: str = "log1p_spectrogram"
    whole_segments: bool = True
    dim: int = 32
    K: int = 64
    shared_keys: int = 0
    mask_th: float = 0.35
    rec_loss_coef: float = 1.0
    learning_rate: float = 1e-3

    def __post_init__(self):
        for what, n in (("segment", self.segment), ("bins (n_fft // 2 + 1)", self.bins)):
            if n < 32 or psi_output_size(n) < n:
                raise ValueError(
                    f"PIQ {what} = {n}: the PSI decoder gives {psi_output_size(n)}; use a "
                    "size >= 32 that is 0 or 1 modulo 32"
                )


PIQ_PRESETS = {
    # 8 ms hop, 0.26 s segments: representation [2, 8], 4 codes per segment
    "tiny": PIQPreset(),
    # 10 ms hop, 0.64 s segments: representation [4, 16], 16 codes per segment
    "small": PIQPreset(n_fft=512, hop_length=160, segment=64, dim=64, K=256),
}


def _accuracy(predicted: Array, onehot: Array) -> Array:
    """Fraction of `predicted` ``[batch]`` equal to the classes of one-hot `onehot`."""
    return jnp.mean((predicted == jnp.argmax(onehot, axis=-1)).astype(jnp.float32))


def _build(p: PIQPreset, num_classes, rngs):
    return PIQInterpreter(p.dim, p.K, num_classes, shared_keys=p.shared_keys, rngs=rngs)


def _loss(p: PIQPreset):
    def loss_fn(model, batch, *, key, train):
        x, onehot = batch["x"], batch["labels"]
        out = model(x, train=train)
        d = piq_loss(out, x, onehot, mask_th=p.mask_th, rec_loss_coef=p.rec_loss_coef)
        return d.loss, {
            "classifier_ce": d.classifier_ce,
            "accuracy": _accuracy(out.predicted, onehot),
            "rec_loss": d.rec_loss,
            "vq_loss": d.vq_loss,
            "commitment_loss": d.commitment_loss,
            "codes_used": codes_used(out.indices, p.K),
        }

    return loss_fn


def _reconstruct(model, batch, key):
    """The interpretation ``σ(mask logits) · x`` (the recipe's ``X_int``)."""
    x = batch["x"]
    return jax.nn.sigmoid(model(x).mask_logits) * x


def _eval_metrics(model, batch, key):
    out = model(batch["x"])
    return {
        "accuracy": _accuracy(out.predicted, batch["labels"]),
        "codes_in_class_partition": codes_in_class_partition(model, out.indices, out.predicted),
        "codes_used": codes_used(out.indices, model.psi.codebook.K),
    }


PIQ_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "piq",
        "SpeechBrain PIQ: conv classifier + class-partitioned VQ interpreter (PSI) of its "
        "predictions on log spectrograms, mask BCE + VQ losses",
        "audio",
        _build,
        _loss,
        _reconstruct,
        None,
        sample_title="none: PIQ interprets a classifier's inputs, it has no prior to sample",
        needs_labels=True,
        presets=PIQ_PRESETS,
        eval_metrics=_eval_metrics,
    ),
)
