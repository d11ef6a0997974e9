"""RNN-Transducer loss with the value and gradient of SpeechBrain's Numba-CUDA kernel.

SpeechBrain 1.1.2 computes the transducer loss with a Numba CUDA kernel
(`speechbrain/integrations/numba/transducer_loss.py`). This is the same forward-backward
algorithm (Graves 2012) in log space, written with anti-diagonal `lax.scan`s (``T + U``
sequential steps, each vectorised over the batch and the diagonal), so it runs on any JAX
backend and under `jax.jit`. The kernel's behaviour is kept exactly:

* the value per utterance is ``-log P(y | x) / T_b`` (normalised by the number of frames);
* the gradient is that of the **un-normalised** ``-log P(y | x)``, multiplied by the incoming
  cotangent and nothing else: for ``'mean'`` it is not divided by the batch size either
  (it is ``B * T_b`` times the true gradient of the returned value); implemented with
  `jax.custom_vjp`, w.r.t. the log-probabilities (the log-softmax in front is ordinary JAX);
* gradients are normalised by ``beta[0, 0]`` (the backward variable), as in the kernel;
* a label equal to the blank (which targets should not contain) *overwrites* the blank
  gradient of its lattice node instead of adding to it;
* an utterance with ``T_b = 0`` has value ``-log_probs[b, -1, U_b, blank] / 0`` (``+inf``)
  and zero gradient, as the kernel does.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_floating, check_relative_length, shape_str
from jaxlatent.losses.ctc import check_blank, check_targets, label_lengths

Array = jax.Array

TRANSDUCER_REDUCTIONS = ("mean", "sum", "none")


def _lattice_scores(log_probs: Array, labels: Array, blank: int):
    """Blank and label log-probabilities on the lattice, each ``[B, T, U1]``.

    ``emit[b, t, u] = log_probs[b, t, u, labels[b, u]]`` for ``u < labels.shape[1]``, -inf
    beyond (the kernel never reads those nodes).
    """
    batch, _, width, _ = log_probs.shape
    blank_lp = log_probs[..., blank]
    n_lab = labels.shape[1]
    idx = jnp.zeros((batch, width), jnp.int32).at[:, :n_lab].set(labels)
    emit = jnp.take_along_axis(log_probs, idx[:, None, :, None], axis=3)[..., 0]
    beyond = jnp.arange(width) >= n_lab
    emit = jnp.where(beyond[None, None, :], -jnp.inf, emit)
    return blank_lp, emit


def _diag_gather(x: Array, diag, t_off: int, u_off: int) -> Array:
    """``x[b, t + t_off, diag - t + u_off]`` for every ``t`` (-inf outside), shape ``[B, T]``."""
    _, time, width = x.shape
    t = jnp.arange(time) + t_off
    u = diag - jnp.arange(time) + u_off
    ok = (t >= 0) & (t < time) & (u >= 0) & (u < width)
    vals = x[:, jnp.clip(t, 0, time - 1), jnp.clip(u, 0, width - 1)]
    return jnp.where(ok[None, :], vals, -jnp.inf)


def _undiag(diags: Array) -> Array:
    """Diagonal-major ``[D, B, T]`` (``diags[t + u, b, t]``) -> ``[B, T, U1]``."""
    n_diag, _, time = diags.shape
    width = n_diag - time + 1
    t = jnp.arange(time)[:, None]
    d = t + jnp.arange(width)[None, :]
    return jnp.transpose(diags[d, :, t], (2, 0, 1))


def _shift_t(x: Array, k: int) -> Array:
    """``out[:, t] = x[:, t - k]`` along the diagonal's t index, -inf outside."""
    pad = jnp.full((x.shape[0], abs(k)), -jnp.inf, x.dtype)
    if k > 0:
        return jnp.concatenate([pad, x[:, :-k]], axis=1)
    return jnp.concatenate([x[:, -k:], pad], axis=1)


def _alpha(blank_lp: Array, emit: Array) -> Array:
    """Forward variables ``alpha[b, t, u]`` on the full lattice (``alpha[:, 0, 0] = 0``)."""
    batch, time, width = blank_lp.shape
    on_diag_0 = jnp.where(jnp.arange(time)[None, :] == 0, 0.0, -jnp.inf).astype(blank_lp.dtype)
    start = jnp.broadcast_to(on_diag_0, (batch, time))

    def step(prev, diag):
        no_emit = _shift_t(prev, 1) + _diag_gather(blank_lp, diag, -1, 0)
        emit_ = prev + _diag_gather(emit, diag, 0, -1)
        new = jnp.logaddexp(no_emit, emit_)
        u = diag - jnp.arange(time)
        new = jnp.where(((u >= 0) & (u < width))[None, :], new, -jnp.inf)
        return new, new

    _, rest = jax.lax.scan(step, start, jnp.arange(1, time + width - 1))
    return _undiag(jnp.concatenate([start[None], rest], axis=0))


