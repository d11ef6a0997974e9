"""DAC's GAN discriminator: multi-period (MPD), multi-scale (MSD) and multi-resolution (MRD).

Same layers, arithmetic and parameters as descript-audio-codec 1.0.0
``dac.model.discriminator.Discriminator`` on channels-last audio ``[batch, time, 1]``:

* the input is preprocessed (DC removed, peak-normalised to 0.8);
* **MPD** (one per period ``p``, HiFi-GAN's): the audio reflect-padded to a multiple of ``p``
  and folded to ``[batch, time / p, p, 1]``, five weight-normed ``(5, 1)`` 2-D convolutions
  (stride 3 along time but the last) and a ``(3, 1)`` post convolution (each computed as one
  matmul of stacked shifted views, faster on CPU than a 2-D convolution);
* **MSD** (one per rate ``r``, MelGAN's): the audio resampled to ``sample_rate // r`` Hz with
  julius' filter (as audiotools' ``AudioSignal.resample``), six weight-normed grouped 1-D
  convolutions and a post convolution;
* **MRD** (one per FFT size): the complex STFT (audiotools' framing, hann window, hop
  ``fft_size // 4``, ``match_stride``) as ``[batch, frames, bins, (real, imag)]``, split into
  frequency bands, each band through its own five ``(3, 9)``/``(3, 3)`` 2-D convolutions
  (stride 2 along frequency in three of them, computed as stride-1 convolutions of a
  space-to-depth view, whose gradient XLA:CPU runs faster), the bands concatenated along
  frequency and a ``(3, 3)`` post convolution.

Every convolution but the post ones is followed by LeakyReLU(0.1). Every sub-discriminator
returns all its activations (its feature maps), the last being the post convolution's output
(its logits), in the reference's order, channels-last: MPD ``[batch, time', period, ch]``, MSD
``[batch, time', ch]``, MRD ``[batch, frames, bins', ch]`` (torch: ``[batch, ch, time',
period]``, ``[batch, ch, time']``, ``[batch, ch, frames, bins']``).

The convolutions are :class:`jaxlatent.nn.WNConv1d` / :class:`jaxlatent.nn.WNConv2d` (trainable
``weight_g``/``weight_v``) with torch's default initialisation, as the reference (which applies
no custom init to its discriminator). :mod:`converters.dac` converts the reference's weights.

Source: Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN"
(arXiv:2306.06546), section 3.3; MPD from Kong et al. 2020, "HiFi-GAN" (arXiv:2010.05646); MSD
from Kumar et al. 2019, "MelGAN" (arXiv:1910.06711); MRD from Jang et al. 2021, "UnivNet"
(arXiv:2106.07889), with complex STFT bands as in the DAC paper.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.models.dac.discriminator_config import (
    DEFAULT_BANDS,
    DiscriminatorConfig,
    band_bins,
)
from jaxlatent.nn import WNConv1d, WNConv2d
from jaxlatent.nn.conv import conv_along_axis_as_matmul
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike, resolve_precision

Array = jax.Array
FeatureMaps = tuple[Array, ...]
"""One sub-discriminator's activations in order, the last being its logits."""

__all__ = ["MPD", "MRD", "MSD", "Discriminator", "DiscriminatorOutput"]

#: Slope of the reference's ``nn.LeakyReLU(0.1)``.
LEAKY_SLOPE = 0.1
#: ``Discriminator.preprocess``: peak level after normalisation and the divisor's epsilon.
PEAK = 0.8
PEAK_EPS = 1e-9
#: MRD channels (``ch = 32``) and hop as a fraction of the window (``hop_factor``).
MRD_CHANNELS = 32
MRD_HOP_FACTOR = 0.25


