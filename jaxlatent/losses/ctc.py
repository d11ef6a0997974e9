"""Connectionist temporal classification (CTC) loss, with PyTorch's exact semantics.

SpeechBrain's `ctc_loss` calls `torch.nn.functional.ctc_loss(..., zero_infinity=True)`. This
module reimplements PyTorch's CPU kernel (Graves et al. 2006 forward-backward in log space)
with `lax.scan`, including the parts where PyTorch departs from a textbook CTC:

* the log-probabilities are used as given (no re-normalisation);
* the gradient w.r.t. `log_probs` is PyTorch's ``exp(log_probs) - occupancy`` (the gradient
  w.r.t. the *logits* of a log-softmax, which is what PyTorch's CTC backward returns), not
  the mathematical ``-occupancy``; it is zero on padded frames;
* infeasible alignments (target longer than the input allows) give ``inf``, which
  `zero_infinity` turns into a loss of 0 with a zero gradient;
* an empty input (0 frames) gives 0 for an empty target and ``inf`` otherwise.

`optax.ctc_loss` is not used: it re-normalises its input with a log-softmax, replaces
``-inf`` by ``log_epsilon`` (so infeasible alignments give a large finite loss that
`zero_infinity` cannot detect) and its gradient is that of the re-normalised loss.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxlatent._checks import (
    check_choice,
    check_floating,
    check_relative_length,
    is_concrete,
    shape_str,
)
from jaxlatent.masking import round_lengths

Array = jax.Array

CTC_REDUCTIONS = ("mean", "sum", "none", "batch", "batchmean")


# --------------------------------------------------------------------------------------
# validation helpers (shared with distillation.py)
# --------------------------------------------------------------------------------------


def check_log_probs(name: str, x) -> None:
    """`x` must be a non-empty floating ``[batch, time, classes]`` array."""
    check_floating(name, x)
    if jnp.ndim(x) != 3:
        raise ValueError(f"{name} must be 3-D [batch, time, classes], got shape {shape_str(x)}")
    if 0 in jnp.shape(x):
        raise ValueError(f"{name} must not be empty, got shape {shape_str(x)}")


def check_blank(blank_index, num_classes: int) -> None:
    if not isinstance(blank_index, int | np.integer) or isinstance(blank_index, bool):
        raise ValueError(f"blank_index must be a Python int, got {blank_index!r}")
    if not 0 <= blank_index < num_classes:
        raise ValueError(f"blank_index {blank_index} is outside the {num_classes} classes")


def check_targets(targets) -> None:
    """Raise ValueError unless `targets` is a 2-D integer array ``[batch, target_len]``."""
    if jnp.ndim(targets) != 2 or not jnp.issubdtype(jnp.result_type(targets), jnp.integer):
        raise ValueError(
            f"targets must be a 2-D integer array [batch, target_len], got shape "
            f"{shape_str(targets)} and dtype {jnp.result_type(targets)}"
        )


def label_lengths(
    input_lens, target_lens, targets, time: int, num_classes: int
) -> tuple[Array, Array]:
    """``(input_len, target_len)``: the relative lengths rounded to frames and labels (integer
    ``[batch]`` each), after checking the targets' labels within their lengths."""
    in_len = round_lengths(input_lens, time)
    tgt_len = round_lengths(target_lens, jnp.shape(targets)[1])
    check_labels("targets", targets, tgt_len, num_classes)
    return in_len, tgt_len


def check_labels(name: str, labels, lengths, num_classes: int) -> None:
    """Concrete integer labels must lie in [0, num_classes) inside their valid lengths."""
    if not (is_concrete(labels) and is_concrete(lengths)):
        return
    labels = np.asarray(labels)
    valid = np.arange(labels.shape[1])[None, :] < np.asarray(lengths)[:, None]
    used = labels[valid]
    if used.size and (used.min() < 0 or used.max() >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}) within their lengths, got values in "
            f"[{used.min()}, {used.max()}]"
        )


def _compute_dtype(dtype):
    return jnp.result_type(dtype, jnp.float32)


# --------------------------------------------------------------------------------------
# forward-backward core
# --------------------------------------------------------------------------------------


def _extend(targets: Array, target_lengths: Array, blank: int) -> Array:
    """Targets ``[B, S]`` -> blank-interleaved labels ``[B, 2S+1]`` (padding -> blank)."""
    batch, width = targets.shape
    valid = jnp.arange(width)[None, :] < target_lengths[:, None]
    labels = jnp.where(valid, targets.astype(jnp.int32), blank)
    ext = jnp.full((batch, 2 * width + 1), blank, jnp.int32)
    return ext.at[:, 1::2].set(labels)


