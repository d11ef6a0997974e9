"""Parity of the sequence losses with SpeechBrain 1.1.2 (`speechbrain.nnet.losses`).

* `ctc_loss`, `ctc_loss_kd`, `ce_kd`, `nll_loss_kd`: the real SpeechBrain functions (over
  PyTorch's CPU CTC), values and gradients via torch autograd.
* `transducer_loss`: SpeechBrain's real Numba-CUDA kernel, run on CPU tensors through
  Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` when `numba.cuda` is first imported).
  Sizes are tiny: the simulator interprets every GPU thread in Python.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent.losses import ce_kd, ctc_loss, ctc_loss_kd, nll_loss_kd, transducer_loss
from jaxlatent.losses.distillation import teacher_labels
from tests.reference import missing, require, sb_losses, to_numpy, to_torch, torch
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

CTC_REDUCTIONS = ["mean", "sum", "none", "batch", "batchmean"]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return (x - np.log(np.exp(x).sum(axis=-1, keepdims=True))).astype(np.float32)


def _torch_value_and_grad(fn, x: np.ndarray, *args):
    """SpeechBrain value and the gradient of its sum w.r.t. the first argument."""
    t = torch()
    xt = to_torch(x).requires_grad_(True)
    out = fn(xt, *args)
    (grad,) = t.autograd.grad(out.sum(), xt)
    return to_numpy(out), to_numpy(grad)


@jax.jit(static_argnums=(0,), static_argnames=("blank_index", "reduction"))
def _jax_vjp(fn, x, *args, **static):
    out, pull = jax.vjp(lambda a: fn(a, *args, **static), x)
    return out, pull(jnp.ones_like(out))[0]


def _jax_value_and_grad(fn, x, *args, **static):
    """jaxlatent value and the gradient of its sum w.r.t. `x`, both under one `jax.jit`."""
    out, grad = _jax_vjp(fn, x, *args, **static)
    return np.asarray(out), np.asarray(grad)


# ---------------------------------------------------------------------------------------
# CTC
# ---------------------------------------------------------------------------------------


def _ctc_case(rng):
    batch, time, classes, width = 7, 12, 6, 5
    log_probs = _log_softmax(2.0 * rng.normal(size=(batch, time, classes)))
    targets = rng.integers(1, classes, size=(batch, width)).astype(np.int32)
    targets[1] = [2, 2, 2, 3, 3]  # repeats need extra frames
    # relative lengths: full, half-way (0.45*12 = 5.4 -> 5; 0.5*5 = 2.5 -> 2, half to even),
    # an adversarial 7/12, empty input (with and without a target), and an infeasible
    # alignment (5 labels with 3 repeats in 6 frames).
    input_lens = np.array([1.0, 0.5, 0.45, 0.0, 7 / 12, 0.0, 1.0], np.float32)
    target_lens = np.array([0.6, 1.0, 0.5, 0.0, 0.2, 1.0, 0.0], np.float32)
    return log_probs, targets, input_lens, target_lens


@pytest.mark.parametrize("reduction", CTC_REDUCTIONS)
def test_ctc_loss_matches_speechbrain(rng, reduction):
    log_probs, targets, input_lens, target_lens = _ctc_case(rng)
    sb = sb_losses()
    ref, ref_grad = _torch_value_and_grad(
        lambda x: sb.ctc_loss(
            x, to_torch(targets), to_torch(input_lens), to_torch(target_lens), 0, reduction
        ),
        log_probs,
    )
    out, grad = _jax_value_and_grad(
        ctc_loss, log_probs, targets, input_lens, target_lens, blank_index=0, reduction=reduction
    )
    assert out.shape == ref.shape
    assert_close(out, ref, "seq_ctc", err_msg=f"value, reduction={reduction}")
    assert_close(grad, ref_grad, "seq_ctc", err_msg=f"gradient, reduction={reduction}")
    if reduction == "none":
        # item 1 has no alignment (zero_infinity), items 3 and 5 have no frames.
        assert out[1] == 0 and out[5] == 0 and out[3] == 0
        assert np.all(grad[1] == 0) and np.all(grad[3] == 0) and np.all(grad[5] == 0)


def test_ctc_loss_unnormalised_inputs_and_other_blank(rng):
    """No re-normalisation (unlike optax) and PyTorch's exp(lp) gradient term, blank != 0."""
    batch, time, classes, width = 4, 9, 5, 3
    log_probs = rng.normal(size=(batch, time, classes)).astype(np.float32) - 1.0
    blank = 3
    targets = rng.choice([0, 1, 2, 4], size=(batch, width)).astype(np.int32)
    input_lens = np.array([1.0, 0.8, 0.6, 1.0], np.float32)
    target_lens = np.array([1.0, 2 / 3, 1 / 3, 0.0], np.float32)
    sb = sb_losses()
    for reduction in ("mean", "none"):
        ref, ref_grad = _torch_value_and_grad(
            lambda x, r=reduction: sb.ctc_loss(
                x, to_torch(targets), to_torch(input_lens), to_torch(target_lens), blank, r
            ),
            log_probs,
        )
        out, grad = _jax_value_and_grad(
            ctc_loss,
            log_probs,
            targets,
            input_lens,
            target_lens,
            blank_index=blank,
            reduction=reduction,
        )
        assert_close(out, ref, "seq_ctc", err_msg=f"value, reduction={reduction}")
        assert_close(grad, ref_grad, "seq_ctc", err_msg=f"gradient, reduction={reduction}")


