"""PIQ in `jaxlatent train`: an audio classifier and its class-partitioned VQ interpreter.

PIQ (Posthoc Interpretation via Quantization; Paissan, Subakan & Ravanelli 2023,
arXiv:2303.12659) explains a classifier: a PSI decoder reconstructs, from the classifier's
representation quantized with a codebook partitioned by class, a mask of the input spectrogram
(the part of the input the classifier relied on). The objective is that of SpeechBrain's
recipe `recipes/ESC50/interpret/train_piq.py` with `hparams/piq.yaml` (speechbrain/speechbrain
on GitHub; ``use_vq: True``, ``use_mask_output: True``, ``mask_th: 0.35``,
``rec_loss_coef: 1``, ``shared_keys: 0``, class partitioning on, adapter with 2× reduction):

* the PSI (`jaxlatent.models.piq.VectorQuantizedPSI_Audio`) gets the classifier's
  representation ``hcat`` and is conditioned on the classifier's **prediction**
  (``class_pred = predictions.argmax(1)``), not on the true label;
* its output through a sigmoid is a mask; the reconstruction loss is the binary cross-entropy
  with the target mask ``x > mask_th · max(x)`` (max over each example's frames and bins),
  weighted by ``rec_loss_coef``; the interpretation is ``mask · x``;
* the codebook loss ``mse(z_q_x, hcat.detach())`` and the commitment loss
  ``mse(hcat, z_q_x.detach())``, both with weight 1.

Differences from the recipe, and why:

* The recipe interprets a pretrained, frozen classifier (`Conv2dEncoder_v2` + ECAPA
  `Classifier`). Here the classifier (`Conv2dEncoder_v2` embedding, mean over time and
  frequency, a linear head) is trained in the same run with cross-entropy on the true labels,
  and the PSI sees ``stop_gradient(hcat)``: the classifier gets the cross-entropy gradient
  only and the interpreter the PIQ gradient only, so the summed loss trains the two as
  separate objectives (Adam scales each parameter by itself). The classifier's BatchNorms are
  in training mode with the rest of the model (the recipe keeps its classifier in eval mode).
* The recipe crops its input to the (shorter) decoder output; the decoder here is at least as
  large as the input (``32 · floor(n / 32) + 1`` for ``n`` frames or bins, so segments and
  bins must be ``≡ 0 or 1 (mod 32)``) and its output is cropped to the input.
* The BCE is computed from the logits (`optax.sigmoid_binary_cross_entropy`), which equals the
  recipe's ``-t log(σ + 1e-10) - (1 - t) log(1 - σ + 1e-10)`` except where σ saturates in
  float32 (|logit| > ~17), where the recipe's ``1e-10`` caps the loss.
* Features: ``log(1 + |STFT|)`` spectrograms (`jaxlatent.apps.audio_data`, feature
  ``"log1p_spectrogram"``, >= 0 as the recipe's ``log1p`` power spectra, not standardised).

Every loss is a mean over examples of equal size, so data-parallel runs equal one device; the
BatchNorm statistics are model state, synchronised by the trainer through ``axis_name``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.apps.audio_data import AudioFeatures
from jaxlatent.apps.audio_models import codes_used
from jaxlatent.apps.spec import ModelSpec
from jaxlatent.models.piq import Conv2dEncoder_v2, VectorQuantizedPSI_Audio
from jaxlatent.quantizers.piq_partition import class_of_code

Array = jax.Array


def psi_output_size(n: int) -> int:
    """Frames (or bins) of the PSI decoder's output for an input of `n` frames (bins).

    `Conv2dEncoder_v2` maps ``n`` to ``floor(n / 16)``, the PSI's down/up convs to an even
    ``m = 2 · floor(n / 32)`` and its decoder to ``16 m + 1``.

    Example:
      >>> psi_output_size(32), psi_output_size(129), psi_output_size(257)
      (33, 129, 257)
    """
    return 32 * (n // 32) + 1


@dataclasses.dataclass(frozen=True)
class PIQPreset(AudioFeatures):
    """Data and size settings of the PIQ model.

    The data fields are `jaxlatent.apps.audio_data.AudioFeatures`', with these defaults and
    bounds: ``feature`` ``"log1p_spectrogram"``; ``n_fft`` such that the ``n_fft // 2 + 1``
    bins are ``≡ 0 or 1 (mod 32)``; ``segment`` (frames) ``≡ 0 or 1 (mod 32)`` and >= 32;
    ``whole_segments`` always set (the losses have no length mask).

    Attributes:
      dim: channels of the classifier's representation and of the codes.
      K: codebook size (split evenly among the classes, `class_of_code`).
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


