"""Parity of `jaxlatent.models.dac.Discriminator` with descript-audio-codec 1.0.0's
``dac.model.discriminator.Discriminator``, through `converters.dac.load_discriminator` /
`export_discriminator`, on real audio resampled to 44.1 kHz.

The reference is randomly initialised (torch's defaults; its weights were never released),
saved with its own ``save(package=False)`` and converted from that file. Compared: every
feature map of every sub-discriminator (the recipe's MPDs and MRDs; MSDs in a second,
MSD-only configuration), `GANLoss` values, and their gradients w.r.t. every discriminator
parameter and w.r.t. the input audio (on a smaller configuration with every kind), and the
exported file loads in the reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters.dac import export_discriminator, load_discriminator
from converters.dac_discriminator import discriminator_state_dict
from converters.errors import ConversionError
from jaxlatent.codec.resample import resample
from jaxlatent.losses.dac import GANLoss
from jaxlatent.models.dac import DiscriminatorConfig
from tests import reference
from tests.real_audio import read_clip
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

SR = 44100
#: An MPD and an MRD (the recipe's bands) for the GAN gradients: those of the recipe's eight
#: sub-discriminators take minutes to compile on 2 CPU cores, and XLA:CPU's gradients of
#: MSD's grouped 1024-channel convolutions more (MSD's maps are compared forward).
GAN_CONFIG = DiscriminatorConfig(periods=(3,), fft_sizes=(512,))
MSD_ONLY = DiscriminatorConfig(rates=(1, 2), periods=(), fft_sizes=())


def _real_batch(seconds: float) -> np.ndarray:
    """Music (48 kHz, left channel) and speech (16 kHz), resampled to 44.1 kHz: ``[2, T, 1]``."""
    music, music_sr = read_clip("music_48k_stereo.wav", seconds)
    speech, speech_sr = read_clip("speech_16k_spk1_snt1.wav", seconds + 0.3)
    length = int(seconds * SR)
    rows = [
        resample(music[:, 0], music_sr, SR)[:length],
        resample(speech[int(0.3 * speech_sr) :, 0], speech_sr, SR)[:length],  # skip silence
    ]
    return np.stack(rows)[:, :, None].astype(np.float32)


def _fake(real: np.ndarray, seed: int = 0) -> np.ndarray:
    """A generator-like estimate: the clip delayed by 7 samples through a 5-tap moving
    average, plus noise. (Not closer: the feature-matching L1's gradient is the sign of each
    difference, which rounding flips where fake and real maps nearly coincide.)"""
    kernel = np.ones(5, np.float32) / 5
    delayed = np.roll(real[:, :, 0], 7, axis=1)
    smooth = np.stack([np.convolve(r, kernel, mode="same") for r in delayed])[:, :, None]
    noise = np.random.default_rng(seed).standard_normal(real.shape).astype(np.float32)
    return (smooth + 0.05 * noise).astype(np.float32)


def _reference(kwargs: dict, tmp_path, name: str):
    torch = reference.torch()
    module = reference.require("dac.model.discriminator")
    torch.manual_seed(0)
    disc = module.Discriminator(**kwargs)
    path = tmp_path / name
    disc.save(str(path), package=False)
    return disc, path, module, torch


def _to_torch_layout(m: jax.Array) -> np.ndarray:
    # JAX [batch, *spatial, ch] -> torch [batch, ch, *spatial]
    m = np.asarray(m)
    return np.moveaxis(m, -1, 1)


def _check_feature_maps(disc_t, disc_j, audio, torch):
    with torch.no_grad():
        ref = disc_t(reference.to_torch(np.moveaxis(audio, 1, 2)))
    graphdef, state = nnx.split(disc_j)
    out = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x).feature_maps)(state, jnp.asarray(audio))
    assert [len(m) for m in out] == [len(m) for m in ref]
    for i, (maps, ref_maps) in enumerate(zip(out, ref, strict=True)):
        for j, (m, r) in enumerate(zip(maps, ref_maps, strict=True)):
            r = reference.to_numpy(r)
            assert _to_torch_layout(m).shape == r.shape, (i, j)
            scale = np.abs(r).max()
            assert scale > 0
            assert_close(
                _to_torch_layout(m) / scale,
                r / scale,
                "dac_discriminator_maps",
                err_msg=f"disc {i} map {j}",
            )


def test_recipe_feature_maps(tmp_path):
    disc_t, path, _, torch = _reference({}, tmp_path, "recipe.pth")
    config, disc_j = load_discriminator(path)  # the reference's save() file
    assert config == DiscriminatorConfig.recipe()
    _check_feature_maps(disc_t, disc_j, _real_batch(0.25), torch)


def test_msd_feature_maps_and_export(tmp_path):
    disc_t, path, module, torch = _reference(MSD_ONLY.to_kwargs(), tmp_path, "msd.pth")
    # The reference's save() stores its constructor's *defaults* as kwargs (Discriminator
    # keeps no attributes of those names): the weights disagree with them, named per key.
    with pytest.raises(ConversionError, match="the weights disagree with metadata") as e:
        load_discriminator(path)
    assert "discriminators.0.convs.5.0.weight_v" in str(e.value)
    config, disc_j = load_discriminator(path, MSD_ONLY)
    assert config == MSD_ONLY
    _check_feature_maps(disc_t, disc_j, _real_batch(0.25), torch)

    # export -> the reference's own loader: the same tensors, bit for bit, every key.
    out = tmp_path / "exported.pth"
    export_discriminator(disc_j, out)
    loaded = module.Discriminator.load(str(out))
    assert loaded.metadata["kwargs"] == MSD_ONLY.to_kwargs()
    want, got = disc_t.state_dict(), loaded.state_dict()
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        np.testing.assert_array_equal(reference.to_numpy(got[key]), reference.to_numpy(value))


def test_gan_loss_values_and_gradients(tmp_path):
    disc_t, path, _, torch = _reference(GAN_CONFIG.to_kwargs(), tmp_path, "gan.pth")
    config, disc_j = load_discriminator(path, GAN_CONFIG)
    assert config == GAN_CONFIG
    real = _real_batch(0.1)
    fake = _fake(real)

    # GANLoss: values, gradients w.r.t. every parameter and the audio.
    from audiotools import AudioSignal

    gan_t = reference.require("dac.nn.loss").GANLoss(disc_t)
    names = [n for n, _ in disc_t.named_parameters()]
    params_t = [p for _, p in disc_t.named_parameters()]
    xt = reference.to_torch(np.moveaxis(fake, 1, 2)).requires_grad_(True)
    yt = reference.to_torch(np.moveaxis(real, 1, 2)).requires_grad_(True)
    d_ref = gan_t.discriminator_loss(AudioSignal(xt, SR), AudioSignal(yt, SR))
    d_ref_grads = torch.autograd.grad(d_ref, [*params_t, yt])
    adv_ref, feat_ref = gan_t.generator_loss(AudioSignal(xt, SR), AudioSignal(yt, SR))
    g_ref_grads = torch.autograd.grad(adv_ref + feat_ref, [*params_t, xt])

    graphdef, params = nnx.split(disc_j)

    def d_loss(params, real):
        return GANLoss(nnx.merge(graphdef, params)).discriminator_loss(jnp.asarray(fake), real)

    def g_loss(params, fake):
        adv, feat = GANLoss(nnx.merge(graphdef, params)).generator_loss(fake, jnp.asarray(real))
        return adv + feat, (adv, feat)

    @jax.jit
    def both(params, real, fake):
        d = jax.value_and_grad(d_loss, argnums=(0, 1))(params, real)
        g = jax.value_and_grad(g_loss, argnums=(0, 1), has_aux=True)(params, fake)
        return d, g

    (d_val, (d_gp, d_greal)), ((_, (adv, feat)), (g_gp, g_gfake)) = both(
        params, jnp.asarray(real), jnp.asarray(fake)
    )
    assert_close(d_val, reference.to_numpy(d_ref), "dac_discriminator_gan")
    assert_close(adv, reference.to_numpy(adv_ref), "dac_discriminator_gan")
    assert_close(feat, reference.to_numpy(feat_ref), "dac_discriminator_gan")
    for grads, ref_grads, what in ((d_gp, d_ref_grads, "D"), (g_gp, g_ref_grads, "G")):
        as_torch = discriminator_state_dict(nnx.merge(graphdef, grads))
        assert sorted(as_torch) == sorted(names)
        for name, rg in zip(names, ref_grads[:-1], strict=True):
            rg = reference.to_numpy(rg)
            scale = np.abs(rg).max()
            assert scale > 0, name
            assert_close(
                as_torch[name] / scale,
                rg / scale,
                "dac_discriminator_param_grad",
                err_msg=f"{what} loss, {name}",
            )
    for g, rg, what in ((d_greal, d_ref_grads[-1], "D"), (g_gfake, g_ref_grads[-1], "G")):
        rg = np.moveaxis(reference.to_numpy(rg), 1, 2)
        scale = np.abs(rg).max()
        assert scale > 0
        assert_close(
            np.asarray(g) / scale, rg / scale, "dac_discriminator_audio_grad", err_msg=what
        )