def _lse3(a1: Array, a2: Array, a3: Array) -> Array:
    """log(e^a1 + e^a2 + e^a3) exactly as PyTorch's CTC kernel writes it."""
    m = jnp.maximum(a1, jnp.maximum(a2, a3))
    m = jnp.where(m == -jnp.inf, jnp.zeros_like(m), m)
    return jnp.log(jnp.exp(a1 - m) + jnp.exp(a2 - m) + jnp.exp(a3 - m)) + m


def _shift(x: Array, k: int) -> Array:
    """``out[:, s] = x[:, s - k]`` (``k > 0``) or ``x[:, s + |k|]`` (``k < 0``), -inf outside."""
    pad = jnp.full((x.shape[0], abs(k)), -jnp.inf, x.dtype)
    if k > 0:
        return jnp.concatenate([pad, x[:, :-k]], axis=1)
    return jnp.concatenate([x[:, -k:], pad], axis=1)


def _skip_allowed(ext: Array) -> Array:
    """``allowed[b, s]``: the transition s-2 -> s exists (``l'[s-2] != l'[s]``)."""
    prev2 = jnp.concatenate([jnp.full((ext.shape[0], 2), -1, ext.dtype), ext[:, :-2]], axis=1)
    return (jnp.arange(ext.shape[1])[None, :] >= 2) & (prev2 != ext)


def _ctc_forward(lp: Array, ext: Array, in_len: Array, tgt_len: Array):
    """Alphas ``[T, B, S']`` and the raw negative log-likelihood ``[B]`` (may be inf)."""
    batch, time, _ = lp.shape
    width = ext.shape[1]
    neg = jnp.asarray(-jnp.inf, lp.dtype)
    lp_ext = jnp.take_along_axis(lp, jnp.broadcast_to(ext[:, None, :], (batch, time, width)), 2)
    lp_ext = jnp.swapaxes(lp_ext, 0, 1)  # [T, B, S']
    pos = jnp.arange(width)[None, :]
    allow3 = _skip_allowed(ext)

    first = (pos == 0) | ((pos == 1) & (tgt_len[:, None] > 0))
    alpha0 = jnp.where(first, lp_ext[0], neg)

    def step(prev, lpe_t):
        a3 = jnp.where(allow3, _shift(prev, 2), neg)
        new = _lse3(prev, _shift(prev, 1), a3) + lpe_t
        return new, new

    _, rest = jax.lax.scan(step, alpha0, lp_ext[1:])
    alphas = jnp.concatenate([alpha0[None], rest], axis=0)

    last_t = jnp.clip(in_len - 1, 0, time - 1)
    a_last = jnp.take_along_axis(jnp.swapaxes(alphas, 0, 1), last_t[:, None, None], 1)[:, 0]
    l1 = jnp.take_along_axis(a_last, (2 * tgt_len)[:, None], 1)[:, 0]
    l2 = jnp.take_along_axis(a_last, jnp.maximum(2 * tgt_len - 1, 0)[:, None], 1)[:, 0]
    m = jnp.maximum(l1, l2)
    m = jnp.where(m == -jnp.inf, jnp.zeros_like(m), m)
    ll = jnp.where(tgt_len == 0, l1, jnp.log(jnp.exp(l1 - m) + jnp.exp(l2 - m)) + m)
    empty_input_ll = jnp.where(tgt_len == 0, jnp.zeros_like(ll), neg)
    nll = -jnp.where(in_len == 0, empty_input_ll, ll)
    return alphas, nll