class PIQOutput(NamedTuple):
    """Output of `PIQInterpreter`."""

    #: ``[batch, classes]``: the classifier's logits.
    logits: Array
    #: int32 ``[batch]``: the predicted class, which the interpreter is conditioned on.
    predicted: Array
    #: ``[batch, time, bins]``: the PSI output cropped to the input (mask logits).
    mask_logits: Array
    #: ``[batch, h, w, dim]``: the interpreter's (adapted, down-sampled) representation.
    hcat: Array
    #: ``[batch, h, w, dim]``: the chosen codes, gradient to the codebook only.
    z_q_x: Array
    #: int32 ``[batch, h, w]``: the chosen code indices.
    indices: Array


class PIQClassifier(nnx.Module):
    """`Conv2dEncoder_v2` embedding, mean over time and frequency, linear head.

    Args:
      dim: channels of the representation.
      num_classes: classes.
      rngs: `nnx.Rngs`.
    """

    def __init__(self, dim: int, num_classes: int, *, rngs: nnx.Rngs):
        self.embedding = Conv2dEncoder_v2(dim, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, x: Array, *, train: bool | None = None) -> tuple[Array, Array]:
        """``(hcat [batch, T', F', dim], logits [batch, classes])`` of ``x [batch, T, F]``."""
        hcat = self.embedding(x, train=train)
        return hcat, self.head(jnp.mean(hcat, axis=(1, 2)))


class PIQInterpreter(nnx.Module):
    """A classifier and its PIQ interpreter (`VectorQuantizedPSI_Audio`), channels-last.

    Args:
      preset: a `PIQPreset`.
      num_classes: classes of the data (>= 1); each gets its block of the codebook.
      rngs: `nnx.Rngs`.

    Raises:
      ValueError: if the codebook leaves a class without codes (``K`` too small).

    Example:
      Shapes only (`nnx.eval_shape` allocates and computes nothing):

      >>> model = nnx.eval_shape(lambda: PIQInterpreter(PIQPreset(), 2, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((3, 32, 129), jnp.float32)
      >>> out = nnx.eval_shape(lambda m, x: m(x, train=True), model, x)
      >>> out.logits.shape, out.mask_logits.shape, out.hcat.shape, out.indices.shape
      ((3, 2), (3, 32, 129), (3, 1, 4, 32), (3, 1, 4))
    """

    def __init__(self, preset: PIQPreset, num_classes: int, *, rngs: nnx.Rngs):
        owned = set(class_of_code(preset.K, num_classes, preset.shared_keys).tolist())
        if len(owned) < num_classes:
            raise ValueError(
                f"PIQ's codebook of K={preset.K} codes ({preset.shared_keys} shared) gives "
                f"codes to {len(owned)} of the {num_classes} classes; use a preset with a "
                "larger K or fewer classes"
            )
        self.classifier = PIQClassifier(preset.dim, num_classes, rngs=rngs)
        self.psi = VectorQuantizedPSI_Audio(
            preset.dim,
            preset.K,
            num_classes,
            activate_class_partitioning=True,
            shared_keys=preset.shared_keys,
            use_adapter=True,
            adapter_reduce_dim=True,
            rngs=rngs,
        )

    def __call__(self, x: Array, *, train: bool | None = None) -> PIQOutput:
        """Classify `x` ``[batch, time, bins]`` (log spectrograms) and interpret the prediction.

        Args:
          x: floating ``[batch, time, bins]``, time and bins >= 32 and ``≡ 0 or 1 (mod 32)``.
          train: True: BatchNorm batch statistics and the quantizer's training stage; False:
            running statistics and the evaluation stage; None: the modules' modes (NNX's
            ``.train()``/``.eval()``).

        Returns:
          `PIQOutput`.

        Raises:
          ValueError: if `x` is not a floating 3-D array the PSI decoder covers.
        """
        check_floating("x", x)
        if x.ndim != 3 or any(n < 32 or psi_output_size(n) < n for n in x.shape[1:]):
            raise ValueError(
                "PIQInterpreter expects x [batch, time, bins] with time and bins >= 32 and 0 or "
                f"1 modulo 32 (covered by the PSI decoder), got shape {shape_str(x)}"
            )
        hcat, logits = self.classifier(x, train=train)
        predicted = jax.lax.stop_gradient(jnp.argmax(logits, axis=-1).astype(jnp.int32))
        out = self.psi(jax.lax.stop_gradient(hcat), predicted, train=train)
        codebook = self.psi.codebook
        indices = codebook(
            jax.lax.stop_gradient(out.hcat),
            predicted,
            num_classes=codebook.numclasses,
            activate_class_partitioning=codebook.activate_class_partitioning,
            shared_keys=codebook.shared_keys,
            train=(not codebook.deterministic) if train is None else train,
        )
        mask_logits = out.x_tilde[:, : x.shape[1], : x.shape[2], 0]
        return PIQOutput(logits, predicted, mask_logits, out.hcat, out.z_q_x, indices)


