"""Parity of the misc losses with the installed SpeechBrain 1.1.2 `speechbrain.nnet.losses`.

PitWrapper (+ SI-SNR/SNR helpers), AngularMargin, AdditiveAngularMargin, LogSoftmaxWrapper,
ContrastiveLoss, Laplacian, LaplacianVarianceLoss. Inputs are random (numpy), every JAX
call runs under `jax.jit`, permutations and accuracies must match exactly.
"""

from __future__ import annotations

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent.losses import (
    AdditiveAngularMargin,
    AngularMargin,
    ContrastiveLoss,
    Laplacian,
    LaplacianVarianceLoss,
    LogSoftmaxWrapper,
    PitWrapper,
    cal_si_snr,
    cal_snr,
    get_mask,
    get_si_snr_with_pitwrapper,
    get_snr_with_pitwrapper,
)
from jaxlatent.losses._ieee import torch_cpu_sum
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def torch():
    return ref.torch()


@pytest.fixture(scope="module")
def sb():
    return ref.sb_losses()


def _t(x):
    return ref.to_torch(np.asarray(x))


def _sq_err(p, t):
    return (p - t) ** 2


def _base_losses(torch, sb):
    # name -> (jax base loss, torch base loss, per-source extra axes, tolerance name)
    return {
        "mse": (_sq_err, torch.nn.MSELoss(reduction="none"), (40, 3), "elementwise_f32"),
        "si_snr": (cal_si_snr, sb.cal_si_snr, (160,), "misc_si_snr_db"),
        "snr": (cal_snr, sb.cal_snr, (160, 2), "misc_si_snr_db"),
    }


def _permuted_noisy(rng, targets, noise):
    """preds[b] = targets[b] with sources shuffled (a different permutation per item) + noise."""
    preds = np.empty_like(targets)
    n_sources = targets.shape[-1]
    for b in range(targets.shape[0]):
        preds[b] = targets[b][..., rng.permutation(n_sources)]
    return (preds + noise * rng.standard_normal(targets.shape)).astype(np.float32)


# --- PIT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["mse", "si_snr", "snr"])
@pytest.mark.parametrize("n_sources", [2, 3, 4, 5])
def test_pit_matches_speechbrain(rng, torch, sb, base, n_sources):
    jax_loss, torch_loss, extra, tol = _base_losses(torch, sb)[base]
    targets = rng.standard_normal((6, *extra, n_sources)).astype(np.float32)
    preds = _permuted_noisy(rng, targets, noise=0.7)
    preds[-1] = rng.standard_normal(preds[-1].shape)  # one item with no right answer

    pit = PitWrapper(jax_loss)
    loss, perms = jax.jit(lambda p, t: pit(p, t))(preds, targets)
    t_loss, t_perms = sb.PitWrapper(torch_loss)(_t(preds), _t(targets))

    np.testing.assert_array_equal(np.asarray(perms), np.array(t_perms))
    assert_close(loss, ref.to_numpy(t_loss), tol)
    assert perms.shape == (6, n_sources) and perms.dtype == jnp.int32
    assert not (np.asarray(perms) == np.arange(n_sources)).all()  # non-trivial answers


@pytest.mark.parametrize("shape", [(2, 32, 4), (3, 8, 8, 8, 5)])
def test_pit_recovers_permutation_and_reorders(rng, torch, sb, shape):
    # SpeechBrain's upstream test: targets = preds[..., p] gives back p, and reordering
    # the predictions with it reproduces the targets exactly.
    preds = rng.random(shape, dtype=np.float32)
    p = tuple(rng.permutation(shape[-1]).tolist())
    targets = preds[..., p]
    pit = PitWrapper(_sq_err)
    loss, perms = pit(preds, targets)
    t_pit = sb.PitWrapper(torch.nn.MSELoss(reduction="none"))
    t_loss, t_perms = t_pit(_t(preds), _t(targets))

    assert [tuple(q) for q in np.asarray(perms).tolist()] == t_perms == [p] * shape[0]
    np.testing.assert_array_equal(np.asarray(loss), ref.to_numpy(t_loss))
    reordered = jax.jit(pit.reorder_tensor)(preds, perms)
    np.testing.assert_array_equal(np.asarray(reordered), targets)
    np.testing.assert_array_equal(
        np.asarray(reordered), ref.to_numpy(t_pit.reorder_tensor(_t(preds), t_perms))
    )


