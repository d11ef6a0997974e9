"""Length masks and reductions shared by SpeechBrain's masked losses.

`compute_masked_loss` is the engine behind `mse_loss`, `l1_loss`, `nll_loss`, `bce_loss`,
`classification_error`, `kldiv_loss` (without label smoothing) and `distance_diff_loss`:
an unreduced loss is multiplied by a relative-length mask (rule "ceil with tolerance" of
:mod:`jaxlatent.masking`) and reduced by `reduce_loss`.

SpeechBrain quirks kept on purpose (each checked against SpeechBrain 1.1.2):

* reductions ``'sum'`` and ``'none'`` both return the masked, *unreduced* loss;
* ``'mean'`` divides by the number of ones in the mask, which is shaped like the targets
  (not like the loss) by default;
* label smoothing mixes in ``-mean(predictions, axis=1)`` masked and reduced like the loss,
  with NumPy broadcasting between that mean and the mask.

The one deliberate difference: SpeechBrain silently treats an unknown reduction name like
``'none'``; here a name outside :data:`REDUCTIONS` raises ValueError.

Errors that torch raises as IndexError/RuntimeError (shape mismatches, 1-D data with a
length) are raised here as ValueError naming the argument and the shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlatent import masking
from jaxlatent._checks import check_choice, shape_str

Array = jax.Array

#: Reduction names accepted by the masked losses ('sum' behaves like 'none', see above).
REDUCTIONS = ("mean", "batchmean", "batch", "sum", "none")

#: Shapes `compute_masked_loss` can take its length mask from.
MASK_SHAPES = ("targets", "predictions", "loss")


class Truncated(NamedTuple):
    """Output of :func:`truncate`: both arrays cut to the same size on axis 1."""

    predictions: Array
    targets: Array


def check_reduction(reduction: str) -> None:
    """Raise ValueError unless `reduction` is one of :data:`REDUCTIONS`."""
    check_choice("reduction", reduction, REDUCTIONS)


def broadcast_shapes(what: str, *named: tuple[str, tuple[int, ...]]) -> tuple[int, ...]:
    """NumPy broadcast of the named shapes; ValueError naming them all when impossible."""
    try:
        return tuple(np.broadcast_shapes(*(tuple(s) for _, s in named)))
    except ValueError:
        listed = ", ".join(f"{n} {tuple(s)}" for n, s in named)
        raise ValueError(f"{what}: shapes do not broadcast: {listed}") from None


def broadcast_arrays(what: str, **arrays: Array) -> list[Array]:
    """Explicit NumPy-style broadcast of the keyword arrays (in order), naming them on error."""
    shape = broadcast_shapes(what, *((n, jnp.shape(a)) for n, a in arrays.items()))
    return [jnp.broadcast_to(a, shape) for a in arrays.values()]


def mul_in_place(what: str, loss: Array, factor: Array, factor_name: str = "mask") -> Array:
    """``loss * factor`` with torch in-place semantics (``loss *= factor``).

    The factor must broadcast *to* the shape of `loss`, and the result keeps the dtype of
    `loss`; otherwise ValueError naming `factor_name` and both shapes.
    """
    try:
        shape = tuple(np.broadcast_shapes(tuple(loss.shape), tuple(factor.shape)))
    except ValueError:
        shape = None
    if shape != tuple(loss.shape):
        raise ValueError(
            f"{what}: the {factor_name} of shape {shape_str(factor)} does not broadcast to "
            f"the loss of shape {shape_str(loss)}"
        )
    return loss * jnp.broadcast_to(factor, loss.shape).astype(loss.dtype)


def truncate(predictions, targets, allowed_len_diff: int = 3) -> Truncated:
    """Cut `predictions` or `targets` on axis 1 so that both have the same length.

    Only axis 1 is compared; other axes are left as they are.

    Args:
      predictions: array ``[batch, time, ...]``.
      targets: array ``[batch, time', ...]``.
      allowed_len_diff: largest ``|time - time'|`` that is silently truncated (static int).

    Returns:
      ``Truncated(predictions, targets)`` (a NamedTuple), the longer one cut to the length
      of the shorter one on axis 1. Dtypes are unchanged.

    Raises:
      ValueError: if the lengths differ by more than `allowed_len_diff`, or either array
        has fewer than 2 axes.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.truncate`.

    Example:
      >>> p, t = truncate(jnp.zeros((2, 7, 3)), jnp.zeros((2, 5, 3)), allowed_len_diff=2)
      >>> p.shape, t.shape
      ((2, 5, 3), (2, 5, 3))
    """
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    if predictions.ndim < 2 or targets.ndim < 2:
        raise ValueError(
            "truncate compares axis 1 and needs predictions and targets with at least 2 axes, "
            f"got shapes {shape_str(predictions)} and {shape_str(targets)}"
        )
    len_diff = predictions.shape[1] - targets.shape[1]
    if len_diff == 0:
        return Truncated(predictions, targets)
    if abs(len_diff) > allowed_len_diff:
        raise ValueError(
            "Predictions and targets should be same length, but got "
            f"{predictions.shape[1]} and {targets.shape[1]} respectively (shapes "
            f"{shape_str(predictions)} and {shape_str(targets)}, allowed_len_diff="
            f"{allowed_len_diff})."
        )
    if len_diff < 0:
        return Truncated(predictions, targets[:, : predictions.shape[1]])
    return Truncated(predictions[:, : targets.shape[1]], targets)


def compute_length_mask(data, length=None, len_dim: int = 1) -> Array:
    """Mask of the valid positions of `data` given relative lengths (rule "ceil with tolerance").

    Position ``i`` along `len_dim` is valid when ``i < length * L - 1e-6`` (float32), i.e.
    ``ceil(length * L - 1e-6)`` positions are kept, robust to float32 round-off.

    Args:
      data: array whose shape and dtype the mask takes, ``[batch, time, ...]`` for
        ``len_dim >= 1`` or ``[time, batch, ...]`` for ``len_dim == 0``; any dtype.
      length: relative lengths ``[batch]`` (or ``[1]``, shared by all items) in [0, 1];
        None gives an all-ones mask.
      len_dim: the padded axis (static int, may be negative). The batch axis is 0, or 1
        when ``len_dim`` is 0 (SpeechBrain transposes axes 1 and `len_dim`).

    Returns:
      Array of the shape and dtype of `data`, 1 at valid positions and 0 elsewhere.

    Raises:
      ValueError: if `length` is given and `data` has fewer than 2 axes, `len_dim` is out
        of range, `length` is not 1-D with 1 or ``batch`` entries, or (when concrete)
        `length` lies outside [0, 1].

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.compute_length_mask`.

    Example:
      >>> data = jnp.arange(5)[None, :, None].repeat(3, axis=0).repeat(2, axis=2)
      >>> data = (data + jnp.arange(1, 4)[:, None, None]) * jnp.arange(1, 3)[None, None, :]
      >>> compute_length_mask(data, jnp.array([1.0, 0.4, 0.8]))[..., 0]
      Array([[1, 1, 1, 1, 1],
             [1, 1, 0, 0, 0],
             [1, 1, 1, 1, 0]], dtype=int32)
      >>> compute_length_mask(data, jnp.array([0.5, 1.0, 0.5]), len_dim=2)[:, 0, :]
      Array([[1, 0],
             [1, 1],
             [1, 0]], dtype=int32)
    """
    data = jnp.asarray(data)
    if length is None:
        return jnp.ones(data.shape, data.dtype)
    ndim = data.ndim
    if ndim < 2:
        raise ValueError(
            f"compute_length_mask needs data with at least 2 axes when a length is given, "
            f"got data of shape {shape_str(data)}"
        )
    if not -ndim <= len_dim < ndim:
        raise ValueError(f"len_dim={len_dim} is out of range for data of shape {shape_str(data)}")
    len_dim = len_dim % ndim
    batch = data.shape[1 if len_dim == 0 else 0]
    if jnp.ndim(length) != 1 or jnp.shape(length)[0] not in (1, batch):
        raise ValueError(
            f"length must be 1-D with 1 or {batch} entries (the batch of data of shape "
            f"{shape_str(data)} with len_dim={len_dim}), got shape {shape_str(length)}"
        )
    max_len = data.shape[len_dim]
    mask = masking.ceil_tolerance_mask(length, max_len)  # [batch, time]
    mask = mask.reshape(mask.shape + (1,) * (ndim - 2))
    mask = jnp.swapaxes(mask, 1, len_dim)
    return jnp.broadcast_to(mask.astype(data.dtype), data.shape)


def reduce_loss(
    loss,
    mask,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    predictions=None,
    targets=None,
) -> Array:
    """Reduce a masked, unreduced loss the way SpeechBrain does.

    With ``N = loss.shape[0]``:

    * ``'mean'``: ``loss.sum() / mask.sum()`` (number of ones in the *mask*);
    * ``'batchmean'``: ``loss.sum() / N``;
    * ``'batch'``: per item, ``loss[b].sum() / mask[b].sum()``, shape ``[batch]``;
    * ``'sum'`` and ``'none'``: `loss` unchanged (SpeechBrain quirk: 'sum' does not sum).

    Label smoothing (Pereyra et al. 2017, "Regularizing Neural Networks by Penalizing
    Confident Output Distributions"), only when ``label_smoothing != 0``: the regulariser
    ``reg = mean(predictions, axis=1) * mask`` (NumPy broadcasting, which is an outer
    product when the shapes only broadcast that way) is reduced like the loss ('batchmean'
    divides by ``targets.shape[0]``; 'batch' sums axis 1 of `reg` and of `mask`) and the
    result is ``-label_smoothing * reg + (1 - label_smoothing) * loss``. Empty masks give
    NaN, as in SpeechBrain.

    Args:
      loss: unreduced loss ``[batch, ...]`` (floating), already multiplied by `mask`.
      mask: length mask, any dtype, broadcastable against `loss`.
      reduction: one of 'mean', 'batchmean', 'batch', 'sum', 'none' (static).
      label_smoothing: smoothing weight (static Python float).
      predictions: the predictions ``[batch, classes, ...]``; needed with label smoothing.
      targets: the targets ``[batch, ...]``; needed with label smoothing and 'batchmean'.

    Returns:
      Scalar for 'mean'/'batchmean', ``[batch]`` for 'batch', otherwise an array of the
      (broadcast) shape of `loss`.

    Raises:
      ValueError: for an unknown `reduction`, label smoothing without `predictions` (or
        without `targets` for 'batchmean'), 'batch' when the mask cannot be split into
        ``N`` rows, or shapes that do not broadcast.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.reduce_loss`.

    Example:
      >>> loss = jnp.array([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
      >>> mask = jnp.array([[1, 1, 0], [1, 0, 0]])
      >>> reduce_loss(loss, mask)
      Array(2., dtype=float32)
      >>> reduce_loss(loss, mask, "batch")
      Array([1.5, 3. ], dtype=float32)
    """
    check_reduction(reduction)
    loss = jnp.asarray(loss)
    mask = jnp.asarray(mask)
    if loss.ndim == 0:
        raise ValueError("reduce_loss needs a loss with a batch axis, got a scalar")
    n = loss.shape[0]
    if reduction == "mean":
        loss = loss.sum() / mask.sum()
    elif reduction == "batchmean":
        loss = loss.sum() / n
    elif reduction == "batch":
        if mask.size % n:
            raise ValueError(
                f"reduction 'batch' splits the mask into {n} rows (the batch of the loss of "
                f"shape {shape_str(loss)}), impossible for a mask of shape {shape_str(mask)}"
            )
        loss = loss.reshape(n, -1).sum(1) / mask.reshape(n, -1).sum(1)

    if label_smoothing == 0:
        return loss
    if predictions is None:
        raise ValueError("label smoothing needs the predictions")
    predictions = jnp.asarray(predictions)
    if predictions.ndim < 2:
        raise ValueError(
            "label smoothing averages predictions over axis 1, got predictions of shape "
            f"{shape_str(predictions)}"
        )
    reg_mean, reg_mask = broadcast_arrays(
        "label smoothing: mean(predictions, axis=1) * mask",
        mean_predictions=jnp.mean(predictions, axis=1),
        mask=mask,
    )
    reg = reg_mean * reg_mask
    if reduction == "mean":
        reg = reg.sum() / mask.sum()
    elif reduction == "batchmean":
        if targets is None:
            raise ValueError("label smoothing with reduction 'batchmean' needs the targets")
        reg = reg.sum() / jnp.shape(targets)[0]
    elif reduction == "batch":
        if reg.ndim < 2 or mask.ndim < 2:
            raise ValueError(
                "label smoothing with reduction 'batch' sums axis 1 of the regulariser and "
                f"the mask, got shapes {shape_str(reg)} and {shape_str(mask)}"
            )
        reg = reg.sum(1) / mask.sum(1)
    reg, loss = broadcast_arrays("label smoothing: regulariser and loss", reg=reg, loss=loss)
    return -label_smoothing * reg + (1 - label_smoothing) * loss


def compute_masked_loss(
    loss_fn: Callable[[Array, Array], Array],
    predictions,
    targets,
    length=None,
    label_smoothing: float = 0.0,
    mask_shape: str = "targets",
    reduction: str = "mean",
) -> Array:
    """Apply an unreduced loss, mask padded positions and reduce (SpeechBrain's recipe).

    ``loss = loss_fn(predictions, targets)``; the mask is
    ``compute_length_mask(X, length)`` with ``X`` the targets, predictions or loss
    (`mask_shape`); ``loss * mask`` (the mask must broadcast to the loss shape) is reduced
    by :func:`reduce_loss` (see there for the reductions, including the quirk that 'sum'
    returns the unreduced masked loss, and for label smoothing).

    Args:
      loss_fn: JAX function ``(predictions, targets) -> unreduced loss`` (``[batch, ...]``).
      predictions: first argument of `loss_fn`, ``[batch, ...]``.
      targets: second argument of `loss_fn`, ``[batch, ...]``.
      length: relative lengths ``[batch]`` in [0, 1], or None (no masking).
      label_smoothing: smoothing weight (static Python float), see :func:`reduce_loss`.
      mask_shape: 'targets', 'predictions' or 'loss' (static).
      reduction: one of 'mean', 'batchmean', 'batch', 'sum', 'none' (static).

    Returns:
      The reduced loss (see :func:`reduce_loss`).

    Raises:
      ValueError: for an unknown `mask_shape` or `reduction`, a mask that does not
        broadcast to the loss, or bad lengths (see :func:`compute_length_mask`).

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.compute_masked_loss`.

    Example:
      >>> sq = lambda p, t: (p - t) ** 2
      >>> p, t = jnp.ones((2, 4)), jnp.zeros((2, 4))
      >>> compute_masked_loss(sq, p, t, jnp.array([0.5, 1.0]), reduction="batchmean")
      Array(3., dtype=float32)
    """
    check_reduction(reduction)
    if mask_shape not in MASK_SHAPES:
        raise ValueError(f"Invalid mask_shape value {mask_shape!r}; expected one of {MASK_SHAPES}")
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    loss = jnp.asarray(loss_fn(predictions, targets))
    mask_data = {"targets": targets, "predictions": predictions, "loss": loss}[mask_shape]
    mask = compute_length_mask(mask_data, length)
    loss = mul_in_place("compute_masked_loss", loss, mask)
    return reduce_loss(loss, mask, reduction, label_smoothing, predictions, targets)
