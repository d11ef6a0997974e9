"""Bad input, transforms (jit/grad/vmap) and documented semantics of the misc losses."""

from __future__ import annotations

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
from jaxlatent.losses._ieee import no_contract, true_divide
from jaxlatent.losses.pit import permutations


def _sq_err(p, t):
    return (p - t) ** 2


# --- numerics helpers -------------------------------------------------------------------------


def test_true_divide_is_ieee_under_jit_and_vmap(rng):
    x = rng.standard_normal((4, 3, 500)).astype(np.float32) * 1000
    y = np.float32(123830.75)
    expected = x / y
    assert jax.jit(lambda a: a / y)(x).tolist() != expected.tolist()  # XLA's x * (1/y)
    np.testing.assert_array_equal(jax.jit(true_divide)(x, y), expected)
    vmapped = jax.jit(jax.vmap(jax.vmap(true_divide, (0, None)), (0, None)))(x, y)
    np.testing.assert_array_equal(vmapped, expected)
    grad = jax.grad(lambda a, b: jnp.sum(true_divide(a, b)), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(grad[0], np.full_like(x, 1 / y), rtol=1e-6)
    np.testing.assert_allclose(grad[1], -np.sum(x) / y**2, rtol=1e-4)


def test_no_contract_keeps_products_rounded(rng):
    a, b = rng.standard_normal((2, 10000)).astype(np.float32)
    expected = a * a + b
    assert (np.asarray(jax.jit(lambda a, b: a * a + b)(a, b)) != expected).any()  # FMA
    np.testing.assert_array_equal(jax.jit(lambda a, b: no_contract(a * a) + b)(a, b), expected)
    assert np.isnan(no_contract(jnp.array([np.nan, 1.0]))[0])


def test_permutations_are_lexicographic():
    assert permutations(4).shape == (24, 4)
    assert [tuple(p) for p in permutations(4)] == sorted(tuple(p) for p in permutations(4))


# --- PitWrapper ---------------------------------------------------------------------------------


def test_pit_rejects_bad_input():
    pit = PitWrapper(_sq_err)
    with pytest.raises(ValueError, match=r"preds \(2, 5, 3\) and targets \(2, 5, 4\)"):
        pit(jnp.zeros((2, 5, 3)), jnp.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match=r"\[batch, \.\.\., sources\], got \(3,\)"):
        pit(jnp.zeros(3), jnp.zeros(3))
    with pytest.raises(ValueError, match="preds must be a floating-point array"):
        pit(jnp.zeros((2, 5, 3), jnp.int32), jnp.zeros((2, 5, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"base_loss must not reduce.*returned shape \(\)"):
        PitWrapper(lambda p, t: jnp.mean((p - t) ** 2))(jnp.zeros((2, 5, 3)), jnp.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"p \(2, 2\) and tensor \(2, 5, 3\)"):
        pit.reorder_tensor(jnp.zeros((2, 5, 3)), jnp.zeros((2, 2), jnp.int32))
    with pytest.raises(ValueError, match="integer source indices"):
        pit.reorder_tensor(jnp.zeros((2, 5, 3)), jnp.zeros((2, 3)))


def test_pit_reorder_accepts_list_of_tuples():
    x = jnp.arange(12.0).reshape(2, 2, 3)
    out = PitWrapper.reorder_tensor(x, [(2, 0, 1), (0, 1, 2)])
    np.testing.assert_array_equal(out[0], x[0][:, jnp.array([2, 0, 1])])
    np.testing.assert_array_equal(out[1], x[1])


def test_pit_gradient_is_that_of_the_chosen_permutation(rng):
    targets = rng.standard_normal((3, 20, 4)).astype(np.float32)
    preds = targets[..., ::-1] + 0.1 * rng.standard_normal(targets.shape).astype(np.float32)
    pit = PitWrapper(_sq_err)

    def total(p):
        return jnp.sum(pit(p, targets).loss)

    perms = pit(preds, targets).perms
    grad = jax.jit(jax.grad(total))(preds)

    def fixed(p):  # mean over time and sources of the matched squared errors
        matched = PitWrapper.reorder_tensor(p, perms)
        return jnp.sum(jnp.mean((matched - targets) ** 2, axis=(1, 2)))

    np.testing.assert_allclose(grad, jax.grad(fixed)(preds), rtol=1e-5, atol=1e-7)
    assert np.asarray(perms).tolist() == [[3, 2, 1, 0]] * 3


def test_pit_nan_costs_follow_strict_comparison():
    # S = 2; loss_mat[0, 1] = (inf - inf)² = NaN, loss_mat[1, 1] = inf: costs [inf, NaN].
    # SpeechBrain keeps the first permutation (inf > NaN is False); argmin would pick NaN.
    preds = jnp.array([[[0.0, jnp.inf]]])
    targets = jnp.array([[[jnp.inf, 0.0]]])
    out = PitWrapper(_sq_err)(preds, targets)
    assert np.asarray(out.perms).tolist() == [[0, 1]]
    assert np.isinf(out.loss[0])
    out = PitWrapper(_sq_err)(jnp.array([[[jnp.nan, 0.0]]]), jnp.zeros((1, 1, 2)))
    assert np.asarray(out.perms).tolist() == [[0, 1]] and np.isnan(out.loss[0])


def test_pit_with_unhashable_base_loss():
    class Unhashable:
        __hash__ = None

        def __call__(self, p, t):
            return (p - t) ** 2

    x = jnp.arange(8.0).reshape(1, 4, 2)
    out = PitWrapper(Unhashable())(x, x[..., ::-1])
    assert np.asarray(out.perms).tolist() == [[1, 0]]


# --- SI-SNR / SNR -------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [cal_si_snr, cal_snr])
def test_snr_rejects_bad_input(fn):
    with pytest.raises(ValueError, match=r"source \(4, 2, 3\) and estimate_source \(4, 2, 2\)"):
        fn(jnp.zeros((4, 2, 3)), jnp.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match=r"got \(4, 2\)"):
        fn(jnp.zeros((4, 2)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="source must be a floating-point array"):
        fn(jnp.zeros((4, 2, 3), jnp.int32), jnp.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="estimate_source must be a floating-point array"):
        fn(jnp.zeros((4, 2, 3)), jnp.zeros((4, 2, 3), jnp.int32))


@pytest.mark.parametrize("fn", [get_si_snr_with_pitwrapper, get_snr_with_pitwrapper])
def test_pit_snr_rejects_bad_input(fn):
    with pytest.raises(ValueError, match=r"source \(2, 8, 3\) and estimate_source \(2, 8, 2\)"):
        fn(jnp.zeros((2, 8, 3)), jnp.zeros((2, 8, 2)))
    with pytest.raises(ValueError, match="source must be a floating-point array"):
        fn(jnp.zeros((2, 8, 2, 3), jnp.int32), jnp.zeros((2, 8, 2, 3)))


def test_get_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="integer lengths"):
        get_mask(jnp.zeros((4, 3, 2)), jnp.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"\(3,\) for source \(4, 3, 2\), got \(2,\)"):
        get_mask(jnp.zeros((4, 3, 2)), jnp.array([1, 2]))
    with pytest.raises(ValueError, match=r"got \(4, 3\)"):
        get_mask(jnp.zeros((4, 3)), jnp.array([1, 2, 3]))


def test_separation_losses_grad_under_jit(rng):
    source = rng.standard_normal((2, 64, 3)).astype(np.float32)
    estimate = source[..., ::-1] + 0.3 * rng.standard_normal(source.shape).astype(np.float32)
    for fn in (get_si_snr_with_pitwrapper, get_snr_with_pitwrapper):
        grad = jax.jit(jax.grad(lambda e, fn=fn: jnp.sum(fn(source, e))))(estimate)
        assert grad.shape == estimate.shape and np.isfinite(np.asarray(grad)).all()
        assert np.abs(np.asarray(grad)).max() > 0


# --- margins ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [AngularMargin, AdditiveAngularMargin])
def test_margins_reject_bad_input(cls):
    with pytest.raises(ValueError, match=r"outputs \(4, 3\) and targets \(4, 2\)"):
        cls(0.2, 30.0)(jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="outputs must be a floating-point array"):
        cls(0.2, 30.0)(jnp.zeros((4, 3), jnp.int32), jnp.zeros((4, 3)))


def test_log_softmax_wrapper_rejects_bad_input():
    wrapper = LogSoftmaxWrapper(lambda x: x)
    outputs = jnp.zeros((4, 1, 3))
    with pytest.raises(ValueError, match=r"targets must have shape \[batch, 1\], got \(4,\)"):
        wrapper(outputs, jnp.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"in \[0, 3\), got \[0, 1, 3, 0\]"):
        wrapper(outputs, jnp.array([[0], [1], [3], [0]]))
    with pytest.raises(ValueError, match=r"outputs \(4, 3\) and targets \(5,\)"):
        wrapper(outputs, jnp.zeros((5, 1), jnp.int32))
    with pytest.raises(ValueError, match="outputs must be a floating-point array"):
        wrapper(jnp.zeros((4, 1, 3), jnp.int32), jnp.zeros((4, 1), jnp.int32))


def test_log_softmax_wrapper_type_error_fallback():
    # Like SpeechBrain: a TypeError raised inside the 2-argument call also triggers the
    # 1-argument retry.
    calls = []

    def fussy(x, onehot=None):
        calls.append(onehot is None)
        if onehot is not None:
            raise TypeError("not this way")
        return x

    outputs = jnp.array([[1.0, -1.0], [-1.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    targets = jnp.array([[0], [1], [0], [1]])
    loss = LogSoftmaxWrapper(fussy)(outputs, targets)
    assert calls == [False, True]
    np.testing.assert_allclose(loss, LogSoftmaxWrapper(lambda x: x)(outputs, targets))


def test_log_softmax_wrapper_grad_under_jit(rng):
    outputs = rng.uniform(-1, 1, (8, 1, 5)).astype(np.float32)
    targets = rng.integers(0, 5, (8, 1))
    wrapper = LogSoftmaxWrapper(AdditiveAngularMargin(0.2, 30.0))
    grad = jax.jit(jax.grad(lambda o: wrapper(o, targets)))(outputs)
    assert grad.shape == outputs.shape and np.isfinite(np.asarray(grad)).all()


# --- contrastive --------------------------------------------------------------------------------


def test_contrastive_rejects_bad_input():
    loss = ContrastiveLoss(0.1)
    with pytest.raises(ValueError, match=r"x \(2, 3, 4\) and y \(2, 3, 5\)"):
        loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 5)), jnp.zeros((1, 2, 3, 5)))
    with pytest.raises(ValueError, match=r"\[N, 2, 3, 4\], got \(5, 2, 4, 4\)"):
        loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4)), jnp.zeros((5, 2, 4, 4)))
    with pytest.raises(ValueError, match="x must be a floating-point array"):
        loss(jnp.zeros((2, 3, 4), jnp.int32), jnp.zeros((2, 3, 4)), jnp.zeros((1, 2, 3, 4)))