def test_pit_exact_tie_keeps_first_permutation(rng, torch, sb):
    # Integer data: every loss and cost is exact in float32. Targets 0 and 1 are identical,
    # so each optimal permutation ties with the one that swaps p[0] and p[1].
    n_sources, batch = 4, 16
    targets = rng.integers(-3, 4, (batch, 4, n_sources)).astype(np.float32)
    targets[..., 1] = targets[..., 0]
    preds = rng.integers(-3, 4, (batch, 4, n_sources)).astype(np.float32)

    perms = np.asarray(jax.jit(lambda p, t: PitWrapper(_sq_err)(p, t).perms)(preds, targets))
    _, t_perms = sb.PitWrapper(torch.nn.MSELoss(reduction="none"))(_t(preds), _t(targets))

    all_perms = list(itertools.permutations(range(n_sources)))
    loss_mat = ((preds[..., None, :] - targets[..., :, None]) ** 2).mean(axis=1)  # [B, i, j]
    costs = np.array([[lm[range(n_sources), p].mean() for p in all_perms] for lm in loss_mat])
    first = [all_perms[int(np.argmin(c))] for c in costs]
    last = [all_perms[len(c) - 1 - int(np.argmin(c[::-1]))] for c in costs]
    assert all(f != la for f, la in zip(first, last, strict=True))  # ties everywhere
    assert [tuple(q) for q in perms.tolist()] == t_perms == first


def test_pit_roundoff_tie_follows_torch_summation_order(rng, torch, sb):
    # With 5 sources PyTorch sums a permutation's 5 costs as ((c0 + c4) + c1) + c2 + c3.
    # With two identical targets, permutations swapping them have costs that agree up to
    # round-off; pick items where that order and a left-to-right sum disagree.
    n_sources = 5
    targets = rng.standard_normal((512, 1, n_sources)).astype(np.float32)
    targets[..., 1] = targets[..., 0]
    preds = rng.standard_normal((512, 1, n_sources)).astype(np.float32)
    loss_mat = (preds[:, 0, None, :] - targets[:, 0, :, None]) ** 2  # [B, i, j] float32
    all_perms = np.array(list(itertools.permutations(range(n_sources))))
    terms = [loss_mat[:, i, all_perms[:, i]] for i in range(n_sources)]
    sequential = terms[0]
    for term in terms[1:]:
        sequential = sequential + term
    torch_order = np.asarray(torch_cpu_sum([jnp.asarray(t) for t in terms]))
    picked = np.flatnonzero(
        np.argmin(sequential / np.float32(5), -1) != np.argmin(torch_order / np.float32(5), -1)
    )
    assert picked.size >= 3, "no round-off tie found; enlarge the search"
    preds, targets = preds[picked], targets[picked]

    perms = jax.jit(lambda p, t: PitWrapper(_sq_err)(p, t).perms)(preds, targets)
    _, t_perms = sb.PitWrapper(torch.nn.MSELoss(reduction="none"))(_t(preds), _t(targets))
    np.testing.assert_array_equal(np.asarray(perms), np.array(t_perms))


