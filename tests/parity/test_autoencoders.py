"""SpeechBrain's autoencoders vs jaxlatent's, built from real SpeechBrain layers.

The torch models are SpeechBrain 1.1.2 `VariationalAutoencoder` / `NormalizingAutoencoder`
made of `speechbrain.nnet.linear.Linear` and `speechbrain.nnet.CNN.Conv1d` (three padding
modes) in `torch.nn.Sequential`s; the jaxlatent twins get their weights through
`converters.speechbrain` (never by hand). The reparameterisation noise is shared by
patching `torch.randn_like` to return the numpy noise that jaxlatent receives explicitly.
Masks are compared exactly (which positions hold the mask value), lengths exactly.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import errors
from converters import speechbrain as sbconv
from jaxlatent import nn as jnn
from jaxlatent.models import (
    DownsamplingPadding,
    NormalizingAutoencoder,
    VariationalAutoencoder,
    pad_divisible,
)
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

B, T, F, H, Z = 3, 13, 6, 8, 4
#: 7/13 is the adversarial float32 fraction: rule "plain ceil" keeps 8 frames, not 7.
PARTIAL = np.array([1.0, 7 / 13, 0.5], np.float32)
LENGTHS = {"none": None, "full": np.ones(B, np.float32), "partial": PARTIAL}


def _leaky(x):
    return jax.nn.leaky_relu(x, 0.01)


def _sb_layers():
    return ref.speechbrain("nnet.linear"), ref.speechbrain("nnet.CNN")


def _torch_vae_parts(seed=0):
    torch = ref.torch()
    lin, cnn = _sb_layers()
    torch.manual_seed(seed)
    encoder = torch.nn.Sequential(
        lin.Linear(n_neurons=H, input_size=F),
        torch.nn.LeakyReLU(),
        cnn.Conv1d(out_channels=H, kernel_size=3, in_channels=H),  # 'same', reflect
    )
    decoder = torch.nn.Sequential(
        cnn.Conv1d(out_channels=H, kernel_size=3, in_channels=Z, padding_mode="replicate"),
        torch.nn.LeakyReLU(),
        lin.Linear(n_neurons=F + 1, input_size=H),  # one channel more: trim_as crops it
    )
    mean = lin.Linear(n_neurons=Z, input_size=H)
    log_var = cnn.Conv1d(out_channels=Z, kernel_size=5, in_channels=H, padding_mode="constant")
    return encoder, decoder, mean, log_var


def _jax_vae_parts():
    rngs = nnx.Rngs(0)
    encoder = nnx.Sequential(
        nnx.Linear(F, H, rngs=rngs), _leaky, jnn.SpeechBrainConv1d(H, 3, in_channels=H, rngs=rngs)
    )
    decoder = nnx.Sequential(
        jnn.SpeechBrainConv1d(H, 3, in_channels=Z, padding_mode="replicate", rngs=rngs),
        _leaky,
        nnx.Linear(H, F + 1, rngs=rngs),
    )
    mean = nnx.Linear(H, Z, rngs=rngs)
    log_var = jnn.SpeechBrainConv1d(Z, 5, in_channels=H, padding_mode="constant", rngs=rngs)
    return encoder, decoder, mean, log_var


ENCODER = sbconv.sequential({0: sbconv.linear, 2: sbconv.conv1d})
DECODER = sbconv.sequential({0: sbconv.conv1d, 2: sbconv.linear})
VAE_TABLE = sbconv.variational_autoencoder_table(
    encoder=ENCODER, decoder=DECODER, mean=sbconv.linear, log_var=sbconv.conv1d
)


def _paddings(factor):
    if factor is None:
        return None, None
    data_utils = ref.speechbrain("utils.data_utils")
    return (
        functools.partial(data_utils.pad_divisible, factor=factor, len_dim=1),
        functools.partial(pad_divisible, factor=factor, len_dim=1),
    )


def _make_vae(factor=None, **kwargs):
    sb = ref.sb_autoencoders()
    t_pad, j_pad = _paddings(factor)
    tvae = sb.VariationalAutoencoder(*_torch_vae_parts(), latent_padding=t_pad, **kwargs)
    jvae = VariationalAutoencoder(*_jax_vae_parts(), latent_padding=j_pad, **kwargs)
    sbconv.convert_autoencoder(tvae, jvae, VAE_TABLE)
    return tvae.eval(), jvae


def _patch_noise(monkeypatch, noise):
    torch = ref.torch()

    def randn_like(t):
        assert tuple(t.shape) == noise.shape
        return torch.from_numpy(noise.copy())

    monkeypatch.setattr(torch, "randn_like", randn_like)


def _t(x):
    return None if x is None else ref.to_torch(x)


def _compare_output(j_out, t_out, *, mask_values=()):
    for name, j, t in zip(j_out._fields, j_out, t_out, strict=True):
        if t is None:
            assert j is None, name
            continue
        t = ref.to_numpy(t)
        j = np.asarray(j)
        assert j.shape == t.shape, name
        if name == "latent_length":
            np.testing.assert_array_equal(j, t, err_msg=name)
            continue
        assert_close(j, t, "ae_model_f32", err_msg=name)
        for value in mask_values:  # which positions were masked must agree exactly
            np.testing.assert_array_equal(j == value, t == value, err_msg=f"{name} == {value}")


@pytest.mark.parametrize("length", ["none", "full", "partial"])
@pytest.mark.parametrize("factor", [None, 4])
def test_vae_train_sample(rng, monkeypatch, length, factor):
    torch = ref.torch()
    tvae, jvae = _make_vae(factor, out_mask_value=-1.5, latent_mask_value=2.5)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    noise = rng.standard_normal((B, T, Z)).astype(np.float32)
    lens = LENGTHS[length]
    _patch_noise(monkeypatch, noise)
    with torch.no_grad():
        t_out = tvae.train_sample(_t(x), _t(lens))
    step = nnx.jit(lambda m, x, l, n: m.train_sample(x, l, noise=n))
    _compare_output(step(jvae, x, lens, noise), t_out, mask_values=(-1.5, 2.5))
    if length == "partial":  # eagerly too (concrete lengths are range-checked)
        j_out = jvae.train_sample(x, lens, noise=noise)
        _compare_output(j_out, t_out, mask_values=(-1.5, 2.5))
    if length == "partial":  # the adversarial item keeps 8 frames (rule "plain ceil")
        t_rec = ref.to_numpy(t_out.rec)
        assert (t_rec[1, :, 0] != -1.5).sum() == 8


@pytest.mark.parametrize("mask_latent,mask_out", [(False, True), (True, False)])
def test_vae_mask_flags_and_call_overrides(rng, monkeypatch, mask_latent, mask_out):
    torch = ref.torch()
    tvae, jvae = _make_vae(4, mask_latent=mask_latent, mask_out=mask_out)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    noise = rng.standard_normal((B, T, Z)).astype(np.float32)
    _patch_noise(monkeypatch, noise)
    kwargs = {"out_mask_value": 3.0, "latent_mask_value": -4.0}
    with torch.no_grad():
        t_out = tvae.train_sample(_t(x), _t(PARTIAL), **kwargs)
    j_out = jvae.train_sample(x, PARTIAL, **kwargs, noise=noise)
    _compare_output(j_out, t_out, mask_values=(3.0, -4.0))


@pytest.mark.parametrize("length", ["none", "partial"])
def test_vae_latent_not_stochastic(rng, monkeypatch, length):
    """The latent is the padded, UNMASKED mean; the decoder still gets the masked sample."""
    torch = ref.torch()
    tvae, jvae = _make_vae(4, latent_stochastic=False, latent_mask_value=7.0)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    noise = rng.standard_normal((B, T, Z)).astype(np.float32)
    _patch_noise(monkeypatch, noise)
    with torch.no_grad():
        t_out = tvae.train_sample(_t(x), _t(LENGTHS[length]))
    j_out = nnx.jit(lambda m, x, l, n: m.train_sample(x, l, noise=n))(
        jvae, x, LENGTHS[length], noise
    )
    _compare_output(j_out, t_out, mask_values=(7.0,))
    assert j_out.latent.shape == (B, 16, Z)
    assert not (np.asarray(j_out.latent) == 7.0).any()


def test_vae_encode_decode_and_reparameterize(rng, monkeypatch):
    torch = ref.torch()
    tvae, jvae = _make_vae()
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    z = rng.standard_normal((B, T, Z)).astype(np.float32)
    log_var = rng.standard_normal((B, T, Z)).astype(np.float32)
    noise = rng.standard_normal((B, T, Z)).astype(np.float32)
    _patch_noise(monkeypatch, noise)
    with torch.no_grad():
        t_enc, t_call = tvae.encode(_t(x)), tvae(_t(x))
        t_dec = tvae.decode(_t(z))
        t_rep = tvae.reparameterize(_t(z), _t(log_var))
    assert_close(jvae.encode(x, PARTIAL), ref.to_numpy(t_enc), "ae_model_f32")
    assert_close(jvae(x), ref.to_numpy(t_call), "ae_model_f32")
    assert_close(jvae.decode(z), ref.to_numpy(t_dec), "ae_model_f32")
    j_rep = jvae.reparameterize(jnp.asarray(z), jnp.asarray(log_var), noise=noise)
    assert_close(j_rep, ref.to_numpy(t_rep), "ae_model_f32")


def test_vae_downsampling_padding_module(rng, monkeypatch):
    torch = ref.torch()
    sb = ref.sb_autoencoders()
    unet = ref.speechbrain("nnet.unet")
    tvae = sb.VariationalAutoencoder(
        *_torch_vae_parts(), latent_padding=unet.DownsamplingPadding(8, len_dim=1, dims=[1])
    )
    jvae = VariationalAutoencoder(
        *_jax_vae_parts(), latent_padding=DownsamplingPadding(8, len_dim=1, dims=(1,))
    )
    sbconv.convert_autoencoder(tvae, jvae, VAE_TABLE)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    noise = rng.standard_normal((B, T, Z)).astype(np.float32)
    _patch_noise(monkeypatch, noise)
    with torch.no_grad():
        t_out = tvae.train_sample(_t(x), _t(PARTIAL))
    _compare_output(jvae.train_sample(x, PARTIAL, noise=noise), t_out, mask_values=(0.0,))


# --- NormalizingAutoencoder ---------------------------------------------------------------


def _norm_parts(seed=0):
    torch = ref.torch()
    lin, cnn = _sb_layers()
    torch.manual_seed(seed)
    t_enc = torch.nn.Sequential(
        lin.Linear(n_neurons=H, input_size=F),
        torch.nn.LeakyReLU(),
        cnn.Conv1d(out_channels=Z, kernel_size=3, in_channels=H),
    )
    t_dec = torch.nn.Sequential(
        cnn.Conv1d(out_channels=H, kernel_size=3, in_channels=Z), lin.Linear(F, input_size=H)
    )
    rngs = nnx.Rngs(0)
    j_enc = nnx.Sequential(
        nnx.Linear(F, H, rngs=rngs), _leaky, jnn.SpeechBrainConv1d(Z, 3, in_channels=H, rngs=rngs)
    )
    j_dec = nnx.Sequential(
        jnn.SpeechBrainConv1d(H, 3, in_channels=Z, rngs=rngs), nnx.Linear(H, F, rngs=rngs)
    )
    return (t_enc, t_dec), (j_enc, j_dec)


NORM_TABLE = sbconv.normalizing_autoencoder_table(
    encoder=ENCODER, decoder=sbconv.sequential({0: sbconv.conv1d, 1: sbconv.linear})
)


def _compare_norm_state(t_norm, j_norm):
    assert int(j_norm.step_count[...]) == t_norm.step_count
    np.testing.assert_array_equal(np.asarray(j_norm.weight[...]), ref.to_numpy(t_norm.weight))
    for name in ("running_mean", "running_std"):
        assert_close(
            j_norm.__getattribute__(name)[...],
            ref.to_numpy(getattr(t_norm, name)),
            "ae_global_norm_stats",
            err_msg=name,
        )


@pytest.mark.parametrize("factor", [None, 4])
def test_normalizing_autoencoder_tracks_running_stats(rng, factor):
    torch = ref.torch()
    sb = ref.sb_autoencoders()
    (t_enc, t_dec), (j_enc, j_dec) = _norm_parts()
    t_pad, j_pad = _paddings(factor)
    tae = sb.NormalizingAutoencoder(t_enc, t_dec, latent_padding=t_pad, latent_mask_value=-3.0)
    jae = NormalizingAutoencoder(j_enc, j_dec, latent_padding=j_pad, latent_mask_value=-3.0)
    sbconv.convert_autoencoder(tae, jae, NORM_TABLE)
    # SpeechBrain's calls always update the statistics: train=True here
    step = nnx.jit(lambda m, x, l: m.train_sample(x, l, train=True))
    schedule = [None, PARTIAL, np.array([0.25, 1.0, 0.6], np.float32), PARTIAL, "encode"]
    for i, lens in enumerate(schedule):
        x = (2.0 * rng.standard_normal((B, T, F)) + i).astype(np.float32)
        with torch.no_grad():
            if isinstance(lens, str):
                t_z = tae.encode(_t(x), _t(PARTIAL))
                j_z = jae.encode(x, PARTIAL, train=True)
                assert_close(j_z, ref.to_numpy(t_z), "ae_model_f32")
            else:
                t_out = tae.train_sample(_t(x), _t(lens))
                _compare_output(step(jae, x, lens), t_out, mask_values=(-3.0, 0.0))
        _compare_norm_state(tae.norm, jae.norm)
    # Frozen: statistics stay, outputs still agree (a freeze retraces: `frozen` is static).
    tae.norm.freeze()
    jae.norm.freeze()
    before = float(jae.norm.running_mean[...])
    x = (rng.standard_normal((B, T, F)) - 5.0).astype(np.float32)
    with torch.no_grad():
        t_out = tae.train_sample(_t(x), _t(PARTIAL))
    _compare_output(step(jae, x, PARTIAL), t_out, mask_values=(-3.0,))
    _compare_norm_state(tae.norm, jae.norm)
    assert float(jae.norm.running_mean[...]) == before
    # train=False (an evaluation) normalises as SpeechBrain's frozen norm does
    jae.norm.unfreeze()
    _compare_output(jae.train_sample(x, PARTIAL), t_out, mask_values=(-3.0,))
    assert float(jae.norm.running_mean[...]) == before


def test_global_norm_update_steps_under_jit(rng):
    """update_steps stops the statistics through a traced condition, as SpeechBrain's int."""
    torch = ref.torch()
    features = ref.speechbrain("processing.features")
    cfg = dict(norm_mean=0.3, norm_std=2.0, update_steps=2, length_dim=2, mask_value=-1.0)
    t_norm = features.GlobalNorm(**cfg)
    j_norm = jnn.GlobalNorm(**cfg)
    call = nnx.jit(lambda m, x, l, v: m(x, l, mask_value=v))
    traces = []
    skip = nnx.jit(lambda m, x: (traces.append(1), m(x, skip_update=True))[1])
    for i in range(4):  # layout [batch, features, time]: length_dim=2
        x = (rng.standard_normal((B, 5, T)) * (i + 1) + i).astype(np.float32)
        with torch.no_grad():
            t_y = t_norm(_t(x), _t(PARTIAL), mask_value=0.5)
        assert_close(call(j_norm, x, PARTIAL, 0.5), ref.to_numpy(t_y), "ae_model_f32")
        _compare_norm_state(t_norm, j_norm)
        with torch.no_grad():
            t_y = t_norm(_t(x), skip_update=True)
        assert_close(skip(j_norm, x), ref.to_numpy(t_y), "ae_model_f32")
        _compare_norm_state(t_norm, j_norm)
    assert len(traces) == 1
    with torch.no_grad():
        t_d = t_norm.denormalize(_t(x))
    assert_close(j_norm.denormalize(x), ref.to_numpy(t_d), "ae_model_f32")


