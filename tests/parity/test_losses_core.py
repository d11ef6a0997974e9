"""Masked SpeechBrain losses (`speechbrain.nnet.losses`, 1.1.2) vs jaxlatent.losses.

Random inputs (numpy rng) with partial relative lengths, including the adversarial 7/13
(float32(7/13) * 13 rounds above 7), every reduction, label smoothing 0 / 0.1 where the
reference supports it, class weights / pos_weight, truncation in both directions, and
gradients w.r.t. the predictions against torch autograd. JAX sides run under `jax.jit`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent import losses
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

REDUCTIONS = ("mean", "batchmean", "batch", "sum", "none")
B, T, F, C = 4, 13, 3, 5
#: Partial lengths; 7/13 is where "ceil with tolerance" and plain ceil disagree.
LENGTHS = np.array([1.0, 7 / 13, 0.5, 0.3], np.float32)


def tt(x):
    """numpy -> torch (copy, so read-only arrays are fine)."""
    return ref.to_torch(np.array(x))


def log_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    return (x - np.log(np.exp(x).sum(axis=axis, keepdims=True))).astype(np.float32)


def jax_value_and_vjp(fn, pred, cot_seed, jit):
    """Value and cotangent-weighted gradient of `fn` w.r.t. `pred` (both jitted if `jit`)."""
    wrap = jax.jit if jit else (lambda f: f)
    out = wrap(fn)(jnp.asarray(pred))
    cot = np.asarray(np.random.default_rng(cot_seed).normal(size=out.shape), np.float32)
    grad = wrap(jax.grad(lambda p: jnp.sum(fn(p) * cot)))(jnp.asarray(pred))
    return np.asarray(out), np.asarray(grad), cot


def torch_value_and_vjp(fn, pred, cot):
    torch = ref.torch()
    p = tt(pred).requires_grad_(True)
    out = fn(p)
    out.backward(torch.from_numpy(cot))
    return ref.to_numpy(out), ref.to_numpy(p.grad)


def check_loss_and_grad(jfn, tfn, pred, value_tol, grad_tol, *, jit):
    """Compare values and VJPs. `jit` is set for a subset of cases (compiling every case
    would dominate the run time; eager dispatch shares compiled primitives across tests)."""
    out, grad, cot = jax_value_and_vjp(jfn, pred, cot_seed=1, jit=jit)
    t_out, t_grad = torch_value_and_vjp(tfn, pred, cot)
    assert out.shape == t_out.shape
    assert_close(out, t_out, value_tol)
    assert_close(grad, t_grad, grad_tol)


# --- compute_length_mask / truncate -----------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "len_dim"),
    [
        ((B, T, F), 1),
        ((T, B, F), 0),
        ((T, B), 0),
        ((B, F, T), 2),
        ((B, 2, T, 3), 2),
        ((B, 2, 3, T), -1),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_compute_length_mask(rng, shape, len_dim, dtype):
    sb = ref.sb_losses()
    data = rng.normal(size=shape).astype(dtype)
    want = ref.to_numpy(sb.compute_length_mask(tt(data), tt(LENGTHS), len_dim=len_dim))
    got = jax.jit(losses.compute_length_mask, static_argnames="len_dim")(
        data, LENGTHS, len_dim=len_dim
    )
    assert got.dtype == jnp.asarray(data).dtype  # the dtype of the data (int64 -> int32 in JAX)
    np.testing.assert_array_equal(np.asarray(got), want)


def test_compute_length_mask_adversarial_fractions():
    """Every n/d with d <= 32 (78 such pairs round float32(n/d) * d above n)."""
    sb = ref.sb_losses()
    for d in range(1, 33):
        fractions = np.arange(d + 1, dtype=np.float64) / d
        lengths = fractions.astype(np.float32)
        data = np.zeros((d + 1, d), np.float32)
        want = ref.to_numpy(sb.compute_length_mask(tt(data), tt(lengths)))
        got = np.asarray(jax.jit(losses.compute_length_mask)(data, lengths))
        np.testing.assert_array_equal(got, want, err_msg=f"d={d}")
        np.testing.assert_array_equal(got.sum(1), np.arange(d + 1))


@pytest.mark.parametrize(("t_pred", "t_tgt"), [(T, T), (T, T + 2), (T + 3, T)])
def test_truncate(rng, t_pred, t_tgt):
    sb = ref.sb_losses()
    p = rng.normal(size=(B, t_pred, F)).astype(np.float32)
    t = rng.normal(size=(B, t_tgt)).astype(np.float32)
    want_p, want_t = sb.truncate(tt(p), tt(t), allowed_len_diff=3)
    got = jax.jit(losses.truncate, static_argnums=2)(p, t, 3)
    np.testing.assert_array_equal(np.asarray(got.predictions), ref.to_numpy(want_p))
    np.testing.assert_array_equal(np.asarray(got.targets), ref.to_numpy(want_t))
    allowed = abs(t_pred - t_tgt) - 1
    if allowed >= 0:
        with pytest.raises(ValueError, match="same length"):
            sb.truncate(tt(p), tt(t), allowed_len_diff=allowed)
        with pytest.raises(ValueError, match="same length"):
            losses.truncate(p, t, allowed_len_diff=allowed)


# --- mse / l1 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("name", "t_pred", "t_tgt", "length"),
    [
        ("mse_loss", T, T + 2, LENGTHS),
        ("l1_loss", T, T + 2, LENGTHS),
        ("mse_loss", T + 1, T, None),
        ("l1_loss", T + 1, T, None),
    ],
)
def test_regression(rng, name, reduction, t_pred, t_tgt, length):
    sb = ref.sb_losses()
    p = rng.normal(size=(B, t_pred, F)).astype(np.float32)
    t = rng.normal(size=(B, t_tgt, F)).astype(np.float32)
    t[0, :3] = p[0, :3]  # exact ties: both frameworks use the subgradient 0 of |x| at 0
    t_len = None if length is None else tt(length)
    check_loss_and_grad(
        lambda x: getattr(losses, name)(x, t, length, reduction=reduction),
        lambda x: getattr(sb, name)(x, tt(t), t_len, reduction=reduction),
        p,
        "core_f32",
        "core_grad_f32",
        jit=reduction == "batch",
    )


def test_regression_broadcast_feature_targets(rng):
    """Targets [B, T, 1] broadcast over features; the mask (and 'mean') follows the targets."""
    sb = ref.sb_losses()
    p = rng.normal(size=(B, T, F)).astype(np.float32)
    t = rng.normal(size=(B, T, 1)).astype(np.float32)
    with pytest.warns(UserWarning, match="target size"):
        want = ref.to_numpy(sb.mse_loss(tt(p), tt(t), tt(LENGTHS)))
    with pytest.warns(UserWarning, match="target size"):
        got = losses.mse_loss(p, t, LENGTHS)
    assert_close(got, want, "core_f32")


# --- nll / kldiv / classification_error -------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize(("weighted", "t_pred", "t_tgt"), [(False, T, T + 1), (True, T + 2, T)])
def test_nll_loss_frames(rng, reduction, label_smoothing, weighted, t_pred, t_tgt):
    sb = ref.sb_losses()
    logp = log_softmax(rng.normal(size=(B, t_pred, C)).astype(np.float32))
    targets = rng.integers(0, C, size=(B, t_tgt))
    targets[1, 2] = -100  # torch's ignore_index: loss 0, still counted by the mask
    weight = rng.uniform(0.5, 2.0, size=C).astype(np.float32) if weighted else None
    t_weight = None if weight is None else tt(weight)
    check_loss_and_grad(
        lambda x: losses.nll_loss(
            x, targets, LENGTHS, label_smoothing, weight=weight, reduction=reduction
        ),
        lambda x: sb.nll_loss(
            x, tt(targets), tt(LENGTHS), label_smoothing, weight=t_weight, reduction=reduction
        ),
        logp,
        "core_f32",
        "core_grad_f32",
        jit=reduction == "batch",
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_nll_loss_utterances(rng, reduction, label_smoothing):
    sb = ref.sb_losses()
    logp = log_softmax(rng.normal(size=(B, C)).astype(np.float32))
    targets = rng.integers(0, C, size=(B,)).astype(np.float32)  # float targets, cast like .long()
    weight = rng.uniform(0.5, 2.0, size=C).astype(np.float32)
    if label_smoothing and reduction == "batch":  # SpeechBrain: IndexError (mask is 1-D)
        with pytest.raises(IndexError):
            sb.nll_loss(tt(logp), tt(targets), label_smoothing=0.1, reduction="batch")
        with pytest.raises(ValueError, match="axis 1"):
            losses.nll_loss(logp, targets, label_smoothing=0.1, reduction="batch")
        return
    check_loss_and_grad(
        lambda x: losses.nll_loss(
            x, targets, None, label_smoothing, weight=weight, reduction=reduction
        ),
        lambda x: sb.nll_loss(
            x, tt(targets), None, label_smoothing, weight=tt(weight), reduction=reduction
        ),
        logp,
        "core_f32",
        "core_grad_f32",
        jit=reduction == "batch",
    )


def test_nll_loss_mean_ignores_class_weight_sum(rng):
    """'mean' divides by the mask count, so it differs from torch's weighted mean."""
    torch = ref.torch()
    sb = ref.sb_losses()
    logp = log_softmax(rng.normal(size=(B, T, C)).astype(np.float32))
    targets = rng.integers(0, C, size=(B, T))
    weight = rng.uniform(0.5, 2.0, size=C).astype(np.float32)
    got = losses.nll_loss(logp, targets, weight=weight)
    assert_close(
        got, ref.to_numpy(sb.nll_loss(tt(logp), tt(targets), weight=tt(weight))), "core_f32"
    )
    torch_mean = torch.nn.functional.nll_loss(
        tt(logp).transpose(1, 2), tt(targets), weight=tt(weight)
    )
    assert abs(float(got) - float(torch_mean)) > 1e-3


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("label_smoothing", "pad_idx", "frames"), [(0.0, 0, True), (0.1, 0, True), (0.1, -1, False)]
)
def test_kldiv_loss(rng, reduction, label_smoothing, pad_idx, frames):
    sb = ref.sb_losses()
    shape = (B, T, C) if frames else (B, C)
    logp = log_softmax(rng.normal(size=shape).astype(np.float32))
    targets = rng.integers(0, C, size=shape[:-1])
    if pad_idx == -1:
        targets.reshape(-1)[::5] = -1  # padding entries: zero loss
    # Without smoothing the time axis is truncated (nll_loss); with it, no length mask is
    # applied and the length only divides 'batch'.
    logp_t = logp[:, : T - 1] if frames and not label_smoothing else logp
    length = LENGTHS if frames or label_smoothing else None
    t_len = None if length is None else tt(length)
    check_loss_and_grad(
        lambda x: losses.kldiv_loss(
            x, targets, length, label_smoothing, pad_idx=pad_idx, reduction=reduction
        ),
        lambda x: sb.kldiv_loss(
            x, tt(targets), t_len, label_smoothing, pad_idx=pad_idx, reduction=reduction
        ),
        logp_t,
        "core_f32",
        "core_grad_f32",
        jit=reduction == "batch",
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("p_shape", "t_shape", "length"),
    [
        ((B, T + 1, C), (B, T), LENGTHS),
        ((B, T, C), (B, T + 2), LENGTHS),
        ((B, C), (B,), None),
        ((1, T, C), (T,), None),
    ],
)
def test_classification_error(rng, reduction, p_shape, t_shape, length):
    sb = ref.sb_losses()
    probs = rng.uniform(size=p_shape).astype(np.float32)
    probs[..., 1] = probs[..., 0]  # ties between classes 0 and 1: first index wins in both
    targets = rng.integers(0, C, size=t_shape)
    t_len = None if length is None else tt(length)
    want = ref.to_numpy(sb.classification_error(tt(probs), tt(targets), t_len, reduction=reduction))
    fn = jax.jit(lambda p: losses.classification_error(p, targets, length, reduction=reduction))
    got = np.asarray(fn(probs))
    assert got.shape == want.shape and got.dtype == want.dtype
    if reduction in ("sum", "none"):
        np.testing.assert_array_equal(got, want)  # 0/1 errors: discrete
    else:
        assert_close(got, want, "core_f32")


