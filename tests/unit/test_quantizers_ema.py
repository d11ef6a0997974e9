"""Invariants of VectorQuantizer (no torch): EMA convergence, decode == quantized, eval freezes
state, gradient vs EMA codebooks by config, k-means init, dead-code restarts, jit without
retracing, straight-through gradients, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxlatent import quantizers as q

D = 3
CENTRES = np.array(
    [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [-4.0, -4.0, -4.0]], np.float32
)


def _mixture(rng, n=512, noise=0.1):
    labels = rng.integers(0, len(CENTRES), n)
    return (CENTRES[labels] + noise * rng.standard_normal((n, D))).astype(np.float32), labels


def _state_leaves(vq):
    return [np.asarray(v) for v in jax.tree.leaves(nnx.state(vq))]


@nnx.jit(static_argnames="train")
def _call(vq, x, key, train=True):
    return vq(x, train=train, key=key)


def test_ema_converges_to_cluster_means(rng):
    # codes start up to 1.2 away from the cluster centres (nearer their own centre than any
    # other); EMA steps on fresh batches move each to its centre. The batch means scatter by
    # noise/sqrt(128) ~ 0.01, so 0.05 is a statistical bound (a wrong rule is off by O(1)).
    cfg = q.VectorQuantizerConfig.vqvae_ema(4, D, decay=0.8)
    vq = q.VectorQuantizer(cfg, rngs=nnx.Rngs(0))
    start = CENTRES + rng.uniform(-0.7, 0.7, CENTRES.shape).astype(np.float32)
    vq.codebook[...] = jnp.asarray(start)
    vq.embed_sum[...] = jnp.asarray(start)
    for _ in range(25):
        out = _call(vq, jnp.asarray(_mixture(rng)[0]), None)
    codes = np.asarray(vq.codebook[...])
    dist = np.linalg.norm(codes[:, None, :] - CENTRES[None], axis=-1)
    np.testing.assert_array_equal(dist.argmin(1), [0, 1, 2, 3])
    assert dist.min(1).max() < 0.05 and np.abs(start - CENTRES).max() > 0.5
    assert float(out.perplexity) > 3.5  # four codes used about equally
    # the invariant of the EMA state: codes = embed_sum / smoothed cluster sizes
    np.testing.assert_array_equal(
        codes,
        q.codebook_ops.codes_from_ema(vq.embed_sum[...], vq.cluster_size[...], 1e-5, cosine=False),
    )


def test_ema_fixed_point_is_the_laplace_smoothed_batch_mean(rng):
    # repeating one batch: the EMA statistics converge (geometrically, 0.8^100 ~ 2e-10) to
    # its counts and sums, so each code is sum / ((n + eps) / (N + K eps) * N)
    x, _ = _mixture(rng, 512)
    cfg = q.VectorQuantizerConfig.vqvae_ema(4, D, decay=0.8)
    vq = q.VectorQuantizer(cfg, rngs=nnx.Rngs(0))
    vq.codebook[...] = jnp.asarray(CENTRES * 0.9)
    vq.embed_sum[...] = jnp.asarray(CENTRES * 0.9)
    for _ in range(100):
        out = _call(vq, jnp.asarray(x), None)
    idx = np.asarray(out.indices)
    counts = np.bincount(idx, minlength=4).astype(np.float64)
    sums = np.stack([x[idx == k].astype(np.float64).sum(0) for k in range(4)])
    smoothed = (counts + 1e-5) / (counts.sum() + 4e-5) * counts.sum()
    np.testing.assert_allclose(vq.cluster_size[...], counts, rtol=1e-6)
    np.testing.assert_allclose(vq.codebook[...], sums / smoothed[:, None], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("update,metric", [("gradient", "cosine"), ("ema", "l2")])
def test_decode_indices_equals_quantized(rng, metric, update):
    cfg = q.VectorQuantizerConfig(16, D, codebook_update=update, metric=metric)
    vq = q.VectorQuantizer(cfg, rngs=nnx.Rngs(0))
    vq.codebook[...] = jnp.asarray(rng.standard_normal((16, D)).astype(np.float32))
    x = jnp.asarray(rng.standard_normal((2, 7, D)).astype(np.float32))
    out = vq(x)
    assert out.quantized.shape == x.shape and out.indices.shape == (2, 7)
    np.testing.assert_array_equal(vq.decode(out.indices), out.quantized)
    np.testing.assert_array_equal(vq.encode(x), out.indices)
    if metric == "cosine":
        np.testing.assert_allclose(np.linalg.norm(out.quantized, axis=-1), 1.0, rtol=1e-6)
    # bfloat16 input: searched in float32, output cast to the input dtype
    out16 = vq(x.astype(jnp.bfloat16))
    assert out16.quantized.dtype == jnp.bfloat16
    np.testing.assert_array_equal(out16.quantized, vq.decode(out16.indices).astype(jnp.bfloat16))


def test_eval_freezes_state_kmeans_runs_once_and_jit_does_not_retrace(rng):
    cfg = q.VectorQuantizerConfig.soundstream(4, D, kmeans_iters=4, decay=0.0)
    vq = q.VectorQuantizer(cfg, rngs=nnx.Rngs(0))
    x, _ = _mixture(rng, 256)
    traces = []

    @nnx.jit
    def train_step(vq, x, key):
        traces.append(1)
        return vq(x, train=True, key=key)

    before = _state_leaves(vq)
    for _ in range(2):
        vq(jnp.asarray(x))  # evaluation
    for a, b in zip(before, _state_leaves(vq), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not bool(vq.initialized[...])  # evaluation never runs the k-means init
    train_step(vq, jnp.asarray(x), jax.random.key(0))
    assert bool(vq.initialized[...])
    changed = [not np.array_equal(a, b) for a, b in zip(before, _state_leaves(vq), strict=True)]
    assert all(changed)  # codebook, cluster_size, embed_sum and the flag
    # decay 0: the codes are the smoothed means of that batch's assignment to the k-means
    # codes, which found the four clusters (key 0 happens to seed one code per cluster)
    first = np.asarray(vq.codebook[...])
    dist = np.linalg.norm(first[:, None] - CENTRES[None], axis=-1)
    assert sorted(dist.argmin(1)) == [0, 1, 2, 3]
    # a shifted batch: no second k-means (which would give each shifted cluster its own
    # code); the search uses the codes of step 1
    far = x + 100.0
    out = train_step(vq, jnp.asarray(far), jax.random.key(1))
    assert bool(vq.initialized[...]) and len(traces) == 1  # and no retrace
    expected = np.linalg.norm(far[:, None] - first[None], axis=-1).argmin(1)
    np.testing.assert_array_equal(out.indices, expected)
    assert int((np.asarray(out.counts) > 0).sum()) < 4


def test_dead_codes_are_revived(rng):
    # code 0 at the origin takes every vector, codes 1..7 sit far away: without restarts they
    # stay dead; with restarts they are re-seeded from the batch and get used
    far = np.full((8, D), 100.0, np.float32)
    far[0] = 0.0

    def run(threshold):
        cfg = q.VectorQuantizerConfig.vqvae_ema(
            8, D, decay=0.5, dead_code_threshold=threshold, reset_cluster_size=1.0
        )
        vq = q.VectorQuantizer(cfg, rngs=nnx.Rngs(0))
        vq.codebook[...] = jnp.asarray(far)
        vq.embed_sum[...] = jnp.asarray(far)
        for key in jax.random.split(jax.random.key(0), 4):
            out = _call(vq, jnp.asarray(_mixture(rng, 256)[0]), key)
        return vq, out

    vq_off, out_off = run(0.0)
    vq_on, out_on = run(0.6)
    np.testing.assert_array_equal(np.asarray(out_off.counts)[1:], 0)
    assert int((np.asarray(out_on.counts) > 0).sum()) >= 4
    assert float(out_on.perplexity) > float(out_off.perplexity) + 1.0
    dead_off = q.dead_code_fraction(vq_off.cluster_size[...], 0.6)
    dead_on = q.dead_code_fraction(vq_on.cluster_size[...], 0.6)
    assert float(dead_off) == 7 / 8 and float(dead_on) < 0.5


def test_restart_rule_replaces_a_random_subset_when_rows_are_scarce():
    # 3 batch rows, 5 dead codes: exactly 3 of them get the 3 distinct rows, the rest wait
    x = jnp.arange(9.0).reshape(3, 3)
    codebook = jnp.full((6, 3), -1.0)
    cluster = jnp.array([0.0, 5.0, 0.0, 0.0, 0.0, 0.0])
    cb, cs, es = q.restart_dead_codes(
        jax.random.key(0), x, codebook, cluster, codebook * 2, threshold=1.0, reset_size=2.0
    )
    replaced = np.asarray(cs) == 2.0
    assert replaced.sum() == 3 and not replaced[1]
    rows = {tuple(r) for r in np.asarray(cb)[replaced]}
    assert rows == {tuple(r) for r in np.asarray(x)}
    np.testing.assert_array_equal(np.asarray(es)[replaced], np.asarray(cb)[replaced] * 2.0)
    np.testing.assert_array_equal(np.asarray(cb)[~replaced], -1.0)


class TinyVQVAE(nnx.Module):
    """Linear encoder → VectorQuantizer → linear decoder (the config picks the codebook)."""

    def __init__(self, config: q.VectorQuantizerConfig, *, rngs: nnx.Rngs):
        self.enc = nnx.Linear(5, config.dim, rngs=rngs)
        self.vq = q.VectorQuantizer(config, rngs=rngs)
        self.dec = nnx.Linear(config.dim, 5, rngs=rngs)

    def __call__(self, x, *, train=False):
        out = self.vq(self.enc(x), train=train)
        return jnp.mean(jnp.square(self.dec(out.quantized) - x)) + out.loss, out


@pytest.mark.parametrize("update", ["gradient", "ema"])
def test_vqvae_switches_codebook_learning_by_config(rng, update):
    cfg = q.VectorQuantizerConfig(8, D, codebook_update=update, beta=0.25, decay=0.9)
    model = TinyVQVAE(cfg, rngs=nnx.Rngs(0))
    model.vq.codebook[...] = jnp.asarray(rng.standard_normal((8, D)).astype(np.float32))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    traces = []

    @nnx.jit
    def train_step(model, optimizer, x):
        traces.append(1)
        grad_fn = nnx.value_and_grad(lambda m: m(x, train=True), has_aux=True)
        (loss, out), grads = grad_fn(model)
        optimizer.update(model, grads)
        return loss, out, grads

    params = nnx.state(model, nnx.Param)
    in_params = any(v is model.vq.codebook for v in jax.tree.leaves(params, is_leaf=_is_var))
    assert in_params == (update == "gradient")
    assert isinstance(model.vq.codebook, nnx.Param if update == "gradient" else q.CodebookEMA)
    cb0 = np.asarray(model.vq.codebook[...])
    for _ in range(3):
        x = jnp.asarray(rng.standard_normal((4, 6, 5)).astype(np.float32))
        loss, out, grads = train_step(model, optimizer, x)
    assert len(traces) == 1  # no retrace across steps
    assert np.isfinite(float(loss))
    assert not np.array_equal(cb0, np.asarray(model.vq.codebook[...]))  # it learned either way
    if update == "gradient":
        assert float(out.codebook_loss) > 0
        g = np.asarray(grads["vq"]["codebook"][...])
        used = np.bincount(np.asarray(out.indices).ravel(), minlength=8) > 0
        assert (np.abs(g[used]).sum(1) > 0).all() and (g[~used] == 0).all()
    else:
        assert float(out.codebook_loss) == 0.0
        assert "vq" not in grads  # the optimizer never sees EMA state (the VQ has no Param)
    # the encoder learns through the straight-through estimator in both modes
    assert np.abs(np.asarray(grads["enc"]["kernel"][...])).sum() > 0


def _is_var(x):
    return isinstance(x, nnx.Variable)


@pytest.mark.parametrize("update", ["gradient", "ema"])
def test_straight_through_and_commitment_gradients(rng, update):
    cfg = q.VectorQuantizerConfig(6, D, codebook_update=update, beta=0.5)
    vq = q.VectorQuantizer(cfg, rngs=nnx.Rngs(0))
    vq.codebook[...] = jnp.asarray(rng.standard_normal((6, D)).astype(np.float32))
    x = jnp.asarray(rng.standard_normal((10, D)).astype(np.float32))
    w = jnp.asarray(rng.standard_normal((10, D)).astype(np.float32))
    g_st, g_c = jax.jit(
        lambda x: (
            jax.grad(lambda x: jnp.sum(w * vq(x).quantized))(x),
            jax.grad(lambda x: vq(x).loss)(x),
        )
    )(x)
    np.testing.assert_array_equal(g_st, w)  # identity straight-through gradient
    out = vq(x)
    expected = 0.5 * 2.0 * (x - out.quantized) / x.size
    np.testing.assert_allclose(g_c, expected, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_bad_input_raises_value_error_naming_shapes():
    vq = q.VectorQuantizer(q.VectorQuantizerConfig(8, 4), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"\(2, 5, 3\).*\(8, 4\)"):
        vq(jnp.ones((2, 5, 3)))
    with pytest.raises(ValueError, match=r"\(2, 5, 3\).*\(8, 4\)"):
        vq.encode(jnp.ones((2, 5, 3)))
    with pytest.raises(ValueError, match=r"floating-point.*int32"):
        vq(jnp.ones((2, 5, 4), jnp.int32))
    with pytest.raises(ValueError, match="out of range"):
        vq.decode(jnp.array([0, 8]))
    with pytest.raises(ValueError, match="integer"):
        vq.decode(jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="empty batch"):
        vq(jnp.ones((0, 4)), train=True)
    restarting = q.VectorQuantizer(
        q.VectorQuantizerConfig(8, 4, dead_code_threshold=1.0), rngs=nnx.Rngs(0)
    )
    with pytest.raises(ValueError, match="key is required"):
        restarting(jnp.ones((3, 4)), train=True)
    restarting(jnp.ones((3, 4)))  # evaluation needs no key


@pytest.mark.parametrize(
    "changes,match",
    [
        (dict(codebook_update="adam"), "codebook_update"),
        (dict(metric="dot"), "metric"),
        (dict(decay=1.0), "decay"),
        (dict(eps=0.0), "eps"),
        (dict(beta=-1.0), "beta"),
        (dict(kmeans_iters=0), "kmeans_iters"),
        (dict(dead_code_threshold=-1.0), "dead_code_threshold"),
        (dict(codebook_size=0), "codebook_size"),
    ],
)
def test_bad_config(changes, match):
    with pytest.raises(ValueError, match=match):
        q.VectorQuantizerConfig(**(dict(codebook_size=8, dim=4) | changes))


def test_config_presets_are_frozen_and_hashable():
    cfg = q.VectorQuantizerConfig.soundstream()
    assert (cfg.kmeans_init, cfg.dead_code_threshold, cfg.reset_size) == (True, 2.0, 2.0)
    assert q.VectorQuantizerConfig.vqvae().codebook_update == "gradient"
    assert q.VectorQuantizerConfig.lucidrains(16, 4).decay == 0.8
    assert hash(cfg) == hash(q.VectorQuantizerConfig.soundstream())
    with pytest.raises(AttributeError):
        cfg.decay = 0.5  # type: ignore[misc]
    with pytest.raises(ValueError, match="config"):
        q.VectorQuantizer({"codebook_size": 8}, rngs=nnx.Rngs(0))
