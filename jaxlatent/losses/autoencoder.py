"""Autoencoder losses: VAE (reconstruction + weighted KL) and plain reconstruction.

Source: Kingma & Welling, "Auto-Encoding Variational Bayes", arXiv:1312.6114;
SpeechBrain 1.1.2 `speechbrain.nnet.losses.VariationalAutoencoderLoss`,
`speechbrain.nnet.losses.AutoencoderLoss` (and `_reduce_autoencoder_loss`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_choice, check_floating, check_relative_length, shape_str
from jaxlatent.masking import plain_ceil_mask

Array = jax.Array
#: ``rec_loss(targets, rec, reduction="none") -> unreduced loss`` (note: targets first).
RecLoss = Callable[..., Array]

#: Accepted reductions. As in SpeechBrain, every name other than 'mean', 'batchmean' and
#: 'batch' returns the masked, unreduced loss (SpeechBrain documents 'sum' but returns it
#: unreduced too); other names raise ValueError here.
REDUCTIONS = ("batchmean", "mean", "batch", "none", "sum")


class VariationalAutoencoderLossDetails(NamedTuple):
    """The VAE loss and its parts (SpeechBrain's namedtuple)."""

    loss: Array
    rec_loss: Array
    dist_loss: Array
    weighted_dist_loss: Array


class AutoencoderLossDetails(NamedTuple):
    """The autoencoder loss (twice, for interchangeability with the VAE details)."""

    loss: Array
    rec_loss: Array


def _default_rec_loss(predictions: Array, targets: Array, reduction: str = "none") -> Array:
    """SpeechBrain's default reconstruction loss, `mse_loss` (imported when first used)."""
    from jaxlatent.losses.regression import mse_loss

    return mse_loss(predictions, targets, reduction=reduction)


def _align_length_axis(loss: Array, len_dim: int, name: str) -> Array:
    if loss.ndim < 2 or not -loss.ndim <= len_dim < loss.ndim:
        raise ValueError(
            f"{name} of shape {shape_str(loss)} has no length axis len_dim={len_dim} "
            "(autoencoder losses need [batch, time, ...])"
        )
    return jnp.moveaxis(loss, len_dim, 1)


def _unreduced_rec_loss(
    rec_loss: RecLoss | None, targets: Array, rec: Array, len_dim: int
) -> Array:
    """``rec_loss(targets, rec, reduction="none")`` (None: `mse_loss`), `len_dim` -> axis 1."""
    rec_loss_fn = _default_rec_loss if rec_loss is None else rec_loss
    loss = rec_loss_fn(targets, rec, reduction="none")
    return _align_length_axis(loss, len_dim, "rec_loss")


def reduce_autoencoder_loss(loss: Array, length: Array | None, reduction: str) -> Array:
    """Mask axis 1 of an unreduced loss (rule "plain ceil") and reduce it.

    Args:
      loss: unreduced loss ``[batch, time, ...]``.
      length: relative lengths ``[batch]``, or None (nothing masked).
      reduction: 'mean' (over valid elements), 'batchmean' (sum / batch), 'batch' (per item,
        ``[batch]``), or 'none'/'sum' (the masked, unreduced loss — SpeechBrain's quirk).

    Returns:
      The reduced loss (scalar, ``[batch]``, or the shape of `loss`).

    Raises:
      ValueError: for an unknown `reduction` or a bad `length`.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses._reduce_autoencoder_loss` and
    `reduce_loss`.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    n, max_len = loss.shape[0], loss.shape[1]
    if length is not None:
        check_relative_length(length, n)
        mask = plain_ceil_mask(length, max_len, dtype=loss.dtype)
        mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (loss.ndim - 2)), loss.shape)
    else:
        mask = jnp.ones_like(loss)
    loss = loss * mask
    if reduction == "mean":
        return loss.sum() / mask.sum()
    if reduction == "batchmean":
        return loss.sum() / n
    if reduction == "batch":
        return loss.reshape(n, -1).sum(1) / mask.reshape(n, -1).sum(1)
    return loss


def _check_inputs(rec: Array, targets: Array, length: Array | None, reduction: str) -> None:
    check_choice("reduction", reduction, REDUCTIONS)
    check_floating("predictions.rec", rec)
    check_floating("targets", targets)
    if length is not None:
        check_relative_length(length, jnp.shape(targets)[0])


@dataclasses.dataclass(frozen=True)
class VariationalAutoencoderLoss:
    """VAE loss: reconstruction loss + ``dist_loss_weight`` × KL(q(z|x) ‖ N(0, I)).

    ``rec = rec_loss(targets, predictions.rec, reduction="none")`` (targets first, as
    SpeechBrain calls it) and ``dist = -0.5 * (1 + log_var - mean**2 - exp(log_var))``
    elementwise; both are moved so `len_dim` is axis 1, masked with the same relative
    `length` (rule "plain ceil", each on its own axis-1 size) and reduced the same way.
    ``length=None`` means "all valid". The default reduction is 'batchmean' (sum / batch).

    Args:
      rec_loss: unreduced reconstruction loss; None means SpeechBrain's `mse_loss`
        (`jaxlatent.losses.regression.mse_loss`, which may crop either tensor by ≤ 3 frames).
      len_dim: the length axis of the unreduced losses.
      dist_loss_weight: weight of the KL term.

    Call: ``loss(predictions, targets, length=None, reduction="batchmean")`` with
    `predictions` a `VariationalAutoencoderOutput` (or any 6-tuple ``(rec, _, mean, log_var,
    _, _)``), `targets` shaped like ``predictions.rec``. Returns the loss; `details` returns
    :class:`VariationalAutoencoderLossDetails`.

    Raises:
      ValueError: for an unknown `reduction`, non-floating inputs, a bad `length`, a
        prediction that is not a 6-tuple, or a loss without axis `len_dim`.

    Source: arXiv:1312.6114; SpeechBrain 1.1.2
    `speechbrain.nnet.losses.VariationalAutoencoderLoss`.

    Example:
      >>> from jaxlatent.models import VariationalAutoencoderOutput
      >>> se = lambda targets, rec, reduction: (targets - rec) ** 2  # = mse_loss, unreduced
      >>> vae_loss = VariationalAutoencoderLoss(rec_loss=se, dist_loss_weight=0.5)
      >>> predictions = VariationalAutoencoderOutput(
      ...     rec=jnp.array([[0.8, 1.0], [1.2, 0.6], [0.4, 1.4]]),
      ...     mean=jnp.array([[0.5, 1.0], [1.5, 1.0], [1.0, 1.4]]),
      ...     log_var=jnp.array([[0.0, -0.2], [2.0, -2.0], [0.2, 0.4]]),
      ...     latent=None, latent_sample=None, latent_length=None)
      >>> targets = jnp.array([[0.9, 1.1], [1.4, 0.6], [0.2, 1.4]])
      >>> float(vae_loss(predictions, targets))
      1.1264
      >>> [round(float(v), 4) for v in vae_loss.details(predictions, targets)]
      [1.1264, 0.0333, 2.1861, 1.093]
    """

    rec_loss: RecLoss | None = None
    len_dim: int = 1
    dist_loss_weight: float = 0.001

    def __call__(
        self,
        predictions: Any,
        targets: Array,
        length: Array | None = None,
        reduction: str = "batchmean",
    ) -> Array:
        return self.details(predictions, targets, length, reduction).loss

    def details(
        self,
        predictions: Any,
        targets: Array,
        length: Array | None = None,
        reduction: str = "batchmean",
    ) -> VariationalAutoencoderLossDetails:
        """The loss and its parts ``(loss, rec_loss, dist_loss, weighted_dist_loss)``."""
        if not isinstance(predictions, tuple) or len(predictions) != 6:
            raise ValueError(
                "predictions must be a VariationalAutoencoderOutput (rec, latent, mean, "
                f"log_var, latent_sample, latent_length), got {type(predictions).__name__}"
            )
        rec, _, mean, log_var, _, _ = predictions
        targets = jnp.asarray(targets)
        _check_inputs(rec, targets, length, reduction)
        check_floating("predictions.mean", mean)
        check_floating("predictions.log_var", log_var)
        if jnp.shape(mean) != jnp.shape(log_var):
            raise ValueError(
                f"predictions.mean {shape_str(mean)} and predictions.log_var "
                f"{shape_str(log_var)} must have the same shape"
            )
        if length is None:
            length = jnp.ones((targets.shape[0],), jnp.float32)
        rec_loss = _unreduced_rec_loss(self.rec_loss, targets, rec, self.len_dim)
        dist_loss = -0.5 * (1 + log_var - mean**2 - jnp.exp(log_var))
        dist_loss = _align_length_axis(dist_loss, self.len_dim, "dist_loss")
        rec_loss = reduce_autoencoder_loss(rec_loss, length, reduction)
        dist_loss = reduce_autoencoder_loss(dist_loss, length, reduction)
        weighted_dist_loss = self.dist_loss_weight * dist_loss
        if rec_loss.shape != weighted_dist_loss.shape:
            try:
                jnp.broadcast_shapes(rec_loss.shape, weighted_dist_loss.shape)
            except ValueError:
                raise ValueError(
                    f"reduction={reduction!r} leaves the reconstruction loss "
                    f"{shape_str(rec_loss)} and the KL term {shape_str(weighted_dist_loss)} "
                    "unreduced, and their shapes do not broadcast"
                ) from None
        loss = rec_loss + weighted_dist_loss
        return VariationalAutoencoderLossDetails(loss, rec_loss, dist_loss, weighted_dist_loss)


@dataclasses.dataclass(frozen=True)
class AutoencoderLoss:
    """Reconstruction loss of a (non-variational) autoencoder, masked and reduced.

    ``rec_loss(targets, predictions.rec, reduction="none")`` moved so `len_dim` is axis 1,
    masked with rule "plain ceil" (``length=None``: unmasked) and reduced (default
    'batchmean', sum / batch).

    Args:
      rec_loss: unreduced reconstruction loss; None means SpeechBrain's `mse_loss`
        (`jaxlatent.losses.regression.mse_loss`).
      len_dim: the length axis of the unreduced loss.

    Call: ``loss(predictions, targets, length=None, reduction="batchmean")`` with
    `predictions` any object with a ``rec`` attribute (e.g. `AutoencoderOutput`); `details`
    returns :class:`AutoencoderLossDetails` ``(loss, loss)``.

    Raises:
      ValueError: for an unknown `reduction`, non-floating inputs, a bad `length`, or a loss
        without axis `len_dim`.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.AutoencoderLoss`.

    Example:
      >>> from jaxlatent.models import AutoencoderOutput
      >>> se = lambda targets, rec, reduction: (targets - rec) ** 2  # = mse_loss, unreduced
      >>> ae_loss = AutoencoderLoss(rec_loss=se)
      >>> rec = jnp.array([[0.8, 1.0], [1.2, 0.6], [0.4, 1.4]])
      >>> predictions = AutoencoderOutput(rec=rec, latent=None, latent_length=None)
      >>> targets = jnp.array([[0.9, 1.1], [1.4, 0.6], [0.2, 1.4]])
      >>> float(ae_loss(predictions, targets))
      0.0333
    """

    rec_loss: RecLoss | None = None
    len_dim: int = 1

    def __call__(
        self,
        predictions: Any,
        targets: Array,
        length: Array | None = None,
        reduction: str = "batchmean",
    ) -> Array:
        if not hasattr(predictions, "rec"):
            raise ValueError(
                "predictions must have a `rec` field (e.g. an AutoencoderOutput), got "
                f"{type(predictions).__name__}"
            )
        rec = predictions.rec
        targets = jnp.asarray(targets)
        _check_inputs(rec, targets, length, reduction)
        rec_loss = _unreduced_rec_loss(self.rec_loss, targets, rec, self.len_dim)
        return reduce_autoencoder_loss(rec_loss, length, reduction)

    def details(
        self,
        predictions: Any,
        targets: Array,
        length: Array | None = None,
        reduction: str = "batchmean",
    ) -> AutoencoderLossDetails:
        """``AutoencoderLossDetails(loss, loss)``."""
        loss = self(predictions, targets, length, reduction)
        return AutoencoderLossDetails(loss, loss)
