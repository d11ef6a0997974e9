"""wav2vec 2.0 contrastive loss: SpeechBrain's `ContrastiveLoss` in JAX.

Source: Baevski et al., "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations", NeurIPS 2020 (arXiv:2006.11477); SpeechBrain 1.1.2
`speechbrain.nnet.losses.ContrastiveLoss`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.losses._ieee import true_divide

Array = jax.Array

#: `torch.cosine_similarity`'s default lower bound on each vector's norm.
COSINE_EPS = 1e-8


class ContrastiveOutput(NamedTuple):
    """Result of :class:`ContrastiveLoss`.

    Attributes:
      loss: scalar in `x`'s dtype, the cross-entropy *summed* over all ``time·batch`` rows.
      accuracy: float32 scalar, share of rows whose positive has the highest logit.
    """

    loss: Array
    accuracy: Array


def _cosine_similarity(a: Array, b: Array) -> Array:
    """`torch.cosine_similarity` on the last axis: normalise each vector, then dot."""
    a_norm = jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), COSINE_EPS)
    b_norm = jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), COSINE_EPS)
    return jnp.sum(true_divide(a, a_norm) * true_divide(b, b_norm), axis=-1)


@functools.partial(jax.jit, static_argnums=3)
def _contrastive(x: Array, y: Array, negs: Array, logit_temp: float) -> ContrastiveOutput:
    neg_is_pos = jnp.all(y[None] == negs, axis=-1)  # [N, B, T]
    target_and_negatives = jnp.concatenate([y[None], negs], axis=0)  # [N+1, B, T, C]
    x_all = jnp.broadcast_to(x[None].astype(jnp.float32), target_and_negatives.shape)
    logits = _cosine_similarity(x_all, target_and_negatives.astype(jnp.float32))
    logits = logits.astype(x.dtype)  # [N+1, B, T]
    negatives = jnp.where(neg_is_pos, jnp.asarray(-jnp.inf, logits.dtype), logits[1:])
    logits = jnp.concatenate([logits[:1], negatives], axis=0)
    # [N+1, B, T] -> [T, B, N+1] -> [T*B, N+1] (rows ordered t*B + b)
    logits = jnp.transpose(logits, (2, 1, 0)).reshape(-1, logits.shape[0])
    log_probs = jax.nn.log_softmax(
        true_divide(logits, jnp.asarray(logit_temp, logits.dtype)), axis=-1
    )
    loss = -jnp.sum(log_probs[:, 0])
    accuracy = jnp.sum(jnp.argmax(logits, axis=-1) == 0) / jnp.float32(logits.shape[0])
    return ContrastiveOutput(loss, accuracy.astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class ContrastiveLoss:
    """Contrastive loss of wav2vec 2.0 with cosine-similarity logits.

    For every frame, the logits are the cosine similarities of the context vector `x`
    with its quantised target `y` (class 0) and with the `N` negatives (classes 1..N),
    computed in float32 and cast back to `x`'s dtype; a negative exactly equal to the target
    (all features equal) gets logit ``-inf``. The loss is the cross-entropy of
    ``logits / logit_temp`` with class 0, **summed** (not averaged) over the ``time·batch``
    rows; the accuracy is the share of rows whose largest logit is the target's (first
    index on ties, like `torch.argmax`).

    Args:
      logit_temp: temperature dividing the logits (wav2vec 2.0 uses 0.1); a Python float
        (static under `jax.jit`).

    Call args:
      x: float ``[batch, time, features]`` context (transformer) outputs.
      y: ``[batch, time, features]`` targets.
      negs: ``[negatives, batch, time, features]`` negative samples.

    Returns:
      :class:`ContrastiveOutput` ``(loss, accuracy)``.

    Raises:
      ValueError: if `x` and `y` differ in shape, `negs` is not ``[N, *y.shape]``, or `x`
        is not floating point.

    Source: arXiv:2006.11477; SpeechBrain 1.1.2 `speechbrain.nnet.losses.ContrastiveLoss`
    (no doctest there).

    Example:
      >>> x = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])  # [batch=1, time=2, features=2]
      >>> negs = jnp.array([[[[0.0, 1.0], [0.0, 1.0]]]])  # second one equals its target
      >>> loss, accuracy = ContrastiveLoss(logit_temp=1.0)(x, x, negs)
      >>> loss.round(4), accuracy  # log(1 + e^-1) + 0
      (Array(0.3133, dtype=float32), Array(1., dtype=float32))
    """

    logit_temp: float

    def __call__(self, x, y, negs) -> ContrastiveOutput:
        x = jnp.asarray(x)
        y = jnp.asarray(y)
        negs = jnp.asarray(negs)
        if x.ndim != 3 or x.shape != y.shape:
            raise ValueError(
                "x and y must have the same shape [batch, time, features], got x "
                f"{shape_str(x)} and y {shape_str(y)}"
            )
        if negs.ndim != 4 or negs.shape[1:] != y.shape:
            raise ValueError(
                f"negs must have shape [negatives, batch, time, features] = [N, {y.shape[0]}, "
                f"{y.shape[1]}, {y.shape[2]}], got {shape_str(negs)}"
            )
        check_floating("x", x)
        return _contrastive(x, y, negs, self.logit_temp)