# --- converter ------------------------------------------------------------------------------


def test_round_trip_into_speechbrain_strict(rng):
    torch = ref.torch()
    sb = ref.sb_autoencoders()
    tvae, jvae = _make_vae()
    state, attributes = sbconv.export_autoencoder(jvae, VAE_TABLE)
    assert attributes == {}
    fresh = sb.VariationalAutoencoder(*_torch_vae_parts(seed=1))
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    for key, value in tvae.state_dict().items():
        np.testing.assert_array_equal(ref.to_numpy(fresh.state_dict()[key]), ref.to_numpy(value))

    # Normalizing autoencoder: buffers, step_count and frozen travel both ways.
    (t_enc, t_dec), (j_enc, j_dec) = _norm_parts()
    tae = sb.NormalizingAutoencoder(t_enc, t_dec)
    with torch.no_grad():
        for _ in range(3):
            tae.encode(_t(rng.standard_normal((B, T, F)).astype(np.float32)), _t(PARTIAL))
    tae.norm.freeze()
    jae = NormalizingAutoencoder(j_enc, j_dec)
    sbconv.convert_autoencoder(tae, jae, NORM_TABLE)
    assert int(jae.norm.step_count[...]) == 3 and jae.norm.frozen
    (t_enc2, t_dec2), _ = _norm_parts(seed=2)
    back = sb.NormalizingAutoencoder(t_enc2, t_dec2)
    sbconv.load_into_speechbrain(back, jae, NORM_TABLE)
    assert back.norm.step_count == 3 and back.norm.frozen
    for key, value in tae.state_dict().items():
        np.testing.assert_array_equal(ref.to_numpy(back.state_dict()[key]), ref.to_numpy(value))


