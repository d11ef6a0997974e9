"""Spectral losses of descript-audio-codec 1.0.0 (``dac.nn.loss``): `MultiScaleSTFTLoss`,
`MelSpectrogramLoss`, with audiotools 0.7.2's STFT (`stft.stft_magnitude`) and librosa's mel
filterbank (`mel.mel_filters`).

What the reference does, kept here: ``hop = window_length // 4``; each scale adds
``log_weight * loss_fn(log10(clamp(X, clamp_eps) ** pow), ...) + mag_weight * loss_fn(X, Y)``
(scales are summed, not averaged); `match_stride` is stored but not used, because the
reference never passes it to ``AudioSignal.stft`` (whose default is ``False``); a ``None``
`window_type` is audiotools' ``"hann"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxlatent.losses.dac.mel import mel_filters
from jaxlatent.losses.dac.stft import stft_magnitude
from jaxlatent.losses.dac.waveform import L1Loss, _check_pair

Array = jax.Array


def _log_term(a: Array, clamp_eps: float, pow: float) -> Array:
    # torch.clamp(min=eps): gradient 1 where a >= eps, else 0.
    clamped = jnp.where(a >= clamp_eps, a, jnp.float32(clamp_eps))
    return jnp.log10(clamped**pow)


def _check_audio(x: Array, y: Array, what: str) -> None:
    _check_pair(x, y, what)
    if x.ndim != 3:
        raise ValueError(f"{what}: audio must be [batch, time, channels], got shape {x.shape}")


@dataclasses.dataclass(frozen=True)
class MultiScaleSTFTLoss:
    """Multi-scale STFT loss (``dac.nn.loss.MultiScaleSTFTLoss``; DDSP, Engel et al. 2019).

    Attributes:
      window_lengths: STFT sizes in samples (hop = size // 4), default ``(2048, 512)``.
      loss_fn: compares two magnitude arrays (default `L1Loss()`, the mean absolute error).
      clamp_eps: lower clamp of the magnitude before the log (default 1e-5).
      mag_weight: weight of ``loss_fn`` on raw magnitudes (default 1.0).
      log_weight: weight of ``loss_fn`` on log magnitudes (default 1.0).
      pow: exponent of the clamped magnitude inside ``log10`` (default 2.0).
      weight: stored, not applied (the training loop weights losses).
      match_stride: stored only (see the module docstring).
      window_type: window name (`stft.stft_window`), ``None``: ``"hann"``.
    """

    window_lengths: Sequence[int] = (2048, 512)
    loss_fn: Callable[[Array, Array], Array] = dataclasses.field(default_factory=L1Loss)
    clamp_eps: float = 1e-5
    mag_weight: float = 1.0
    log_weight: float = 1.0
    pow: float = 2.0
    weight: float = 1.0
    match_stride: bool = False
    window_type: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "window_lengths", tuple(int(w) for w in self.window_lengths))

    @classmethod
    def recipe(cls) -> MultiScaleSTFTLoss:
        """The DAC training recipe's (``conf/base.yml``): window lengths ``(2048, 512)``, the
        other arguments at their defaults."""
        return cls(window_lengths=(2048, 512))

    def __call__(self, x: Array, y: Array) -> Array:
        """The loss, summed over scales.

        Args:
          x: estimate ``[batch, time, channels]``, floating (computed in float32).
          y: reference, same shape.

        Returns:
          float32 scalar.

        Raises:
          ValueError: if the shapes differ, are not 3-D, or `time` is too short for a window
            (``torch.stft`` needs more than ``window_length // 2`` samples).
        """
        _check_audio(x, y, "MultiScaleSTFTLoss")
        loss = jnp.zeros((), jnp.float32)
        for w in self.window_lengths:
            xm = stft_magnitude(x, w, w // 4, self.window_type)
            ym = stft_magnitude(y, w, w // 4, self.window_type)
            loss = loss + self.log_weight * self.loss_fn(
                _log_term(xm, self.clamp_eps, self.pow), _log_term(ym, self.clamp_eps, self.pow)
            )
            loss = loss + self.mag_weight * self.loss_fn(xm, ym)
        return loss


@dataclasses.dataclass(frozen=True)
class MelSpectrogramLoss:
    """Multi-scale mel-spectrogram loss (``dac.nn.loss.MelSpectrogramLoss``).

    Mel spectrograms are STFT magnitudes (not powers) times librosa's Slaney filterbank
    (``librosa.filters.mel(sr, n_fft=2 * (window_length // 2), n_mels, fmin, fmax)``, float32),
    as ``AudioSignal.mel_spectrogram`` computes them.

    Attributes:
      n_mels: mel bands per scale, default ``(150, 80)``.
      window_lengths: STFT sizes in samples (hop = size // 4), default ``(2048, 512)``.
      loss_fn: compares two mel arrays (default `L1Loss()`).
      clamp_eps: lower clamp before the log (default 1e-5).
      mag_weight: weight of ``loss_fn`` on raw mels (default 1.0; the DAC recipe uses 0).
      log_weight: weight of ``loss_fn`` on log mels (default 1.0).
      pow: exponent inside ``log10`` (default 2.0; the DAC recipe uses 1).
      weight: stored, not applied.
      match_stride: stored only (see the module docstring).
      mel_fmin: lowest frequency per scale in Hz, default ``(0.0, 0.0)``.
      mel_fmax: highest frequency per scale in Hz, ``None``: ``sample_rate / 2``.
      window_type: window name (`stft.stft_window`), ``None``: ``"hann"``.

    As in the reference, scales are zipped: the shortest of `n_mels`, `window_lengths`,
    `mel_fmin` and `mel_fmax` sets how many are used.
    """

    n_mels: Sequence[int] = (150, 80)
    window_lengths: Sequence[int] = (2048, 512)
    loss_fn: Callable[[Array, Array], Array] = dataclasses.field(default_factory=L1Loss)
    clamp_eps: float = 1e-5
    mag_weight: float = 1.0
    log_weight: float = 1.0
    pow: float = 2.0
    weight: float = 1.0
    match_stride: bool = False
    mel_fmin: Sequence[float] = (0.0, 0.0)
    mel_fmax: Sequence[float | None] = (None, None)
    window_type: str | None = None

    def __post_init__(self):
        for name in ("n_mels", "window_lengths", "mel_fmin", "mel_fmax"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def recipe(cls) -> MelSpectrogramLoss:
        """The DAC training recipe's (``conf/base.yml``): 7 scales, windows 32 ... 2048 with
        5 ... 320 mels, ``mag_weight=0``, ``pow=1``, ``clamp_eps=1e-5``, full band."""
        return cls(
            n_mels=(5, 10, 20, 40, 80, 160, 320),
            window_lengths=(32, 64, 128, 256, 512, 1024, 2048),
            clamp_eps=1e-5,
            mag_weight=0.0,
            pow=1.0,
            mel_fmin=(0.0,) * 7,
            mel_fmax=(None,) * 7,
        )

    def __call__(self, x: Array, y: Array, sample_rate: int) -> Array:
        """The loss, summed over scales.

        Args:
          x: estimate ``[batch, time, channels]``, floating (computed in float32).
          y: reference, same shape.
          sample_rate: Hz, of both (sets the filterbanks; a Python int, not traced).

        Returns:
          float32 scalar.

        Raises:
          ValueError: if the shapes differ, are not 3-D, or `time` is too short for a window.
        """
        _check_audio(x, y, "MelSpectrogramLoss")
        loss = jnp.zeros((), jnp.float32)
        scales = (self.n_mels, self.mel_fmin, self.mel_fmax, self.window_lengths)
        for n_mels, fmin, fmax, w in zip(*scales, strict=False):  # the shortest, as the reference
            basis = jnp.asarray(mel_filters(int(sample_rate), 2 * (w // 2), n_mels, fmin, fmax))
            # [batch, frames, bins, channels] -> [batch, frames, n_mels, channels]; float32
            # products on every backend (a loss, not a model layer: jaxlatent.precision).
            xm, ym = (
                jnp.einsum(
                    "tfkc,mk->tfmc",
                    stft_magnitude(a, w, w // 4, self.window_type),
                    basis,
                    precision=jax.lax.Precision.HIGHEST,
                )
                for a in (x, y)
            )
            loss = loss + self.log_weight * self.loss_fn(
                _log_term(xm, self.clamp_eps, self.pow), _log_term(ym, self.clamp_eps, self.pow)
            )
            loss = loss + self.mag_weight * self.loss_fn(xm, ym)
        return loss