# --- bce --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("in_shape", "t_shape", "use_length", "weights"),
    [
        ((B, T + 2, 1), (B, T), True, True),
        ((B, T + 2, 1), (B, T), True, False),
        ((B, T), (B, T + 1), True, True),
        ((B,), (B,), False, True),
        ((B,), (B,), False, False),
    ],
)
def test_bce_loss(rng, reduction, in_shape, t_shape, use_length, weights):
    sb = ref.sb_losses()
    logits = (3 * rng.normal(size=in_shape)).astype(np.float32)
    targets = rng.uniform(size=t_shape).astype(np.float32)  # soft labels
    targets[targets > 0.7] = 1.0
    length = LENGTHS if use_length else None
    t_len = None if length is None else tt(length)
    weight = rng.uniform(0.5, 2.0, size=B).astype(np.float32) if weights else None  # per item
    pos_weight = None
    if weights:
        time = min(in_shape[1], t_shape[1]) if len(in_shape) > 1 else 1
        pos_weight = rng.uniform(0.5, 3.0, size=time).astype(np.float32)  # per frame/label
    t_w = None if weight is None else tt(weight)
    t_pw = None if pos_weight is None else tt(pos_weight)
    check_loss_and_grad(
        lambda x: losses.bce_loss(x, targets, length, weight, pos_weight, reduction),
        lambda x: sb.bce_loss(x, tt(targets), t_len, t_w, t_pw, reduction),
        logits,
        "core_bce_f32",
        "core_grad_f32",
        jit=reduction == "batch",
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("in_shape", "length"), [((B,), None), ((B, B), LENGTHS), ((1, T), LENGTHS[1:2])]
)
def test_bce_loss_label_smoothing(rng, reduction, in_shape, length):
    """Broken-by-design regulariser where torch accepts it: 1-D (outer product), T == B, B == 1."""
    sb = ref.sb_losses()
    logits = (3 * rng.normal(size=in_shape)).astype(np.float32)
    targets = rng.integers(0, 2, size=in_shape)
    t_len = None if length is None else tt(length)
    check_loss_and_grad(
        lambda x: losses.bce_loss(x, targets, length, reduction=reduction, label_smoothing=0.1),
        lambda x: sb.bce_loss(x, tt(targets), t_len, reduction=reduction, label_smoothing=0.1),
        logits,
        "core_bce_f32",
        "core_grad_f32",
        jit=reduction == "batch",
    )