# ---------------------------------------------------------------------------------------
# knowledge distillation
# ---------------------------------------------------------------------------------------


def test_ce_kd_matches_speechbrain(rng):
    sb = sb_losses()
    for shape in [(10, 6), (3, 4, 5)]:  # 3-D: SpeechBrain sums axis 1 (time), kept as is
        inp = np.log(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])).astype(np.float32)
        target = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]).astype(np.float32)
        ref, ref_grad = _torch_value_and_grad(lambda x, t=target: sb.ce_kd(x, to_torch(t)), inp)
        out, grad = _jax_value_and_grad(ce_kd, inp, target)
        assert out.shape == ref.shape == shape[:1] + shape[2:]
        assert_close(out, ref, "seq_kd", err_msg=f"value {shape}")
        assert_close(grad, ref_grad, "seq_kd", err_msg=f"gradient {shape}")


def test_nll_loss_kd_matches_speechbrain(rng):
    batch, time, classes = 5, 10, 4
    probs = np.log(rng.dirichlet(np.ones(classes), size=(batch, time))).astype(np.float32)
    targets = rng.dirichlet(np.ones(classes), size=(batch, time)).astype(np.float32)
    lens = np.array([1.0, 0.45, 0.25, 0.0, 0.73], np.float32)  # 4.5 -> 4, 2.5 -> 2
    sb = sb_losses()
    ref, ref_grad = _torch_value_and_grad(
        lambda x: sb.nll_loss_kd(x, to_torch(targets), to_torch(lens)), probs
    )
    out, grad = _jax_value_and_grad(nll_loss_kd, probs, targets, lens)
    assert_close(out, ref, "seq_kd", err_msg="value")
    assert_close(grad, ref_grad, "seq_kd", err_msg="gradient")


def test_nll_loss_kd_doctest_value():
    sb = sb_losses()
    p = np.array([[[0.8, 0.2], [0.2, 0.8]]], np.float32)
    t = np.array([[[0.9, 0.1], [0.1, 0.9]]], np.float32)
    ref = to_numpy(sb.nll_loss_kd(to_torch(p), to_torch(t), to_torch(np.ones(1, np.float32))))
    assert_close(nll_loss_kd(p, t, jnp.ones(1)), ref, "seq_kd")
    assert round(float(ref), 4) == -0.74


