"""ResidualVQ / GroupedResidualVQ without torch: bad arguments, keys, quantizer dropout leaves
the dropped layers' state alone, decoding, shared codebooks, gradient codebooks with k-means
init and dead-code restarts (parity: tests/parity/test_quantizers_residual_vq.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import quantizers as q


def test_bad_arguments():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match=r"codebook_size=\(8, 8\) must have num_quantizers=3"):
        q.ResidualVQ(dim=4, num_quantizers=3, codebook_size=(8, 8), rngs=rngs)
    with pytest.raises(ValueError, match=r"shared_codebook=True needs one codebook size"):
        q.ResidualVQ(dim=4, codebook_size=(8, 16), shared_codebook=True, rngs=rngs)
    with pytest.raises(ValueError, match="heads=2"):
        q.ResidualVQ(dim=4, num_quantizers=2, codebook_size=8, heads=2, rngs=rngs)
    with pytest.raises(ValueError, match="codebook_size must be a positive int, got 0"):
        q.ResidualVQ(dim=4, num_quantizers=2, codebook_size=0, rngs=rngs)
    with pytest.raises(ValueError, match="dim=6 must be divisible by groups=4"):
        q.GroupedResidualVQ(dim=6, groups=4, num_quantizers=2, codebook_size=8, rngs=rngs)
    rvq = q.ResidualVQ(dim=4, num_quantizers=2, codebook_size=8, rngs=rngs)
    with pytest.raises(ValueError, match=r"dim=4, got shape \(2, 3, 5\)"):
        rvq(jnp.ones((2, 3, 5)))


def test_dropout_key_state_and_decoding():
    rvq = q.ResidualVQ(
        dim=6,
        num_quantizers=3,
        codebook_size=(8, 16, 8),
        codebook_dim=4,
        quantize_dropout=True,
        rngs=nnx.Rngs(0),
    )
    x = jax.random.normal(jax.random.key(0), (2, 10, 6))
    with pytest.raises(ValueError, match="key is required"):
        rvq(x, train=True)
    lasts = set()
    train = nnx.jit(lambda rvq, x, key: rvq(x, train=True, key=key))
    for k in (2, 3, 4):  # keys keeping 3, 2 and 1 layers
        key = jax.random.key(k)
        before = [np.asarray(layer.cluster_size[...]).copy() for layer in rvq.layers]
        out = train(rvq, x, key)
        last = int(rvq.dropout_index(jax.random.split(key)[1]))
        lasts.add(last)
        for i, layer in enumerate(rvq.layers):
            changed = not np.array_equal(layer.cluster_size[...], before[i])
            assert changed == (i <= last), (k, i)
        idx = np.asarray(out.indices)
        assert (idx[..., last + 1 :] == -1).all() and (idx[..., : last + 1] >= 0).all()
        assert not np.asarray(out.counts)[last + 1 :].any()
        assert (np.asarray(out.counts)[: last + 1].sum(axis=1) == 20).all()
    assert lasts == {0, 1, 2}
    ev = rvq(x)
    np.testing.assert_allclose(rvq.get_output_from_indices(ev.indices), ev.quantized, atol=1e-6)
    assert ev.counts.shape == (3, 16)  # zero-padded to the largest codebook
    assert not np.asarray(ev.counts)[0, 8:].any()


def test_shared_gradient_codebook_with_kmeans_and_restarts():
    cfg = q.VectorQuantizerConfig.vqvae(
        8, 4, kmeans_init=True, kmeans_iters=2, dead_code_threshold=1.0
    )
    rvq = q.ResidualVQ(
        dim=4,
        num_quantizers=3,
        codebook_size=8,
        shared_codebook=True,
        config=cfg,
        rngs=nnx.Rngs(0),
    )
    assert len(rvq.layers) == 1
    x = jax.random.normal(jax.random.key(0), (4, 8, 4))
    with pytest.raises(ValueError, match="key is required"):
        rvq(x, train=True)
    before = np.asarray(rvq.layers[0].codebook[...]).copy()

    def loss(rvq, x):
        out = rvq(x, train=True, key=jax.random.key(1))
        return jnp.sum(out.losses), out

    (_, out), grads = nnx.value_and_grad(loss, has_aux=True)(rvq, x)
    assert bool(rvq.layers[0].initialized[...])
    assert not np.array_equal(rvq.layers[0].codebook[...], before)
    # the first call's codebook is the k-means result (no gradient): train a second step
    (_, out), grads = nnx.value_and_grad(loss, has_aux=True)(rvq, x)
    assert np.abs(np.asarray(grads["layers"][0]["codebook"][...])).max() > 0
    assert (np.asarray(out.indices) >= 0).all()


def test_grouped_shapes_and_decoding():
    g = q.GroupedResidualVQ(dim=6, groups=2, num_quantizers=2, codebook_size=8, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 5, 6))
    out = g(x, train=True)
    assert out.indices.shape == (2, 2, 5, 2) and out.losses.shape == (2, 2)
    ev = g(x)
    np.testing.assert_allclose(g.get_output_from_indices(ev.indices), ev.quantized, atol=1e-6)


def test_gradient_codebook_learns_after_kmeans_init():
    # regression: the k-means init's state write used to stop the codebook's gradient forever
    cfg = q.VectorQuantizerConfig.vqvae(8, 4, kmeans_init=True, kmeans_iters=2)
    vq = q.VectorQuantizer(cfg, rngs=nnx.Rngs(0))

    def loss(vq, x):
        return vq(x, train=True, key=jax.random.key(1)).loss

    vq(jax.random.normal(jax.random.key(0), (32, 4)), train=True, key=jax.random.key(2))
    grads = nnx.grad(loss)(vq, jax.random.normal(jax.random.key(3), (32, 4)))
    assert np.abs(np.asarray(grads["codebook"][...])).max() > 1e-3
