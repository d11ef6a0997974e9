"""Waveform losses of descript-audio-codec 1.0.0 (``dac.nn.loss``): `L1Loss`, `SISDRLoss`.

Audio is channels-last ``[batch, time, channels]``; computed in float32.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

Array = jax.Array

_REDUCTIONS = ("mean", "sum", "none")


def abs_torch(x: Array) -> Array:
    """``|x|`` whose gradient at 0 is 0, as torch's (``sign(x)``); `jnp.abs`'s is 1 there."""
    return x * jax.lax.stop_gradient(jnp.sign(x))


def _check_pair(x: Array, y: Array, what: str) -> None:
    if x.shape != y.shape:
        raise ValueError(
            f"{what}: the two inputs must have the same shape, got {x.shape} and {y.shape}"
        )


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


@dataclasses.dataclass(frozen=True)
class L1Loss:
    """Mean absolute difference (``dac.nn.loss.L1Loss``, i.e. ``torch.nn.L1Loss``).

    Attributes:
      attribute: the reference compares this ``AudioSignal`` attribute; arrays are compared
        as given, so only ``"audio_data"`` (the default) is accepted.
      weight: stored, not applied (the reference leaves weighting to the training loop).
      reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` over all elements.

    Raises:
      ValueError: on another `attribute` or `reduction`.
    """

    attribute: str = "audio_data"
    weight: float = 1.0
    reduction: str = "mean"

    def __post_init__(self):
        if self.attribute != "audio_data":
            raise ValueError(
                f"L1Loss compares arrays, so attribute must be 'audio_data', got {self.attribute!r}"
            )
        _check_reduction(self.reduction)

    def __call__(self, x: Array, y: Array) -> Array:
        """``|x - y|`` reduced.

        Args:
          x: estimate, any shape (audio: ``[batch, time, channels]``), floating.
          y: reference, same shape.

        Returns:
          float32 scalar (``"mean"``/``"sum"``) or ``|x - y|`` of `x`'s shape (``"none"``).

        Raises:
          ValueError: if the shapes differ.
        """
        _check_pair(x, y, "L1Loss")
        diff = abs_torch(x.astype(jnp.float32) - y.astype(jnp.float32))
        if self.reduction == "mean":
            return jnp.mean(diff)
        if self.reduction == "sum":
            return jnp.sum(diff)
        return diff


@dataclasses.dataclass(frozen=True)
class SISDRLoss:
    """Negative (scale-invariant) signal-to-distortion ratio in dB (``dac.nn.loss.SISDRLoss``).

    Channels and time of each item are flattened into one signal (channel-major, as the
    reference's ``reshape(nb, 1, -1)`` of ``[batch, channels, time]``), then
    ``-10 log10(|s|² / |e|² + 1e-8)`` with ``s = a r``, ``e = estimate - s`` and
    ``a = (<estimate, r> + 1e-8) / (|r|² + 1e-8)`` (``a = 1`` without `scaling`), after removing
    each signal's mean when `zero_mean`.

    Attributes:
      scaling: scale-invariant (default) or plain SDR.
      reduction: ``"mean"`` (default) or ``"sum"`` over the batch, or ``"none"``.
      zero_mean: remove the mean of both signals first (default).
      clip_min: lower bound of each item's loss in dB (``None``: none); below it the gradient
        is 0.
      weight: stored, not applied.

    Raises:
      ValueError: on an unknown `reduction` (the reference silently skips reducing).
    """

    scaling: bool = True
    reduction: str = "mean"
    zero_mean: bool = True
    clip_min: float | None = None
    weight: float = 1.0

    def __post_init__(self):
        _check_reduction(self.reduction)

    def __call__(self, references: Array, estimates: Array) -> Array:
        """The loss in dB.

        The argument order is the reference's: its ``forward(x, y)`` treats `x` as the
        references and `y` as the estimates.

        Args:
          references: ``[batch, time, channels]``, floating.
          estimates: same shape.

        Returns:
          float32 scalar, or ``[batch, 1]`` with ``reduction="none"``.

        Raises:
          ValueError: if the shapes differ or the inputs are not 3-D.
        """
        _check_pair(references, estimates, "SISDRLoss")
        if references.ndim != 3:
            raise ValueError(
                f"SISDRLoss: audio must be [batch, time, channels], got shape {references.shape}"
            )
        eps = 1e-8
        nb = references.shape[0]

        def flat(a):  # [batch, samples, 1], channel-major as the reference
            return jnp.swapaxes(a.astype(jnp.float32), 1, 2).reshape(nb, -1, 1)

        refs, ests = flat(references), flat(estimates)
        if self.zero_mean:
            refs = refs - jnp.mean(refs, axis=1, keepdims=True)
            ests = ests - jnp.mean(ests, axis=1, keepdims=True)
        projection = jnp.sum(refs**2, axis=-2) + eps  # [batch, 1]
        on_estimates = jnp.sum(ests * refs, axis=-2) + eps
        e_true = refs * (on_estimates / projection)[:, None, :] if self.scaling else refs
        e_res = ests - e_true
        signal = jnp.sum(e_true**2, axis=1)
        noise = jnp.sum(e_res**2, axis=1)
        sdr = -10 * jnp.log10(signal / noise + eps)
        if self.clip_min is not None:
            sdr = jnp.where(sdr >= self.clip_min, sdr, jnp.float32(self.clip_min))
        if self.reduction == "mean":
            return jnp.mean(sdr)
        if self.reduction == "sum":
            return jnp.sum(sdr)
        return sdr
