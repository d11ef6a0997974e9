"""Sequence losses without the reference: bad input, and independent brute-force oracles.

The oracles enumerate every alignment in float64 numpy (not SpeechBrain's or PyTorch's
algorithm), for tiny sizes:

* CTC: all ``classes**time`` frame paths, collapsed and compared with the target;
* RNN-T: all interleavings of ``T_b`` blanks and ``U_b`` labels ending with a blank.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent.losses import ce_kd, ctc_loss, ctc_loss_kd, nll_loss_kd, transducer_loss
from tests.tolerances import assert_close

# ---------------------------------------------------------------------------------------
# oracles
# ---------------------------------------------------------------------------------------


def _logsumexp(values) -> float:
    values = np.asarray(values, np.float64)
    if values.size == 0 or np.all(values == -np.inf):
        return -np.inf
    m = values.max()
    return float(m + np.log(np.exp(values - m).sum()))


def _ctc_oracle_nll(lp: np.ndarray, target: list[int], blank: int) -> float:
    """-log sum over all frame paths that collapse to `target`; lp is ``[time, classes]``."""
    time, classes = lp.shape
    scores = []
    for path in itertools.product(range(classes), repeat=time):
        collapsed = [k for i, k in enumerate(path) if k != blank and (i == 0 or k != path[i - 1])]
        if collapsed == list(target):
            scores.append(sum(lp[t, k] for t, k in enumerate(path)))
    return -_logsumexp(scores)


def _rnnt_oracle_nll(lp: np.ndarray, labels: list[int], blank: int) -> float:
    """-log P over all alignments; lp is ``[T, U+1, classes]`` for exactly these lengths."""
    time, n_lab = lp.shape[0], len(labels)
    scores = []
    for emit_steps in itertools.combinations(range(time + n_lab - 1), n_lab):
        t = u = 0
        score = 0.0
        for step in range(time + n_lab - 1):
            if step in emit_steps:
                score += lp[t, u, labels[u]]
                u += 1
            else:
                score += lp[t, u, blank]
                t += 1
        scores.append(score + lp[t, u, blank])  # the final blank from (T-1, U)
    return -_logsumexp(scores)


def _log_softmax64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _central_diff(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(x, np.float64)
    for idx in np.ndindex(x.shape):
        xp, xm = x.astype(np.float64), x.astype(np.float64)
        xp[idx] += h
        xm[idx] -= h
        grad[idx] = (f(xp) - f(xm)) / (2 * h)
    return grad


# ---------------------------------------------------------------------------------------
# transducer against the oracle
# ---------------------------------------------------------------------------------------

T_CASE = dict(
    targets=np.array([[1, 3], [2, 2]], np.int32),
    input_lens=np.array([1.0, 2 / 3], np.float32),  # T_b = 3, 2
    target_lens=np.array([1.0, 0.5], np.float32),  # U_b = 2, 1
)


def _t_case(rng):
    logits = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    return logits, T_CASE["targets"], T_CASE["input_lens"], T_CASE["target_lens"]


def _rnnt_oracle_unnormalised(logits64: np.ndarray) -> np.ndarray:
    """``-log P_b`` for each utterance of :data:`T_CASE` from float64 logits."""
    out = []
    for b, (t_b, u_b) in enumerate([(3, 2), (2, 1)]):
        lp = _log_softmax64(logits64[b, :t_b, : u_b + 1])
        out.append(_rnnt_oracle_nll(lp, list(T_CASE["targets"][b, :u_b]), 0))
    return np.array(out)


def _jit_value_and_vjp(reduction):
    def f(x, tg, il, tl):
        out, pull = jax.vjp(lambda a: transducer_loss(a, tg, il, tl, 0, reduction), x)
        return out, pull(jnp.ones_like(out))[0]

    return jax.jit(f)


def test_transducer_value_is_oracle_nll_over_frames(rng):
    logits, *args = _t_case(rng)
    out, _ = _jit_value_and_vjp("none")(logits, *args)
    expected = _rnnt_oracle_unnormalised(logits.astype(np.float64)) / np.array([3.0, 2.0])
    assert_close(out, expected, "seq_transducer_oracle")


def test_transducer_gradient_is_unnormalised_oracle_gradient(rng):
    """grad = d(-log P_b)/d logits = T_b × d(value_b)/d logits (finite differences)."""
    logits, *args = _t_case(rng)
    _, grad = _jit_value_and_vjp("none")(logits, *args)
    frames = np.array([3.0, 2.0])
    normalised = _central_diff(
        lambda x: np.sum(_rnnt_oracle_unnormalised(x) / frames), logits
    )  # gradient of sum_b value_b; item b only depends on logits[b]
    expected = normalised * frames[:, None, None, None]
    assert_close(grad, expected, "seq_transducer_oracle")


def test_transducer_mean_gradient_is_not_divided_by_batch(rng):
    logits, *args = _t_case(rng)
    v_mean, g_mean = _jit_value_and_vjp("mean")(logits, *args)
    v_sum, g_sum = _jit_value_and_vjp("sum")(logits, *args)
    np.testing.assert_allclose(v_mean, v_sum / 2, rtol=1e-6)
    np.testing.assert_array_equal(g_mean, g_sum)  # SpeechBrain's kernel: grad_output only


def test_transducer_upstream_value():
    """SpeechBrain's upstream `test_transducer_loss`: 2.2478 ± 1e-4 (float64 oracle: 2.24783)."""
    logits = np.array(
        [
            [
                [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1], [0.1, 0.1, 0.2, 0.8, 0.1]],
                [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.1, 0.1], [0.7, 0.1, 0.2, 0.1, 0.1]],
            ]
        ],
        np.float32,
    )
    out = transducer_loss(logits, np.array([[1, 2]], np.int32), jnp.ones(1), jnp.ones(1), 0)
    assert abs(float(out) - 2.2478) < 1e-4
    oracle = _rnnt_oracle_nll(_log_softmax64(logits[0]), [1, 2], 0) / 2
    assert_close(out, oracle, "seq_transducer_oracle")


