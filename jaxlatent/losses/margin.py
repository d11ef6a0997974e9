"""Margin softmax losses for speaker embeddings: AM, AAM and the log-softmax wrapper.

`AngularMargin` and `AdditiveAngularMargin` turn cosine similarities ``[batch, classes]``
into margin-penalised logits; `LogSoftmaxWrapper` applies one of them (or any callable)
and returns the mean cross-entropy.

Source: Liu et al., "Margin Matters: Towards More Discriminative Deep Neural Network
Embeddings for Speaker Recognition", arXiv:1906.07317 (2019); SpeechBrain 1.1.2
`speechbrain.nnet.losses` (`AngularMargin`, `AdditiveAngularMargin`, `LogSoftmaxWrapper`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlatent._checks import check_floating, is_concrete, shape_str
from jaxlatent.losses._ieee import no_contract

Array = jax.Array

#: AAM clamps cosines to [-1 + CLAMP_EPS, 1 - CLAMP_EPS] before taking the sine.
CLAMP_EPS = 1e-7


def _check_margin_inputs(outputs, targets) -> tuple[Array, Array]:
    outputs = jnp.asarray(outputs)
    targets = jnp.asarray(targets)
    if outputs.shape != targets.shape:
        raise ValueError(
            "outputs (cosines) and targets (one-hot) must have the same shape [batch, "
            f"classes], got outputs {shape_str(outputs)} and targets {shape_str(targets)}"
        )
    check_floating("outputs", outputs)
    return outputs, targets


@dataclasses.dataclass(frozen=True)
class AngularMargin:
    """Angular margin (AM-softmax logits): ``scale · (cos θ - margin · onehot)``.

    Args:
      margin: margin subtracted from the target class's cosine.
      scale: scale of the logits.

    Call args:
      outputs: float ``[batch, classes]`` cosine similarities.
      targets: ``[batch, classes]`` one-hot targets (float).

    Returns:
      ``[batch, classes]`` logits, in the promoted dtype of the inputs.

    Raises:
      ValueError: if the shapes differ or `outputs` is not floating point.

    Source: arXiv:1906.07317; SpeechBrain 1.1.2 `speechbrain.nnet.losses.AngularMargin`.

    Example:
      >>> pred = AngularMargin()
      >>> outputs = jnp.array([[1.0, -1.0], [-1.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
      >>> targets = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
      >>> predictions = pred(outputs, targets)
      >>> predictions[:, 0] > predictions[:, 1]
      Array([ True, False,  True, False], dtype=bool)
    """

    margin: float = 0.0
    scale: float = 1.0

    def __call__(self, outputs, targets) -> Array:
        outputs, targets = _check_margin_inputs(outputs, targets)
        return _angular_margin(outputs, targets, self.margin, self.scale)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _angular_margin(outputs, targets, margin, scale):
    return scale * (outputs - no_contract(margin * targets))


def _clamp_like_torch(x: Array, low: float, high: float) -> Array:
    """`torch.clamp`: its gradient passes where ``low <= x <= high`` (bounds included)."""
    low = jnp.asarray(low, x.dtype)
    high = jnp.asarray(high, x.dtype)
    return jnp.where(x < low, low, jnp.where(x > high, high, x))


@dataclasses.dataclass(frozen=True)
class AdditiveAngularMargin(AngularMargin):
    """Additive angular margin (ArcFace / AAM-softmax logits): ``scale · cos(θ + m)``.

    With ``cos = clamp(outputs, -1 + 1e-7, 1 - 1e-7)`` (float32) and
    ``phi = cos(θ + m) = cos·cos(m) - sqrt(1 - cos²)·sin(m)``, the target logit is
    ``phi`` where ``cos > cos(π - m)`` and ``cos - sin(π - m)·m`` elsewhere (with
    ``easy_margin``: ``phi`` where ``cos > 0``, else ``cos``); every logit is
    ``scale · (onehot·phi + (1 - onehot)·cos)``.

    Quirks kept: non-target logits are the *clamped* cosine (a cosine of -1 with
    ``scale = 32`` gives ``-31.999996``, see the example); `outputs` is cast to float32
    whatever its dtype. The clamp's gradient is PyTorch's: it passes at the bounds
    themselves and is zero beyond them.

    Args:
      margin: angular margin `m` in radians.
      scale: scale of the logits.
      easy_margin: apply the margin only to positive cosines.

    Call args:
      outputs: float ``[batch, classes]`` cosine similarities.
      targets: ``[batch, classes]`` one-hot targets (float).

    Returns:
      float32 ``[batch, classes]`` logits (promoted with `targets`' dtype).

    Raises:
      ValueError: if the shapes differ or `outputs` is not floating point.

    Source: Deng et al., "ArcFace", CVPR 2019; arXiv:1906.07317; SpeechBrain 1.1.2
    `speechbrain.nnet.losses.AdditiveAngularMargin`.

    Example:
      >>> outputs = jnp.array([[1.0, -1.0], [-1.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
      >>> targets = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
      >>> pred = AdditiveAngularMargin()
      >>> predictions = pred(outputs, targets)
      >>> predictions[:, 0] > predictions[:, 1]
      Array([ True, False,  True, False], dtype=bool)
      >>> AdditiveAngularMargin(margin=0.2, scale=32)(outputs, targets)[0]
      Array([ 31.359024, -31.999996], dtype=float32)
    """

    easy_margin: bool = False

    @property
    def cos_m(self) -> float:
        return math.cos(self.margin)

    @property
    def sin_m(self) -> float:
        return math.sin(self.margin)

    @property
    def th(self) -> float:
        return math.cos(math.pi - self.margin)

    @property
    def mm(self) -> float:
        return math.sin(math.pi - self.margin) * self.margin

    def __call__(self, outputs, targets) -> Array:
        outputs, targets = _check_margin_inputs(outputs, targets)
        return _additive_angular_margin(
            outputs,
            targets,
            self.scale,
            self.easy_margin,
            self.cos_m,
            self.sin_m,
            self.th,
            self.mm,
        )


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6, 7))
def _additive_angular_margin(outputs, targets, scale, easy_margin, cos_m, sin_m, th, mm):
    cosine = _clamp_like_torch(outputs.astype(jnp.float32), -1 + CLAMP_EPS, 1 - CLAMP_EPS)
    # no_contract: PyTorch rounds every product; XLA would fuse multiply-adds into FMAs.
    sine = jnp.sqrt(1.0 - no_contract(cosine**2))
    phi = no_contract(cosine * cos_m) - no_contract(sine * sin_m)  # cos(theta + m)
    if easy_margin:
        phi = jnp.where(cosine > 0, phi, cosine)
    else:
        phi = jnp.where(cosine > th, phi, cosine - mm)
    return scale * (no_contract(targets * phi) + no_contract((1.0 - targets) * cosine))


def _log_softmax_loss(loss_fn, outputs, targets):
    one_hot = jax.nn.one_hot(targets, outputs.shape[1], dtype=jnp.float32)
    try:
        predictions = loss_fn(outputs, one_hot)
    except TypeError:
        predictions = loss_fn(outputs)
    log_probs = jax.nn.log_softmax(predictions, axis=1)
    # torch.nn.KLDivLoss(reduction="sum"): Σ xlogy(t, t) - t · input.
    kl = jnp.sum(jax.scipy.special.xlogy(one_hot, one_hot) - one_hot * log_probs)
    return kl / jnp.sum(one_hot)


_log_softmax_loss_jit = jax.jit(_log_softmax_loss, static_argnums=0)


@dataclasses.dataclass(frozen=True)
class LogSoftmaxWrapper:
    """Mean cross-entropy of ``log_softmax(loss_fn(outputs, onehot))``.

    ``loss = KLDiv_sum(log_softmax(pred), onehot) / batch = mean_b -log_softmax(pred)[b, y_b]``
    with ``pred = loss_fn(outputs, onehot)``; if that call raises `TypeError`,
    ``pred = loss_fn(outputs)`` (so a one-argument callable such as ``lambda x: x``, the
    counterpart of ``torch.nn.Identity()``, works). As in SpeechBrain, a `TypeError` raised
    *inside* a two-argument `loss_fn` also triggers the one-argument retry.

    Args:
      loss_fn: callable ``(outputs, onehot) -> logits`` or ``(outputs) -> logits``, e.g.
        :class:`AngularMargin` or :class:`AdditiveAngularMargin`.

    Call args:
      outputs: float ``[batch, 1, classes]`` or ``[batch, classes]``.
      targets: ``[batch, 1]`` class indices (integer, or float truncated toward zero like
        ``.long()``).
      length: ignored (as in SpeechBrain).

    Returns:
      float32 scalar.

    Raises:
      ValueError: if `targets` is 1-D (SpeechBrain raises IndexError from
        ``targets.squeeze(1)``), the shapes do not match ``[batch, 1, classes]`` /
        ``[batch, 1]``, `outputs` is not floating point, or (when concrete) a target is
        outside ``[0, classes)``.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.LogSoftmaxWrapper`.

    Example:
      >>> outputs = jnp.array([[1.0, -1.0], [-1.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
      >>> outputs = outputs[:, None, :]
      >>> targets = jnp.array([[0], [1], [0], [1]])
      >>> log_prob = LogSoftmaxWrapper(lambda x: x)  # torch.nn.Identity()
      >>> loss = log_prob(outputs, targets)
      >>> (0 <= loss) & (loss < 1), loss.round(6)
      (Array(True, dtype=bool), Array(0.249014, dtype=float32))
      >>> log_prob = LogSoftmaxWrapper(AngularMargin(margin=0.2, scale=32))
      >>> loss = log_prob(outputs, targets)
      >>> (0 <= loss) & (loss < 1)
      Array(True, dtype=bool)
      >>> log_prob = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.3, scale=32))
      >>> loss = log_prob(outputs[:, 0], targets)
      >>> (0 <= loss) & (loss < 1)
      Array(True, dtype=bool)
    """

    loss_fn: Callable

    def __call__(self, outputs, targets, length=None) -> Array:
        del length  # unused, as in SpeechBrain
        outputs = jnp.asarray(outputs)
        targets = jnp.asarray(targets)
        check_floating("outputs", outputs)
        if targets.ndim < 2:
            raise ValueError(
                f"targets must have shape [batch, 1], got {shape_str(targets)} (SpeechBrain "
                "squeezes axis 1 of the targets)"
            )
        if outputs.ndim >= 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        if targets.shape[1] == 1:
            targets = targets[:, 0]
        if outputs.ndim != 2 or targets.shape != outputs.shape[:1]:
            raise ValueError(
                "outputs must have shape [batch, 1, classes] or [batch, classes] and targets "
                f"[batch, 1]; got outputs {shape_str(outputs)} and targets "
                f"{shape_str(targets)} after squeezing axis 1"
            )
        n_classes = outputs.shape[1]
        if is_concrete(targets):
            values = np.asarray(targets).astype(np.int64)
            if (values < 0).any() or (values >= n_classes).any():
                raise ValueError(
                    f"targets must be class indices in [0, {n_classes}), got {values.tolist()}"
                )
        targets = targets.astype(jnp.int32)
        try:
            hash(self.loss_fn)
        except TypeError:  # not usable as a static argument: compile a closure instead
            return jax.jit(functools.partial(_log_softmax_loss, self.loss_fn))(outputs, targets)
        return _log_softmax_loss_jit(self.loss_fn, outputs, targets)