# --- SI-SNR / SNR -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1000, 3, 4), (37, 5, 3), (400, 2, 3, 2)])
def test_cal_si_snr_matches(rng, sb, shape):
    source = rng.standard_normal(shape).astype(np.float32)
    scale = rng.uniform(0.01, 3.0, shape[1:])
    estimate = (source + scale * rng.standard_normal(shape)).astype(np.float32)
    estimate_copy = estimate.copy()
    out = jax.jit(cal_si_snr)(source, estimate)
    t_est = _t(estimate)
    expected = ref.to_numpy(sb.cal_si_snr(_t(source), t_est))
    assert out.shape == (1, *shape[1:])
    assert_close(out, expected, "misc_si_snr_db")
    np.testing.assert_array_equal(estimate, estimate_copy)  # JAX input untouched


def test_cal_si_snr_doctest_input_including_fragile_entry(torch, sb):
    # The perfect-match entries are set by float32 round-off (144.1789; 130.9283 is the EPS
    # bound); dividing like XLA's default (x * (1/y)) moves them by 0.14 and 0.43 dB.
    x = np.array([[1, 0], [123, 45], [34, 5], [2312, 421]], np.float32)
    xhat = x[:, (1, 0)]
    x = np.repeat(x[:, :, None], 2, axis=2)
    xhat = np.repeat(xhat[:, None, :], 2, axis=1)
    expected = ref.to_numpy(sb.cal_si_snr(_t(x), _t(xhat)))
    assert_close(cal_si_snr(x, xhat), expected, "misc_si_snr_db")
    assert_close(jax.jit(cal_si_snr)(x, xhat), expected, "misc_si_snr_db")
    float64 = ref.to_numpy(sb.cal_si_snr(_t(x).double(), _t(xhat).double()))
    assert abs(float64[0, 0, 1] - expected[0, 0, 1]) > 1.0  # the entry really is fragile


@pytest.mark.parametrize("shape", [(800, 2, 3, 4), (50, 1, 2, 3), (64, 4, 2)])
def test_cal_snr_matches(rng, sb, shape):
    source = rng.standard_normal(shape).astype(np.float32)
    estimate = (source + 0.3 * rng.standard_normal(shape)).astype(np.float32)
    out = jax.jit(cal_snr)(source, estimate)
    expected = ref.to_numpy(sb.cal_snr(_t(source), _t(estimate)))
    assert out.shape == (1, *shape[1:])
    assert_close(out, expected, "misc_si_snr_db")


def test_si_snr_and_snr_with_pitwrapper_match(rng, sb):
    source = rng.standard_normal((4, 300, 3)).astype(np.float32)
    estimate = _permuted_noisy(rng, source, noise=0.5)
    out = jax.jit(get_si_snr_with_pitwrapper)(source, estimate)
    expected = sb.get_si_snr_with_pitwrapper(_t(source), _t(estimate))
    assert_close(out, ref.to_numpy(expected), "misc_si_snr_db")

    source = rng.standard_normal((3, 300, 2, 3)).astype(np.float32)
    estimate = _permuted_noisy(rng, source, noise=0.5)
    out = jax.jit(get_snr_with_pitwrapper)(source, estimate)
    expected = sb.get_snr_with_pitwrapper(_t(source), _t(estimate))
    assert_close(out, ref.to_numpy(expected), "misc_si_snr_db")


def test_si_snr_with_pitwrapper_doctest_input(sb):
    x = np.arange(600).reshape(3, 100, 2)
    xhat = x[:, :, (1, 0)]
    expected = ref.to_numpy(sb.get_si_snr_with_pitwrapper(_t(x), _t(xhat)))  # int64 input
    out = get_si_snr_with_pitwrapper(x.astype(np.float32), xhat.astype(np.float32))
    assert_close(out, expected, "misc_si_snr_db")


@pytest.mark.parametrize("shape", [(6, 5, 2), (6, 2, 5, 3)])
def test_get_mask_matches(torch, sb, shape):
    lengths = np.array([0, 6, 9, -2, 3], np.int32)  # includes > T and negative (slice quirk)
    source = np.zeros(shape, np.float32)
    out = jax.jit(get_mask)(source, lengths)
    expected = sb.get_mask(_t(source), _t(lengths))
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), ref.to_numpy(expected))


