"""Bad input and jit/grad behaviour of the masked losses (no torch needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent import losses

B, T, C = 2, 6, 3
LENGTH = jnp.array([1.0, 0.5])


def _frames():
    logp = jax.nn.log_softmax(jnp.arange(B * T * C, dtype=jnp.float32).reshape(B, T, C) % 5)
    targets = jnp.arange(B * T).reshape(B, T) % C
    return logp, targets


def _call(name, reduction="mean", **kwargs):
    logp, targets = _frames()
    x = jnp.ones((B, T))
    if name in ("mse_loss", "l1_loss"):
        return losses.mse_loss(x, x, reduction=reduction, **kwargs)
    if name in ("nll_loss", "kldiv_loss", "classification_error"):
        return getattr(losses, name)(logp, targets, reduction=reduction, **kwargs)
    if name == "bce_loss":
        return losses.bce_loss(x, x, reduction=reduction, **kwargs)
    if name == "distance_diff_loss":
        return losses.distance_diff_loss(x, jnp.array([1.0, 2.0]), reduction=reduction, **kwargs)
    if name == "reduce_loss":
        return losses.reduce_loss(x, x, reduction=reduction, **kwargs)
    return losses.compute_masked_loss(lambda p, t: p - t, x, x, reduction=reduction, **kwargs)


ALL = [
    "mse_loss",
    "l1_loss",
    "nll_loss",
    "kldiv_loss",
    "classification_error",
    "bce_loss",
    "distance_diff_loss",
    "reduce_loss",
    "compute_masked_loss",
]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("reduction", ["avg", "SUM", "elementwise_mean"])
def test_unknown_reduction_raises(name, reduction):
    """The one deliberate difference: SpeechBrain would return the unreduced loss."""
    with pytest.raises(ValueError, match="reduction"):
        _call(name, reduction)


def test_kldiv_unknown_reduction_with_smoothing_raises():
    logp, targets = _frames()
    with pytest.raises(ValueError, match="reduction"):
        losses.kldiv_loss(logp, targets, label_smoothing=0.1, reduction="avg")


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_sum_and_none_are_unreduced(reduction):
    out = losses.mse_loss(jnp.ones((B, T, 2)), jnp.zeros((B, T, 2)), LENGTH, reduction=reduction)
    assert out.shape == (B, T, 2)
    assert float(out.sum()) == (T + T // 2) * 2


# --- truncate / compute_length_mask -----------------------------------------------------------


def test_truncate_beyond_allowed_len_diff_names_shapes():
    with pytest.raises(ValueError, match=r"got 6 and 2 .*\(2, 6, 3\) and \(2, 2\)"):
        losses.truncate(jnp.zeros((2, 6, 3)), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="same length"):
        losses.mse_loss(jnp.zeros((2, 6)), jnp.zeros((2, 9)), allowed_len_diff=2)


def test_truncate_needs_two_axes():
    with pytest.raises(ValueError, match=r"\(4,\)"):
        losses.truncate(jnp.zeros(4), jnp.zeros(4))


@pytest.mark.parametrize("bad", [[1.5, 1.0], [-0.1, 1.0], [float("nan"), 1.0]])
def test_length_outside_unit_interval(bad):
    with pytest.raises(ValueError, match="length"):
        losses.compute_length_mask(jnp.zeros((2, 4)), jnp.array(bad))
    with pytest.raises(ValueError, match="length"):
        losses.mse_loss(jnp.zeros((2, 4)), jnp.zeros((2, 4)), jnp.array(bad))


def test_length_shape_errors():
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        losses.compute_length_mask(jnp.zeros((2, 4)), jnp.ones(3))
    with pytest.raises(ValueError, match=r"shape \(2, 1\)"):
        losses.compute_length_mask(jnp.zeros((2, 4)), jnp.ones((2, 1)))
    with pytest.raises(ValueError, match=r"at least 2 axes.*\(4,\)"):
        losses.compute_length_mask(jnp.zeros(4), jnp.ones(4))
    with pytest.raises(ValueError, match="len_dim=3"):
        losses.compute_length_mask(jnp.zeros((2, 4, 5)), jnp.ones(2), len_dim=3)


def test_length_of_one_entry_is_shared():
    mask = losses.compute_length_mask(jnp.zeros((3, 4)), jnp.array([0.5]))
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0]] * 3)


def test_mask_dtype_follows_data():
    for dtype in (jnp.float32, jnp.bfloat16, jnp.int32, jnp.bool_):
        mask = losses.compute_length_mask(jnp.zeros((2, 4), dtype), LENGTH)
        assert mask.dtype == dtype
        np.testing.assert_array_equal(mask.astype(int), [[1, 1, 1, 1], [1, 1, 0, 0]])


# --- reduce_loss / compute_masked_loss --------------------------------------------------------


def test_reduce_loss_errors():
    x = jnp.ones((B, T))
    with pytest.raises(ValueError, match="predictions"):
        losses.reduce_loss(x, x, label_smoothing=0.1)
    with pytest.raises(ValueError, match="targets"):
        losses.reduce_loss(x, x, "batchmean", label_smoothing=0.1, predictions=jnp.ones((B, C, T)))
    with pytest.raises(ValueError, match=r"3 rows.*\(3, 2\).*\(4,\)"):
        losses.reduce_loss(jnp.ones((3, 2)), jnp.ones(4), "batch")
    with pytest.raises(ValueError, match="scalar"):
        losses.reduce_loss(jnp.ones(()), jnp.ones(()))


def test_compute_masked_loss_errors():
    x = jnp.ones((B, T))
    with pytest.raises(ValueError, match="Invalid mask_shape value 'output'"):
        losses.compute_masked_loss(lambda p, t: p, x, x, mask_shape="output")
    with pytest.raises(ValueError, match=r"mask of shape \(2, 6, 3\).*loss of shape \(2, 6\)"):
        losses.compute_masked_loss(
            lambda p, t: p[..., 0], jnp.ones((B, T, 3)), x, LENGTH, mask_shape="predictions"
        )


def test_empty_mask_gives_nan_like_speechbrain():
    out = losses.mse_loss(jnp.ones((1, 4)), jnp.zeros((1, 4)), jnp.array([0.0]))
    assert np.isnan(float(out))


# --- per-loss bad input -----------------------------------------------------------------------


def test_non_float_predictions():
    ints = jnp.ones((B, T), jnp.int32)
    for fn in (losses.mse_loss, losses.l1_loss, losses.bce_loss, losses.classification_error):
        with pytest.raises(ValueError, match="floating"):
            fn(ints, ints)
    with pytest.raises(ValueError, match="log_probabilities must be a floating"):
        losses.nll_loss(jnp.ones((B, T, C), jnp.int32), ints)
    with pytest.raises(ValueError, match="log_probabilities must be a floating"):
        losses.kldiv_loss(jnp.ones((B, T, C), jnp.int32), ints, label_smoothing=0.1)
    with pytest.raises(ValueError, match="predictions must be a floating"):
        losses.distance_diff_loss(ints, jnp.ones(B))


def test_regression_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"\(2, 6, 3\).*\(2, 6, 2\)"):
        losses.l1_loss(jnp.ones((B, T, 3)), jnp.ones((B, T, 2)))


def test_nll_errors():
    logp, targets = _frames()
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*\(4,\)"):
        losses.nll_loss(logp, targets, weight=jnp.ones(4))
    with pytest.raises(ValueError, match=r"\[0, 3\).*-100.*\[3\]"):
        losses.nll_loss(logp, targets.at[0, 0].set(3))
    with pytest.raises(ValueError, match=r"targets of shape \(3, 6\)"):
        losses.nll_loss(logp, jnp.zeros((3, 6), jnp.int32))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        losses.nll_loss(logp[0, 0], jnp.array(1))
    with pytest.raises(ValueError, match="at least 2 axes"):  # 2-D input with a length
        losses.nll_loss(logp[:, 0], targets[:, 0], LENGTH)
    with pytest.raises(ValueError, match="same length"):
        losses.nll_loss(logp, targets[:, :1])


def test_nll_out_of_range_targets_under_jit_give_nan():
    logp, targets = _frames()
    out = jax.jit(losses.nll_loss)(logp, targets.at[0, 0].set(7))
    assert np.isnan(float(out))


def test_kldiv_errors():
    logp, targets = _frames()
    with pytest.raises(ValueError, match="divides by length"):
        losses.kldiv_loss(logp, targets, label_smoothing=0.1, reduction="batch")
    with pytest.raises(ValueError, match="at least 2 classes"):
        losses.kldiv_loss(logp[..., :1], targets, label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"batch \* time = 12"):
        losses.kldiv_loss(logp, targets[:, :5], label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"pad_idx=0.*\[5\]"):
        losses.kldiv_loss(logp, targets.at[1, 1].set(5), label_smoothing=0.1)
    with pytest.raises(ValueError, match="length"):
        losses.kldiv_loss(logp, targets, jnp.array([2.0, 1.0]), 0.1, reduction="batch")


def test_bce_errors():
    x = jnp.zeros((B, T))
    with pytest.raises(ValueError, match=r"length can be passed only for >= 2D inputs.*\(5,\)"):
        losses.bce_loss(jnp.zeros(5), jnp.zeros(5), length=jnp.ones(5))
    with pytest.raises(ValueError, match=r"Target size \(2, 6, 2\).*\(2, 6\)"):
        losses.bce_loss(x, jnp.zeros((B, T, 2)))
    with pytest.raises(ValueError, match=r"weight of shape \(5, 1\).*loss of shape \(2, 6\)"):
        losses.bce_loss(x, x, weight=jnp.ones(5))
    with pytest.raises(ValueError, match="pos_weight"):
        losses.bce_loss(x, x, pos_weight=jnp.ones(4))
    with pytest.raises(ValueError, match=r"mean\(inputs, axis=1\) of shape \(2,\).*\(2, 6\)"):
        losses.bce_loss(x, x, label_smoothing=0.1)


def test_bce_label_smoothing_outer_product_on_1d():
    """SpeechBrain's regulariser sums the logits for 1-D inputs ('mean')."""
    x = jnp.array([1.0, 2.0, 3.0])
    plain = losses.bce_loss(x, jnp.ones(3))
    smoothed = losses.bce_loss(x, jnp.ones(3), label_smoothing=0.5)
    np.testing.assert_allclose(smoothed, -0.5 * 6 + 0.5 * plain, rtol=1e-6)
    assert losses.bce_loss(x, jnp.ones(3), reduction="none", label_smoothing=0.5).shape == (3, 3)