def _beta(blank_lp: Array, emit: Array, t_len: Array, u_len: Array) -> Array:
    """Backward variables ``beta[b, t, u]``, -inf outside ``t < T_b, u <= U_b``."""
    batch, time, width = blank_lp.shape
    t_idx = jnp.arange(time)

    def step(nxt, diag):
        u = diag - t_idx
        no_emit = _shift_t(nxt, -1) + _diag_gather(blank_lp, diag, 0, 0)
        emit_ = nxt + _diag_gather(emit, diag, 0, 0)
        new = jnp.logaddexp(no_emit, emit_)
        inside = (t_idx[None, :] < t_len[:, None]) & (u[None, :] <= u_len[:, None])
        inside = inside & (u >= 0)[None, :] & (u < width)[None, :]
        new = jnp.where(inside, new, -jnp.inf)
        final = (t_idx[None, :] == t_len[:, None] - 1) & (u[None, :] == u_len[:, None])
        new = jnp.where(final, _diag_gather(blank_lp, diag, 0, 0), new)
        return new, new

    start = jnp.full((batch, time), -jnp.inf, blank_lp.dtype)
    _, diags = jax.lax.scan(step, start, jnp.arange(time + width - 1), reverse=True)
    return _undiag(diags)


def _per_utterance(log_probs, labels, t_len, u_len, blank):
    """``log_p[b] = log P_b / T_b`` (the kernel's ``log_p_alpha``) and the alphas."""
    batch, time, _, _ = log_probs.shape
    blank_lp, emit = _lattice_scores(log_probs, labels, blank)
    alpha = _alpha(blank_lp, emit)
    b = jnp.arange(batch)
    last = jnp.clip(t_len - 1, 0, time - 1)
    log_p = alpha[b, last, u_len] + blank_lp[b, last, u_len]
    # T_b = 0: the kernel reads the untouched (zero) alpha at t = -1 (the last frame).
    log_p = jnp.where(t_len > 0, log_p, blank_lp[b, time - 1, u_len])
    return log_p / t_len.astype(log_p.dtype), (blank_lp, emit, alpha)


def _kernel_grad(log_probs, labels, t_len, u_len, blank, blank_lp, emit, alpha):
    """The kernel's gradient of ``-log P_b`` w.r.t. the log-probabilities ``[B, T, U1, V]``."""
    _, time, width, n_cls = log_probs.shape
    beta = _beta(blank_lp, emit, t_len, u_len)
    log_z = beta[:, 0, 0][:, None, None]
    t = jnp.arange(time)[None, :, None]
    u = jnp.arange(width)[None, None, :]
    t_b = t_len[:, None, None]
    u_b = u_len[:, None, None]
    # beta at (t + 1, u), with the virtual terminal node beta[T_b, U_b] = 0.
    beta_next_t = jnp.concatenate([beta[:, 1:], jnp.full_like(beta[:, :1], -jnp.inf)], axis=1)
    beta_next_t = jnp.where((t == t_b - 1) & (u == u_b), 0.0, beta_next_t)
    beta_next_u = jnp.concatenate([beta[:, :, 1:], jnp.full_like(beta[:, :, :1], -jnp.inf)], 2)
    g_blank = -jnp.exp(alpha + beta_next_t + blank_lp - log_z)
    g_emit = -jnp.exp(alpha + beta_next_u + emit - log_z)
    blank_node = (t < t_b) & (u <= u_b)
    emit_node = (t < t_b) & (u < u_b)

    lab = jnp.zeros((alpha.shape[0], width), jnp.int32).at[:, : labels.shape[1]].set(labels)
    k = jnp.arange(n_cls)[None, None, None, :]
    is_label = emit_node[..., None] & (k == lab[:, None, :, None])
    is_blank = blank_node[..., None] & (k == blank)
    zero = jnp.zeros((), log_probs.dtype)
    return jnp.where(is_label, g_emit[..., None], jnp.where(is_blank, g_blank[..., None], zero))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _transducer(log_probs, labels, t_len, u_len, blank, reduction):
    return _transducer_fwd(log_probs, labels, t_len, u_len, blank, reduction)[0]


def _reduce(values: Array, reduction: str) -> Array:
    if reduction == "mean":
        return jnp.mean(values)
    if reduction == "sum":
        return jnp.sum(values)
    return values


def _transducer_fwd(log_probs, labels, t_len, u_len, blank, reduction):
    log_p, (blank_lp, emit, alpha) = _per_utterance(log_probs, labels, t_len, u_len, blank)
    res = (log_probs, labels, t_len, u_len, blank_lp, emit, alpha)
    return _reduce(-log_p, reduction), res


