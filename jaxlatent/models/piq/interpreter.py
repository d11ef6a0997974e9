"""`PIQInterpreter`: a classifier and its class-partitioned VQ interpreter, trained together.

PIQ (Posthoc Interpretation via Quantization; Paissan, Subakan & Ravanelli 2023,
arXiv:2303.12659) explains a classifier: a PSI decoder reconstructs, from the classifier's
representation quantized with a codebook partitioned by class, a mask of the input
spectrogram (the part of the input the classifier relied on). As in SpeechBrain's recipe
``recipes/ESC50/interpret/train_piq.py`` with ``hparams/piq.yaml`` (``use_vq: True``,
``shared_keys: 0``, class partitioning on, adapter with 2× reduction), the PSI
(`VectorQuantizedPSI_Audio`) gets the classifier's representation ``hcat`` and is conditioned
on the classifier's **prediction** (``argmax`` of the logits), not on the true label.

Differences from the recipe, and why:

* The recipe interprets a pretrained, frozen classifier. Here the classifier
  (`PIQClassifier`) is part of the model and the PSI sees ``stop_gradient(hcat)``: trained
  with `jaxlatent.losses.piq_loss`, the classifier gets the cross-entropy gradient only and
  the interpreter the PIQ gradient only, so the summed loss trains the two as separate
  objectives. The classifier's BatchNorms follow ``train`` with the rest of the model (the
  recipe keeps its classifier in eval mode).

Train/eval: ``__call__(x, *, train=False)``, as every model here (README "Layout
convention").
* The recipe crops its input to the (shorter) decoder output; the decoder here is at least as
  large as the input (`psi_output_size`: ``32 · floor(n / 32) + 1`` for ``n`` frames or bins,
  so inputs must be ``≡ 0 or 1 (mod 32)``) and its output is cropped to the input.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.models.piq.classifier import PIQClassifier
from jaxlatent.models.piq.psi import VectorQuantizedPSI_Audio
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike
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


class PIQInterpreter(nnx.Module):
    """A classifier (`PIQClassifier`) and its PIQ interpreter (`VectorQuantizedPSI_Audio`).

    Args:
      dim: channels of the classifier's representation and of the codes.
      K: codebook size (split evenly among the classes, `class_of_code`).
      num_classes: classes of the data (>= 1); each gets its block of the codebook.
      shared_keys: codes shared by all classes (the recipe's 0).
      rngs: `nnx.Rngs`.
      precision: precision of every convolution and matmul (:mod:`jaxlatent.precision`;
        default ``"highest"``); the code search is at ``HIGHEST`` whatever this is.

    Raises:
      ValueError: if the codebook leaves a class without codes (``K`` too small).

    Example:
      Shapes only (`nnx.eval_shape` allocates and computes nothing):

      >>> model = nnx.eval_shape(lambda: PIQInterpreter(32, 64, 2, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((3, 32, 129), jnp.float32)
      >>> out = nnx.eval_shape(lambda m, x: m(x, train=True), model, x)
      >>> out.logits.shape, out.mask_logits.shape, out.hcat.shape, out.indices.shape
      ((3, 2), (3, 32, 129), (3, 1, 4, 32), (3, 1, 4))
    """

    def __init__(
        self,
        dim: int,
        K: int,
        num_classes: int,
        *,
        shared_keys: int = 0,
        rngs: nnx.Rngs,
        precision: PrecisionLike = DEFAULT_PRECISION,
    ):
        owned = set(class_of_code(K, num_classes, shared_keys).tolist())
        if len(owned) < num_classes:
            raise ValueError(
                f"PIQ's codebook of K={K} codes ({shared_keys} shared) gives codes to "
                f"{len(owned)} of the {num_classes} classes; use a larger K or fewer classes"
            )
        self.classifier = PIQClassifier(dim, num_classes, rngs=rngs, precision=precision)
        self.psi = VectorQuantizedPSI_Audio(
            dim,
            K,
            num_classes,
            activate_class_partitioning=True,
            shared_keys=shared_keys,
            use_adapter=True,
            adapter_reduce_dim=True,
            rngs=rngs,
            precision=precision,
        )

    def __call__(self, x: Array, *, train: bool = False) -> PIQOutput:
        """Classify `x` ``[batch, time, bins]`` (log spectrograms) and interpret the prediction.

        Args:
          x: floating ``[batch, time, bins]``, time and bins >= 32 and ``≡ 0 or 1 (mod 32)``.
          train: True: BatchNorm batch statistics and the quantizer's training stage; False:
            running statistics and the evaluation stage.

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
            train=train,
        )
        mask_logits = out.x_tilde[:, : x.shape[1], : x.shape[2], 0]
        return PIQOutput(logits, predicted, mask_logits, out.hcat, out.z_q_x, indices)


def codes_in_class_partition(model: PIQInterpreter, indices: Array, labels: Array) -> Array:
    """Fraction of the codes `indices` that belong to the class of their example.

    Args:
      model: the interpreter whose codebook chose the codes.
      indices: int ``[batch, h, w]`` code indices (`PIQOutput.indices`).
      labels: int ``[batch]`` classes.

    Returns:
      float32 scalar in [0, 1]; shared codes count as outside.
    """
    codebook = model.psi.codebook
    owner = class_of_code(codebook.K, codebook.numclasses, codebook.shared_keys)
    owner = jnp.asarray(np.concatenate([owner, np.full(codebook.shared_keys, -1, np.int32)]))
    return jnp.mean((owner[indices] == labels[:, None, None]).astype(jnp.float32))