def _teacher(rng, batch, time, classes):
    """Teacher scores whose argmax has repeats, blanks and blank-separated repeats."""
    scores = rng.normal(size=(batch, time, classes)).astype(np.float32)
    path = rng.integers(0, classes, size=(batch, time))
    path[:, 1::3] = path[:, 0::3][:, : path[:, 1::3].shape[1]]  # repeats
    scores[np.arange(batch)[:, None], np.arange(time)[None, :], path] += 4.0
    return scores


def test_teacher_labels_match_filter_ctc_output(rng):
    """Discrete labels: exactly SpeechBrain's argmax + truncation + filter_ctc_output."""
    sb = sb_losses()
    batch, time, classes, blank = 6, 15, 4, 1
    scores = _teacher(rng, batch, time, classes)
    n_frames = np.array([15, 7, 0, 1, 11, 14], np.int32)
    labels, lengths = teacher_labels(jnp.asarray(scores), jnp.asarray(n_frames), blank)
    labels, lengths = np.asarray(labels), np.asarray(lengths)
    pred = scores.argmax(-1)
    for b in range(batch):
        ref = sb.filter_ctc_output(list(pred[b, : n_frames[b]]), blank_id=blank)
        assert lengths[b] == len(ref)
        assert labels[b, : lengths[b]].tolist() == [int(r) for r in ref]
        assert np.all(labels[b, lengths[b] :] == 0)


@pytest.mark.parametrize(
    ("teacher_time", "teacher_classes", "blank"), [(12, 6, 0), (9, 6, 2), (15, 4, 0)]
)
def test_ctc_loss_kd_matches_speechbrain(rng, teacher_time, teacher_classes, blank):
    batch, time, classes = 5, 12, 6
    log_probs = _log_softmax(2.0 * rng.normal(size=(batch, time, classes)))
    teacher = _teacher(rng, batch, teacher_time, teacher_classes)
    input_lens = np.array([1.0, 0.45, 0.0, 0.7, 0.125], np.float32)  # 5.4->5, 8.4->8, 1.5->2
    sb = sb_losses()
    ref, ref_grad = _torch_value_and_grad(
        lambda x: sb.ctc_loss_kd(x, to_torch(teacher), to_torch(input_lens), blank, "cpu"),
        log_probs,
    )
    out, grad = _jax_value_and_grad(ctc_loss_kd, log_probs, teacher, input_lens, blank_index=blank)
    assert_close(out, ref, "seq_ctc", err_msg="value")
    assert_close(grad, ref_grad, "seq_ctc", err_msg="gradient")


def test_ctc_loss_kd_all_blank_teacher(rng):
    """A teacher that only predicts blanks: SpeechBrain builds a [batch, 0] label tensor."""
    batch, time, classes = 3, 6, 4
    log_probs = _log_softmax(rng.normal(size=(batch, time, classes)))
    teacher = np.zeros((batch, time, classes), np.float32)
    teacher[..., 0] = 1.0
    lens = np.array([1.0, 0.5, 0.0], np.float32)
    ref, ref_grad = _torch_value_and_grad(
        lambda x: sb_losses().ctc_loss_kd(x, to_torch(teacher), to_torch(lens), 0, "cpu"),
        log_probs,
    )
    out, grad = _jax_value_and_grad(ctc_loss_kd, log_probs, teacher, lens, blank_index=0)
    assert_close(out, ref, "seq_ctc", err_msg="value")
    assert_close(grad, ref_grad, "seq_ctc", err_msg="gradient")


# ---------------------------------------------------------------------------------------
# transducer (SpeechBrain's Numba kernel through the CUDA simulator)
# ---------------------------------------------------------------------------------------


def _sb_transducer_loss():
    """SpeechBrain's `transducer_loss`, its Numba kernel running on Numba's CUDA simulator.

    `numba.cuda` picks the simulator when it is first imported, if the (re)loaded numba
    config says so; the environment variable is restored afterwards.
    """
    numba = require("numba")
    if "numba.cuda" not in sys.modules:
        previous = os.environ.get("NUMBA_ENABLE_CUDASIM")
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        try:
            numba.config.reload_config()
            import numba.cuda
        finally:
            if previous is None:
                del os.environ["NUMBA_ENABLE_CUDASIM"]
            else:
                os.environ["NUMBA_ENABLE_CUDASIM"] = previous
    if getattr(sys.modules["numba.cuda"], "simulator_init", None) is None:
        missing("numba.cuda was imported without the CUDA simulator before this test")
    return sb_losses().transducer_loss