def _transducer_bwd(blank, reduction, res, g):
    log_probs, labels, t_len, u_len, blank_lp, emit, alpha = res
    grad = _kernel_grad(log_probs, labels, t_len, u_len, blank, blank_lp, emit, alpha)
    scale = g[:, None, None, None] if reduction == "none" else g
    return grad * scale, None, None, None


_transducer.defvjp(_transducer_fwd, _transducer_bwd)


def transducer_loss(logits, targets, input_lens, target_lens, blank_index: int, reduction="mean"):
    """RNN-Transducer loss with SpeechBrain's frame normalisation and gradient.

    ``T_b = round(input_lens * time)`` and ``U_b = round(target_lens * target_len)`` (rule
    "round", half to even); ``log_probs = log_softmax(logits)``; per utterance the value is
    ``-log P(y_b | x_b) / T_b`` with the standard RNN-T lattice (Graves 2012):
    ``alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u], alpha[t, u-1] + y[t, u-1])``,
    ``log P = alpha[T_b-1, U_b] + blank[T_b-1, U_b]``.

    SpeechBrain quirks kept (see the module docstring): the gradient w.r.t. the
    log-probabilities is that of the un-normalised ``-log P`` times the cotangent (not
    divided by ``T_b``, nor by the batch size for ``'mean'``); labels equal to the blank
    overwrite the blank gradient; ``T_b = 0`` gives ``+inf`` with zero gradient.

    Args:
      logits: float ``[batch, time, target_len + 1, classes]`` joint-network outputs
        (unnormalised; a larger third axis is accepted, its extra rows are unused).
      targets: int ``[batch, target_len]`` label indices without blanks.
      input_lens: float ``[batch]`` relative input lengths in [0, 1].
      target_lens: float ``[batch]`` relative target lengths in [0, 1].
      blank_index: index of the blank class (static under `jax.jit`).
      reduction: ``'mean'`` or ``'sum'`` (scalar) or ``'none'`` (``[batch]``); static.

    Returns:
      float scalar, or ``[batch]`` for ``'none'``.

    Raises:
      ValueError: on non-float or non-4-D `logits`, non-integer or non-2-D `targets`, a
        batch mismatch, ``logits.shape[2] < target_len + 1``, relative lengths outside
        [0, 1] (when concrete), labels outside the classes (when concrete), a blank outside
        the classes, or a `reduction` other than 'mean', 'sum', 'none' (SpeechBrain raises
        a bare ``Exception("Unexpected reduction ...")``, also for its documented
        'batchmean').

    Source: Graves, "Sequence Transduction with Recurrent Neural Networks", 2012;
    SpeechBrain 1.1.2 `speechbrain.nnet.losses.transducer_loss` (Numba kernel
    `speechbrain.integrations.numba.transducer_loss.Transducer`).

    Example:
      >>> probs = jnp.array([[[[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1],
      ...                      [0.1, 0.1, 0.2, 0.8, 0.1]],
      ...                     [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.1, 0.1],
      ...                      [0.7, 0.1, 0.2, 0.1, 0.1]]]])
      >>> loss = transducer_loss(probs, jnp.array([[1, 2]]), jnp.ones(1), jnp.ones(1), 0)
      >>> round(float(loss), 4)
      2.2478
    """
    check_floating("logits", logits)
    if jnp.ndim(logits) != 4:
        raise ValueError(
            f"logits must be 4-D [batch, time, target_len + 1, classes], got shape "
            f"{shape_str(logits)}"
        )
    batch, time, width, classes = jnp.shape(logits)
    check_targets(targets)
    if jnp.shape(targets)[0] != batch or width < jnp.shape(targets)[1] + 1:
        raise ValueError(
            f"logits {shape_str(logits)} must be [batch, time, >= target_len + 1, classes] "
            f"for targets {shape_str(targets)}"
        )
    if 0 in (batch, time, classes):
        raise ValueError(f"logits must not be empty, got shape {shape_str(logits)}")
    check_relative_length(input_lens, batch, name="input_lens")
    check_relative_length(target_lens, batch, name="target_lens")
    check_blank(blank_index, classes)
    if reduction not in TRANSDUCER_REDUCTIONS:
        raise ValueError(
            f"Unexpected reduction {reduction!r}; transducer_loss supports {TRANSDUCER_REDUCTIONS}"
        )
    t_len, u_len = label_lengths(input_lens, target_lens, targets, time, classes)

    return _transducer_loss(logits, targets, t_len, u_len, blank_index, reduction)


@functools.partial(jax.jit, static_argnames=("blank_index", "reduction"))
def _transducer_loss(logits, targets, t_len, u_len, blank_index: int, reduction: str) -> Array:
    logits = jnp.asarray(logits)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.result_type(logits.dtype, jnp.float32)))
    labels = jnp.where(
        jnp.arange(jnp.shape(targets)[1])[None, :] < u_len[:, None], targets, 0
    ).astype(jnp.int32)
    return _transducer(log_probs, labels, t_len, u_len, blank_index, reduction)