def test_distance_diff_errors():
    with pytest.raises(ValueError, match=r"\[batch, max_len\].*\(2, 3, 1\)"):
        losses.distance_diff_loss(jnp.ones((2, 3, 1)), jnp.ones(2))
    with pytest.raises(ValueError, match=r"targets must be \[batch\].*\(2, 1\)"):
        losses.distance_diff_loss(jnp.ones((2, 3)), jnp.ones((2, 1)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        losses.distance_diff_loss(jnp.ones((2, 3)), jnp.ones(3))


# --- jit with traced lengths, grad --------------------------------------------------------


def test_jit_with_traced_length_and_grad():
    logp, targets = _frames()
    x = jnp.linspace(-1, 1, B * T).reshape(B, T)

    def total(x, logp, length):
        return (
            losses.mse_loss(x, jnp.zeros_like(x), length)
            + losses.l1_loss(x, jnp.zeros_like(x), length, reduction="batchmean")
            + losses.bce_loss(x, (x > 0).astype(jnp.float32), length)
            + losses.nll_loss(logp, targets, length, label_smoothing=0.1)
            + losses.kldiv_loss(logp, targets, length, 0.1, reduction="batch").sum()
            + losses.distance_diff_loss(jnp.exp(x), jnp.array([1.0, 2.0]), length)
            + losses.classification_error(logp, targets, length)
        )

    eager = total(x, logp, LENGTH)
    jitted = jax.jit(total)(x, logp, LENGTH)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    gx, glogp = jax.jit(jax.grad(total, argnums=(0, 1)))(x, logp, LENGTH)
    assert np.isfinite(gx).all() and np.isfinite(glogp).all()
    # padded frames of item 1 (length 0.5) get no gradient from the masked losses
    np.testing.assert_array_equal(gx[1, T // 2 :], 0.0)
    # out-of-range lengths cannot be checked under jit: no error, only concrete calls raise
    jax.jit(losses.mse_loss)(x, x, jnp.array([2.0, 1.0]))