def _ctc_grad(lp, ext, in_len, tgt_len, alphas, nll, g):
    """PyTorch's CTC gradient ``(exp(lp) - exp(lcab + nll - lp)) * g`` ``[B, T, C]``."""
    batch, time, classes = lp.shape
    width = ext.shape[1]
    neg = jnp.asarray(-jnp.inf, lp.dtype)
    lp_ext = jnp.take_along_axis(lp, jnp.broadcast_to(ext[:, None, :], (batch, time, width)), 2)
    lp_ext = jnp.swapaxes(lp_ext, 0, 1)
    pos = jnp.arange(width)[None, :]
    allow3_next = jnp.concatenate([_skip_allowed(ext)[:, 2:], jnp.zeros((batch, 2), bool)], 1)
    ends = (pos == 2 * tgt_len[:, None]) | (
        (pos == 2 * tgt_len[:, None] - 1) & (tgt_len[:, None] > 0)
    )

    def step(nxt, xs):
        t, lpe_t = xs
        b3 = jnp.where(allow3_next, _shift(nxt, -2), neg)
        rec = _lse3(nxt, _shift(nxt, -1), b3) + lpe_t
        init = jnp.where(ends, lpe_t, neg)
        t_b = t[None, None]
        beta = jnp.where(
            t_b == in_len[:, None] - 1, init, jnp.where(t_b < in_len[:, None] - 1, rec, neg)
        )
        return beta, beta

    start = jnp.full((batch, width), -jnp.inf, lp.dtype)
    _, betas = jax.lax.scan(step, start, (jnp.arange(time), lp_ext), reverse=True)

    # log of sum over s with l'[s] == c of alpha*beta, per (t, b, c): a segment log-sum-exp.
    ab = (alphas + betas).reshape(-1)
    seg = (jnp.arange(time)[:, None, None] * batch + jnp.arange(batch)[None, :, None]) * classes
    seg = (seg + ext[None, :, :]).reshape(-1)
    n_seg = time * batch * classes
    mx = jax.ops.segment_max(ab, seg, num_segments=n_seg)
    mx = jnp.where(jnp.isfinite(mx), mx, jnp.zeros_like(mx))
    total = jax.ops.segment_sum(jnp.exp(ab - mx[seg]), seg, num_segments=n_seg)
    lcab = (jnp.log(total) + mx).reshape(time, batch, classes).swapaxes(0, 1)  # [B, T, C]

    finite = nll != jnp.inf
    safe_nll = jnp.where(finite, nll, jnp.zeros_like(nll))[:, None, None]
    grad = (jnp.exp(lp) - jnp.exp(lcab + safe_nll - lp)) * g[:, None, None]
    keep = (jnp.arange(time)[None, :] < in_len[:, None]) & finite[:, None]
    return jnp.where(keep[:, :, None], grad, jnp.zeros_like(grad))


@jax.custom_vjp
def _ctc_nll(log_probs: Array, ext: Array, in_len: Array, tgt_len: Array) -> Array:
    return _ctc_nll_fwd(log_probs, ext, in_len, tgt_len)[0]


def _ctc_nll_fwd(log_probs, ext, in_len, tgt_len):
    alphas, nll = _ctc_forward(log_probs, ext, in_len, tgt_len)
    out = jnp.where(nll == jnp.inf, jnp.zeros_like(nll), nll)  # zero_infinity=True
    return out, (log_probs, ext, in_len, tgt_len, alphas, nll)


def _ctc_nll_bwd(res, g):
    log_probs, ext, in_len, tgt_len, alphas, nll = res
    grad = _ctc_grad(log_probs, ext, in_len, tgt_len, alphas, nll, g)
    return grad, None, None, None


_ctc_nll.defvjp(_ctc_nll_fwd, _ctc_nll_bwd)


def ctc_nll(log_probs, targets, input_lengths, target_lengths, blank_index: int) -> Array:
    """Per-utterance CTC negative log-likelihood with *absolute* integer lengths.

    Equal to ``torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), targets,
    input_lengths, target_lengths, blank_index, reduction="none", zero_infinity=True)``,
    value and gradient (see the module docstring for PyTorch's gradient convention).
    Arguments are assumed validated (see :func:`ctc_loss`).

    Args:
      log_probs: float ``[batch, time, classes]``.
      targets: int ``[batch, target_len]``, no blanks; read only up to `target_lengths`.
      input_lengths: int ``[batch]`` in ``[0, time]``.
      target_lengths: int ``[batch]`` in ``[0, target_len]``.
      blank_index: the blank class (static).

    Returns:
      float ``[batch]``: ``-log P(target | input)``, 0 where no alignment exists.

    Example:
      >>> lp = jnp.log(jnp.full((2, 2, 3), 1 / 3))
      >>> ctc_nll(lp, jnp.array([[1, 1], [2, 0]]), jnp.array([2, 2]), jnp.array([2, 1]), 0)
      Array([0.       , 1.0986123], dtype=float32)
    """
    log_probs = jnp.asarray(log_probs)
    log_probs = log_probs.astype(_compute_dtype(log_probs.dtype))
    in_len = jnp.asarray(input_lengths).astype(jnp.int32)
    tgt_len = jnp.asarray(target_lengths).astype(jnp.int32)
    ext = _extend(jnp.asarray(targets), tgt_len, blank_index)
    return _ctc_nll(log_probs, ext, in_len, tgt_len)


