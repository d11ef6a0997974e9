"""Masked binary cross-entropy on logits: `bce_loss` (SpeechBrain 1.1.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.losses.reduction import (
    broadcast_arrays,
    check_reduction,
    compute_masked_loss,
    mul_in_place,
    truncate,
)

Array = jax.Array


def _bce_with_logits(weight, pos_weight):
    """Unreduced torch `binary_cross_entropy_with_logits` (same formula and broadcasting)."""

    def loss_fn(inputs: Array, targets: Array) -> Array:
        log_sigmoid = jax.nn.log_sigmoid(inputs)
        if pos_weight is not None:
            pw, t = broadcast_arrays(
                "bce_loss: pos_weight and targets", pos_weight=pos_weight, targets=targets
            )
            log_sigmoid = mul_in_place("bce_loss", log_sigmoid, (pw - 1) * t + 1, "pos_weight")
        loss = (1 - targets) * inputs - log_sigmoid
        if weight is not None:
            loss = mul_in_place("bce_loss", loss, weight, "weight")
        return loss.astype(targets.dtype)

    return loss_fn


def bce_loss(
    inputs,
    targets,
    length=None,
    weight=None,
    pos_weight=None,
    reduction: str = "mean",
    allowed_len_diff: int = 3,
    label_smoothing: float = 0.0,
) -> Array:
    """Binary cross-entropy on logits, masked by relative length.

    ``loss = -w * [pos_weight * t * log σ(x) + (1 - t) * log(1 - σ(x))]``, computed as
    torch does (``(1 - t) * x - ((pos_weight - 1) * t + 1) * log_sigmoid(x)``, times `weight`).

    Steps (as SpeechBrain): a trailing singleton axis of `inputs` is dropped when `inputs`
    has one more axis than `targets`; inputs with 2 axes or more are truncated on axis 1;
    1-D inputs and targets ``[batch]`` become ``[batch, 1]`` (no `length` allowed then); a
    1-D `weight` ``[batch]`` becomes ``[batch, 1]``, i.e. **a per-item weight** (a per-class
    ``[time]`` weight only works when it happens to broadcast); the mask has the shape of
    the targets; 'sum'/'none' return the masked unreduced loss.

    Label smoothing is SpeechBrain's generic regulariser, **broken by design** for this
    loss: it is ``-mean(inputs, axis=1)`` — a mean of *logits* — broadcast against the
    mask. For 1-D inputs that is an outer product ``[batch, batch]`` (so 'mean' uses the
    *sum* of the logits: ``bce_loss([1, 2, 3], [1, 1, 1], label_smoothing=0.5) ==
    -0.5 * 6 + 0.5 * bce``); for ``[batch, time]`` inputs it only broadcasts when
    ``time == batch`` (silently wrong) or ``batch == 1``, else ValueError here (torch
    raises RuntimeError).

    Args:
      inputs: float logits ``[batch]``, ``[batch, time]`` or either with a trailing ``1``.
      targets: labels in [0, 1] (any real dtype, cast to float32) ``[batch]`` or
        ``[batch, time']`` with ``|time - time'| <= allowed_len_diff``.
      length: relative lengths ``[batch]`` in [0, 1] (2-D inputs only), or None.
      weight: optional float rescaling weight, broadcast to the loss shape after a 1-D
        weight gets a trailing axis.
      pos_weight: optional float weight of positive examples, broadcast against the
        targets (e.g. ``[time]`` for ``[batch, time]`` multi-label inputs).
      reduction: 'mean', 'batchmean', 'batch' (``[batch]``), 'sum' or 'none' (static).
      allowed_len_diff: tolerated length difference on axis 1 (static int).
      label_smoothing: smoothing weight (static Python float), see above.

    Returns:
      float32 loss (torch casts the loss to the float32 targets).

    Raises:
      ValueError: non-float `inputs`, unknown `reduction`, `length` with 1-D inputs,
        inputs and targets of different shapes (beyond `allowed_len_diff` on axis 1),
        weights that do not broadcast to the loss, label smoothing whose regulariser does
        not broadcast (see above), or bad `length`.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.bce_loss`.

    Example:
      >>> bce_loss(jnp.array([10.0, -6.0]), jnp.array([1, 0]))
      Array(0.0013, dtype=float32)
    """
    check_reduction(reduction)
    inputs = jnp.asarray(inputs)
    targets = jnp.asarray(targets)
    check_floating("inputs", inputs)
    if inputs.ndim == targets.ndim + 1 and inputs.shape[-1] == 1:
        inputs = inputs[..., 0]
    if inputs.ndim >= 2:
        inputs, targets = truncate(inputs, targets, allowed_len_diff)
    elif length is not None:
        raise ValueError(
            f"length can be passed only for >= 2D inputs, got inputs of shape {shape_str(inputs)}"
        )
    else:
        inputs, targets = inputs[..., None], targets[..., None]
    if inputs.shape != targets.shape:
        raise ValueError(
            f"Target size {shape_str(targets)} must be the same as input size "
            f"{shape_str(inputs)} (after removing a trailing singleton axis of the inputs)"
        )
    if weight is not None:
        weight = jnp.asarray(weight)
        if weight.ndim == 1:
            weight = weight[:, None]
    if pos_weight is not None:
        pos_weight = jnp.asarray(pos_weight)
    try:
        return compute_masked_loss(
            _bce_with_logits(weight, pos_weight),
            inputs,
            targets.astype(jnp.float32),
            length,
            label_smoothing=label_smoothing,
            reduction=reduction,
        )
    except ValueError as err:
        if not str(err).startswith("label smoothing"):
            raise
        raise ValueError(
            f"bce_loss label smoothing (SpeechBrain's regulariser) broadcasts "
            f"mean(inputs, axis=1) of shape {inputs.shape[:1] + inputs.shape[2:]} against the "
            f"mask of shape {shape_str(targets)}, which fails unless time == batch or "
            f"batch == 1 (inputs of shape {shape_str(inputs)}): {err}"
        ) from None
