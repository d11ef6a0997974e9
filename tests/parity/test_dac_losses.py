"""Parity of `jaxlatent.losses.dac` with descript-audio-codec 1.0.0's ``dac.nn.loss`` on real clips.

Each loss value and its gradient w.r.t. the estimate, at the DAC recipe's configuration
(``conf/base.yml``: 7-scale mel loss, mag_weight 0, pow 1) and defaults, and at one
non-default configuration each. Estimates are the clip plus seeded noise, or the clip through
a short moving average. The reference's AudioSignals wrap torch tensors that require grad.
`GANLoss` is checked with a small stand-in discriminator (two conv sub-discriminators,
the same weights in torch and JAX); on the real discriminator: test_dac_discriminator.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent.losses.dac import (
    GANLoss,
    L1Loss,
    MelSpectrogramLoss,
    MultiScaleSTFTLoss,
    SISDRLoss,
    stft_magnitude,
)
from tests import reference
from tests.real_audio import read_clip
from tests.tolerances import assert_close

pytestmark = [
    pytest.mark.parity,
    # the reference's own warnings: librosa at the recipe's 320 mels of a 2048 FFT at 16 kHz,
    # audiotools when one AudioSignal is re-analysed at another scale
    pytest.mark.filterwarnings("ignore:Empty filters detected"),
    pytest.mark.filterwarnings("ignore:stft_data changed shape"),
]

RECIPE_MEL = dict(
    n_mels=[5, 10, 20, 40, 80, 160, 320],
    window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
    mag_weight=0.0,
    pow=1.0,
    clamp_eps=1e-5,
    mel_fmin=[0.0] * 7,
    mel_fmax=[None] * 7,
)
RECIPE_STFT = dict(window_lengths=[2048, 512])  # conf/base.yml's MultiScaleSTFTLoss


@pytest.fixture(scope="module")
def loss_module():
    return reference.require("dac.nn.loss")


def _speech_batch(seconds=0.5):
    clips = [
        read_clip(n, seconds) for n in ("speech_16k_spk1_snt1.wav", "speech_16k_spk2_snt2.wav")
    ]
    assert {sr for _, sr in clips} == {16000}
    return np.stack([x for x, _ in clips]), 16000  # [2, time, 1]


def _music_stereo(seconds=0.25):
    x, sr = read_clip("music_48k_stereo.wav", seconds)
    return x[None], sr  # [1, time, 2]


def _music_24k(seconds=0.25):
    x, sr = read_clip("music_24k.wav", seconds)
    return x[None], sr  # [1, time, 1]


def _source(source):
    return {"speech": _speech_batch, "stereo": _music_stereo, "music24": _music_24k}[source]()


def test_recipe_presets_are_base_yml():
    assert MelSpectrogramLoss.recipe() == MelSpectrogramLoss(**RECIPE_MEL)
    assert MultiScaleSTFTLoss.recipe() == MultiScaleSTFTLoss(**RECIPE_STFT)


def _noisy(y, scale=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return (y + scale * rng.standard_normal(y.shape)).astype(np.float32)


def _filtered(y):
    """One-pole low-pass (no spectral nulls: a moving average's zeros push mel bands of the
    estimate down to clamp_eps, where float32 STFT rounding decides the gradient)."""
    from scipy.signal import lfilter

    return lfilter([0.5], [1.0, -0.5], y, axis=1).astype(np.float32)


def _torch_value_and_grad(loss, x, y, sr, *, wrap=True, grad_arg=0):
    """Reference loss of ``[batch, time, channels]`` numpy inputs and its gradient w.r.t. the
    argument `grad_arg`, back in channels-last numpy."""
    torch = reference.torch()
    from audiotools import AudioSignal

    args = [reference.to_torch(np.ascontiguousarray(np.moveaxis(a, 1, 2))) for a in (x, y)]
    args[grad_arg].requires_grad_(True)
    leaf = args[grad_arg]
    if wrap:
        args = [AudioSignal(a, sr) for a in args]
    value = loss(*args)
    (grad,) = torch.autograd.grad(value, leaf)
    return reference.to_numpy(value), np.moveaxis(reference.to_numpy(grad), 1, 2)


def _jax_value_and_grad(fn, x, y, grad_arg=0):
    value, grad = jax.jit(jax.value_and_grad(fn, argnums=grad_arg))(jnp.asarray(x), jnp.asarray(y))
    return np.asarray(value), np.asarray(grad)


def _compare(ours, ref, name, grad_name=None):
    (v, g), (rv, rg) = ours, ref
    assert np.isfinite(rv) and np.abs(rg).max() > 0  # the reference gradient is not trivial
    assert g.shape == rg.shape
    assert_close(v, rv, "dac_loss_stft_value" if name in ("stft", "mel") else f"dac_loss_{name}")
    assert_close(g, rg, grad_name or f"dac_loss_{name}_grad")


# --- STFT framing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_length", "window_type", "match_stride"),
    [(512, None, False), (2048, "hann", False), (256, "sqrt_hann", True), (100, "hamming", False)],
)
def test_stft_magnitude_matches_audiotools(window_length, window_type, match_stride):
    reference.dac()
    from audiotools import AudioSignal

    x, sr = _music_stereo()
    sig = AudioSignal(reference.to_torch(np.ascontiguousarray(np.moveaxis(x, 1, 2))), sr)
    hop = window_length // 4
    ref = reference.to_numpy(
        sig.stft(window_length, hop, window_type or "hann", match_stride=match_stride).abs()
    )  # [batch, channels, bins, frames]
    ours = np.asarray(stft_magnitude(jnp.asarray(x), window_length, hop, window_type, match_stride))
    ref = np.transpose(ref, (0, 3, 2, 1))
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert_close(ours, ref, "dac_loss_stft_magnitude")


# --- waveform losses --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"reduction": "sum"}])
def test_l1_loss(loss_module, kwargs):
    y, sr = _speech_batch()
    x = _filtered(y)
    ref = _torch_value_and_grad(loss_module.L1Loss(**kwargs), x, y, sr)
    ours = _jax_value_and_grad(L1Loss(**kwargs), x, y)
    _compare(ours, ref, "l1")


@pytest.mark.parametrize(
    ("kwargs", "source"),
    [
        ({}, "speech"),
        ({"scaling": False, "zero_mean": False, "reduction": "sum"}, "stereo"),
        ({"clip_min": -30.0}, "speech"),
    ],
)
def test_sisdr_loss(loss_module, kwargs, source):
    y, sr = _speech_batch() if source == "speech" else _music_stereo()
    x = _noisy(y, 0.05)
    # the reference's forward(x, y) treats x as the references: the gradient is w.r.t. y
    ref = _torch_value_and_grad(loss_module.SISDRLoss(**kwargs), y, x, sr, grad_arg=1)
    ours = _jax_value_and_grad(SISDRLoss(**kwargs), y, x, grad_arg=1)
    _compare(ours, ref, "sisdr")


def test_sisdr_clip_min_binds(loss_module):
    y, _ = _speech_batch()
    x = _noisy(y, 0.05)
    kwargs = {"clip_min": 50.0, "reduction": "none"}  # the losses of these estimates are < 50
    torch_args = [reference.to_torch(np.moveaxis(a, 1, 2)) for a in (y, x)]
    ref = reference.to_numpy(loss_module.SISDRLoss(**kwargs)(*torch_args))
    ours = np.asarray(SISDRLoss(**kwargs)(jnp.asarray(y), jnp.asarray(x)))
    assert ours.shape == ref.shape == (2, 1)
    np.testing.assert_array_equal(ours, 50.0)
    np.testing.assert_array_equal(ref, 50.0)
    g = jax.grad(lambda e: SISDRLoss(clip_min=50.0)(jnp.asarray(y), e))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(g), 0.0)


# --- spectral losses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "source"),
    [
        (RECIPE_STFT, "speech"),
        (
            dict(
                window_lengths=[1024, 256, 64],
                clamp_eps=1e-3,
                mag_weight=0.5,
                log_weight=2.0,
                pow=1.0,
                window_type="hamming",
                match_stride=True,
            ),
            "stereo",
        ),
    ],
)
def test_multiscale_stft_loss(loss_module, kwargs, source):
    y, sr = _speech_batch() if source == "speech" else _music_stereo()
    x = _noisy(y)
    ref = _torch_value_and_grad(loss_module.MultiScaleSTFTLoss(**kwargs), x, y, sr)
    ours = _jax_value_and_grad(MultiScaleSTFTLoss(**kwargs), x, y)
    _compare(ours, ref, "stft")


@pytest.mark.parametrize(
    ("kwargs", "source", "estimate"),
    [
        (RECIPE_MEL, "speech", "noisy"),
        (RECIPE_MEL, "speech", "filtered"),
        (RECIPE_MEL, "music24", "noisy"),
        ({}, "speech", "noisy"),
        (
            dict(
                n_mels=[64, 32],
                window_lengths=[1024, 256],
                clamp_eps=1e-4,
                mag_weight=0.5,
                log_weight=1.5,
                pow=1.5,
                mel_fmin=[50.0, 100.0],
                mel_fmax=[8000.0, None],
                window_type="sqrt_hann",
            ),
            "stereo",
            "noisy",
        ),
    ],
)
def test_mel_spectrogram_loss(loss_module, kwargs, source, estimate):
    y, sr = _source(source)
    x = _noisy(y) if estimate == "noisy" else _filtered(y)
    ref = _torch_value_and_grad(loss_module.MelSpectrogramLoss(**kwargs), x, y, sr)
    ours = _jax_value_and_grad(lambda a, b: MelSpectrogramLoss(**kwargs)(a, b, sr), x, y)
    _compare(ours, ref, "mel", None if estimate == "noisy" else "dac_loss_mel_grad_near_clamp")


def test_defaults_match_reference(loss_module):
    import inspect

    for ours, name in [
        (L1Loss, "L1Loss"),
        (SISDRLoss, "SISDRLoss"),
        (MultiScaleSTFTLoss, "MultiScaleSTFTLoss"),
        (MelSpectrogramLoss, "MelSpectrogramLoss"),
    ]:
        params = inspect.signature(getattr(loss_module, name).__init__).parameters
        ref = {k: p.default for k, p in params.items() if k not in ("self", "kwargs", "loss_fn")}
        mine = ours()
        for k, v in ref.items():
            got = getattr(mine, k)
            assert (list(got) if isinstance(got, tuple) else got) == v, (name, k)


def test_bad_input():
    x = jnp.zeros((1, 4000, 1))
    with pytest.raises(ValueError, match="same shape"):
        MultiScaleSTFTLoss()(x, jnp.zeros((1, 4001, 1)))
    with pytest.raises(ValueError, match="too short"):
        MelSpectrogramLoss()(x[:, :800], x[:, :800], 16000)
    with pytest.raises(ValueError, match=r"\[batch, time, channels\]"):
        SISDRLoss()(x[0], x[0])
    with pytest.raises(ValueError, match="reduction"):
        SISDRLoss(reduction="avg")
    with pytest.raises(ValueError, match="attribute"):
        L1Loss(attribute="magnitude")
    with pytest.raises(ValueError, match="padding_type"):
        stft_magnitude(x, 256, 64, match_stride=True, padding_type="zeros")
    with pytest.raises(ValueError, match="hop_length"):
        stft_magnitude(x, 256, 32, match_stride=True)
    gan = GANLoss(lambda a: [[a[:, : a.shape[1] // 2], a]])  # output shape depends on the input
    with pytest.raises(ValueError, match="feature maps"):
        gan.generator_loss(x, jnp.zeros((1, 4002, 1)))


# --- GAN losses -------------------------------------------------------------------------------


def _stand_in_weights(seed=0):
    rng = np.random.default_rng(seed)
    # two sub-discriminators: conv(1->4, k5, dilation d) -> leaky_relu(0.1) -> conv(4->1, k3)
    return [
        (
            (0.5 * rng.standard_normal((4, 1, 5))).astype(np.float32),
            (0.1 * rng.standard_normal(4)).astype(np.float32),
            (0.5 * rng.standard_normal((1, 4, 3))).astype(np.float32),
            (0.1 * rng.standard_normal(1)).astype(np.float32),
            d,
        )
        for d in (1, 2)
    ]


def _torch_discriminator(weights):
    torch = reference.torch()
    import torch.nn.functional as F

    params = [tuple(torch.from_numpy(w).requires_grad_(True) for w in ws[:4]) for ws in weights]

    def disc(x):  # [batch, 1, time]
        out = []
        for (w1, b1, w2, b2), ws in zip(params, weights, strict=True):
            h = F.leaky_relu(F.conv1d(x, w1, b1, dilation=ws[4]), 0.1)
            out.append([h, F.conv1d(h, w2, b2)])
        return out

    return disc, [p for ps in params for p in ps], torch


def _jax_discriminator(params, weights):
    def conv(x, w, b, d):  # x [batch, time, c_in], torch weight [c_out, c_in, k]
        y = jax.lax.conv_general_dilated(
            x,
            jnp.transpose(w, (2, 1, 0)),
            (1,),
            "VALID",
            rhs_dilation=(d,),
            dimension_numbers=("NWC", "WIO", "NWC"),
        )
        return y + b[None, None, :]

    def disc(x):  # [batch, time, 1]
        out = []
        for (w1, b1, w2, b2), ws in zip(params, weights, strict=True):
            h = jax.nn.leaky_relu(conv(x, w1, b1, ws[4]), 0.1)
            out.append([h, conv(h, w2, b2, 1)])
        return out

    return disc


def test_gan_loss(loss_module):
    y, sr = _speech_batch(0.125)
    x = _filtered(y)
    weights = _stand_in_weights()
    flat = [jnp.asarray(w) for ws in weights for w in ws[:4]]

    def params_of(flat):
        return [tuple(flat[4 * i : 4 * i + 4]) for i in range(len(weights))]

    disc_t, tparams, torch = _torch_discriminator(weights)
    gan_t = loss_module.GANLoss(disc_t)
    from audiotools import AudioSignal

    def signals():
        xt = reference.to_torch(np.moveaxis(x, 1, 2)).requires_grad_(True)
        yt = reference.to_torch(np.moveaxis(y, 1, 2)).requires_grad_(True)
        return xt, yt, AudioSignal(xt, sr), AudioSignal(yt, sr)

    # discriminator loss: value, gradient w.r.t. discriminator weights and the real audio
    xt, yt, fake, real = signals()
    d_ref = gan_t.discriminator_loss(fake, real)
    d_ref_grads = torch.autograd.grad(d_ref, [*tparams, yt])

    # joint: fake and real through the discriminator in one call (the recipe's)
    for joint in (False, True):

        def d_loss(flat, fake, real, joint=joint):
            gan = GANLoss(_jax_discriminator(params_of(flat), weights), joint=joint)
            return gan.discriminator_loss(fake, real)

        d_val, (d_gw, d_gfake, d_greal) = jax.jit(jax.value_and_grad(d_loss, argnums=(0, 1, 2)))(
            flat, jnp.asarray(x), jnp.asarray(y)
        )
        assert_close(d_val, reference.to_numpy(d_ref), "dac_loss_gan")
        for g, rg in zip(d_gw, d_ref_grads[:-1], strict=True):
            assert_close(g, reference.to_numpy(rg), "dac_loss_gan_grad")
        assert_close(
            d_greal, np.moveaxis(reference.to_numpy(d_ref_grads[-1]), 1, 2), "dac_loss_gan_grad"
        )
        np.testing.assert_array_equal(np.asarray(d_gfake), 0.0)  # fake is detached

    # generator loss: both terms and their gradients w.r.t. the fake audio
    for term in (0, 1):
        xt, yt, fake, real = signals()
        g_ref = gan_t.generator_loss(fake, real)[term]
        (g_ref_grad,) = torch.autograd.grad(g_ref, xt)

        def g_loss(fake, real, term=term):
            gan = GANLoss(_jax_discriminator(params_of(flat), weights))
            return gan.generator_loss(fake, real)[term]

        g_val, g_grad = jax.jit(jax.value_and_grad(g_loss))(jnp.asarray(x), jnp.asarray(y))
        assert float(g_ref.detach()) > 0 and np.abs(reference.to_numpy(g_ref_grad)).max() > 0
        assert_close(g_val, reference.to_numpy(g_ref), "dac_loss_gan")
        assert_close(g_grad, np.moveaxis(reference.to_numpy(g_ref_grad), 1, 2), "dac_loss_gan_grad")
