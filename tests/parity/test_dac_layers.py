"""DAC layers, encoder and decoder against the real `dac` (official) and SpeechBrain modules.

Weights are random (alpha, weight_g and biases perturbed away from their defaults so that each
matters) and go through the production converter (`converters.dac`, its tables
`converters.dac_tables`); the reverse direction is checked to be exact. Covers both weight-norm
key styles, even and odd strides (stride 5 loses a sample in the decoder), the residual unit's
centre crop (convolution padding set to 0, as the reference's chunked `compress` does),
gradients of every block, a small codec, the released 16 kHz and 44.1 kHz encoder and decoder,
the state_dict layout of all four released variants, and a release-format checkpoint written
by `dac.DAC.save` itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import assign, dac_tables
from converters import dac as cdac
from jaxlatent.compilation import compiled
from jaxlatent.models import dac as jdac
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

STYLES = ["legacy", "parametrizations"]


def _torch_module(style: str):
    """The reference module namespace for a weight-norm style (official or SpeechBrain)."""
    return ref.dac().model.dac if style == "legacy" else ref.sb_dac()


def _snake_cls(style: str):
    return ref.dac().nn.layers.Snake1d if style == "legacy" else ref.sb_dac().Snake1d


def _perturb(module, seed: int = 0) -> None:
    """Move every parameter away from its default so a wrong mapping cannot go unnoticed."""
    torch = ref.torch()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("alpha"):
                p.copy_(torch.rand(p.shape, generator=gen) * 1.5 + 0.3)
            elif name.endswith(("weight_g", "original0")):
                p.mul_(torch.rand(p.shape, generator=gen) + 0.5)
            elif name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def _to_torch_layout(x):
    return ref.to_torch(np.moveaxis(x, -1, 1))


def _run_torch(module, x):
    torch = ref.torch()
    with torch.no_grad():
        return np.moveaxis(ref.to_numpy(module(_to_torch_layout(x))), 1, -1)


def _from_torch(build, torch_module, table):
    """Build the JAX module shape-only, fill it from torch, check the export is exact."""
    module = nnx.eval_shape(build)
    state_dict = torch_module.state_dict()
    assign.assign_strict(module, state_dict, table)
    graphdef, state = nnx.split(module)
    module = nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))
    exported = assign.export_state_dict(module, table)
    assert exported.keys() == state_dict.keys()
    for k, v in state_dict.items():
        np.testing.assert_array_equal(exported[k], ref.to_numpy(v), err_msg=k)
    return module


def _apply(module, x, **options):
    return module(x, **options)


def _run_jax(module, x, **options):
    graphdef, state = nnx.split(module)
    return np.asarray(compiled(_apply, graphdef, **options)(state, jnp.asarray(x)))


# --------------------------------------------------------------------------------------------
# Snake
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_snake1d(rng, style):
    torch = ref.torch()
    tm = _snake_cls(style)(6)
    with torch.no_grad():  # includes alpha = 0 (identity) and a tiny alpha
        tm.alpha.copy_(torch.tensor([0.0, 1e-4, 0.5, 1.0, 2.0, 7.0]).reshape(1, 6, 1))
    jm = _from_torch(lambda: jdac.Snake1d(6), tm, dac_tables.snake_table("", ""))
    x = (rng.standard_normal((2, 40, 6)) * 3).astype(np.float32)
    out = _run_jax(jm, x)
    assert_close(out, _run_torch(tm, x), "dac_snake_f32")
    np.testing.assert_array_equal(out[..., 0], x[..., 0])  # alpha = 0 is exactly the identity


# --------------------------------------------------------------------------------------------
# Blocks (values and gradients)
# --------------------------------------------------------------------------------------------


def _check_block(tm, jm, table, x, rng):
    """Output and d/d(input, every parameter) of ``sum(out * w)`` in both frameworks.

    One jitted function returns the JAX output and its gradients (one compilation).
    """
    xt = _to_torch_layout(x).requires_grad_(True)
    out_t = tm(xt)
    w = rng.standard_normal(tuple(out_t.shape)).astype(np.float32)
    tm.zero_grad()
    (out_t * ref.to_torch(w)).sum().backward()
    expected = np.moveaxis(ref.to_numpy(out_t), 1, -1)

    graphdef, params = nnx.split(jm, nnx.Param)

    @jax.jit
    def forward_and_grads(params, x, w):
        out, vjp = jax.vjp(lambda p, x: nnx.merge(graphdef, p)(x), params, x)
        return out, vjp(w)

    out, (g_params, g_x) = forward_and_grads(
        params, jnp.asarray(x), jnp.asarray(np.moveaxis(w, 1, -1))
    )
    assert out.shape == expected.shape
    assert_close(out, expected, "dac_block_f32")
    assert_close(g_x, np.moveaxis(ref.to_numpy(xt.grad), 1, -1), "dac_grad_f32", err_msg="x")
    exported = assign.export_state_dict(nnx.merge(graphdef, g_params), table)
    for name, p in tm.named_parameters():
        assert_close(exported[name], ref.to_numpy(p.grad), "dac_grad_f32", err_msg=name)
    return out


# (style, parameter) pairs: each block in both key styles, odd and even strides.
@pytest.mark.parametrize("style,dilation", [("legacy", 1), ("parametrizations", 9)])
def test_residual_unit(rng, style, dilation):
    tm = _torch_module(style).ResidualUnit(6, dilation=dilation)
    _perturb(tm)
    table = dac_tables.residual_unit_table("", "", style=style)
    jm = _from_torch(lambda: jdac.ResidualUnit(6, dilation, rngs=nnx.Rngs(0)), tm, table)
    x = rng.standard_normal((2, 37, 6)).astype(np.float32)
    _check_block(tm, jm, table, x, rng)


def test_residual_unit_crop_without_padding(rng):
    """With every conv's padding set to 0 (chunked compress; ``padding=False`` here), the skip
    is centre-cropped."""
    tm = ref.dac().model.dac.ResidualUnit(4, dilation=3)
    _perturb(tm)
    jm = _from_torch(
        lambda: jdac.ResidualUnit(4, 3, rngs=nnx.Rngs(0)),
        tm,
        dac_tables.residual_unit_table("", "", style="legacy"),
    )
    tm.block[1].padding = (0,)
    x = rng.standard_normal((1, 30, 4)).astype(np.float32)
    expected = _run_torch(tm, x)
    assert expected.shape == (1, 30 - 18, 4)
    assert_close(_run_jax(jm, x, padding=False), expected, "dac_block_f32")


@pytest.mark.parametrize("style,stride", [("legacy", 5), ("parametrizations", 2)])
def test_encoder_block(rng, style, stride):
    tm = _torch_module(style).EncoderBlock(8, stride=stride)
    _perturb(tm)
    table = dac_tables.encoder_block_table("", "", style=style)
    jm = _from_torch(lambda: jdac.EncoderBlock(8, stride, rngs=nnx.Rngs(0)), tm, table)
    x = rng.standard_normal((2, 43, 4)).astype(np.float32)  # 43: not a multiple of the stride
    out = _check_block(tm, jm, table, x, rng)
    assert out.shape == (2, (43 + stride % 2) // stride, 8)


@pytest.mark.parametrize("style,stride", [("legacy", 5), ("parametrizations", 8)])
def test_decoder_block(rng, style, stride):
    tm = _torch_module(style).DecoderBlock(8, 4, stride=stride)
    _perturb(tm)
    table = dac_tables.decoder_block_table("", "", style=style)
    jm = _from_torch(lambda: jdac.DecoderBlock(8, 4, stride, rngs=nnx.Rngs(0)), tm, table)
    x = rng.standard_normal((2, 7, 8)).astype(np.float32)
    out = _check_block(tm, jm, table, x, rng)
    assert out.shape == (2, 7 * stride - stride % 2, 4)  # odd strides lose one sample


# --------------------------------------------------------------------------------------------
# Encoder and decoder through the whole-state_dict converter
# --------------------------------------------------------------------------------------------

SMALL = {
    "encoder_dim": 4,
    "encoder_rates": [2, 5],
    "latent_dim": 12,
    "decoder_dim": 16,
    "decoder_rates": [5, 2],
    "n_codebooks": 3,
    "codebook_size": 16,
    "codebook_dim": 4,
    "quantizer_dropout": 0.0,
    "sample_rate": 8000,
}


def _reference_model(style, kwargs, seed=0):
    torch = ref.torch()
    torch.manual_seed(seed)
    module = ref.dac().DAC if style == "legacy" else ref.sb_dac().DAC
    model = module(**kwargs)
    _perturb(model, seed)
    return model


def _check_codec(t_encoder, t_decoder, encoder, decoder, audio):
    z_t = _run_torch(t_encoder, audio)
    z = _run_jax(encoder, audio)
    assert z.shape == z_t.shape
    y_t = _run_torch(t_decoder, z_t)
    y = _run_jax(decoder, z_t)
    assert y.shape == y_t.shape
    return (z, z_t), (y, y_t)


def test_small_codec_speechbrain(rng):
    """A SpeechBrain DAC state_dict (parametrizations key style), whole-state_dict converter."""
    config = jdac.DACConfig.from_kwargs(SMALL)
    model = _reference_model("parametrizations", SMALL)
    encoder, decoder = cdac.convert_codec_parts(model.state_dict(), config)
    exported = cdac.codec_parts_to_state_dict(encoder, decoder, config, style="parametrizations")
    for k, v in model.state_dict().items():
        if not k.startswith("quantizer."):
            np.testing.assert_array_equal(exported.pop(k), ref.to_numpy(v), err_msg=k)
    assert not exported
    audio = (rng.standard_normal((2, 10 * 7, 1)) * 0.3).astype(np.float32)
    (z, z_t), (y, y_t) = _check_codec(model.encoder, model.decoder, encoder, decoder, audio)
    assert z.shape == (2, 7, 12) and y.shape == (2, (7 * 5 - 1) * 2, 1)
    assert_close(z, z_t, "dac_block_f32", err_msg="z")
    assert_close(y, y_t, "dac_block_f32", err_msg="audio")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["16khz", "44khz_8kbps"])
def test_released_encoder_decoder(rng, preset):
    """Full-size encoder and decoder of a released configuration on 6 frames of audio.

    (0.12 s at 16 kHz, 0.07 s at 44.1 kHz: enough to cover every layer and both edges; the
    decoder's cost grows with the length and dominates this file's runtime.)
    """
    torch = ref.torch()
    config = jdac.DACConfig.preset(preset)
    dac_model = ref.dac().model.dac
    torch.manual_seed(0)
    t_enc = dac_model.Encoder(config.encoder_dim, list(config.encoder_rates), config.latent_dim)
    t_dec = dac_model.Decoder(config.latent_dim, config.decoder_dim, list(config.decoder_rates))
    _perturb(t_enc, 1)
    _perturb(t_dec, 2)
    state_dict = {f"encoder.{k}": v for k, v in t_enc.state_dict().items()}
    state_dict |= {f"decoder.{k}": v for k, v in t_dec.state_dict().items()}
    encoder = cdac.encoder_from_state_dict(state_dict, config)
    decoder = cdac.decoder_from_state_dict(state_dict, config)
    frames = 6
    audio = (rng.standard_normal((1, frames * config.hop_length, 1)) * 0.3).astype(np.float32)
    (z, z_t), (y, y_t) = _check_codec(t_enc, t_dec, encoder, decoder, audio)
    odd_loss = 8 if preset == "16khz" else 0  # 8L -> 40L-1 -> 160L-4 -> 320L-8
    assert z.shape == (1, frames, config.latent_dim)
    assert y.shape == (1, frames * config.hop_length - odd_loss, 1)
    assert np.abs(y_t).max() > 0.05  # the perturbed decoder is not silent
    assert_close(z, z_t, "dac_codec_f32", err_msg="z")
    assert_close(y, y_t, "dac_codec_f32", err_msg="audio")


@pytest.mark.parametrize("preset", ["44khz_8kbps", "44khz_16kbps", "24khz", "16khz"])
@pytest.mark.parametrize("style", STYLES)
def test_state_dict_layout_of_released_variants(preset, style):
    """Every key and shape of the reference model is what the converter expects."""
    torch = ref.torch()
    config = jdac.DACConfig.preset(preset)
    module = ref.dac().DAC if style == "legacy" else ref.sb_dac().DAC
    with torch.device("meta"):  # shapes only, no allocation
        model = module(**config.to_kwargs())
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert actual == dac_tables.expected_torch_shapes(config, style=style)


# --------------------------------------------------------------------------------------------
# Release-format checkpoint written by the reference itself
# --------------------------------------------------------------------------------------------


def test_release_checkpoint(tmp_path, rng):
    model = _reference_model("legacy", SMALL, seed=3)
    path = tmp_path / "weights.pth"
    model.save(str(path), package=False)
    config, state_dict = cdac.read_release_checkpoint(path)
    assert config == jdac.DACConfig.from_kwargs(SMALL)
    assert state_dict.keys() == model.state_dict().keys()
    encoder, decoder = cdac.convert_codec_parts(state_dict, config)
    audio = (rng.standard_normal((1, 10 * 9, 1)) * 0.3).astype(np.float32)
    (z, z_t), (y, y_t) = _check_codec(model.encoder, model.decoder, encoder, decoder, audio)
    assert_close(z, z_t, "dac_block_f32", err_msg="z")
    assert_close(y, y_t, "dac_block_f32", err_msg="audio")