# --- gradients ----------------------------------------------------------------------------------


def test_cal_si_snr_gradient_matches_autograd(rng, torch, sb):
    source = rng.standard_normal((200, 3, 2)).astype(np.float32)
    estimate = (source + 0.5 * rng.standard_normal(source.shape)).astype(np.float32)
    weights = rng.standard_normal((1, 3, 2)).astype(np.float32)

    def objective(s, e):
        return jnp.sum(cal_si_snr(s, e) * weights)

    g_source, g_estimate = jax.jit(jax.grad(objective, argnums=(0, 1)))(source, estimate)
    t_source = _t(source).requires_grad_()
    t_estimate = _t(estimate).requires_grad_()
    # cal_si_snr multiplies its estimate in place: give it a non-leaf copy, as SpeechBrain's
    # callers do (a leaf that requires grad would raise).
    (sb.cal_si_snr(t_source, t_estimate.clone()) * _t(weights)).sum().backward()
    assert_close(g_source, ref.to_numpy(t_source.grad), "misc_grad_si_snr")
    assert_close(g_estimate, ref.to_numpy(t_estimate.grad), "misc_grad_si_snr")


def _margin_cosines(rng, margin):
    edge = np.float32(1 - 1e-7)  # the clamp bound: torch's gradient passes there
    th = np.float32(np.cos(np.pi - margin))
    special = [1.0, -1.0, edge, -edge, 0.0, th, np.nextafter(th, np.float32(1)), 1.1, -1.1]
    cosines = rng.uniform(-1.0, 1.0, (8, 12)).astype(np.float32)
    cosines.flat[: len(special)] = special
    targets = np.eye(12, dtype=np.float32)[rng.integers(0, 12, 8)]
    targets[0, :] = 1.0  # the special values are target logits too
    return cosines, targets


@pytest.mark.parametrize("easy_margin", [False, True])
def test_additive_angular_margin_gradient_matches_autograd(rng, torch, sb, easy_margin):
    cosines, targets = _margin_cosines(rng, 0.3)
    weights = rng.standard_normal(cosines.shape).astype(np.float32)
    aam = AdditiveAngularMargin(margin=0.3, scale=30.0, easy_margin=easy_margin)
    grads = jax.jit(jax.grad(lambda o, t: jnp.sum(aam(o, t) * weights), argnums=(0, 1)))(
        cosines, targets
    )
    t_cos, t_tgt = _t(cosines).requires_grad_(), _t(targets).requires_grad_()
    t_aam = sb.AdditiveAngularMargin(margin=0.3, scale=30.0, easy_margin=easy_margin)
    (t_aam(t_cos, t_tgt) * _t(weights)).sum().backward()
    assert_close(grads[0], ref.to_numpy(t_cos.grad), "misc_grad_aam")
    assert_close(grads[1], ref.to_numpy(t_tgt.grad), "misc_grad_aam")
    assert np.asarray(grads[0])[0, 0] == 0.0  # clamped cosine 1.0: no gradient


# --- margins ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("margin", "scale"), [(0.2, 30.0), (0.5, 1.0)])
@pytest.mark.parametrize("easy_margin", [False, True])
def test_margins_match(rng, sb, margin, scale, easy_margin):
    cosines, targets = _margin_cosines(rng, margin)
    aam = AdditiveAngularMargin(margin, scale, easy_margin)
    out = jax.jit(lambda o, t: aam(o, t))(cosines, targets)
    expected = sb.AdditiveAngularMargin(margin, scale, easy_margin)(_t(cosines), _t(targets))
    assert_close(out, ref.to_numpy(expected), "elementwise_f32")

    am = AngularMargin(margin, scale)
    expected = sb.AngularMargin(margin, scale)(_t(cosines), _t(targets))
    assert_close(
        jax.jit(lambda o, t: am(o, t))(cosines, targets), ref.to_numpy(expected), "elementwise_f32"
    )


