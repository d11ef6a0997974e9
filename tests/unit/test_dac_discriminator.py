"""`jaxlatent.models.dac.Discriminator` without the reference: config, shapes, invariances,
GANLoss on it, bad input (parity with ``dac.model.discriminator``: tests/parity)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent.losses.dac import GANLoss
from jaxlatent.models.dac import Discriminator, DiscriminatorConfig, DiscriminatorOutput

#: Every kind of sub-discriminator, small enough to run eagerly on a loaded CPU.
SMALL = DiscriminatorConfig(
    rates=(2,), periods=(3,), fft_sizes=(64,), sample_rate=8000, bands=((0.0, 0.4), (0.4, 1.0))
)


def random_discriminator(config: DiscriminatorConfig, seed: int = 0) -> Discriminator:
    """A concrete Discriminator with seeded numpy parameters drawn as torch initialises them
    (``v``, bias uniform in ``±1/sqrt(fan_in)``, ``g = ||v||``); no eager JAX random draws."""
    module = nnx.eval_shape(lambda: Discriminator(config, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    for _, conv in nnx.iter_graph(module):
        if not hasattr(conv, "weight_v"):
            continue
        shape = conv.weight_v.get_value().shape
        bound = 1.0 / np.sqrt(np.prod(shape[:-1]))
        v = rng.uniform(-bound, bound, shape).astype(np.float32)
        conv.weight_v.set_value(jnp.asarray(v))
        norm = np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=tuple(range(v.ndim - 1))))
        conv.weight_g.set_value(jnp.asarray(norm, jnp.float32))
        b = rng.uniform(-bound, bound, conv.bias.get_value().shape).astype(np.float32)
        conv.bias.set_value(jnp.asarray(b))
    return module


@pytest.fixture(scope="module")
def small() -> Discriminator:
    return random_discriminator(SMALL)


def _audio(length: int = 600, batch: int = 2, seed: int = 0) -> jax.Array:
    rng = np.random.default_rng(seed)
    t = np.arange(length) / 8000.0
    x = np.sin(2 * np.pi * 440 * t)[None, :, None] + 0.3 * rng.standard_normal((batch, length, 1))
    return jnp.asarray(x, jnp.float32)


def test_recipe_is_the_reference_default_and_kwargs_round_trip():
    config = DiscriminatorConfig.recipe()
    assert config == DiscriminatorConfig()
    assert config.n_discriminators == 8
    kwargs = config.to_kwargs()
    assert kwargs["periods"] == [2, 3, 5, 7, 11] and kwargs["rates"] == []
    assert DiscriminatorConfig.from_kwargs(kwargs) == config
    assert DiscriminatorConfig.from_kwargs(SMALL.to_kwargs()) == SMALL


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"periods": [0]}, "periods\\[0\\] must be a positive integer"),
        ({"periods": [], "rates": [], "fft_sizes": []}, "no sub-discriminator"),
        ({"fft_sizes": [2]}, "at least 4"),
        ({"bands": [(0.0, 1.5)]}, "bands\\[0\\]\\[1\\] must be in \\[0, 1\\]"),
        ({"bands": [(0.0, 0.001)]}, "holds no STFT bin"),
        ({"rates": [50000]}, "resamples sample_rate"),
        ({"hop_factor": 0.5}, "unknown Discriminator kwargs \\['hop_factor'\\]"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiscriminatorConfig.from_kwargs(kwargs)


def test_recipe_shapes_and_order():
    disc = nnx.eval_shape(lambda: Discriminator(DiscriminatorConfig.recipe(), rngs=nnx.Rngs(0)))
    audio = jax.ShapeDtypeStruct((2, 4410, 1), jnp.float32)
    out = nnx.eval_shape(lambda d, x: d(x), disc, audio)
    assert isinstance(out, DiscriminatorOutput)
    assert [len(m) for m in out.feature_maps] == [6] * 5 + [26] * 3
    assert (len(out.mpd), len(out.msd), len(out.mrd)) == (5, 0, 3)
    # MPD maps [batch, time', period, ch]: reflect-padded to a multiple of the period.
    for period, maps in zip((2, 3, 5, 7, 11), out.mpd, strict=True):
        assert maps[0].shape == (2, -(-(4410 // period + 1) // 3), period, 32)
        assert maps[-1].shape[2:] == (period, 1)
    # MRD maps [batch, frames, bins', ch]: 4410 samples -> ceil(4410 / hop) frames.
    for size, maps in zip((2048, 1024, 512), out.mrd, strict=True):
        frames = -(-4410 // (size // 4))
        assert {m.shape[1] for m in maps} == {frames}
        assert maps[-1].shape[-1] == 1 and maps[0].shape[-1] == 32
    assert out.logits == tuple(m[-1] for m in out.feature_maps)


def test_small_runs_every_kind_and_ignores_gain_and_dc(small):
    graphdef, params = nnx.split(small)
    run = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x, train=True))
    x = _audio()
    out = run(params, x)
    assert [len(m) for m in out.feature_maps] == [6, 7, 11]
    assert out.msd[0][0].shape == (2, 300, 16)  # resampled to 4 kHz
    for maps in out.feature_maps:
        for m in maps:
            assert m.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(m)))
    # The preprocessing removes the mean and normalises the peak: a gain and an offset change
    # nothing (up to rounding), while a different signal changes the logits.
    shifted = run(params, 2.5 * x + 0.2)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(shifted), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    other = run(params, _audio(seed=1))
    assert not np.allclose(out.logits[0], other.logits[0])


def test_gan_loss_on_the_discriminator():
    # MRD only: its 32-channel convolutions compile fast; GANLoss itself: test_losses_*.
    config = dataclasses.replace(SMALL, rates=(), periods=())
    real, fake = _audio(seed=0), _audio(seed=1)
    graphdef, params = nnx.split(random_discriminator(config))

    def d_loss(params, fake):
        return GANLoss(nnx.merge(graphdef, params)).discriminator_loss(fake, real)

    def g_loss(fake):
        adv, feat = GANLoss(nnx.merge(graphdef, params)).generator_loss(fake, real)
        return adv + feat

    @jax.jit
    def grads(params, fake):
        return jax.value_and_grad(d_loss, argnums=(0, 1))(params, fake), jax.grad(g_loss)(fake)

    (loss, (g_params, g_fake)), g = grads(params, fake)
    assert loss.shape == () and bool(jnp.isfinite(loss))
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(g_params)]
    assert all(np.isfinite(norms)) and sum(n > 0 for n in norms) > len(norms) // 2
    assert float(jnp.max(jnp.abs(g_fake))) == 0.0  # fake is detached in the D loss
    assert g.shape == fake.shape and float(jnp.max(jnp.abs(g))) > 0


@pytest.mark.parametrize(
    "audio, message",
    [
        (jnp.zeros((1, 600, 2)), "mono audio \\[batch, time, 1\\], got shape \\(1, 600, 2\\)"),
        (jnp.zeros((600, 1)), "mono audio"),
        (jnp.zeros((1, 600, 1), jnp.int32), "floating-point"),
        (jnp.ones((1, 3, 1)), "MPD\\(period=3\\) needs more than 3 samples"),
    ],
)
def test_bad_audio(small, audio, message):
    with pytest.raises(ValueError, match=message):
        small(audio)


def test_parameters_follow_the_config():
    config = dataclasses.replace(SMALL, rates=(), periods=(2, 3))
    disc = nnx.eval_shape(lambda: Discriminator(config, rngs=nnx.Rngs(0)))
    assert len(disc.discriminators) == 3
    assert len(disc.discriminators[2].band_convs) == 2
    assert disc.discriminators[0].convs[0].weight_v.shape == (5, 1, 1, 32)


@pytest.mark.parametrize("old_sr, new_sr", [(44100, 22050), (44100, 14700), (8000, 8000)])
def test_msd_resampling_is_julius_filter(old_sr, new_sr):
    # the numpy resampler of jaxlatent.codec (itself at parity with julius: test_dac_dsp)
    from jaxlatent.codec.resample import resample
    from jaxlatent.models.dac.discriminator import resample_audio

    x = np.random.default_rng(0).standard_normal((2, 997, 1)).astype(np.float32)
    got = jax.jit(resample_audio, static_argnums=(1, 2))(jnp.asarray(x), old_sr, new_sr)
    want = np.moveaxis(resample(np.moveaxis(x, 1, 2), old_sr, new_sr), 1, 2)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-6)


@pytest.mark.parametrize(
    ("bins", "kernel", "stride", "padding"),
    [
        (128, (3, 9), 2, (1, 4)),
        (129, (3, 9), 2, (1, 4)),
        (33, (3, 9), 3, (1, 1)),
        (20, (2, 4), 2, (0, 0)),
    ],
)
def test_frequency_strided_conv_is_the_strided_convolution(bins, kernel, stride, padding):
    from jaxlatent.models.dac.discriminator import _frequency_strided_conv
    from jaxlatent.nn import WNConv2d

    conv = WNConv2d(3, 5, kernel, (1, stride), padding=padding, rngs=nnx.Rngs(0))
    conv.bias[...] = jnp.arange(5.0)
    rng = np.random.default_rng(0)
    # integer-valued activations and kernel (g = ||v||: the effective kernel is v within an ulp),
    # sums of at most 243 products up to 6: the forms may differ by the kernel's rounding only
    x = jnp.asarray(rng.integers(-3, 4, (2, 6, bins, 3)).astype(np.float32))
    kernel_ints = rng.integers(-2, 3, conv.weight_v.shape).astype(np.float32)
    conv.weight_v[...] = jnp.asarray(kernel_ints)
    conv.weight_g[...] = jnp.sqrt(jnp.sum(jnp.square(conv.weight_v[...]), axis=(0, 1, 2)))
    expected = conv(x)
    out = _frequency_strided_conv(conv, x)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)

    def loss(f):
        return lambda x: jnp.sum(
            f(conv, x) * jnp.cos(jnp.arange(expected.size).reshape(expected.shape))
        )

    grad = jax.grad(loss(_frequency_strided_conv))(x)
    np.testing.assert_allclose(grad, jax.grad(loss(lambda c, x: c(x)))(x), rtol=1e-5, atol=1e-5)