# ---------------------------------------------------------------------------------------
# CTC against the oracle
# ---------------------------------------------------------------------------------------


def test_ctc_value_and_torch_gradient_convention_vs_oracle(rng):
    """Value = oracle; gradient = exp(log_probs) + d(oracle)/d log_probs on valid frames."""
    lp = np.asarray(jax.nn.log_softmax(rng.normal(size=(3, 5, 3)).astype(np.float32)))
    targets = np.array([[1, 2], [1, 1], [2, 0]], np.int32)
    input_lens = np.array([1.0, 0.8, 0.4], np.float32)  # 5, 4, 2 frames
    target_lens = np.array([1.0, 1.0, 0.5], np.float32)  # 2, 2, 1 labels
    frames, n_lab = [5, 4, 2], [2, 2, 1]

    def oracle(x):
        return np.array(
            [_ctc_oracle_nll(x[b, : frames[b]], list(targets[b, : n_lab[b]]), 0) for b in range(3)]
        )

    def f(x):
        out, pull = jax.vjp(lambda a: ctc_loss(a, targets, input_lens, target_lens, 0, "none"), x)
        return out, pull(jnp.ones_like(out))[0]

    out, grad = jax.jit(f)(lp)
    assert_close(out, oracle(lp.astype(np.float64)), "seq_transducer_oracle")
    valid = (np.arange(5)[None, :] < np.array(frames)[:, None])[..., None]
    expected = np.where(valid, np.exp(lp) + _central_diff(lambda x: oracle(x).sum(), lp), 0)
    assert_close(grad, expected, "seq_transducer_oracle")


def test_ctc_infeasible_is_zero_with_zero_gradient():
    lp = jnp.log(jnp.full((1, 2, 3), 1 / 3))
    targets = jnp.array([[1, 1]])  # needs 3 frames
    loss, grad = jax.value_and_grad(lambda x: ctc_loss(x, targets, jnp.ones(1), jnp.ones(1), 0))(lp)
    assert float(loss) == 0.0
    assert np.all(np.asarray(grad) == 0)


def test_ctc_loss_kd_is_jittable_and_differentiable():
    """The doctest case (SpeechBrain gives 0.8432) under jit, and a finite gradient."""
    student = jax.nn.log_softmax(jnp.zeros((1, 3, 3)))
    teacher = jax.nn.one_hot(jnp.array([[1, 0, 2]]), 3)

    def f(lp, tch, lens):
        return jax.value_and_grad(lambda a: ctc_loss_kd(a, tch, lens, 0))(lp)

    loss, grad = jax.jit(f)(student, teacher, jnp.ones(1))
    assert round(float(loss), 4) == 0.8432
    assert np.all(np.isfinite(np.asarray(grad))) and np.any(np.asarray(grad) != 0)


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------