class DiscriminatorOutput(NamedTuple):
    """Feature maps of every sub-discriminator, grouped by kind (each in the config's order).

    Every entry of `mpd`, `msd` and `mrd` is one sub-discriminator's tuple of feature maps, the
    last being its logits. :attr:`feature_maps` is the reference's list: MPD, then MSD, then
    MRD; :class:`jaxlatent.losses.dac.GANLoss` reads it.
    """

    #: One per period: ``[batch, L_k, period, ch]`` maps, ``L_0 = time // period + 1`` and
    #: ``L_{k+1} = ceil(L_k / 3)`` through the four strided convolutions; logits ``ch = 1``.
    mpd: tuple[FeatureMaps, ...]
    #: One per rate: ``[batch, T_k, ch]`` maps, ``T_0`` the resampled length and ``T_{k+1} =
    #: ceil(T_k / 4)`` through the four strided convolutions; logits ``ch = 1``.
    msd: tuple[FeatureMaps, ...]
    #: One per FFT size: ``[batch, frames, B_k, 32]`` maps per band (``frames = ceil(time /
    #: hop)``, ``B_0`` the band's bins, ``B_{k+1} = ceil(B_k / 2)`` through the three
    #: frequency-strided convolutions), then logits ``[batch, frames, sum of B_5, 1]``.
    mrd: tuple[FeatureMaps, ...]

    @property
    def feature_maps(self) -> tuple[FeatureMaps, ...]:
        """All sub-discriminators in the reference's order (``Discriminator.forward``'s list)."""
        return self.mpd + self.msd + self.mrd

    @property
    def logits(self) -> tuple[Array, ...]:
        """The last map of every sub-discriminator, in the reference's order."""
        return tuple(maps[-1] for maps in self.feature_maps)


def _leaky_relu(x: Array) -> Array:
    return jnp.where(x >= 0, x, LEAKY_SLOPE * x)


def _check_audio(x: Array, name: str) -> None:
    check_floating("audio", x)
    if x.ndim != 3 or x.shape[-1] != 1:
        raise ValueError(f"{name} expects mono audio [batch, time, 1], got shape {shape_str(x)}")


def _run(convs: nnx.List, post: nnx.Module, x: Array, apply=None) -> FeatureMaps:
    apply = apply or (lambda conv, x: conv(x))
    maps = []
    for conv in convs:
        x = _leaky_relu(apply(conv, x))
        maps.append(x)
    maps.append(apply(post, x))
    return tuple(maps)


def _time_conv(conv: WNConv2d, x: Array) -> Array:
    """`conv` (kernel ``(k, 1)``, stride ``(s, 1)``, padding ``(p, 0)``, no groups) of `x`
    ``[batch, L, period, in]`` as one matmul of its `k` shifted, strided views stacked along
    channels (:func:`~jaxlatent.nn.conv.conv_along_axis_as_matmul`): the same sums as the 2-D
    convolution, which XLA:CPU runs about 1.5x slower (forward and gradient) for a kernel
    width of 1."""
    w = conv.effective_kernel().astype(x.dtype)[:, 0]  # [k, 1, in, out] -> [k, in, out]
    y = conv_along_axis_as_matmul(
        x,
        w,
        stride=conv.stride[0],
        dilation=conv.dilation[0],
        padding=conv.padding[0],
        precision=conv.precision,
    )
    return y + conv.bias[...].astype(y.dtype).reshape(1, 1, 1, -1)


