"""PIQ's training objective: classifier cross-entropy, mask BCE, codebook and commitment MSE.

The objective of SpeechBrain's recipe ``recipes/ESC50/interpret/train_piq.py`` with
``hparams/piq.yaml`` (speechbrain/speechbrain on GitHub; ``use_mask_output: True``,
``mask_th: 0.35``, ``rec_loss_coef: 1``), for the outputs of
`jaxlatent.models.piq.PIQInterpreter`, plus the cross-entropy of the classifier that model
trains in the same run:

* the PSI's output through a sigmoid is a mask; the reconstruction loss is the binary
  cross-entropy with the target mask `mask_target` (``x > mask_th · max(x)``, max over each
  example's frames and bins), weighted by ``rec_loss_coef``;
* the codebook loss ``mse(z_q_x, hcat.detach())`` and the commitment loss
  ``mse(hcat, z_q_x.detach())``, both with weight 1;
* the classifier's softmax cross-entropy on the true (one-hot) labels, weight 1.

The BCE is computed from the logits (`optax.sigmoid_binary_cross_entropy`), which equals the
recipe's ``-t log(σ + 1e-10) - (1 - t) log(1 - σ + 1e-10)`` except where σ saturates in
float32 (|logit| > ~17), where the recipe's ``1e-10`` caps the loss. Every term is a mean over
examples of equal size, so data-parallel runs equal one device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import optax

if TYPE_CHECKING:
    from jaxlatent.models.piq.interpreter import PIQOutput

Array = jax.Array


class PIQLossDetails(NamedTuple):
    """`piq_loss`'s total and its terms (float32 scalars)."""

    #: ``classifier_ce + rec_loss_coef · rec_loss + vq_loss + commitment_loss``.
    loss: Array
    #: the classifier's softmax cross-entropy on the true labels.
    classifier_ce: Array
    #: the mask BCE (unweighted).
    rec_loss: Array
    #: the codebook loss ``mean((z_q_x - sg(hcat))²)``.
    vq_loss: Array
    #: the commitment loss ``mean((hcat - sg(z_q_x))²)``.
    commitment_loss: Array


def mask_target(x: Array, mask_th: float) -> Array:
    """The recipe's target mask: float32 ``x > mask_th · max(x)`` (max over each example).

    Args:
      x: ``[batch, time, bins]`` log spectrograms (>= 0).
      mask_th: relative threshold.

    Returns:
      float32 ``[batch, time, bins]`` of 0 and 1.

    Example:
      >>> mask_target(jnp.array([[[0.0, 1.0], [0.3, 0.5]]]), 0.35)
      Array([[[0., 1.],
              [0., 1.]]], dtype=float32)
    """
    peak = jnp.max(x, axis=(1, 2), keepdims=True)
    return (x > mask_th * peak).astype(jnp.float32)


def piq_loss(
    out: PIQOutput,
    x: Array,
    onehot: Array,
    *,
    mask_th: float = 0.35,
    rec_loss_coef: float = 1.0,
) -> PIQLossDetails:
    """PIQ's objective for one batch (see the module docstring).

    Args:
      out: the model's output on `x` (`jaxlatent.models.piq.PIQOutput`).
      x: the input ``[batch, time, bins]`` log spectrograms (>= 0).
      onehot: float ``[batch, classes]`` true labels.
      mask_th: relative threshold of the target mask (the recipe's 0.35).
      rec_loss_coef: weight of the mask BCE (the recipe's 1).

    Returns:
      `PIQLossDetails` (float32 scalars).
    """
    ce = jnp.mean(optax.softmax_cross_entropy(out.logits, onehot))
    target = mask_target(x, mask_th)
    rec = jnp.mean(optax.sigmoid_binary_cross_entropy(out.mask_logits, target))
    vq = jnp.mean(jnp.square(out.z_q_x - jax.lax.stop_gradient(out.hcat)))
    commit = jnp.mean(jnp.square(out.hcat - jax.lax.stop_gradient(out.z_q_x)))
    loss = ce + rec_loss_coef * rec + vq + commit
    return PIQLossDetails(loss, ce, rec, vq, commit)
