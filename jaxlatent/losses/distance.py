"""Distance-weighted position loss: `distance_diff_loss` (SpeechBrain 1.1.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.losses.reduction import check_reduction, compute_masked_loss

Array = jax.Array


def _distance_diff(beta, max_weight):
    def loss_fn(predictions: Array, targets: Array) -> Array:
        batch, max_len = predictions.shape
        if targets.shape[0] not in (1, batch):
            raise ValueError(
                f"targets must be [batch] (or [1]), got shape {shape_str(targets)} for "
                f"predictions of shape {shape_str(predictions)}"
            )
        positions = jnp.broadcast_to(jnp.arange(max_len)[None, :], predictions.shape)
        targets = jnp.broadcast_to(targets[:, None], predictions.shape)
        weights = jnp.minimum(jnp.exp(beta * jnp.abs(positions - targets)) - 1.0, max_weight)
        return (weights * predictions)[..., None]

    return loss_fn


def distance_diff_loss(
    predictions,
    targets,
    length=None,
    beta: float = 0.25,
    max_weight: float = 100.0,
    reduction: str = "mean",
) -> Array:
    """Penalise mass far from a target position on an interval scale.

    ``loss[b, i] = predictions[b, i] * min(exp(beta * |i - targets[b]|) - 1, max_weight)``,
    returned as ``[batch, max_len, 1]`` and masked with a mask of that shape (relative
    lengths along axis 1, rule "ceil with tolerance"). (SpeechBrain's docstring writes
    ``p_i * exp(beta |i - y|) - 1``; the code, reproduced here, multiplies ``p_i`` by
    ``exp(...) - 1``.) 'sum'/'none' return the masked unreduced ``[batch, max_len, 1]``
    loss; 'batch' gives ``[batch]``.

    Args:
      predictions: float ``[batch, max_len]`` (probabilities or any scores per position).
      targets: ground-truth positions ``[batch]`` (float or int).
      length: relative lengths ``[batch]`` in [0, 1], or None.
      beta: growth rate of the penalty with the distance.
      max_weight: upper clamp of the distance weight.
      reduction: 'mean', 'batchmean', 'batch', 'sum' or 'none' (static).

    Returns:
      The loss, in the promoted float dtype of predictions and targets.

    Raises:
      ValueError: non-float or non-2-D `predictions`, targets not of shape ``[batch]``,
        unknown `reduction`, or bad `length`.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.distance_diff_loss`.

    Example:
      >>> predictions = jnp.array(
      ...     [[0.25, 0.5, 0.25, 0.0], [0.05, 0.05, 0.9, 0.0], [8.0, 0.10, 0.05, 0.05]]
      ... )
      >>> targets = jnp.array([2.0, 3.0, 1.0])
      >>> length = jnp.array([0.75, 0.75, 1.0])
      >>> distance_diff_loss(predictions, targets, length)
      Array(0.2967, dtype=float32)
    """
    check_reduction(reduction)
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    check_floating("predictions", predictions)
    if predictions.ndim != 2:
        raise ValueError(
            f"predictions must be [batch, max_len], got shape {shape_str(predictions)}"
        )
    if targets.ndim != 1:
        raise ValueError(f"targets must be [batch], got shape {shape_str(targets)}")
    return compute_masked_loss(
        _distance_diff(beta, max_weight),
        predictions,
        targets,
        length,
        reduction=reduction,
        mask_shape="loss",
    )