def test_additive_angular_margin_casts_half_input_to_float32(rng, torch, sb):
    cosines, targets = _margin_cosines(rng, 0.2)
    half = cosines.astype(np.float16)
    out = AdditiveAngularMargin(0.2, 30.0)(jnp.asarray(half), targets)
    expected = sb.AdditiveAngularMargin(0.2, 30.0)(_t(half), _t(targets))
    assert out.dtype == jnp.float32 and expected.dtype == torch.float32
    assert_close(out, ref.to_numpy(expected), "elementwise_f32")


@pytest.mark.parametrize("loss_fn", ["identity", "am", "aam"])
@pytest.mark.parametrize("layout", ["b1c", "bc"])
def test_log_softmax_wrapper_matches(rng, torch, sb, loss_fn, layout):
    jax_fn, torch_fn = {
        "identity": (lambda x: x, torch.nn.Identity()),
        "am": (AngularMargin(0.2, 30.0), sb.AngularMargin(0.2, 30.0)),
        "aam": (AdditiveAngularMargin(0.3, 30.0), sb.AdditiveAngularMargin(0.3, 30.0)),
    }[loss_fn]
    outputs = rng.uniform(-1.0, 1.0, (16, 1, 10)).astype(np.float32)
    if layout == "bc":
        outputs = outputs[:, 0]
    targets = rng.integers(0, 10, (16, 1))
    wrapper = LogSoftmaxWrapper(jax_fn)
    out = jax.jit(lambda o, t: wrapper(o, t))(outputs, targets)
    expected = sb.LogSoftmaxWrapper(torch_fn)(_t(outputs), _t(targets))
    assert_close(out, ref.to_numpy(expected), "elementwise_f32")
    # float targets are truncated like `.long()`
    out = wrapper(outputs, targets + 0.5)
    assert_close(out, ref.to_numpy(expected), "elementwise_f32")


# --- contrastive ------------------------------------------------------------------------------


def test_contrastive_loss_matches(rng, sb):
    batch, time, feat, n_neg = 3, 50, 16, 10
    x = rng.standard_normal((batch, time, feat)).astype(np.float32)
    y = (x + 1.5 * rng.standard_normal(x.shape)).astype(np.float32)
    negs = rng.standard_normal((n_neg, batch, time, feat)).astype(np.float32)
    negs[2, 1, 5] = y[1, 5]  # negatives equal to the positive get logit -inf
    negs[7, 0, 3] = y[0, 3]
    negs[:, 2, 9] = y[2, 9]  # a row whose negatives all equal the positive
    negs[4, 0, 10] = x[0, 10]  # a negative that beats the positive
    loss, accuracy = jax.jit(lambda a, b, c: ContrastiveLoss(0.1)(a, b, c))(x, y, negs)
    t_loss, t_accuracy = sb.ContrastiveLoss(0.1)(_t(x), _t(y), _t(negs))
    assert_close(loss, ref.to_numpy(t_loss), "misc_contrastive")
    assert float(accuracy) == t_accuracy.item()
    assert 0.0 < float(accuracy) < 1.0
    assert accuracy.dtype == jnp.float32


# --- Laplacian ----------------------------------------------------------------------------------


def _to_torch_layout(x):
    return np.moveaxis(x, -1, -3) if x.ndim == 4 else np.moveaxis(x, -1, 0)


@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("batched", [True, False])
def test_laplacian_matches(rng, sb, kernel_size, batched):
    shape = (4, 40, 30, 1) if batched else (40, 30, 1)
    data = rng.standard_normal(shape).astype(np.float32)
    out = jax.jit(Laplacian(kernel_size))(data)
    expected = ref.to_numpy(sb.Laplacian(kernel_size)(_t(_to_torch_layout(data))))
    assert out.shape == (*shape[:-3], 41 - kernel_size, 31 - kernel_size, 1)
    assert_close(_to_torch_layout(np.asarray(out)), expected, "misc_laplacian")