def _frequency_strided_conv(conv: WNConv2d, x: Array) -> Array:
    """`conv` (kernel ``(kt, kf)``, stride ``(1, s)``, padding ``(pt, pf)``, no groups or
    dilation) of `x` ``[batch, frames, bins, in]`` as a stride-1 convolution of its
    space-to-depth view: the padded bins are grouped in runs of `s` side by side along
    channels (``[batch, frames, bins / s, s * in]``, a reshape) and the kernel, zero-padded to
    a multiple of `s` taps, is regrouped the same way. The same products as the strided
    convolution (plus the zero taps); its gradient is a stride-1 convolution, where XLA:CPU
    differentiates a strided one through a base-dilated convolution of every inserted zero
    (about 3x slower for the MRD's layers)."""
    kt, kf = conv.kernel_size
    s, (pt, pf) = conv.stride[1], conv.padding
    w = conv.effective_kernel().astype(x.dtype)  # [kt, kf, in, out]
    c_in, c_out = w.shape[-2:]
    taps = -(-kf // s)
    w = jnp.pad(w, [(0, 0), (0, taps * s - kf), (0, 0), (0, 0)])
    w = w.reshape(kt, taps, s * c_in, c_out)  # [t, m, r * in + c, o] = w[t, m * s + r, c, o]
    bins = x.shape[2]
    out_bins = (bins + 2 * pf - kf) // s + 1
    total = (out_bins - 1 + taps) * s  # padded bins the output reads
    right = total - bins - pf
    x = jnp.pad(x, [(0, 0), (0, 0), (pf, max(right, 0)), (0, 0)])[:, :, :total]
    x = x.reshape(*x.shape[:2], total // s, s * c_in)
    y = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=(conv.stride[0], 1),
        padding=[(pt, pt), (0, 0)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=conv.precision,
    )
    return y + conv.bias[...].astype(y.dtype).reshape(1, 1, 1, -1)


class MPD(nnx.Module):
    """Multi-period sub-discriminator (``dac.model.discriminator.MPD``).

    Args:
      period: samples per fold.
      param_dtype: dtype of the parameters.
      precision: precision of every convolution (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`).
      rngs: initialisation randomness.

    Example:
      >>> mpd = nnx.eval_shape(lambda: MPD(3, rngs=nnx.Rngs(0)))
      >>> audio = jax.ShapeDtypeStruct((1, 100, 1), jnp.float32)
      >>> nnx.eval_shape(lambda m, x: m(x), mpd, audio)[-1].shape
      (1, 1, 3, 1)
    """

    def __init__(
        self,
        period: int,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        self.period = period
        kw = {"param_dtype": param_dtype, "precision": precision, "rngs": rngs}
        widths = (1, 32, 128, 512, 1024, 1024)
        self.convs = nnx.List(
            WNConv2d(c_in, c_out, (5, 1), (3, 1) if i < 4 else 1, padding=(2, 0), **kw)
            for i, (c_in, c_out) in enumerate(itertools.pairwise(widths))
        )
        self.conv_post = WNConv2d(1024, 1, (3, 1), padding=(1, 0), **kw)

    def __call__(self, x: Array) -> FeatureMaps:
        """Feature maps of audio `x` ``[batch, time, 1]`` (already preprocessed).

        The audio is reflect-padded by ``period - time % period`` samples (a whole period when
        `time` is a multiple of it, as the reference).

        Raises:
          ValueError: if `x` is not ``[batch, time, 1]`` floating audio with ``time > period``
            (reflect padding needs it).
        """
        _check_audio(x, "MPD")
        batch, length = x.shape[0], x.shape[1]
        pad = self.period - length % self.period
        if length <= pad:
            raise ValueError(
                f"MPD(period={self.period}) needs more than {pad} samples for reflect padding, "
                f"got {length}"
            )
        x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)), mode="reflect")
        x = x.reshape(batch, (length + pad) // self.period, self.period, 1)
        return _run(self.convs, self.conv_post, x, _time_conv)


def resample_audio(
    x: Array, old_sr: int, new_sr: int, *, precision: PrecisionLike = DEFAULT_PRECISION
) -> Array:
    """``julius.resample_frac(x, old_sr, new_sr)`` on ``[batch, time, channels]``, in JAX
    (differentiable): julius' windowed-sinc polyphase filters
    (:func:`jaxlatent.codec.resample.resample_kernels`) applied with stride ``old_sr`` (after
    gcd reduction) to the input edge-padded by the filter width, a convolution at `precision`
    (:mod:`jaxlatent.precision`; an `MSD` passes its own).

    Returns:
      ``[batch, resampled_length(time, old_sr, new_sr), channels]`` in float32 (`x` unchanged
      when the rates are equal).

    Example:
      >>> resample_audio(jnp.ones((1, 10, 1)), 44100, 22050).shape
      (1, 5, 1)
    """
    # Imported here: importing the packages jaxlatent.codec and jaxlatent.losses with the
    # model would add seconds to `import jaxlatent.models.dac`.
    from jaxlatent.codec.resample import resample_kernels, resampled_length

    if old_sr == new_sr:
        return x
    out_length = resampled_length(x.shape[1], old_sr, new_sr)
    old, new = _reduced(old_sr, new_sr)
    kernels, width = resample_kernels(old, new)
    batch, length, channels = x.shape
    rows = jnp.swapaxes(x.astype(jnp.float32), 1, 2).reshape(batch * channels, length, 1)
    rows = jnp.pad(rows, ((0, 0), (width, width + old), (0, 0)), mode="edge")
    y = jax.lax.conv_general_dilated(
        rows,
        jnp.asarray(kernels.T)[:, None, :],  # [ksize, 1, new]
        window_strides=(old,),
        padding="VALID",
        dimension_numbers=("NWC", "WIO", "NWC"),
        precision=resolve_precision(precision),
    )  # [rows, frames, new]
    y = y.reshape(batch, channels, -1)[:, :, :out_length]
    return jnp.swapaxes(y, 1, 2)


def _reduced(old_sr: int, new_sr: int) -> tuple[int, int]:
    gcd = math.gcd(old_sr, new_sr)
    return old_sr // gcd, new_sr // gcd


class MSD(nnx.Module):
    """Multi-scale sub-discriminator (``dac.model.discriminator.MSD``).

    Args:
      rate: the audio is resampled to ``sample_rate // rate`` Hz first (not at all when that
        is `sample_rate`, e.g. rate 1).
      sample_rate: rate of the input audio, Hz.
      param_dtype, precision, rngs: as :class:`MPD`.
    """

    def __init__(
        self,
        rate: int = 1,
        sample_rate: int = 44100,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        self.rate = rate
        self.sample_rate = sample_rate
        self.precision = resolve_precision(precision)
        kw = {"param_dtype": param_dtype, "precision": precision, "rngs": rngs}
        self.convs = nnx.List(
            [
                WNConv1d(1, 16, 15, 1, padding=7, **kw),
                WNConv1d(16, 64, 41, 4, groups=4, padding=20, **kw),
                WNConv1d(64, 256, 41, 4, groups=16, padding=20, **kw),
                WNConv1d(256, 1024, 41, 4, groups=64, padding=20, **kw),
                WNConv1d(1024, 1024, 41, 4, groups=256, padding=20, **kw),
                WNConv1d(1024, 1024, 5, 1, padding=2, **kw),
            ]
        )
        self.conv_post = WNConv1d(1024, 1, 3, 1, padding=1, **kw)

    def __call__(self, x: Array) -> FeatureMaps:
        """Feature maps of audio `x` ``[batch, time, 1]`` (already preprocessed).

        Raises:
          ValueError: if `x` is not ``[batch, time, 1]`` floating audio.
        """
        _check_audio(x, "MSD")
        new_sr = self.sample_rate // self.rate
        x = resample_audio(x, self.sample_rate, new_sr, precision=self.precision).astype(x.dtype)
        return _run(self.convs, self.conv_post, x)


class MRD(nnx.Module):
    """Multi-resolution (complex multi-band spectrogram) sub-discriminator
    (``dac.model.discriminator.MRD``, ``hop_factor`` 0.25 as ``Discriminator`` builds it).

    Args:
      window_length: STFT window and FFT size.
      sample_rate: rate of the input audio, Hz (unused by the computation, as the reference).
      bands: ``(low, high)`` fractions of the ``window_length // 2 + 1`` bins, one conv
        stack each.
      param_dtype, precision, rngs: as :class:`MPD`.
    """

    def __init__(
        self,
        window_length: int,
        sample_rate: int = 44100,
        bands=DEFAULT_BANDS,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        self.window_length = window_length
        self.hop_length = int(window_length * MRD_HOP_FACTOR)
        self.sample_rate = sample_rate
        self.bands = band_bins(window_length, tuple(tuple(b) for b in bands))
        kw = {"param_dtype": param_dtype, "precision": precision, "rngs": rngs}
        ch = MRD_CHANNELS

        def stack() -> nnx.List:
            return nnx.List(
                [
                    WNConv2d(2, ch, (3, 9), (1, 1), padding=(1, 4), **kw),
                    WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4), **kw),
                    WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4), **kw),
                    WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4), **kw),
                    WNConv2d(ch, ch, (3, 3), (1, 1), padding=(1, 1), **kw),
                ]
            )

        self.band_convs = nnx.List(stack() for _ in self.bands)
        self.conv_post = WNConv2d(ch, 1, (3, 3), (1, 1), padding=(1, 1), **kw)

    def spectrogram(self, x: Array) -> list[Array]:
        """The complex STFT of `x` ``[batch, time, 1]`` as float32 ``[batch, frames, bins,
        2]`` (real, imaginary), split into the bands (along bins)."""
        from jaxlatent.losses.dac.stft import stft  # (see resample_audio)

        z = stft(x, self.window_length, self.hop_length, match_stride=True)[..., 0]
        spec = jnp.stack([z.real, z.imag], axis=-1)
        return [spec[:, :, start:stop] for start, stop in self.bands]

    def __call__(self, x: Array) -> FeatureMaps:
        """Feature maps of audio `x` ``[batch, time, 1]`` (already preprocessed): five per
        band (bands in order), then the logits ``[batch, frames, bins', 1]``.

        Raises:
          ValueError: if `x` is not ``[batch, time, 1]`` floating audio or is too short for
            the STFT's reflect padding.
        """
        _check_audio(x, "MRD")
        maps = []
        outs = []
        for band, convs in zip(self.spectrogram(x), self.band_convs, strict=True):
            band = band.astype(x.dtype)
            for conv in convs:
                strided = conv.stride[1] > 1
                band = _leaky_relu(_frequency_strided_conv(conv, band) if strided else conv(band))
                maps.append(band)
            outs.append(band)
        maps.append(self.conv_post(jnp.concatenate(outs, axis=2)))
        return tuple(maps)


