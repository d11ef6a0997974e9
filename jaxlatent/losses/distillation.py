"""Knowledge-distillation losses: `ce_kd`, `nll_loss_kd`, `ctc_loss_kd`.

Source: Gao et al., "Distilling Knowledge from Ensembles of Acoustic Models for Joint
CTC-Attention End-to-End Speech Recognition", 2020 (arXiv:2005.09310); SpeechBrain 1.1.2
`speechbrain.nnet.losses`.

SpeechBrain's `ctc_loss_kd` builds the teacher's label sequences on the host with Python
lists of data-dependent lengths. Here they are built with fixed shapes (a label array as
wide as the teacher's time axis, with per-utterance lengths), which gives the same CTC loss,
so all three functions are jittable and differentiable.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_floating, check_relative_length, shape_str
from jaxlatent.losses.ctc import check_blank, check_log_probs, ctc_nll
from jaxlatent.masking import length_to_mask, round_lengths

Array = jax.Array


def ce_kd(inp, target) -> Array:
    """Distillation cross-entropy ``sum(-target * inp, axis=1)``.

    SpeechBrain applies it to ``[batch * time, classes]`` arrays, where axis 1 is the class
    axis. Its docstring calls `inp` probabilities, but the formula is a cross-entropy only
    when `inp` holds the student's *log*-probabilities. Kept as is: axis 1 is summed for any
    rank (for ``[batch, time, classes]`` inputs that is the time axis, as in SpeechBrain).

    Args:
      inp: float ``[rows, classes, ...]`` student log-probabilities.
      target: float, broadcastable with `inp` (same rank), teacher probabilities.

    Returns:
      float ``[rows, ...]`` (`inp` with axis 1 summed out).

    Raises:
      ValueError: if either input is not floating, has fewer than 2 axes, or the shapes do
        not broadcast.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.ce_kd`.

    Example:
      >>> ce_kd(jnp.log(jnp.array([[0.5, 0.5]])), jnp.array([[1.0, 0.0]]))
      Array([0.6931472], dtype=float32)
    """
    check_floating("inp", inp)
    check_floating("target", target)
    if jnp.ndim(inp) < 2 or jnp.ndim(inp) != jnp.ndim(target):
        raise ValueError(
            f"inp and target must have the same rank >= 2, got shapes {shape_str(inp)} and "
            f"{shape_str(target)}"
        )
    try:
        shape = jnp.broadcast_shapes(jnp.shape(inp), jnp.shape(target))
    except ValueError:
        raise ValueError(
            f"inp {shape_str(inp)} and target {shape_str(target)} do not broadcast"
        ) from None
    inp = jnp.broadcast_to(inp, shape)
    target = jnp.broadcast_to(target, shape)
    return jnp.sum(-target * inp, axis=1)


def nll_loss_kd(probabilities, targets, rel_lab_lengths) -> Array:
    """Frame-level distillation loss: masked mean of :func:`ce_kd` over valid frames.

    ``n_b = round(rel_lab_lengths * time)`` (rule "round", half to even); the loss is
    ``sum_{b, t < n_b} sum_c(-targets * probabilities) / sum_b n_b``. As in SpeechBrain,
    `probabilities` should be the student's log-probabilities (the docstring example passes
    probabilities, hence the negative value); an all-empty batch gives ``0 / 0 = nan``.

    Args:
      probabilities: float ``[batch, time, classes]`` student (log-)probabilities.
      targets: float ``[batch, time, classes]`` teacher probabilities.
      rel_lab_lengths: float ``[batch]`` relative lengths in [0, 1].

    Returns:
      float scalar.

    Raises:
      ValueError: on non-float inputs, shapes that are not equal ``[batch, time, classes]``,
        or relative lengths outside [0, 1] (when concrete).

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.nll_loss_kd`.

    Example:
      >>> probabilities = jnp.array([[[0.8, 0.2], [0.2, 0.8]]])
      >>> targets = jnp.array([[[0.9, 0.1], [0.1, 0.9]]])
      >>> round(float(nll_loss_kd(probabilities, targets, jnp.array([1.0]))), 4)
      -0.74
    """
    check_floating("probabilities", probabilities)
    check_floating("targets", targets)
    if jnp.ndim(probabilities) != 3 or jnp.shape(probabilities) != jnp.shape(targets):
        raise ValueError(
            f"probabilities and targets must both be [batch, time, classes] of the same "
            f"shape, got {shape_str(probabilities)} and {shape_str(targets)}"
        )
    batch, time, _ = jnp.shape(probabilities)
    check_relative_length(rel_lab_lengths, batch, name="rel_lab_lengths")
    lengths = round_lengths(rel_lab_lengths, time)
    return _nll_loss_kd(probabilities, targets, lengths)


@jax.jit
def _nll_loss_kd(probabilities, targets, lengths) -> Array:
    batch, time, classes = probabilities.shape
    per_frame = ce_kd(
        jnp.reshape(probabilities, (batch * time, classes)),
        jnp.reshape(targets, (batch * time, classes)),
    ).reshape(batch, time)
    mask = length_to_mask(lengths, time, dtype=per_frame.dtype)
    return jnp.sum(per_frame * mask) / jnp.sum(mask)


@functools.partial(jax.jit, static_argnames=("blank_index",))
def teacher_labels(targets, n_frames, blank_index: int) -> tuple[Array, Array]:
    """Greedy CTC labels of a teacher, with fixed shapes.

    Per utterance: ``argmax`` over classes, keep the first ``n_frames[b]`` frames, merge
    repeats, drop blanks (SpeechBrain's `filter_ctc_output`), left-align and pad with 0.

    Args:
      targets: float ``[batch, time, classes]`` teacher scores.
      n_frames: int ``[batch]`` number of frames to read per utterance.
      blank_index: the blank class.

    Returns:
      ``(labels, lengths)``: int32 ``[batch, time]`` and int32 ``[batch]``.

    Example:
      >>> scores = jax.nn.one_hot(jnp.array([[1, 1, 0, 1, 2, 2, 0]]), 3)
      >>> labels, lengths = teacher_labels(scores, jnp.array([6]), 0)
      >>> labels[0, : int(lengths[0])]
      Array([1, 1, 2], dtype=int32)
    """
    batch, time = jnp.shape(targets)[:2]
    pred = jnp.argmax(targets, axis=-1).astype(jnp.int32)
    prev = jnp.concatenate([jnp.full((batch, 1), -1, jnp.int32), pred[:, :-1]], axis=1)
    inside = jnp.arange(time)[None, :] < n_frames[:, None]
    keep = inside & (pred != prev) & (pred != blank_index)
    lengths = jnp.sum(keep, axis=1, dtype=jnp.int32)
    slot = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, time)  # time = dropped (out of range)
    rows = jnp.broadcast_to(jnp.arange(batch)[:, None], (batch, time))
    labels = jnp.zeros((batch, time), jnp.int32).at[rows, slot].set(pred, mode="drop")
    return labels, lengths


def ctc_loss_kd(log_probs, targets, input_lens, blank_index: int, device=None) -> Array:
    """CTC distillation: CTC loss of the student against the teacher's greedy transcription.

    The teacher's labels come from :func:`teacher_labels` on its first
    ``round(input_lens * time)`` frames (``time`` = the *student's* time axis, as in
    SpeechBrain); the loss is PyTorch's CTC with ``zero_infinity=True`` and reduction
    ``'mean'`` (``mean_b(loss_b / max(len_b, 1))``), gradient convention as in
    :func:`jaxlatent.losses.ctc.ctc_loss`. No gradient flows to `targets`.

    Unlike SpeechBrain, which builds the labels on the host, this is jittable: the label
    array is as wide as the teacher's time axis instead of the longest transcription, which
    does not change the loss (CTC cost is ``O(time^2)`` per utterance instead).

    Args:
      log_probs: float ``[batch, time, classes]`` student log-probabilities.
      targets: float ``[batch, teacher_time, teacher_classes]`` teacher scores (any
        monotone scores, e.g. probabilities); ``teacher_classes <= classes``.
      input_lens: float ``[batch]`` relative lengths in [0, 1].
      blank_index: index of the blank class (static under `jax.jit`).
      device: ignored (SpeechBrain's argument has no effect either).

    Returns:
      float scalar.

    Raises:
      ValueError: on non-float or non-3-D inputs, a batch mismatch, more teacher classes
        than student classes, relative lengths outside [0, 1] (when concrete), or a blank
        outside the classes.

    Source: Gao et al. 2020 (arXiv:2005.09310); SpeechBrain 1.1.2
    `speechbrain.nnet.losses.ctc_loss_kd`.

    Example:
      >>> student = jax.nn.log_softmax(jnp.zeros((1, 3, 3)))
      >>> teacher = jax.nn.one_hot(jnp.array([[1, 0, 2]]), 3)
      >>> round(float(ctc_loss_kd(student, teacher, jnp.array([1.0]), 0)), 4)
      0.8432
    """
    del device
    check_log_probs("log_probs", log_probs)
    check_log_probs("targets", targets)
    batch, time, classes = jnp.shape(log_probs)
    if jnp.shape(targets)[0] != batch or jnp.shape(targets)[2] > classes:
        raise ValueError(
            f"targets {shape_str(targets)} must be [batch, teacher_time, <= classes] for "
            f"log_probs {shape_str(log_probs)}"
        )
    check_relative_length(input_lens, batch, name="input_lens")
    check_blank(blank_index, classes)
    in_len = round_lengths(input_lens, time)
    return _ctc_loss_kd(log_probs, targets, in_len, blank_index)


@functools.partial(jax.jit, static_argnames=("blank_index",))
def _ctc_loss_kd(log_probs, targets, in_len, blank_index: int) -> Array:
    labels, lengths = teacher_labels(jax.lax.stop_gradient(targets), in_len, blank_index)
    loss = ctc_nll(log_probs, labels, in_len, lengths, blank_index)
    return jnp.mean(loss / jnp.maximum(lengths, 1).astype(loss.dtype))