def test_bce_loss_label_smoothing_error_where_torch_fails(rng):
    sb = ref.sb_losses()
    logits = rng.normal(size=(B, T)).astype(np.float32)
    targets = rng.integers(0, 2, size=(B, T))
    with pytest.raises(RuntimeError):
        sb.bce_loss(tt(logits), tt(targets), label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"\(4,\).*\(4, 13\)"):
        losses.bce_loss(logits, targets, label_smoothing=0.1)


# --- distance_diff / compute_masked_loss / reduce_loss ----------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("beta", "max_weight"), [(0.25, 100.0), (1.5, 3.0)])
def test_distance_diff_loss(rng, reduction, beta, max_weight):
    sb = ref.sb_losses()
    preds = rng.uniform(size=(B, T)).astype(np.float32)
    targets = rng.uniform(0, T, size=B).astype(np.float32)
    check_loss_and_grad(
        lambda x: losses.distance_diff_loss(x, targets, LENGTHS, beta, max_weight, reduction),
        lambda x: sb.distance_diff_loss(x, tt(targets), tt(LENGTHS), beta, max_weight, reduction),
        preds,
        "core_exp_f32",
        "core_exp_f32",
        jit=reduction == "batch",
    )


def _class_mean_error(x, y):
    return (x.mean(1) - y) ** 2


