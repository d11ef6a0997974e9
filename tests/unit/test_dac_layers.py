"""DAC config, Snake and layer behaviour that needs no reference: presets, validation,
low-precision Snake, output lengths, initialisation, jit (no retrace) and gradients."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent.models.dac import (
    DACConfig,
    Decoder,
    DecoderBlock,
    Encoder,
    EncoderBlock,
    ResidualUnit,
    init_weights,
    snake,
)

# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

PRESETS = {
    # name: (sample_rate, encoder_rates, decoder_rates, latent_dim, n_codebooks, hop)
    "44khz_8kbps": (44100, (2, 4, 8, 8), (8, 8, 4, 2), 1024, 9, 512),
    "44khz_16kbps": (44100, (2, 4, 8, 8), (8, 8, 4, 2), 128, 18, 512),
    "24khz": (24000, (2, 4, 5, 8), (8, 5, 4, 2), 1024, 32, 320),
    "16khz": (16000, (2, 4, 5, 8), (8, 5, 4, 2), 1024, 12, 320),
}


@pytest.mark.parametrize("name", PRESETS)
def test_presets(name):
    sr, enc, dec, latent, n_q, hop = PRESETS[name]
    config = DACConfig.preset(name)
    assert config == getattr(DACConfig, f"dac_{name}")()
    assert (config.sample_rate, config.encoder_rates, config.decoder_rates) == (sr, enc, dec)
    assert (config.latent_dim, config.n_codebooks, config.hop_length) == (latent, n_q, hop)
    assert (config.encoder_dim, config.decoder_dim) == (64, 1536)
    assert (config.codebook_size, config.codebook_dim, config.quantizer_dropout) == (1024, 8, 0.5)
    assert config.codebook_dims == (8,) * n_q
    assert DACConfig.from_kwargs(config.to_kwargs()) == config


def test_defaults_are_the_reference_defaults():
    config = DACConfig()
    assert config.to_kwargs() == {
        "encoder_dim": 64,
        "encoder_rates": [2, 4, 8, 8],
        "latent_dim": 1024,  # None -> encoder_dim * 2**len(encoder_rates)
        "decoder_dim": 1536,
        "decoder_rates": [8, 8, 4, 2],
        "n_codebooks": 9,
        "codebook_size": 1024,
        "codebook_dim": 8,
        "quantizer_dropout": 0.0,
        "sample_rate": 44100,
    }


def test_from_kwargs_release_metadata_form():
    kwargs = {
        "encoder_dim": 64,
        "encoder_rates": [2, 4, 5, 8],
        "latent_dim": 1024,
        "decoder_dim": 1536,
        "decoder_rates": [8, 5, 4, 2],
        "n_codebooks": 12,
        "codebook_size": 1024,
        "codebook_dim": 8,
        "quantizer_dropout": 0.5,
        "sample_rate": 16000,
    }
    config = DACConfig.from_kwargs(kwargs)
    assert config == DACConfig.dac_16khz()
    assert isinstance(config.encoder_rates, tuple)
    assert DACConfig.from_kwargs({"quantizer_dropout": True}).quantizer_dropout == 1.0
    assert DACConfig.from_kwargs({"quantizer_dropout": False}).quantizer_dropout == 0.0
    assert DACConfig.from_kwargs({}) == DACConfig()
    per_codebook = DACConfig(n_codebooks=2, codebook_dim=[4, 8])
    assert per_codebook.codebook_dims == (4, 8)


def test_from_kwargs_names_unknown_keys():
    with pytest.raises(ValueError, match=r"\['bogus', 'model_type'\]"):
        DACConfig.from_kwargs({"bogus": 1, "model_type": "44khz", "encoder_dim": 64})
    with pytest.raises(ValueError, match="mapping"):
        DACConfig.from_kwargs([("encoder_dim", 64)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"encoder_dim": 0}, "encoder_dim"),
        ({"encoder_dim": 64.0}, "encoder_dim"),
        ({"encoder_dim": True}, "encoder_dim"),
        ({"encoder_rates": []}, "encoder_rates"),
        ({"encoder_rates": [2, 0]}, r"encoder_rates\[1\]"),
        ({"encoder_rates": 2}, "encoder_rates"),
        ({"latent_dim": -1}, "latent_dim"),
        ({"decoder_dim": 8}, "decoder_dim=8"),  # 4 halvings of 8 channels reach 0
        ({"decoder_rates": "8842"}, "decoder_rates"),
        ({"n_codebooks": 0}, "n_codebooks"),
        ({"codebook_size": 0}, "codebook_size"),
        ({"codebook_dim": [8, 8]}, "2 entries"),
        ({"quantizer_dropout": 1.5}, "quantizer_dropout"),
        ({"quantizer_dropout": "0.5"}, "quantizer_dropout"),
        ({"sample_rate": 0}, "sample_rate"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DACConfig(**kwargs)


def test_config_is_frozen_and_hashable():
    config = DACConfig.dac_24khz()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_codebooks = 3
    assert hash(config) == hash(DACConfig.dac_24khz())
    with pytest.raises(ValueError, match="unknown DAC preset"):
        DACConfig.preset("48khz")


# --------------------------------------------------------------------------------------------
# Snake
# --------------------------------------------------------------------------------------------


def test_snake_low_precision_is_computed_in_float32(rng):
    x = jnp.asarray((rng.standard_normal((2, 512, 4)) * 4).astype(np.float32))
    alpha = jnp.asarray(rng.uniform(0.2, 3.0, (1, 1, 4)).astype(np.float32))
    for dtype in (jnp.bfloat16, jnp.float16):
        xl = x.astype(dtype)
        out = snake(xl, alpha)
        assert out.dtype == dtype
        expected = snake(xl.astype(jnp.float32), alpha).astype(dtype)
        np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(expected, np.float32))
        # Computing in the low precision itself gives different results: the check can fail.
        al = alpha.astype(dtype)
        naive = xl + (1 / (al + 1e-9)) * jnp.sin(al * xl) ** 2
        assert (np.asarray(naive, np.float32) != np.asarray(out, np.float32)).any()


def test_snake_zero_alpha_is_identity_and_errors(rng):
    x = jnp.asarray(rng.standard_normal((1, 5, 2)).astype(np.float32))
    np.testing.assert_array_equal(snake(x, jnp.zeros((1, 1, 2))), x)
    with pytest.raises(ValueError, match=r"alpha \[1, 1, channels\].*\(1, 2, 1\)"):
        snake(x, jnp.ones((1, 2, 1)))  # torch's layout
    with pytest.raises(ValueError, match="floating"):
        snake(jnp.ones((1, 5, 2), jnp.int32), jnp.ones((1, 1, 2)))


# --------------------------------------------------------------------------------------------
# Shapes and lengths (shape-only evaluation: no compilation)
# --------------------------------------------------------------------------------------------


def _out_shape(build, in_shape):
    module = nnx.eval_shape(build)
    return nnx.eval_shape(
        lambda m, x: m(x), module, jax.ShapeDtypeStruct(in_shape, jnp.float32)
    ).shape


@pytest.mark.parametrize(
    "stride, length, expected", [(2, 43, 21), (8, 43, 5), (5, 43, 8), (5, 44, 9)]
)
def test_encoder_block_length(stride, length, expected):
    # floor((L + 2*ceil(s/2) - 2s)/s) + 1: L // s for even s, (L + 1) // s for odd s
    build = lambda: EncoderBlock(8, stride, rngs=nnx.Rngs(0))  # noqa: E731
    assert _out_shape(build, (2, length, 4)) == (2, expected, 8)


@pytest.mark.parametrize("stride", [2, 4, 5, 8])
def test_decoder_block_length(stride):
    build = lambda: DecoderBlock(8, 4, stride, rngs=nnx.Rngs(0))  # noqa: E731
    assert _out_shape(build, (2, 7, 8)) == (2, 7 * stride - stride % 2, 4)


@pytest.mark.parametrize("name", PRESETS)
def test_released_encoder_decoder_lengths(name):
    config = DACConfig.preset(name)
    frames = 11
    enc = lambda: Encoder.from_config(config, rngs=nnx.Rngs(0))  # noqa: E731
    dec = lambda: Decoder.from_config(config, rngs=nnx.Rngs(0))  # noqa: E731
    assert _out_shape(enc, (1, frames * config.hop_length, 1)) == (1, frames, config.latent_dim)
    # 16/24 kHz: the stride-5 transposed conv loses a sample: 8L -> 40L-1 -> 160L-4 -> 320L-8
    lost = 8 if 5 in config.decoder_rates else 0
    assert _out_shape(dec, (1, frames, config.latent_dim)) == (
        1,
        frames * config.hop_length - lost,
        1,
    )


def test_bad_inputs():
    enc = nnx.eval_shape(lambda: Encoder(4, (2,), 8, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"1 channels, got shape \(1, 16, 2\)"):
        nnx.eval_shape(lambda m, x: m(x), enc, jax.ShapeDtypeStruct((1, 16, 2), jnp.float32))
    with pytest.raises(ValueError, match="audio must be a floating-point array"):
        nnx.eval_shape(lambda m, x: m(x), enc, jax.ShapeDtypeStruct((1, 16, 1), jnp.int16))


# --------------------------------------------------------------------------------------------
# Parameters, jit, gradients
# --------------------------------------------------------------------------------------------


def test_parameters_and_init_weights():
    block = DecoderBlock(4, 2, 2, rngs=nnx.Rngs(0))
    assert block.snake1.alpha.shape == (1, 1, 4)
    np.testing.assert_array_equal(block.snake1.alpha[...], 1.0)
    assert block.conv_t1.weight_g.shape == (4,)  # per input channel, as torch
    assert block.res_unit1.conv1.weight_g.shape == (2,)
    # weight norm starts at g = ||v|| (w == v), as torch
    v = np.asarray(block.res_unit1.conv1.weight_v[...])
    np.testing.assert_allclose(
        block.res_unit1.conv1.weight_g[...], np.sqrt((v**2).sum((0, 1))), rtol=1e-6
    )
    bias_t = np.asarray(block.conv_t1.bias[...]).copy()
    assert np.abs(bias_t).sum() > 0 and np.abs(block.res_unit1.conv1.bias[...]).sum() > 0
    init_weights(block)
    for unit in (block.res_unit1, block.res_unit2, block.res_unit3):
        for conv in (unit.conv1, unit.conv2):
            np.testing.assert_array_equal(conv.bias[...], 0.0)
    np.testing.assert_array_equal(block.conv_t1.bias[...], bias_t)  # not a Conv1d: untouched


def _random_module(build, rng):
    """`build()` with random parameters, without eager initialisation (fast on CPU)."""
    graphdef, state = nnx.split(nnx.eval_shape(build))

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if "alpha" in name or "weight_g" in name:  # positive, moderate: tanh must not saturate
            value = rng.uniform(0.3, 0.8, leaf.shape)
        else:
            value = rng.standard_normal(leaf.shape) * (0.1 if "bias" in name else 1.0)
        return jnp.asarray(value.astype(np.float32))

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def test_jit_without_retrace_and_gradients(rng):
    encoder = _random_module(lambda: Encoder(2, (3,), 4, rngs=nnx.Rngs(0)), rng)
    decoder = _random_module(lambda: Decoder(4, 8, (3,), rngs=nnx.Rngs(0)), rng)
    graphdef, params = nnx.split((encoder, decoder))
    traces = []

    @jax.jit
    def loss_and_grads(params, audio):
        traces.append(audio.shape)

        def loss(params):
            encoder, decoder = nnx.merge(graphdef, params)
            y = decoder(encoder(audio))
            return jnp.mean(jnp.square(y - audio[:, : y.shape[1]]))

        return jax.value_and_grad(loss)(params)

    audio = rng.standard_normal((2, 30, 1)).astype(np.float32)
    value, grads = loss_and_grads(params, jnp.asarray(audio))
    assert len(traces) == 1
    loss_and_grads(params, jnp.asarray(audio * 0.5))
    assert len(traces) == 1  # same shapes, new values: no retrace
    assert np.isfinite(float(value))
    leaves = jax.tree.leaves(grads)
    assert len(leaves) == len(jax.tree.leaves(params))
    assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert all(np.abs(np.asarray(g)).sum() > 0 for g in leaves)  # alpha, g, v, bias all matter


def test_residual_unit_dtype_follows_input(rng):
    unit = ResidualUnit(2, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((1, 9, 2)), jnp.bfloat16)
    assert nnx.eval_shape(lambda m, x: m(x), unit, x).dtype == jnp.bfloat16