def mask_target(x: Array, mask_th: float) -> Array:
    """The recipe's target mask: float32 ``x > mask_th · max(x)`` (max over each example).

    Example:
      >>> mask_target(jnp.array([[[0.0, 1.0], [0.3, 0.5]]]), 0.35)
      Array([[[0., 1.],
              [0., 1.]]], dtype=float32)
    """
    peak = jnp.max(x, axis=(1, 2), keepdims=True)
    return (x > mask_th * peak).astype(jnp.float32)


def codes_in_class_partition(model: PIQInterpreter, indices: Array, labels: Array) -> Array:
    """Fraction of the codes `indices` ``[batch, h, w]`` that belong to the class `labels`
    ``[batch]`` (int) of their example; shared codes count as outside (float32 scalar)."""
    codebook = model.psi.codebook
    owner = class_of_code(codebook.K, codebook.numclasses, codebook.shared_keys)
    owner = jnp.asarray(np.concatenate([owner, np.full(codebook.shared_keys, -1, np.int32)]))
    return jnp.mean((owner[indices] == labels[:, None, None]).astype(jnp.float32))


def _accuracy(predicted: Array, onehot: Array) -> Array:
    """Fraction of `predicted` ``[batch]`` equal to the classes of one-hot `onehot`."""
    return jnp.mean((predicted == jnp.argmax(onehot, axis=-1)).astype(jnp.float32))


def _build(p: PIQPreset, num_classes, rngs):
    return PIQInterpreter(p, num_classes, rngs=rngs)


def _loss(p: PIQPreset):
    def loss_fn(model, batch, *, key, train):
        x, onehot = batch["x"], batch["labels"]
        out = model(x, train=train)
        ce = jnp.mean(optax.softmax_cross_entropy(out.logits, onehot))
        target = mask_target(x, p.mask_th)
        rec = jnp.mean(optax.sigmoid_binary_cross_entropy(out.mask_logits, target))
        vq = jnp.mean(jnp.square(out.z_q_x - jax.lax.stop_gradient(out.hcat)))
        commit = jnp.mean(jnp.square(out.hcat - jax.lax.stop_gradient(out.z_q_x)))
        loss = ce + p.rec_loss_coef * rec + vq + commit
        return loss, {
            "classifier_ce": ce,
            "accuracy": _accuracy(out.predicted, onehot),
            "rec_loss": rec,
            "vq_loss": vq,
            "commitment_loss": commit,
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