def test_contrastive_grad_is_finite_with_masked_negatives(rng):
    x = rng.standard_normal((2, 5, 4)).astype(np.float32)
    y = rng.standard_normal((2, 5, 4)).astype(np.float32)
    negs = np.repeat(y[None], 3, axis=0)  # every negative equals its positive
    negs[0, 0, 0] += 1.0
    grad = jax.jit(jax.grad(lambda a: ContrastiveLoss(0.1)(a, y, negs).loss))(x)
    assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).max() > 0


# --- Laplacian ----------------------------------------------------------------------------------


def test_laplacian_rejects_bad_input():
    lap = Laplacian(3)
    with pytest.raises(ValueError, match=r"\[batch, H, W, 1\] or \[H, W, 1\].*got \(6, 6\)"):
        lap(jnp.zeros((6, 6)))
    with pytest.raises(ValueError, match=r"got \(2, 6, 6, 3\)"):
        lap(jnp.zeros((2, 6, 6, 3)))
    with pytest.raises(ValueError, match=r"at least kernel_size=3, got \(2, 6, 2, 1\)"):
        lap(jnp.zeros((2, 6, 2, 1)))
    with pytest.raises(ValueError, match="data has dtype float16 but the kernel has dtype float32"):
        lap(jnp.zeros((6, 6, 1), jnp.float16))
    with pytest.raises(ValueError, match="data must be a floating-point array"):
        lap(jnp.zeros((6, 6, 1), jnp.int32))
    with pytest.raises(ValueError, match="kernel_size must be a positive int"):
        Laplacian(0)
    assert Laplacian(3, dtype=jnp.float16)(jnp.ones((6, 6, 1), jnp.float16)).dtype == jnp.float16