def _squared_error(x, y):
    return (x - y) ** 2


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("mask_shape", "label_smoothing"),
    [("targets", 0.0), ("targets", 0.1), ("loss", 0.0), ("loss", 0.1), ("predictions", 0.0)],
)
def test_compute_masked_loss(rng, reduction, mask_shape, label_smoothing):
    """Custom loss functions (written once, run by both frameworks)."""
    sb = ref.sb_losses()
    if mask_shape == "predictions":
        # The regulariser mean(predictions [B, T, F], axis=1) does not fit a [B, T, F] mask,
        # so 'predictions' is checked without smoothing.
        p = rng.normal(size=(B, T, F)).astype(np.float32)
        t = rng.normal(size=(B, T, F)).astype(np.float32)
        fn = _squared_error
    else:  # predictions [B, classes, T], loss and targets [B, T]: the smoothing layout
        p = rng.normal(size=(B, C, T)).astype(np.float32)
        t = rng.normal(size=(B, T)).astype(np.float32)
        fn = _class_mean_error
    check_loss_and_grad(
        lambda x: losses.compute_masked_loss(
            fn, x, t, LENGTHS, label_smoothing, mask_shape, reduction
        ),
        lambda x: sb.compute_masked_loss(
            fn, x, tt(t), tt(LENGTHS), label_smoothing, mask_shape, reduction
        ),
        p,
        "core_f32",
        "core_grad_f32",
        jit=reduction == "batch",
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_reduce_loss(rng, reduction, label_smoothing):
    sb = ref.sb_losses()
    loss = rng.uniform(size=(B, T)).astype(np.float32)
    mask = (rng.uniform(size=(B, T)) < 0.7).astype(np.int64)
    preds = rng.normal(size=(B, C, T)).astype(np.float32)
    targets = rng.integers(0, C, size=(B, T))
    want = sb.reduce_loss(tt(loss), tt(mask), reduction, label_smoothing, tt(preds), tt(targets))
    fn = jax.jit(losses.reduce_loss, static_argnums=(2, 3))
    got = fn(loss, mask, reduction, label_smoothing, preds, targets)
    assert got.shape == tuple(want.shape)
    assert_close(got, ref.to_numpy(want), "core_f32")
