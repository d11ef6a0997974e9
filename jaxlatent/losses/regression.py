"""Masked regression losses: `mse_loss` and `l1_loss` (SpeechBrain 1.1.2).

Both truncate axis 1 (`truncate`), compute the elementwise error, mask it with the targets'
relative-length mask (rule "ceil with tolerance") and reduce it with `reduce_loss`.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.losses.reduction import (
    broadcast_arrays,
    check_reduction,
    compute_masked_loss,
    truncate,
)

Array = jax.Array


def _broadcast_pair(predictions: Array, targets: Array) -> tuple[Array, Array]:
    """torch's `broadcast_tensors` of input and target, with torch's size-mismatch warning."""
    p, t = broadcast_arrays("predictions and targets", predictions=predictions, targets=targets)
    if predictions.shape != targets.shape:
        warnings.warn(
            f"Using a target size ({shape_str(targets)}) that is different to the input size "
            f"({shape_str(predictions)}). This will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.",
            UserWarning,
            stacklevel=4,
        )
    return p, t


def _squared_error(predictions: Array, targets: Array) -> Array:
    p, t = _broadcast_pair(predictions, targets)
    return jnp.square(p - t)


def _absolute_error(predictions: Array, targets: Array) -> Array:
    p, t = _broadcast_pair(predictions, targets)
    d = p - t
    # |d| with torch's subgradient sign(0) = 0 (jnp.abs has derivative 1 at 0).
    return d * jnp.sign(d)


def _regression_loss(loss_fn, predictions, targets, length, allowed_len_diff, reduction):
    check_reduction(reduction)
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    check_floating("predictions", predictions)
    predictions, targets = truncate(predictions, targets, allowed_len_diff)
    return compute_masked_loss(loss_fn, predictions, targets, length, reduction=reduction)


def mse_loss(
    predictions, targets, length=None, allowed_len_diff: int = 3, reduction: str = "mean"
) -> Array:
    """Mean squared error over the valid (unpadded) elements.

    ``loss = (predictions - targets) ** 2`` elementwise, masked by relative length along
    axis 1 (rule "ceil with tolerance"). With ``'mean'`` the sum is divided by the number
    of valid *elements* of the targets (valid frames × features).

    SpeechBrain quirks kept: 'sum' and 'none' both return the masked unreduced loss
    ``[batch, time, ...]``; predictions and targets are NumPy-broadcast after truncation
    (with torch's UserWarning when their shapes differ), while the mask (and so the 'mean'
    denominator) follows the shape of the targets.

    Args:
      predictions: float array ``[batch, time, ...]``.
      targets: array ``[batch, time', ...]`` with ``|time - time'| <= allowed_len_diff``.
      length: relative lengths ``[batch]`` in [0, 1], or None.
      allowed_len_diff: tolerated length difference on axis 1 (static int).
      reduction: 'mean' (scalar), 'batchmean' (sum / batch, scalar), 'batch' (``[batch]``),
        'sum' or 'none' (masked unreduced loss). Static.

    Returns:
      The loss, in the promoted float dtype of predictions and targets.

    Raises:
      ValueError: non-float `predictions`, unknown `reduction`, length difference above
        `allowed_len_diff`, inputs with fewer than 2 axes, shapes that do not broadcast,
        or bad `length` (see `compute_length_mask`).

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.mse_loss`.

    Example:
      >>> probs = jnp.array([[0.9, 0.1, 0.1, 0.9]])
      >>> mse_loss(probs, jnp.array([[1.0, 0.0, 0.0, 1.0]]))
      Array(0.0100, dtype=float32)
    """
    return _regression_loss(
        _squared_error, predictions, targets, length, allowed_len_diff, reduction
    )


def l1_loss(
    predictions, targets, length=None, allowed_len_diff: int = 3, reduction: str = "mean"
) -> Array:
    """Mean absolute error over the valid (unpadded) elements.

    ``loss = |predictions - targets|`` elementwise, masked and reduced exactly like
    :func:`mse_loss` (same quirks). The gradient at ``predictions == targets`` is 0, as
    torch's.

    Args:
      predictions: float array ``[batch, time, ...]``.
      targets: array ``[batch, time', ...]`` with ``|time - time'| <= allowed_len_diff``.
      length: relative lengths ``[batch]`` in [0, 1], or None.
      allowed_len_diff: tolerated length difference on axis 1 (static int).
      reduction: 'mean', 'batchmean', 'batch', 'sum' or 'none' (static; see `mse_loss`).

    Returns:
      The loss, in the promoted float dtype of predictions and targets.

    Raises:
      ValueError: as :func:`mse_loss`.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.l1_loss`.

    Example:
      >>> probs = jnp.array([[0.9, 0.1, 0.1, 0.9]])
      >>> l1_loss(probs, jnp.array([[1.0, 0.0, 0.0, 1.0]]))
      Array(0.1000, dtype=float32)
    """
    return _regression_loss(
        _absolute_error, predictions, targets, length, allowed_len_diff, reduction
    )