def test_converter_rejects_mismatched_models():
    sb = ref.sb_autoencoders()
    tvae = sb.VariationalAutoencoder(*_torch_vae_parts(), out_mask_value=1.0)
    jvae = VariationalAutoencoder(*_jax_vae_parts())
    with pytest.raises(errors.ConversionError, match="out_mask_value"):
        sbconv.convert_autoencoder(tvae, jvae, VAE_TABLE)
    # A Conv1d padding mode that differs is a mismatch, not silently different outputs.
    tvae = sb.VariationalAutoencoder(*_torch_vae_parts())
    parts = list(_jax_vae_parts())
    parts[3] = jnn.SpeechBrainConv1d(Z, 5, in_channels=H, rngs=nnx.Rngs(0))  # reflect
    with pytest.raises(errors.ConversionError, match="padding_mode"):
        sbconv.convert_autoencoder(tvae, VariationalAutoencoder(*parts), VAE_TABLE)
    # GlobalNorm settings and SpeechBrain-only Linear features are checked too.
    features = ref.speechbrain("processing.features")
    with pytest.raises(errors.ConversionError, match="update_steps"):
        sbconv.convert_autoencoder(
            features.GlobalNorm(update_steps=3),
            jnn.GlobalNorm(),
            sbconv.global_norm("", ""),
        )
    lin, _ = _sb_layers()
    with pytest.raises(errors.ConversionError, match="max_norm"):
        sbconv.convert_autoencoder(
            lin.Linear(3, input_size=2, max_norm=1.0),
            nnx.Linear(2, 3, rngs=nnx.Rngs(0)),
            sbconv.linear("", ""),
        )
    # A table that misses a submodule reports the unused keys; nothing is assigned.
    partial_table = sbconv.variational_autoencoder_table(
        encoder=ENCODER, decoder=DECODER, mean=sbconv.linear, log_var=lambda t, j: {}
    )
    before = np.asarray(jvae.mean.kernel[...]).copy()
    with pytest.raises(errors.ConversionError, match=r"log_var\.conv\.weight"):
        sbconv.convert_autoencoder(tvae, jvae, partial_table)
    np.testing.assert_array_equal(np.asarray(jvae.mean.kernel[...]), before)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, padding="valid"),
        dict(kernel_size=5, stride=2, padding_mode="circular"),
        dict(kernel_size=3, dilation=2, padding="causal"),
        dict(kernel_size=4, padding="same", padding_mode="constant"),  # even kernel via in_channels
        dict(kernel_size=3, weight_norm=True, groups=2),
    ],
)
def test_speechbrain_conv1d_padding_modes(rng, kwargs):
    torch = ref.torch()
    _, cnn = _sb_layers()
    torch.manual_seed(0)
    tconv = cnn.Conv1d(out_channels=6, in_channels=4, **kwargs)
    jconv = jnn.SpeechBrainConv1d(6, in_channels=4, **kwargs, rngs=nnx.Rngs(0))
    build = functools.partial(sbconv.conv1d, weight_norm=kwargs.get("weight_norm", False))
    sbconv.convert_autoencoder(tconv, jconv, build("", ""))
    x = rng.standard_normal((2, 11, 4)).astype(np.float32)
    with torch.no_grad():
        t_y = ref.to_numpy(tconv(_t(x)))
    assert_close(jconv(x), t_y, "ae_model_f32")
