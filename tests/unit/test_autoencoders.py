"""Shapes, jit behaviour and input validation of the autoencoders, GlobalNorm and AE losses.

No torch here: SpeechBrain parity is in tests/parity/test_autoencoders.py and
tests/parity/test_autoencoder_losses.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import speechbrain as sbconv
from jaxlatent.losses import AutoencoderLoss, VariationalAutoencoderLoss
from jaxlatent.models import (
    Autoencoder,
    AutoencoderOutput,
    DownsamplingPadding,
    NormalizingAutoencoder,
    VariationalAutoencoder,
    VariationalAutoencoderOutput,
    pad_divisible,
    trim_as,
)
from jaxlatent.nn import GlobalNorm, SpeechBrainConv1d

B, T, F, Z = 2, 10, 6, 3


def se(targets, rec, reduction="none"):
    return (targets - rec) ** 2


def _vae(**kwargs):
    rngs = nnx.Rngs(0)
    return VariationalAutoencoder(
        encoder=nnx.Linear(F, 5, rngs=rngs),
        decoder=nnx.Linear(Z, F, rngs=rngs),
        mean=nnx.Linear(5, Z, rngs=rngs),
        log_var=nnx.Linear(5, Z, rngs=rngs),
        **kwargs,
    )


def _nae(**kwargs):
    rngs = nnx.Rngs(0)
    return NormalizingAutoencoder(
        nnx.Linear(F, Z, rngs=rngs), nnx.Linear(Z, F, rngs=rngs), **kwargs
    )


def _x(seed=0, t=T):
    return jax.random.normal(jax.random.key(seed), (B, t, F))


# --- shapes -----------------------------------------------------------------------------------


def test_abstract_autoencoder_raises():
    ae = Autoencoder()
    with pytest.raises(NotImplementedError):
        ae.encode(jnp.zeros((1, 2, 3)))
    with pytest.raises(NotImplementedError):
        ae.decode(jnp.zeros((1, 2, 3)))
    with pytest.raises(NotImplementedError):
        ae(jnp.zeros((1, 2, 3)))


def test_vae_shapes_with_and_without_padding(key):
    out = _vae().train_sample(_x(), key=key)
    assert isinstance(out, VariationalAutoencoderOutput)
    assert out.rec.shape == (B, T, F) and out.latent.shape == (B, T, Z)
    assert out.latent is out.latent_sample and out.latent_length is None
    vae = _vae(latent_padding=functools.partial(pad_divisible, factor=4))
    out = vae.train_sample(_x(), jnp.array([1.0, 0.5]), key=key)
    assert out.latent_sample.shape == (B, 12, Z) and out.rec.shape == (B, T, F)
    assert out.mean.shape == (B, T, Z)  # mean/log_var are never padded
    np.testing.assert_allclose(out.latent_length, [10 / 12, 5 / 12], rtol=1e-6)
    assert (out.latent_sample[1, 5:] == 0).all() and (out.rec[1, 5:] == 0).all()


def test_vae_sampling_uses_the_key():
    vae = _vae()
    x = _x()
    a = vae.train_sample(x, key=jax.random.key(1)).latent_sample
    b = vae.train_sample(x, key=jax.random.key(1)).latent_sample
    c = vae.train_sample(x, key=jax.random.key(2)).latent_sample
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    mean, log_var = jnp.zeros((4000,)), jnp.full((4000,), np.log(4.0))
    sample = vae.reparameterize(mean, log_var, key=jax.random.key(3))
    assert abs(float(sample.std()) - 2.0) < 0.1


def test_normalizing_autoencoder_shapes_and_stats():
    ae = _nae(latent_padding=DownsamplingPadding(4, len_dim=1, dims=(1,)))
    assert isinstance(ae.norm, GlobalNorm) and ae.norm.length_dim == 1
    out = ae.train_sample(_x(), jnp.array([1.0, 0.3]), train=True)
    assert isinstance(out, AutoencoderOutput)
    assert out.rec.shape == (B, T, F) and out.latent.shape == (B, 12, Z)
    assert int(ae.norm.step_count[...]) == 1 and float(ae.norm.weight[...]) == (10 + 3) * Z
    assert ae(_x(), train=True).shape == (B, T, Z)  # __call__ = encode (updates the stats too)
    assert int(ae.norm.step_count[...]) == 2 and float(ae.norm.weight[...]) == (10 + 3 + 20) * Z
    # evaluation (the default) normalises with the statistics as they are
    stats = [float(v[...]) for v in (ae.norm.running_mean, ae.norm.running_std, ae.norm.weight)]
    evaluated = ae(_x(1))
    assert [float(v[...]) for v in (ae.norm.running_mean, ae.norm.running_std)] == stats[:2]
    assert float(ae.norm.weight[...]) == stats[2]
    np.testing.assert_allclose(evaluated, ae.norm.normalize(ae.encoder(_x(1))), rtol=1e-6)


def test_trim_as_and_pad_divisible():
    assert trim_as(jnp.zeros((3, 9, 5)), jnp.zeros((3, 7, 4))).shape == (3, 7, 4)
    x = jnp.arange(12.0).reshape(2, 2, 3)
    y, length = pad_divisible(x, jnp.array([1.0, 0.5]), factor=2, len_dim=2, pad_value=-1)
    assert y.shape == (2, 2, 4) and (y[..., 3] == -1).all()
    np.testing.assert_allclose(length, [0.75, 0.375])
    same, none = pad_divisible(x, None, factor=3, len_dim=-1)
    assert same is x and none is None


# --- jit / grad -------------------------------------------------------------------------------


def test_vae_jit_no_retrace_and_grad():
    vae = _vae(latent_padding=functools.partial(pad_divisible, factor=4))
    traces = []

    @nnx.jit
    def loss_and_grad(model, x, length, key):
        traces.append(1)

        def loss(model):
            out = model.train_sample(x, length, key=key)
            return VariationalAutoencoderLoss(rec_loss=se)(out, x, length)

        return nnx.value_and_grad(loss)(model)

    for i, lens in enumerate(([1.0, 0.5], [0.7, 0.2], [1.0, 1.0])):
        value, grads = loss_and_grad(vae, _x(i), jnp.array(lens), jax.random.key(i))
        assert np.isfinite(value)
        leaves = jax.tree.leaves(grads)
        assert leaves and all(np.isfinite(g).all() for g in leaves)
    assert len(traces) == 1


def test_normalizing_autoencoder_jit_no_retrace_state_updates():
    ae = _nae()
    traces = []

    @nnx.jit
    def step(model, x, length):
        traces.append(1)
        return model.train_sample(x, length, train=True)

    for i in range(3):
        step(ae, _x(i), jnp.array([1.0, 0.5]))
    assert len(traces) == 1
    assert int(ae.norm.step_count[...]) == 3
    assert float(ae.norm.weight[...]) == 3 * (10 + 5) * Z
    grads = nnx.grad(lambda m: jnp.sum(m.train_sample(_x(), None, train=True).rec ** 2))(ae)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_global_norm_update_steps_traced():
    norm = GlobalNorm(update_steps=2, length_dim=1)
    traces = []

    @nnx.jit
    def call(m, x):
        traces.append(1)
        return m(x)

    for i in range(4):
        call(norm, jnp.full((1, 4), float(i)))
    assert len(traces) == 1 and int(norm.step_count[...]) == 4
    # only the first two calls (values 0 and 1) entered the statistics
    assert float(norm.weight[...]) == 8 and float(norm.running_mean[...]) == 0.5


def test_losses_jit_with_traced_length():
    rec = jax.random.normal(jax.random.key(0), (B, T, F))
    out = VariationalAutoencoderOutput(rec, None, rec[..., :Z], rec[..., :Z] * 0.1, None, None)
    traces = []

    @jax.jit
    def f(out, length):
        traces.append(1)
        return VariationalAutoencoderLoss(rec_loss=se).details(out, rec * 0.5, length, "batch")

    a = f(out, jnp.array([1.0, 0.5]))
    b = f(out, jnp.array([0.3, 0.5]))
    assert len(traces) == 1 and a.loss.shape == (B,)
    assert float(a.loss[1]) == float(b.loss[1]) and float(a.loss[0]) != float(b.loss[0])


# --- bad input --------------------------------------------------------------------------------


def test_vae_bad_inputs(key):
    vae = _vae()
    x = _x()
    with pytest.raises(ValueError, match="key"):
        vae.train_sample(x)
    with pytest.raises(ValueError, match="noise has shape"):
        vae.train_sample(x, noise=jnp.zeros((B, T, Z + 1)))
    with pytest.raises(ValueError, match=r"relative length must lie in \[0, 1\]"):
        vae.train_sample(x, jnp.array([1.2, 0.5]), key=key)
    with pytest.raises(ValueError, match="2 items"):
        vae.train_sample(x, jnp.array([1.0, 0.5, 0.5]), key=key)
    with pytest.raises(ValueError, match="len_dim=0"):
        _vae(len_dim=0).train_sample(x, jnp.array([1.0, 0.5]), key=key)
    with pytest.raises(ValueError, match="latent_padding"):
        _vae(latent_stochastic=False).train_sample(x, key=key)
    short = _vae()
    short.decoder = lambda z: z[:, :-1]
    with pytest.raises(ValueError, match="cannot trim"):
        short.train_sample(x, key=key)


def test_global_norm_and_padding_bad_inputs():
    norm = GlobalNorm(length_dim=1)
    with pytest.raises(ValueError, match="floating"):
        norm(jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="length_dim=2"):
        GlobalNorm(length_dim=2)(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="lengths"):
        norm(jnp.ones((2, 3)), jnp.array([0.5, -0.1]))
    with pytest.raises(ValueError, match="factor"):
        pad_divisible(jnp.ones((2, 3)), factor=0)
    with pytest.raises(ValueError, match="len_dim=3"):
        pad_divisible(jnp.ones((2, 3)), len_dim=3)
    with pytest.raises(ValueError, match="cannot trim"):
        trim_as(jnp.ones((2, 3)), jnp.ones((2, 3, 1)))


def test_loss_bad_inputs():
    rec = jnp.ones((B, T, F))
    vae_out = VariationalAutoencoderOutput(rec, None, rec, rec, None, None)
    loss = VariationalAutoencoderLoss(rec_loss=se)
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        loss(vae_out, rec, reduction="avg")
    with pytest.raises(ValueError, match=r"predictions\.rec must be a floating"):
        loss(vae_out._replace(rec=rec.astype(jnp.int32)), rec)
    with pytest.raises(ValueError, match="VariationalAutoencoderOutput"):
        loss((rec, rec, rec), rec)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        loss(vae_out, rec, jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="len_dim=3"):
        VariationalAutoencoderLoss(rec_loss=se, len_dim=3)(vae_out, rec)
    with pytest.raises(ValueError, match="same shape"):
        loss(vae_out._replace(log_var=rec[..., :2]), rec)
    with pytest.raises(ValueError, match="do not broadcast"):
        loss(vae_out._replace(mean=rec[..., :2], log_var=rec[..., :2]), rec, reduction="none")
    ae_loss = AutoencoderLoss(rec_loss=se)
    with pytest.raises(ValueError, match="`rec` field"):
        ae_loss(rec, rec)
    with pytest.raises(ValueError, match="unknown reduction"):
        ae_loss(AutoencoderOutput(rec, None, None), rec, reduction="max")
    with pytest.raises(ValueError, match="targets must be a floating"):
        ae_loss(AutoencoderOutput(rec, None, None), rec.astype(jnp.int32))


def test_speechbrain_conv1d_bad_inputs():
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="odd"):
        SpeechBrainConv1d(4, 4, input_shape=(1, 10, 3), rngs=rngs)
    with pytest.raises(ValueError, match="input_shape or in_channels"):
        SpeechBrainConv1d(4, 3, rngs=rngs)
    with pytest.raises(ValueError, match="unknown padding 'full'"):
        SpeechBrainConv1d(4, 3, in_channels=3, padding="full", rngs=rngs)
    with pytest.raises(ValueError, match="unknown padding_mode"):
        SpeechBrainConv1d(4, 3, in_channels=3, padding_mode="zeros", rngs=rngs)
    conv = SpeechBrainConv1d(4, 9, in_channels=3, rngs=rngs)
    with pytest.raises(ValueError, match="reflect padding"):
        conv(jnp.ones((1, 4, 3)))
    mono = SpeechBrainConv1d(1, 3, input_shape=(2, 10), rngs=rngs)  # [batch, time] in and out
    assert mono(jnp.ones((2, 10))).shape == (2, 10)


# --- converter tables (no torch needed) -------------------------------------------------------


def test_converter_tables_and_export_without_torch():
    table = sbconv.normalizing_autoencoder_table(
        encoder=sbconv.linear, decoder=sbconv.sequential({1: sbconv.conv1d})
    )
    assert table["encoder.w.weight"].jax_path == "encoder/kernel"
    assert table["decoder.1.conv.bias"].jax_path == "decoder/layers/1/conv/bias"
    assert table["norm.step_count"].transform is sbconv.STEP_COUNT
    rngs = nnx.Rngs(0)
    ae = NormalizingAutoencoder(
        nnx.Linear(F, Z, rngs=rngs),
        nnx.Sequential(jnp.tanh, SpeechBrainConv1d(F, 3, in_channels=Z, rngs=rngs)),
    )
    ae.encode(_x(), jnp.array([1.0, 0.5]), train=True)
    state, attributes = sbconv.export_autoencoder(ae, table)
    assert attributes == {"norm.step_count": 1}
    assert state["decoder.1.conv.weight"].shape == (F, Z, 3)  # torch layout [out, in, k]
    assert set(state) == {k for k in table if k != "norm.step_count"}
    vae_table = sbconv.variational_autoencoder_table(
        sbconv.linear, sbconv.linear, sbconv.linear, functools.partial(sbconv.linear, bias=False)
    )
    assert sorted(k.split(".")[0] for k in vae_table) == sorted(
        ["encoder"] * 2 + ["decoder"] * 2 + ["mean"] * 2 + ["log_var"]
    )