LP = jnp.zeros((2, 5, 4))
TG = jnp.ones((2, 3), jnp.int32)
ONES = jnp.ones(2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(log_probs=jnp.zeros((2, 5, 4), jnp.int32)), "log_probs must be a floating"),
        (dict(log_probs=jnp.zeros((2, 5))), r"log_probs must be 3-D .*\(2, 5\)"),
        (dict(log_probs=jnp.zeros((2, 0, 4))), "must not be empty"),
        (dict(targets=jnp.ones((2, 3))), "targets must be a 2-D integer"),
        (dict(targets=jnp.ones((3,), jnp.int32)), r"targets must be a 2-D integer .*\(3,\)"),
        (dict(targets=jnp.ones((3, 3), jnp.int32)), r"targets batch 3 != log_probs batch 2"),
        (dict(targets=jnp.full((2, 3), 4, jnp.int32)), r"targets must lie in \[0, 4\)"),
        (dict(input_lens=jnp.array([1.0, 1.5])), "input_lens must lie in"),
        (dict(target_lens=jnp.array([1.0, -0.5])), "target_lens must lie in"),
        (dict(input_lens=jnp.ones(3)), "input_lens has 3 entries"),
        (dict(target_lens=jnp.ones((2, 1))), r"target_lens must be 1-D .*\(2, 1\)"),
        (dict(blank_index=4), "blank_index 4 is outside"),
        (dict(reduction="batchsum"), "unknown reduction 'batchsum'"),
    ],
)
def test_ctc_loss_bad_input(kwargs, match):
    args = dict(log_probs=LP, targets=TG, input_lens=ONES, target_lens=ONES, blank_index=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ctc_loss(**args)


def test_ctc_loss_ignores_labels_beyond_target_length():
    # padding with an out-of-range value is fine: only the first S_b labels are read
    tg = jnp.array([[1, 2, -1], [3, -1, -1]], jnp.int32)
    out = ctc_loss(LP, tg, ONES, jnp.array([2 / 3, 1 / 3]), 0, "none")
    assert np.all(np.isfinite(np.asarray(out)))


LG = jnp.zeros((2, 5, 4, 6))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(logits=jnp.zeros((2, 5, 4, 6), jnp.int32)), "logits must be a floating"),
        (dict(logits=jnp.zeros((2, 5, 6))), r"logits must be 4-D .*\(2, 5, 6\)"),
        (dict(logits=jnp.zeros((2, 5, 3, 6))), r"logits \(2, 5, 3, 6\) must be .* \(2, 3\)"),
        (dict(targets=jnp.ones((3, 3), jnp.int32)), r"logits \(2, 5, 4, 6\) .* \(3, 3\)"),
        (dict(targets=jnp.ones((2, 3))), "targets must be a 2-D integer"),
        (dict(targets=jnp.full((2, 3), 6, jnp.int32)), r"targets must lie in \[0, 6\)"),
        (dict(input_lens=jnp.array([2.0, 1.0])), "input_lens must lie in"),
        (dict(target_lens=jnp.ones(1)), "target_lens has 1 entries"),
        (dict(blank_index=-1), "blank_index -1 is outside"),
        (dict(blank_index=1.0), "blank_index must be a Python int"),
        (dict(reduction="batchmean"), "Unexpected reduction 'batchmean'"),
        (dict(reduction="batch"), "Unexpected reduction 'batch'"),
    ],
)
def test_transducer_loss_bad_input(kwargs, match):
    args = dict(logits=LG, targets=TG, input_lens=ONES, target_lens=ONES, blank_index=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        transducer_loss(**args)


@pytest.mark.parametrize(
    ("inp", "target", "match"),
    [
        (jnp.zeros(4), jnp.zeros(4), "same rank >= 2"),
        (jnp.zeros((2, 4)), jnp.zeros((2, 3, 4)), "same rank >= 2"),
        (jnp.zeros((2, 4)), jnp.zeros((2, 3)), r"\(2, 4\) and target \(2, 3\) do not broadcast"),
        (jnp.zeros((2, 4), jnp.int32), jnp.zeros((2, 4)), "inp must be a floating"),
    ],
)
def test_ce_kd_bad_input(inp, target, match):
    with pytest.raises(ValueError, match=match):
        ce_kd(inp, target)


@pytest.mark.parametrize(
    ("probs", "targets", "lens", "match"),
    [
        (jnp.zeros((2, 3, 4)), jnp.zeros((2, 4, 4)), ONES, r"\(2, 3, 4\) and \(2, 4, 4\)"),
        (jnp.zeros((2, 3)), jnp.zeros((2, 3)), ONES, r"same shape, got \(2, 3\)"),
        (jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4), jnp.int32), ONES, "targets must be a float"),
        (jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4)), jnp.array([1.0, 1.1]), "must lie in"),
        (jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4)), jnp.ones(3), "has 3 entries"),
    ],
)
def test_nll_loss_kd_bad_input(probs, targets, lens, match):
    with pytest.raises(ValueError, match=match):
        nll_loss_kd(probs, targets, lens)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(targets=jnp.zeros((2, 5, 5))), r"targets \(2, 5, 5\) must be .* \(2, 5, 4\)"),
        (dict(targets=jnp.zeros((3, 5, 4))), r"targets \(3, 5, 4\)"),
        (dict(targets=jnp.zeros((2, 5))), r"targets must be 3-D .*\(2, 5\)"),
        (dict(log_probs=jnp.zeros((2, 5, 4), jnp.float16).astype(int)), "floating"),
        (dict(input_lens=jnp.array([0.5, -0.1])), "input_lens must lie in"),
        (dict(blank_index=7), "blank_index 7 is outside"),
    ],
)
def test_ctc_loss_kd_bad_input(kwargs, match):
    args = dict(log_probs=LP, targets=jnp.zeros((2, 5, 4)), input_lens=ONES, blank_index=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ctc_loss_kd(**args)
