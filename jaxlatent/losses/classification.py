"""Masked classification losses: `nll_loss`, `classification_error` (SpeechBrain 1.1.2).

Both take targets as class indices (cast to int like torch's ``.long()``, which truncates
floats toward zero), mask them with the targets' relative-length mask (rule "ceil with
tolerance") and reduce with `reduce_loss` (quirks documented there: 'sum' returns the
unreduced masked loss, 'mean' divides by the number of valid target positions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlatent._checks import check_floating, check_relative_length, is_concrete, shape_str
from jaxlatent.losses.reduction import (
    broadcast_arrays,
    check_reduction,
    compute_masked_loss,
    truncate,
)

Array = jax.Array

#: torch's `nll_loss` default `ignore_index`: targets equal to it get loss 0 (still counted
#: by the mask, so they lower 'mean').
IGNORE_INDEX = -100


def check_class_targets(targets: Array, num_classes: int, *, allowed=(), name="targets") -> None:
    """ValueError if concrete integer `targets` are outside [0, num_classes) and `allowed`."""
    if not is_concrete(targets):
        return
    values = np.asarray(targets)
    bad = (values < 0) | (values >= num_classes)
    for value in allowed:
        bad &= values != value
    if bad.any():
        raise ValueError(
            f"{name} must be class indices in [0, {num_classes})"
            + (f" or one of {tuple(allowed)}" if allowed else "")
            + f", got {values[bad][:5].tolist()} (shape {values.shape})"
        )


def _nll_elementwise(weight):
    """Unreduced torch `nll_loss(log_probs [batch, classes, ...], targets [batch, ...])`."""

    def loss_fn(log_probabilities: Array, targets: Array) -> Array:
        num_classes = log_probabilities.shape[1]
        expected = log_probabilities.shape[:1] + log_probabilities.shape[2:]
        if targets.shape != expected:
            raise ValueError(
                f"targets of shape {shape_str(targets)} do not match log_probabilities of shape "
                f"{shape_str(log_probabilities)} (expected targets of shape {expected})"
            )
        check_class_targets(targets, num_classes, allowed=(IGNORE_INDEX,))
        ignore = targets == IGNORE_INDEX
        valid = (targets >= 0) & (targets < num_classes)
        index = jnp.where(valid, targets, 0)
        picked = jnp.take_along_axis(log_probabilities, index[:, None], axis=1)[:, 0]
        if weight is not None:
            picked = picked * weight.astype(picked.dtype)[index]
        loss = jnp.where(ignore, jnp.zeros_like(picked), -picked)
        # Out-of-range targets (only possible under jit) give NaN instead of torch's error.
        return jnp.where(valid | ignore, loss, jnp.full_like(loss, jnp.nan))

    return loss_fn


def nll_loss(
    log_probabilities,
    targets,
    length=None,
    label_smoothing: float = 0.0,
    allowed_len_diff: int = 3,
    weight=None,
    reduction: str = "mean",
) -> Array:
    """Negative log-likelihood of class indices, masked by relative length.

    ``loss[b, t] = -weight[c] * log_probabilities[b, t, c]`` with ``c = targets[b, t]``
    (weight 1 when None; targets equal to -100, torch's ``ignore_index``, give 0).

    SpeechBrain quirks kept:

    * ``'mean'`` divides by the number of valid target positions, **not** by the sum of
      the class weights of the targets (unlike `torch.nn.functional.nll_loss`);
    * 'sum' and 'none' return the masked unreduced loss ``[batch, time]`` (``[batch]``);
    * label smoothing (Pereyra et al. 2017) adds ``-mean over classes of
      log_probabilities`` (unweighted, masked like the loss):
      ``(1 - ls) * nll + ls * (-mean_c log p)``, reduced the same way;
    * a 2-D input with a `length`, or with label smoothing and 'batch', is an error.

    Args:
      log_probabilities: float log-probabilities ``[batch, time, classes]`` or
        ``[batch, classes]`` (also ``[batch, classes, d1, ...]`` for 4-D and more, as torch).
      targets: class indices ``[batch, time']`` (``|time - time'| <= allowed_len_diff``) or
        ``[batch]``; any real dtype, cast to int.
      length: relative lengths ``[batch]`` in [0, 1] (3-D input only), or None.
      label_smoothing: smoothing weight (static Python float).
      allowed_len_diff: tolerated length difference on axis 1 (static int).
      weight: optional float class weights ``[classes]``.
      reduction: 'mean', 'batchmean', 'batch' (``[batch]``), 'sum' or 'none' (static).

    Returns:
      The loss, in the dtype of `log_probabilities`.

    Raises:
      ValueError: non-float `log_probabilities`, unknown `reduction`, shapes that do not
        match (beyond `allowed_len_diff` on the time axis), `weight` not of shape
        ``[classes]``, (when concrete) targets outside [0, classes) other than -100, or bad
        `length`. Under jit, out-of-range targets give NaN.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.nll_loss`.

    Example:
      >>> probs = jnp.array([[0.9, 0.1], [0.1, 0.9]])
      >>> nll_loss(jnp.log(probs), jnp.array([1, 1]))
      Array(1.2040, dtype=float32)
    """
    check_reduction(reduction)
    log_probabilities = jnp.asarray(log_probabilities)
    targets = jnp.asarray(targets)
    check_floating("log_probabilities", log_probabilities)
    if log_probabilities.ndim < 2:
        raise ValueError(
            "log_probabilities must be [batch, classes] or [batch, time, classes], got shape "
            f"{shape_str(log_probabilities)}"
        )
    if log_probabilities.ndim == 3:
        log_probabilities, targets = truncate(log_probabilities, targets, allowed_len_diff)
        log_probabilities = jnp.swapaxes(log_probabilities, 1, 2)  # [batch, classes, time]
    if weight is not None:
        weight = jnp.asarray(weight)
        if weight.shape != (log_probabilities.shape[1],):
            raise ValueError(
                f"weight must have shape ({log_probabilities.shape[1]},) (one per class), got "
                f"shape {shape_str(weight)}"
            )
    return compute_masked_loss(
        _nll_elementwise(weight),
        log_probabilities,
        targets.astype(jnp.int32),
        length,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


def _error(probabilities: Array, targets: Array) -> Array:
    predicted, targets = broadcast_arrays(
        "classification_error: argmax(probabilities, -1) and targets",
        argmax=jnp.argmax(probabilities, axis=-1),
        targets=targets,
    )
    return (predicted != targets).astype(jnp.float32)


def classification_error(
    probabilities, targets, length=None, allowed_len_diff: int = 3, reduction: str = "mean"
) -> Array:
    """Share of positions whose arg-max class differs from the target.

    ``error = float(argmax(probabilities, -1) != targets)`` (ties: first index, as torch),
    masked with the mask of the targets and reduced by `reduce_loss`. Truncation on axis 1
    only happens for 3-D probabilities with 2-D targets; otherwise the arg-max and the
    targets are NumPy-broadcast, so 1-D targets ``[time]`` are compared with every batch
    item (SpeechBrain's doctest relies on this) while the mask, hence the 'mean'
    denominator, has the shape of the targets. 'sum'/'none' return the masked unreduced
    error. Not differentiable (zero gradient).

    Args:
      probabilities: float scores ``[batch, classes]`` or ``[batch, time, classes]``.
      targets: class indices ``[batch]`` or ``[batch, time']`` (any real dtype, cast to int).
      length: relative lengths ``[batch]`` in [0, 1] (needs 2-D targets), or None.
      allowed_len_diff: tolerated length difference on axis 1 (static int).
      reduction: 'mean', 'batchmean', 'batch', 'sum' or 'none' (static).

    Returns:
      float32 error.

    Raises:
      ValueError: non-float `probabilities`, unknown `reduction`, shapes that do not
        broadcast or a mask that does not fit the error, or bad `length`.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.classification_error`.

    Example:
      >>> probs = jnp.array([[[0.9, 0.1], [0.1, 0.9]]])
      >>> classification_error(probs, jnp.array([1, 1]))
      Array(0.5, dtype=float32)
    """
    check_reduction(reduction)
    probabilities = jnp.asarray(probabilities)
    targets = jnp.asarray(targets)
    check_floating("probabilities", probabilities)
    if probabilities.ndim == 3 and targets.ndim == 2:
        probabilities, targets = truncate(probabilities, targets, allowed_len_diff)
    return compute_masked_loss(
        _error, probabilities, targets.astype(jnp.int32), length, reduction=reduction
    )


def kldiv_loss(
    log_probabilities,
    targets,
    length=None,
    label_smoothing: float = 0.0,
    allowed_len_diff: int = 3,
    pad_idx: int = 0,
    reduction: str = "mean",
) -> Array:
    """KL divergence to label-smoothed targets (Szegedy et al. 2016); `nll_loss` without smoothing.

    With ``label_smoothing <= 0`` this is ``nll_loss(log_probabilities, targets, length,
    reduction=reduction)`` (`allowed_len_diff` and `pad_idx` unused). With
    ``label_smoothing = ls > 0`` (no truncation, no length mask):

    * 2-D input becomes ``[batch, 1, classes]``; everything is flattened to
      ``[batch * time, classes]``;
    * the target distribution is ``1 - ls`` on the target class and ``ls / (classes - 1)``
      elsewhere; positions whose target equals `pad_idx` (**default 0, so class 0 is
      silently treated as padding**) contribute 0;
    * elementwise ``q * log(q) - q * log_probabilities`` (torch `kl_div`, 0·log 0 = 0);
    * reductions (SpeechBrain quirks): ``'mean'`` returns the **sum** (not a mean),
      'batchmean' the sum / batch, 'sum' the sum, 'batch' the per-item sums ``[batch]``
      **divided by the relative `length`** (required), 'none' the unreduced
      ``[batch * time, classes]`` array.

    Args:
      log_probabilities: float log-probabilities ``[batch, time, classes]`` or
        ``[batch, classes]``.
      targets: class indices with ``batch * time`` entries (any shape; any real dtype, cast
        to int).
      length: relative lengths ``[batch]``; used for masking without smoothing and as the
        divisor of 'batch' with smoothing.
      label_smoothing: smoothing weight (static Python float).
      allowed_len_diff: tolerated length difference (no smoothing only; static int).
      pad_idx: target value treated as padding (smoothing only; static int).
      reduction: 'mean', 'batchmean', 'batch', 'sum' or 'none' (static).

    Returns:
      The loss, in the dtype of `log_probabilities`.

    Raises:
      ValueError: as `nll_loss`; with smoothing also for fewer than 2 classes, targets not
        holding ``batch * time`` entries, (when concrete) targets outside [0, classes)
        other than `pad_idx`, or 'batch' without `length`. Under jit, out-of-range targets
        give NaN.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.kldiv_loss`.

    Example:
      >>> probs = jnp.array([[0.9, 0.1], [0.1, 0.9]])
      >>> kldiv_loss(jnp.log(probs), jnp.array([1, 1]))
      Array(1.2040, dtype=float32)
    """
    check_reduction(reduction)
    if not label_smoothing > 0:
        return nll_loss(log_probabilities, targets, length, reduction=reduction)
    log_probabilities = jnp.asarray(log_probabilities)
    targets = jnp.asarray(targets)
    check_floating("log_probabilities", log_probabilities)
    if log_probabilities.ndim == 2:
        log_probabilities = log_probabilities[:, None, :]
    if log_probabilities.ndim != 3:
        raise ValueError(
            "log_probabilities must be [batch, classes] or [batch, time, classes], got shape "
            f"{shape_str(log_probabilities)}"
        )
    batch, time, num_classes = log_probabilities.shape
    if num_classes < 2:
        raise ValueError(
            f"label smoothing needs at least 2 classes, got log_probabilities of shape "
            f"{shape_str(log_probabilities)}"
        )
    if targets.size != batch * time:
        raise ValueError(
            f"targets of shape {shape_str(targets)} must hold batch * time = {batch * time} "
            f"entries (log_probabilities of shape {shape_str(log_probabilities)})"
        )
    log_probabilities = log_probabilities.reshape(-1, num_classes)
    targets = targets.astype(jnp.int32).reshape(-1)
    ignore = targets == pad_idx
    targets = jnp.where(ignore, 0, targets)
    check_class_targets(targets, num_classes, name=f"targets (other than pad_idx={pad_idx})")
    valid = (targets >= 0) & (targets < num_classes)
    dtype = log_probabilities.dtype
    is_target = targets[:, None] == jnp.arange(num_classes)[None, :]
    true_distribution = jnp.where(
        is_target,
        jnp.asarray(1 - label_smoothing, dtype),
        jnp.asarray(label_smoothing / (num_classes - 1), dtype),
    )
    loss = jax.scipy.special.xlogy(true_distribution, true_distribution)
    loss = loss - true_distribution * log_probabilities
    loss = jnp.where(ignore[:, None], jnp.zeros_like(loss), loss)
    loss = jnp.where(valid[:, None], loss, jnp.full_like(loss, jnp.nan))

    if reduction in ("mean", "sum"):
        return loss.sum()
    if reduction == "batchmean":
        return loss.sum() / batch
    if reduction == "batch":
        if length is None:
            raise ValueError(
                "kldiv_loss with label smoothing and reduction 'batch' divides by length, "
                "which is None"
            )
        check_relative_length(length)
        per_item, length = broadcast_arrays(
            "kldiv_loss 'batch': per-item sums and length",
            per_item=loss.reshape(batch, -1).sum(1),
            length=jnp.asarray(length),
        )
        return per_item / length
    return loss