def test_laplacian_variance_loss_rejects_bad_input():
    data = jnp.zeros((2, 8, 8, 1))
    with pytest.raises(ValueError, match="unknown reduction 'mean'"):
        LaplacianVarianceLoss()(data, reduction="mean")
    with pytest.raises(ValueError, match="length has 3 entries but the batch has 2 items"):
        LaplacianVarianceLoss()(data, jnp.ones(3))
    with pytest.raises(ValueError, match=r"relative length must lie in \[0, 1\]"):
        LaplacianVarianceLoss(len_dim=1)(data, jnp.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="len_dim=0 is the batch axis"):
        LaplacianVarianceLoss(len_dim=0)(data, jnp.ones(2))
    with pytest.raises(ValueError, match="len_dim=4 is out of range"):
        LaplacianVarianceLoss(len_dim=4)(data)
    with pytest.raises(ValueError, match="channel axis of an unbatched input"):
        LaplacianVarianceLoss(len_dim=-1)(jnp.zeros((8, 8, 1)), jnp.ones(1))


def test_laplacian_variance_loss_jit_and_grad(rng):
    data = rng.standard_normal((3, 10, 9, 1)).astype(np.float32)
    loss = LaplacianVarianceLoss(3, len_dim=1)
    length = jnp.array([1.0, 0.5, 0.75])
    value = jax.jit(lambda d, n: loss(d, n))(data, length)
    np.testing.assert_allclose(value, loss(data, length), rtol=1e-6)
    grad = jax.jit(jax.grad(lambda d: loss(d, length)))(data)
    assert np.isfinite(np.asarray(grad)).all()
    # masked-out rows of the Laplacian (item 1: rows 4.. of 8) do not reach the gradient
    # through the rows they would contribute to alone: the last input row of item 1.
    assert np.asarray(grad)[1, -1].tolist() == [[0.0]] * 9