class Discriminator(nnx.Module):
    """DAC's discriminator: MPDs, MSDs and MRDs on preprocessed audio
    (``dac.model.discriminator.Discriminator``).

    Args:
      config: periods, rates, FFT sizes, sample rate and bands
        (:meth:`DiscriminatorConfig.recipe` is the training recipe's).
      param_dtype: dtype of the parameters.
      precision: precision of every convolution (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`).
      rngs: initialisation randomness (torch's default init: uniform ``±1/sqrt(fan_in)``).

    Attributes:
      discriminators: the sub-discriminators in the reference's order (MPD per period, MSD
        per rate, MRD per FFT size), so index ``i`` is the reference's ``discriminators[i]``.

    Example:
      >>> disc = nnx.eval_shape(lambda: Discriminator(DiscriminatorConfig.recipe(),
      ...                                             rngs=nnx.Rngs(0)))
      >>> audio = jax.ShapeDtypeStruct((2, 4410, 1), jnp.float32)
      >>> out = nnx.eval_shape(lambda d, x: d(x), disc, audio)
      >>> len(out.feature_maps), out.mpd[0][-1].shape, out.mrd[0][-1].shape
      (8, (2, 28, 2, 1), (2, 9, 130, 1))
    """

    def __init__(
        self,
        config: DiscriminatorConfig,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        self.config = config
        #: The `jax.lax.Precision` of every convolution (:mod:`jaxlatent.precision`).
        self.precision = resolve_precision(precision)
        kw = {"param_dtype": param_dtype, "precision": self.precision, "rngs": rngs}
        subs: list[nnx.Module] = [MPD(p, **kw) for p in config.periods]
        subs += [MSD(r, config.sample_rate, **kw) for r in config.rates]
        subs += [MRD(f, config.sample_rate, config.bands, **kw) for f in config.fft_sizes]
        self.discriminators = nnx.List(subs)

    @staticmethod
    def preprocess(audio: Array) -> Array:
        """``0.8 * y / (max|y| + 1e-9)`` with ``y = audio - mean(audio)`` per item and channel
        (over time), as ``Discriminator.preprocess``."""
        y = audio - jnp.mean(audio, axis=1, keepdims=True)
        return PEAK * y / (jnp.max(jnp.abs(y), axis=1, keepdims=True) + PEAK_EPS)

    def __call__(self, audio: Array, *, train: bool = False) -> DiscriminatorOutput:
        """Every sub-discriminator's feature maps of `audio`.

        Args:
          audio: mono ``[batch, time, 1]`` floating audio at ``config.sample_rate``.
          train: accepted for the library's convention; the discriminator has no dropout or
            batch statistics, so it computes the same either way.

        Returns:
          :class:`DiscriminatorOutput` (``feature_maps`` in the reference's order).

        Raises:
          ValueError: if `audio` is not floating ``[batch, time, 1]``, or is too short for a
            sub-discriminator (more than the largest period, and more than ``3 * fft_size /
            8`` samples for the STFTs' reflect padding).
        """
        del train
        _check_audio(audio, "Discriminator")
        x = self.preprocess(audio)
        maps = tuple(d(x) for d in self.discriminators)
        n_mpd, n_msd = len(self.config.periods), len(self.config.rates)
        return DiscriminatorOutput(
            mpd=maps[:n_mpd], msd=maps[n_mpd : n_mpd + n_msd], mrd=maps[n_mpd + n_msd :]
        )