# --------------------------------------------------------------------------------------
# public loss
# --------------------------------------------------------------------------------------


def ctc_loss(log_probs, targets, input_lens, target_lens, blank_index: int, reduction="mean"):
    """CTC loss with relative lengths.

    Lengths use rule "round" (:func:`jaxlatent.masking.round_lengths`): ``T_b =
    round(input_lens * time)``, ``S_b = round(target_lens * target_len)`` (half to even).
    Per-utterance losses are PyTorch's CTC negative log-likelihoods with ``zero_infinity=True``
    (infeasible alignments give 0 and a zero gradient).

    SpeechBrain quirks kept:

    * ``'mean'`` is PyTorch's: ``mean_b(loss_b / max(S_b, 1))``;
    * ``'batch'`` returns ``loss_b / S_b`` without a clamp (``inf`` or ``nan`` for an empty
      target); ``'batchmean'`` is ``sum_b loss_b / batch``;
    * the gradient w.r.t. `log_probs` is PyTorch's ``exp(log_probs) - occupancy`` (scaled by
      the reduction), which assumes `log_probs` come from a log-softmax; zero on frames
      ``t >= T_b``.

    Args:
      log_probs: float ``[batch, time, classes]`` log-probabilities (already normalised).
      targets: int ``[batch, target_len]`` label indices without blanks.
      input_lens: float ``[batch]`` relative input lengths in [0, 1].
      target_lens: float ``[batch]`` relative target lengths in [0, 1].
      blank_index: index of the blank class (static under `jax.jit`).
      reduction: ``'mean'``, ``'sum'``, ``'none'`` or ``'batch'`` (``[batch]``), or
        ``'batchmean'`` (static under `jax.jit`).

    Returns:
      float scalar, or ``[batch]`` for ``'none'`` and ``'batch'``.

    Raises:
      ValueError: on a non-float or non-3-D `log_probs`, non-integer or non-2-D `targets`,
        batch mismatch, relative lengths outside [0, 1] (when concrete), labels outside the
        classes (when concrete), a blank outside the classes, or an unknown `reduction`.

    Source: Graves et al., "Connectionist Temporal Classification", ICML 2006; SpeechBrain
    1.1.2 `speechbrain.nnet.losses.ctc_loss` (over PyTorch's CPU `ctc_loss`).

    Example:
      >>> lp = jax.nn.log_softmax(jnp.array([[[0.0, 1.0, 0.5], [1.0, 0.0, 0.5]]]))
      >>> loss = ctc_loss(lp, jnp.array([[1]]), jnp.array([1.0]), jnp.array([1.0]), 0)
      >>> round(float(loss), 4)
      0.9529
    """
    check_log_probs("log_probs", log_probs)
    batch, time, classes = jnp.shape(log_probs)
    check_targets(targets)
    if jnp.shape(targets)[0] != batch:
        raise ValueError(
            f"targets batch {jnp.shape(targets)[0]} != log_probs batch {batch} "
            f"(shapes {shape_str(targets)} and {shape_str(log_probs)})"
        )
    check_relative_length(input_lens, batch, name="input_lens")
    check_relative_length(target_lens, batch, name="target_lens")
    check_blank(blank_index, classes)
    check_choice("reduction", reduction, CTC_REDUCTIONS)

    in_len, tgt_len = label_lengths(input_lens, target_lens, targets, time, classes)
    return _ctc_loss(log_probs, targets, in_len, tgt_len, blank_index, reduction)


@functools.partial(jax.jit, static_argnames=("blank_index", "reduction"))
def _ctc_loss(log_probs, targets, in_len, tgt_len, blank_index: int, reduction: str) -> Array:
    batch = log_probs.shape[0]
    loss = ctc_nll(log_probs, targets, in_len, tgt_len, blank_index)
    if reduction == "mean":
        return jnp.mean(loss / jnp.maximum(tgt_len, 1).astype(loss.dtype))
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "batchmean":
        return jnp.sum(loss) / batch
    if reduction == "batch":
        return loss / tgt_len.astype(loss.dtype)
    return loss
