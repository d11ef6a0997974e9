"""The rotation trick option of VectorQuantizer, DAC's quantizers and PIQ's VQEmbedding:
same forward values as straight-through, the input gradient of `rotation_trick` (tested
against vector-quantize-pytorch in tests/parity/test_quantizers_rotation.py), defaults."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import quantizers as q
from jaxlatent.quantizers import dac, piq


def _vjp_rotation(x, codes, g):
    return jax.vjp(lambda x: q.rotation_trick(x, codes), x)[1](g)[0]


def test_defaults():
    assert not q.VectorQuantizerConfig(8, 4).rotation_trick
    assert q.VectorQuantizerConfig.lucidrains(8, 4).rotation_trick
    assert not q.VectorQuantizerConfig.lucidrains(8, 1).rotation_trick
    assert not dac.VectorQuantize(4, 8, 2, rngs=nnx.Rngs(0)).rotation_trick
    assert not piq.VQEmbedding(8, 4, 2, rngs=nnx.Rngs(0)).rotation_trick


def test_vector_quantizer_rotation_gradient():
    x = jax.random.normal(jax.random.key(0), (2, 9, 4))
    w = jax.random.normal(jax.random.key(1), x.shape)
    cfg = q.VectorQuantizerConfig(16, 4, beta=0.0, rotation_trick=True)
    vq = q.VectorQuantizer(cfg, rngs=nnx.Rngs(0))
    out = vq(x)
    grad = nnx.jit(nnx.grad(lambda vq, x: jnp.sum(w * vq(x).quantized), argnums=1))(vq, x)
    np.testing.assert_array_equal(out.quantized, vq.decode(out.indices))
    np.testing.assert_allclose(grad, _vjp_rotation(x, out.quantized, w), rtol=1e-6, atol=1e-7)
    assert np.abs(np.asarray(grad - w)).max() > 0.1


def test_dac_rotation_gradient():
    z = jax.random.normal(jax.random.key(0), (2, 7, 6))
    w = jax.random.normal(jax.random.key(1), z.shape)
    vq_rot = dac.VectorQuantize(6, 16, 3, rotation_trick=True, rngs=nnx.Rngs(0))
    vq_st = dac.VectorQuantize(6, 16, 3, rngs=nnx.Rngs(0))
    out_rot, out_st = vq_rot(z), vq_st(z)
    np.testing.assert_array_equal(out_rot.z_q, out_st.z_q)

    def loss(vq, z):
        return jnp.sum(w * vq(z).z_q)

    def manual(z):  # in_proj → rotation trick onto the (constant) codes → out_proj
        z_e = vq_rot.in_proj(z)
        codes = jax.lax.stop_gradient(vq_rot.decode_latents(z_e)[0])
        return jnp.sum(w * vq_rot.out_proj(q.rotation_trick(z_e, codes)))

    grad_fn = nnx.jit(nnx.grad(loss, argnums=1))
    grad = grad_fn(vq_rot, z)
    np.testing.assert_allclose(grad, jax.jit(jax.grad(manual))(z), rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(grad - grad_fn(vq_st, z))).max() > 1e-3
    rvq = dac.ResidualVectorQuantize(6, 2, 16, 3, rotation_trick=True, rngs=nnx.Rngs(0))
    assert all(layer.rotation_trick for layer in rvq.quantizers)


def test_piq_rotation_gradient():
    x = jax.random.normal(jax.random.key(0), (2, 3, 4, 5))
    w = jax.random.normal(jax.random.key(1), x.shape)
    labels = jnp.array([0, 1])
    vq = piq.VQEmbedding(8, 5, 2, rotation_trick=True, rngs=nnx.Rngs(0))
    z_q_x, z_q_x_bar = vq.straight_through(x, labels, train=True)
    np.testing.assert_array_equal(z_q_x, z_q_x_bar)

    def loss(vq, x):
        return jnp.sum(w * vq.straight_through(x, labels, train=True)[0])

    grad = nnx.jit(nnx.grad(loss, argnums=1))(vq, x)
    np.testing.assert_allclose(grad, _vjp_rotation(x, z_q_x, w), rtol=1e-6, atol=1e-7)
    assert np.abs(np.asarray(grad - w)).max() > 0.1


def test_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        q.rotation_trick(jnp.ones((2, 3)), jnp.ones((2, 4)))
    with pytest.raises(ValueError, match="x"):
        q.rotation_trick(jnp.ones((2, 3), jnp.int32), jnp.ones((2, 3)))
