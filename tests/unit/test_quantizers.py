"""Invariants of jaxlatent.quantizers (no torch): search, straight-through, statistics, DAC VQ."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent import quantizers as q
from jaxlatent.quantizers import dac as dac_q

# --------------------------------------------------------------------------------------------
# search
# --------------------------------------------------------------------------------------------


def _dense_reference(x, codebook, metric="l2", form="dac"):
    """Unchunked float32 distances with the same association as `nearest_code` (numpy)."""
    x = np.asarray(x, np.float32).reshape(-1, codebook.shape[1])
    c = np.asarray(codebook, np.float32)
    if metric == "cosine":
        x = np.asarray(q.l2_normalize(x))
        c = np.asarray(q.l2_normalize(c))
    dot = np.asarray(jnp.dot(jnp.asarray(x), jnp.asarray(c).T, precision=jax.lax.Precision.HIGHEST))
    x2 = np.asarray(jnp.sum(jnp.asarray(x) ** 2, axis=1))[:, None]
    c2 = np.asarray(jnp.sum(jnp.asarray(c) ** 2, axis=1))[None, :]
    d = (x2 - 2 * dot) + c2 if form == "dac" else (c2 + x2) - 2 * dot
    return np.argmin(d, axis=1)


@pytest.mark.parametrize("metric,form", [("l2", "addmm"), ("cosine", "dac")])
def test_search_matches_dense_argmin(rng, metric, form):
    x = rng.standard_normal((3, 37, 6)).astype(np.float32)
    codebook = rng.standard_normal((50, 6)).astype(np.float32)
    idx = q.nearest_code(x, codebook, metric=metric, form=form)
    assert idx.shape == (3, 37) and idx.dtype == jnp.int32
    np.testing.assert_array_equal(
        np.asarray(idx).reshape(-1), _dense_reference(x, codebook, metric, form)
    )


def test_search_is_nearest_in_float64(rng):
    # well-separated problem: the float32 argmin is the true (float64) nearest code
    x = rng.standard_normal((200, 4))
    codebook = rng.standard_normal((30, 4))
    d = ((x[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)
    idx = np.asarray(q.nearest_code(x.astype(np.float32), codebook.astype(np.float32)))
    assert (idx >= 0).all() and (idx < 30).all()
    np.testing.assert_array_equal(idx, d.argmin(1))


@pytest.mark.parametrize(
    "vector_chunk,code_chunk,metric", [(7, 5, "l2"), (64, 13, "cosine"), (1000, 1, "cosine")]
)
def test_chunked_equals_unchunked(rng, metric, vector_chunk, code_chunk):
    x = rng.standard_normal((2, 45, 5)).astype(np.float32)  # 90 vectors: last chunk padded
    codebook = rng.standard_normal((23, 5)).astype(np.float32)
    full = q.nearest_code(x, codebook, metric=metric, vector_chunk=10_000, code_chunk=10_000)
    chunked = q.nearest_code(
        x, codebook, metric=metric, vector_chunk=vector_chunk, code_chunk=code_chunk
    )
    np.testing.assert_array_equal(chunked, full)


@pytest.mark.parametrize("code_chunk,metric", [(2, "l2"), (3, "cosine"), (100, "l2")])
def test_ties_resolve_to_lowest_index(code_chunk, metric):
    # codes 1, 4 and 6 are identical (4 and 6 lie in later chunks for small code_chunk)
    codebook = jnp.array(
        [[5.0, 5.0], [1.0, 0.0], [0.0, 3.0], [-4.0, 0.0], [1.0, 0.0], [0.0, -9.0], [1.0, 0.0]]
    )
    x = jnp.array([[1.0, 0.0], [0.9, 0.1], [2.0, 0.0]])
    idx = q.nearest_code(x, codebook, metric=metric, code_chunk=code_chunk, vector_chunk=2)
    np.testing.assert_array_equal(idx, [1, 1, 1])
    # a vector equidistant from two distinct codes takes the lower index
    x = jnp.array([[0.0, 0.0]])
    cb = jnp.array([[3.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(q.nearest_code(x, cb, code_chunk=code_chunk), [1])


def test_search_low_precision_inputs_are_searched_in_float32(rng):
    x = rng.standard_normal((64, 8)).astype(np.float32)
    codebook = rng.standard_normal((40, 8)).astype(np.float32)
    xb = jnp.asarray(x, jnp.bfloat16)
    expected = q.nearest_code(xb.astype(jnp.float32), codebook)
    np.testing.assert_array_equal(q.nearest_code(xb, codebook), expected)
    cb16 = jnp.asarray(codebook, jnp.float16)
    np.testing.assert_array_equal(
        q.nearest_code(xb, cb16),
        q.nearest_code(xb.astype(jnp.float32), cb16.astype(jnp.float32)),
    )


def test_search_jit_does_not_retrace(rng):
    traces = []

    @jax.jit
    def f(x, codebook):
        traces.append(1)
        return q.nearest_code(x, codebook, code_chunk=8, vector_chunk=16)

    codebook = rng.standard_normal((20, 3)).astype(np.float32)
    for _ in range(3):
        x = rng.standard_normal((2, 30, 3)).astype(np.float32)
        np.testing.assert_array_equal(f(x, codebook), q.nearest_code(x, codebook))
    assert len(traces) == 1


def test_search_under_vmap_and_grad(rng):
    x = rng.standard_normal((4, 10, 3)).astype(np.float32)
    codebook = rng.standard_normal((9, 3)).astype(np.float32)
    batched = jax.vmap(lambda xi: q.nearest_code(xi, codebook, vector_chunk=4))(x)
    np.testing.assert_array_equal(batched, q.nearest_code(x, codebook))

    def loss(cb, xi):  # gradient flows through the gather only
        return jnp.sum(q.lookup_codes(cb, q.nearest_code(xi, cb)) ** 2)

    g = jax.jit(jax.grad(loss))(jnp.asarray(codebook), jnp.asarray(x))
    idx = np.asarray(q.nearest_code(x, codebook)).reshape(-1)
    counts = np.bincount(idx, minlength=9)[:, None]
    np.testing.assert_allclose(g, 2 * codebook * counts, rtol=1e-6)


def test_lookup_codes(rng):
    codebook = rng.standard_normal((6, 2)).astype(np.float32)
    idx = np.array([[0, 5], [2, 2]])
    np.testing.assert_array_equal(q.lookup_codes(codebook, idx), codebook[idx])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"x": np.ones((3, 4), np.int32)}, "x must be a floating-point array"),
        ({"codebook": np.ones((5, 4), np.int32)}, "codebook must be a floating-point array"),
        ({"x": np.ones((3, 5), np.float32)}, r"feature dimension mismatch.*\(3, 5\).*\(5, 4\)"),
        ({"codebook": np.ones((4,), np.float32)}, r"codebook must be 2-D.*\(4,\)"),
        ({"codebook": np.ones((0, 4), np.float32)}, "codebook is empty"),
        ({"metric": "dot"}, "unknown metric 'dot'"),
        ({"form": "cdist"}, "unknown form 'cdist'"),
        ({"code_chunk": 0}, "code_chunk must be a positive int"),
        ({"vector_chunk": 2.5}, "vector_chunk must be a positive int"),
    ],
)
def test_search_bad_input(kwargs, match):
    args = {"x": np.ones((3, 4), np.float32), "codebook": np.ones((5, 4), np.float32)} | kwargs
    with pytest.raises(ValueError, match=match):
        q.nearest_code(**args)


def test_lookup_codes_bad_input():
    codebook = np.ones((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"indices out of range: values in \[0, 5\].*5 codes"):
        q.lookup_codes(codebook, np.array([0, 5]))
    with pytest.raises(ValueError, match=r"indices out of range: values in \[-1, 1\]"):
        q.lookup_codes(codebook, np.array([-1, 1]))
    with pytest.raises(ValueError, match="indices must be an integer array"):
        q.lookup_codes(codebook, np.array([0.0]))
    with pytest.raises(ValueError, match="codebook must be a floating-point array"):
        q.lookup_codes(np.ones((5, 2), np.int32), np.array([0]))


# --------------------------------------------------------------------------------------------
# straight-through
# --------------------------------------------------------------------------------------------


def _codes_for(rng, shape=(4, 6, 3), k=11):
    x = rng.standard_normal(shape).astype(np.float32)
    codebook = rng.standard_normal((k, shape[-1])).astype(np.float32)
    idx = q.nearest_code(x, codebook)
    return jnp.asarray(x), jnp.asarray(codebook), idx, q.lookup_codes(codebook, idx)


def test_straight_through_forward_is_exactly_the_code(rng):
    x, codebook, idx, codes = _codes_for(rng)
    out = jax.jit(q.straight_through)(x, codes)
    np.testing.assert_array_equal(out, codes)
    # decode(indices) == quantized, bit for bit
    np.testing.assert_array_equal(out, q.lookup_codes(codebook, idx))
    # (the stop_gradient form rounds: x + (q - x) != q for some entries)
    assert not np.array_equal(x + jax.lax.stop_gradient(codes - x), codes)


def test_straight_through_gradient_is_identity(rng):
    x, codebook, idx, codes = _codes_for(rng)
    w = jnp.asarray(rng.standard_normal(x.shape).astype(np.float32))

    def loss(x, cb):
        return jnp.sum(w * q.straight_through(x, q.lookup_codes(cb, idx)))

    gx, gcb = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, codebook)
    np.testing.assert_array_equal(gx, w)  # unchanged cotangent
    np.testing.assert_array_equal(gcb, np.zeros_like(codebook))  # nothing to the codebook
    # vmap over the batch axis: per-item gradients are the per-item cotangents
    per_item = jax.vmap(jax.grad(lambda xi, qi, wi: jnp.sum(wi * q.straight_through(xi, qi))))(
        x, codes, w
    )
    np.testing.assert_array_equal(per_item, w)


def test_straight_through_dtypes(rng):
    x, _, _, codes = _codes_for(rng)
    xb = x.astype(jnp.bfloat16)
    out = q.straight_through(xb, codes)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, codes)
    g = jax.grad(lambda x: jnp.sum(q.straight_through(x, codes) * 2.0))(xb)
    assert g.dtype == jnp.bfloat16
    np.testing.assert_array_equal(g, np.full(x.shape, 2.0, np.float32))


def test_straight_through_under_shard_map_and_pmap(rng):
    n = jax.device_count()
    x, _, _, codes = _codes_for(rng, shape=(n, 5, 3))
    w = jnp.asarray(rng.standard_normal(x.shape).astype(np.float32))
    mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
    spec, replicated = jax.sharding.PartitionSpec("data"), jax.sharding.PartitionSpec()

    def local_loss(x, codes, w):
        return jax.lax.psum(jnp.sum(w * q.straight_through(x, codes) ** 2), "data")

    sharded = jax.shard_map(local_loss, mesh=mesh, in_specs=(spec,) * 3, out_specs=replicated)
    with jax.set_mesh(mesh):
        args = [jax.device_put(a, jax.NamedSharding(mesh, spec)) for a in (x, codes, w)]
        g = jax.jit(jax.grad(sharded))(*args)
    np.testing.assert_allclose(g, 2 * w * codes, rtol=1e-6)
    gp = jax.pmap(jax.grad(lambda x, c, w: jnp.sum(w * q.straight_through(x, c))))(x, codes, w)
    np.testing.assert_array_equal(gp, w)


def test_straight_through_bad_input():
    with pytest.raises(ValueError, match=r"same shape, got x \(2, 3\) and q \(1, 3\)"):
        q.straight_through(jnp.ones((2, 3)), jnp.ones((1, 3)))
    with pytest.raises(ValueError, match="q must be a floating-point array"):
        q.straight_through(jnp.ones((2,)), jnp.ones((2,), jnp.int32))
    with pytest.raises(ValueError, match="x must be a floating-point array"):
        q.straight_through(jnp.ones((2,), jnp.int32), jnp.ones((2,)))


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


def test_stats_match_numpy(rng):
    k = 16
    idx = rng.integers(0, 10, (3, 40))  # codes 10..15 never used
    mask = rng.random((3, 40)) < 0.7
    stats = jax.jit(lambda i, m: q.codebook_stats(i, k, mask=m, dead_threshold=3))(idx, mask)
    counts = np.bincount(idx[mask], minlength=k)
    np.testing.assert_array_equal(stats.counts, counts)
    assert stats.counts.dtype == jnp.int32
    p = counts[counts > 0] / counts.sum()
    np.testing.assert_allclose(stats.perplexity, np.exp(-(p * np.log(p)).sum()), rtol=1e-6)
    np.testing.assert_allclose(stats.dead_fraction, (counts < 3).mean())


def test_stats_extremes():
    k = 8
    assert float(q.perplexity(q.code_counts(jnp.full((50,), 3), k))) == 1.0
    np.testing.assert_allclose(q.perplexity(q.code_counts(jnp.arange(32) % k, k)), k, rtol=1e-6)
    assert float(q.perplexity(jnp.zeros((k,)))) == 1.0  # nothing counted
    assert float(q.dead_code_fraction(jnp.zeros((k,), jnp.int32))) == 1.0
    np.testing.assert_allclose(q.perplexity(jnp.array([0.5, 1.5, 0.0, 2.0])), 2.649351, rtol=1e-6)
    counts = q.code_counts(jnp.array([1, 1]), k, mask=jnp.array([False, False]))
    np.testing.assert_array_equal(counts, np.zeros(k))


def test_stats_bad_input():
    with pytest.raises(ValueError, match=r"indices out of range: values in \[0, 4\]"):
        q.code_counts(jnp.array([0, 4]), 4)
    with pytest.raises(ValueError, match="indices must be an integer array"):
        q.code_counts(jnp.array([0.0]), 4)
    with pytest.raises(ValueError, match="codebook_size must be a positive int"):
        q.code_counts(jnp.array([0]), 0)
    with pytest.raises(ValueError, match=r"mask must have the shape of indices \(2,\), got \(3,\)"):
        q.code_counts(jnp.array([0, 1]), 4, mask=jnp.ones(3, bool))
    with pytest.raises(ValueError, match=r"counts must be 1-D .* got shape \(2, 2\)"):
        q.perplexity(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="counts must be a floating-point array"):
        q.dead_code_fraction(jnp.ones((2,), bool))


# --------------------------------------------------------------------------------------------
# DAC VectorQuantize / ResidualVectorQuantize
# --------------------------------------------------------------------------------------------
# (One small model shared by the tests, equal code dimensions so that the quantizers share
# compiled kernels; mixed dimensions are covered by the parity tests.)


@pytest.fixture(scope="module")
def rvq():
    from flax import nnx

    return dac_q.ResidualVectorQuantize(12, 3, 16, 4, quantizer_dropout=0.5, rngs=nnx.Rngs(3))


def _z(rng, batch=4, time=9, dim=12):
    return jnp.asarray(rng.standard_normal((batch, time, dim)).astype(np.float32))


def test_vq_decode_indices_equals_quantized(rng, rvq):
    vq = rvq.quantizers[0]
    out = vq(_z(rng))
    assert out.indices.dtype == jnp.int32 and out.indices.shape == (4, 9)
    assert (np.asarray(out.indices) >= 0).all() and (np.asarray(out.indices) < 16).all()
    # the straight-through value is the code vector itself: decoding the indices is bit-exact
    np.testing.assert_array_equal(out.z_q, vq.out_proj(vq.decode_code(out.indices)))
    np.testing.assert_array_equal(vq.decode_latents(out.z_e)[1], out.indices)
    codes = vq.embed_code(out.indices)
    np.testing.assert_allclose(out.commitment_loss, ((out.z_e - codes) ** 2).mean((1, 2)))
    np.testing.assert_array_equal(out.commitment_loss, out.codebook_loss)


def test_vq_gradients_are_routed(rng, rvq):
    from flax import nnx

    vq = rvq.quantizers[1]
    z = _z(rng)
    w = jnp.asarray(rng.standard_normal(z.shape).astype(np.float32))

    @nnx.jit
    def grads(vq, z, w):
        g_codebook = nnx.grad(lambda m: jnp.sum(m(z).codebook_loss))(vq)
        g_commit = nnx.grad(lambda m: jnp.sum(m(z).commitment_loss))(vq)
        out = vq(z)
        codes = vq.decode_code(out.indices)
        # straight-through: d z_q / d z_e is out_proj's Jacobian (identity through the codes)
        g_ste = jax.grad(lambda ze: jnp.sum(w * vq.out_proj(q.straight_through(ze, codes))))
        return g_codebook, g_commit, g_ste(out.z_e), jax.vjp(vq.out_proj, codes)[1](w)[0]

    g_codebook, g_commit, g_ste, g_out_proj = grads(vq, z, w)
    assert not np.any(g_codebook["in_proj"]["weight_v"][...])  # codebook loss: codebook only
    assert np.any(g_codebook["codebook"][...])
    assert not np.any(g_commit["codebook"][...])  # commitment loss: input projection only
    assert np.any(g_commit["in_proj"]["weight_v"][...])
    np.testing.assert_array_equal(g_ste, g_out_proj)


def test_rvq_eval_truncation_and_decoding(rng, rvq):
    z = _z(rng)
    full = rvq(z)
    assert full.codes.shape == (4, 3, 9) and full.codes.dtype == jnp.int32
    assert full.latents.shape == (4, 9, 12)
    np.testing.assert_array_equal(rvq.from_codes(full.codes).z, full.z)
    decoded = rvq.from_latents(full.latents)
    np.testing.assert_array_equal(decoded.codes, full.codes)
    np.testing.assert_array_equal(decoded.z_p, rvq.from_codes(full.codes).z_p)
    for n in (1, 2):
        part = rvq(z, n_quantizers=n)
        np.testing.assert_array_equal(part.codes, full.codes[:, :n])
        np.testing.assert_array_equal(rvq.from_codes(part.codes).z, part.z)
    # from_latents uses the quantizers whose dimensions fit: 11 channels -> 2 codebooks
    assert rvq.from_latents(full.latents[..., :11]).codes.shape == (4, 2, 9)


def test_rvq_train_dropout_semantics(rng, rvq, key):
    from flax import nnx

    z = _z(rng, batch=5)
    ev = rvq(z)
    tr = rvq(z, n_quantizers=1, train=True, key=key)  # n_quantizers ignored in training
    assert tr.codes.shape == (5, 3, 9)
    np.testing.assert_array_equal(tr.codes, ev.codes)  # every quantizer runs, unmasked residual
    np.testing.assert_array_equal(tr.latents, ev.latents)
    depths = np.asarray(dac_q.dropout_depths(key, 5, 3, 0.5))
    assert (depths[2:] == 4).all() and ((depths[:2] >= 1) & (depths[:2] <= 3)).all()
    assert np.array_equal(dac_q.dropout_depths(key, 5, 3, 0.5), depths)  # deterministic
    # item b is the sum of the outputs of its first depths[b] quantizers
    residual, expected_z, expected_loss = z, 0.0, 0.0
    for i in range(3):
        out = rvq.quantizers[i](residual)
        keep = jnp.asarray(i < depths, jnp.float32)
        expected_z = expected_z + out.z_q * keep[:, None, None]
        expected_loss += float(jnp.mean(out.commitment_loss * keep))  # masked batch mean
        residual = residual - out.z_q  # unmasked residual
    np.testing.assert_array_equal(tr.z, expected_z)
    np.testing.assert_allclose(tr.commitment_loss, expected_loss, rtol=1e-6)
    # without dropout (or without any dropped item), training equals evaluation
    no_drop = nnx.clone(rvq)
    no_drop.quantizer_dropout = 0.0
    np.testing.assert_array_equal(no_drop(z, train=True).z, ev.z)
    # the first int(batch * p) items are dropped: int(5 * 0.3) == 1, int(5 * 1.0) == 5
    np.testing.assert_array_equal(dac_q.dropout_depths(key, 5, 3, 0.3), [depths[0], 4, 4, 4, 4])
    np.testing.assert_array_equal(dac_q.dropout_depths(key, 5, 3, True)[:2], depths[:2])
    one_item = rvq(z[:1], train=True)  # int(1 * 0.5) == 0: no key needed
    np.testing.assert_array_equal(one_item.codes, ev.codes[:1])


def test_rvq_jit_does_not_retrace(rng, rvq, key):
    from flax import nnx

    traces = []

    @nnx.jit(static_argnames=("train",))
    def step(model, z, key, train):
        traces.append(1)
        return model(z, train=train, key=key)

    for i in range(3):
        z, k = _z(rng), jax.random.fold_in(key, i)
        out = step(rvq, z, k, True)
    assert len(traces) == 1
    eager = rvq(z, train=True, key=k)
    np.testing.assert_array_equal(out.codes, eager.codes)
    np.testing.assert_allclose(out.z, eager.z, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m, z: m(z, n_quantizers=4), r"n_quantizers=4 must lie in \[1, n_codebooks=3\]"),
        (lambda m, z: m(z, n_quantizers=0), r"n_quantizers=0 must lie in \[1, n_codebooks=3\]"),
        (lambda m, z: m(z[..., :5]), r"z must be \[batch, time, 12\].*\(4, 9, 5\)"),
        (lambda m, z: m(z.astype(jnp.int32)), "z must be a floating-point array"),
        (lambda m, z: m(z, train=True), "key is required in training"),
        (lambda m, z: m.from_codes(jnp.zeros((2, 4, 3), jnp.int32)), r"1 <= n <= n_codebooks"),
        (lambda m, z: m.from_codes(jnp.full((2, 1, 3), 16)), r"codes out of range.*16 codes"),
        (lambda m, z: m.from_latents(z[..., :3]), "fewer than the first codebook's dimension 4"),
        (lambda m, z: m.quantizers[0].decode_latents(z), r"latents must be \[batch, time, 4\]"),
    ],
)
def test_rvq_bad_input(rng, rvq, call, match):
    with pytest.raises(ValueError, match=match):
        call(rvq, _z(rng))


def test_rvq_bad_construction():
    from flax import nnx

    with pytest.raises(ValueError, match="codebook_dim has 2 entries but n_codebooks=3"):
        dac_q.ResidualVectorQuantize(8, 3, 4, (2, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"quantizer_dropout must lie in \[0, 1\], got 1.5"):
        dac_q.ResidualVectorQuantize(8, 3, 4, 2, quantizer_dropout=1.5, rngs=nnx.Rngs(0))