def _transducer_case(rng):
    batch, time, width, classes = 3, 4, 3, 5
    logits = rng.normal(size=(batch, time, width + 1, classes)).astype(np.float32)
    # item 0 contains the blank (0) as a label: the kernel's gradient overwrite quirk.
    targets = np.array([[1, 0, 3], [2, 2, 4], [1, 3, 3]], np.int32)
    input_lens = np.array([1.0, 0.5, 0.75], np.float32)
    target_lens = np.array([1.0, 0.0, 2 / 3], np.float32)
    return logits, targets, input_lens, target_lens


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_transducer_loss_matches_numba_kernel(rng, reduction):
    sb_transducer = _sb_transducer_loss()
    logits, targets, input_lens, target_lens = _transducer_case(rng)
    ref, ref_grad = _torch_value_and_grad(
        lambda x: sb_transducer(
            x, to_torch(targets), to_torch(input_lens), to_torch(target_lens), 0, reduction
        ),
        logits,
    )
    out, grad = _jax_value_and_grad(
        transducer_loss,
        logits,
        targets,
        input_lens,
        target_lens,
        blank_index=0,
        reduction=reduction,
    )
    assert out.shape == ref.shape
    assert_close(out, ref, "seq_transducer", err_msg=f"value, reduction={reduction}")
    assert_close(grad, ref_grad, "seq_transducer", err_msg=f"gradient, reduction={reduction}")


def test_transducer_loss_zero_frames_and_other_blank_match_kernel(rng):
    """T_b = 0 (value +inf, zero gradient) and a blank other than 0."""
    sb_transducer = _sb_transducer_loss()
    logits = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    targets = np.array([[0, 1], [3, 3], [1, 0]], np.int32)
    input_lens = np.array([0.0, 1.0, 2 / 3], np.float32)
    target_lens = np.array([1.0, 1.0, 0.5], np.float32)
    ref, ref_grad = _torch_value_and_grad(
        lambda x: sb_transducer(
            x, to_torch(targets), to_torch(input_lens), to_torch(target_lens), 2, "none"
        ),
        logits,
    )
    out, grad = _jax_value_and_grad(
        transducer_loss, logits, targets, input_lens, target_lens, blank_index=2, reduction="none"
    )
    assert np.isinf(ref[0]) and np.isinf(out[0])
    assert_close(out, ref, "seq_transducer", err_msg="value")
    assert_close(grad, ref_grad, "seq_transducer", err_msg="gradient")
    assert np.all(grad[0] == 0)


def test_transducer_loss_upstream_value_matches_kernel():
    """SpeechBrain's upstream `test_transducer_loss` inputs: 2.2478 ± 1e-4."""
    sb_transducer = _sb_transducer_loss()
    logits = np.array(
        [
            [
                [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1], [0.1, 0.1, 0.2, 0.8, 0.1]],
                [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.1, 0.1], [0.7, 0.1, 0.2, 0.1, 0.1]],
            ]
        ],
        np.float32,
    )
    targets, ones = np.array([[1, 2]], np.int32), np.ones(1, np.float32)
    ref, ref_grad = _torch_value_and_grad(
        lambda x: sb_transducer(x, to_torch(targets), to_torch(ones), to_torch(ones), 0), logits
    )
    out, grad = _jax_value_and_grad(
        transducer_loss, logits, targets, ones, ones, blank_index=0, reduction="mean"
    )
    assert abs(float(out) - 2.2478) < 1e-4
    assert_close(out, ref, "seq_transducer", err_msg="value")
    assert_close(grad, ref_grad, "seq_transducer", err_msg="gradient")