# (jax len_dim, torch len_dim): channels-last axis of [B, H, W, 1] vs the [B, 1, H, W] axis
_BATCHED_LEN_DIMS = [(None, 1), (-1, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize(("len_dim", "torch_len_dim"), _BATCHED_LEN_DIMS)
@pytest.mark.parametrize("reduction", [None, "batch"])
def test_laplacian_variance_loss_matches(rng, sb, len_dim, torch_len_dim, reduction):
    data = rng.standard_normal((4, 15, 12, 1)).astype(np.float32)  # Laplacian: 13 × 10
    length = np.array([1.0, 7 / 13, 0.5, 0.3], np.float32)  # 7/13: tolerance rule keeps 7
    loss_fn = LaplacianVarianceLoss(3, len_dim=len_dim)
    out = jax.jit(lambda d, n: loss_fn(d, n, reduction))(data, length)
    t_loss = sb.LaplacianVarianceLoss(3, len_dim=torch_len_dim)
    expected = t_loss(_t(_to_torch_layout(data)), _t(length), reduction)
    assert_close(out, ref.to_numpy(expected), "misc_laplacian_variance")
    unmasked = loss_fn(data, None, reduction)
    assert_close(
        unmasked,
        ref.to_numpy(t_loss(_t(_to_torch_layout(data)), None, reduction)),
        "misc_laplacian_variance",
    )
    if torch_len_dim != 1:
        assert not np.allclose(np.asarray(out), np.asarray(unmasked))  # the mask matters


@pytest.mark.parametrize(("len_dim", "torch_len_dim"), [(None, 1), (0, 1), (1, 2)])
@pytest.mark.parametrize("reduction", [None, "batch"])
def test_laplacian_variance_loss_unbatched_matches(rng, sb, len_dim, torch_len_dim, reduction):
    data = rng.standard_normal((15, 12, 1)).astype(np.float32)
    length = np.array([0.6], np.float32)
    out = LaplacianVarianceLoss(3, len_dim=len_dim)(data, length, reduction)
    t_loss = sb.LaplacianVarianceLoss(3, len_dim=torch_len_dim)
    expected = t_loss(_t(_to_torch_layout(data)), _t(length), reduction)
    assert_close(out, ref.to_numpy(expected), "misc_laplacian_variance")


def test_laplacian_variance_loss_zero_length_quirk(rng, sb):
    # Default len_dim = channel axis: a zero length removes the whole item (NaN per item).
    data = rng.standard_normal((3, 9, 9, 1)).astype(np.float32)
    length = np.array([1.0, 0.0, 0.4], np.float32)
    t_loss = sb.LaplacianVarianceLoss(3)
    for reduction in (None, "batch"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: "degrees of freedom <= 0"
            expected = ref.to_numpy(t_loss(_t(_to_torch_layout(data)), _t(length), reduction))
        out = np.asarray(LaplacianVarianceLoss(3)(data, length, reduction))
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
        assert_close(out[~np.isnan(out)], expected[~np.isnan(expected)], "misc_laplacian_variance")


@pytest.mark.parametrize("n", [2, 3, 5, 7, 8, 11, 17, 24, 39])
def test_torch_cpu_sum_order_is_bit_exact(rng, torch, n):
    # The helper behind PIT's tie-breaks: sums like torch.sum over a contiguous float32 row.
    rows = (rng.standard_normal((2000, n)) * 10 ** rng.uniform(-3, 3, (2000, n))).astype(np.float32)
    expected = ref.to_numpy(_t(rows).sum(-1))
    out = jax.jit(torch_cpu_sum)([rows[:, i] for i in range(n)])
    np.testing.assert_array_equal(np.asarray(out), expected)
