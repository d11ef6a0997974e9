"""STFTs (complex and magnitude) with audiotools 0.7.2's framing (``AudioSignal.stft``), in JAX.

audiotools pads the signal by ``(pad, pad + right_pad)`` (`stft_padding`, reflect by default),
then calls ``torch.stft(center=True, pad_mode="reflect", n_fft=window_length)``, which pads
``window_length // 2`` more on each side; with ``match_stride`` it drops the first two and last
two frames. Windows come from ``scipy.signal.get_window`` (periodic), plus audiotools' own
``"average"`` and ``"sqrt_hann"``, cast to float32 (`stft_window`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

_TORCH_PAD_MODES = {
    "reflect": "reflect",
    "constant": "constant",
    "replicate": "edge",
    "circular": "wrap",
}

DEFAULT_WINDOW_TYPE = "hann"
"""audiotools' window when none is given (``AudioSignal.stft_params`` default)."""


@functools.cache
def stft_window(window_type: str | None, window_length: int) -> np.ndarray:
    """The analysis window audiotools uses (``AudioSignal.get_window``), read-only.

    Args:
      window_type: a ``scipy.signal.get_window`` name (``"hann"``, ``"hamming"``, ...),
        ``"sqrt_hann"`` or ``"average"`` (``1 / window_length`` everywhere); ``None`` means
        ``"hann"``, audiotools' default.
      window_length: samples.

    Returns:
      float32 ``[window_length]`` (scipy computes it in float64; audiotools casts to float32).

    Raises:
      ValueError: if `window_length` is not positive or scipy does not know `window_type`.
    """
    from scipy import signal

    if window_length < 1:
        raise ValueError(f"window_length must be positive, got {window_length}")
    window_type = DEFAULT_WINDOW_TYPE if window_type is None else window_type
    if window_type == "average":
        window = np.ones(window_length) / window_length
    elif window_type == "sqrt_hann":
        window = np.sqrt(signal.get_window("hann", window_length))
    else:
        window = signal.get_window(window_type, window_length)
    window = np.asarray(window, np.float32)
    window.setflags(write=False)
    return window


def stft_padding(
    length: int, window_length: int, hop_length: int, match_stride: bool
) -> tuple[int, int]:
    """``(right_pad, pad)`` audiotools adds before ``torch.stft`` (``compute_stft_padding``).

    Without `match_stride` both are 0; with it, ``right_pad`` rounds `length` up to a multiple
    of `hop_length` and ``pad = (window_length - hop_length) // 2``.

    Raises:
      ValueError: if `match_stride` and ``hop_length != window_length // 4``.
    """
    if not match_stride:
        return 0, 0
    if hop_length != window_length // 4:
        raise ValueError(
            f"match_stride needs hop_length == window_length // 4, got hop_length="
            f"{hop_length} for window_length={window_length}"
        )
    right_pad = math.ceil(length / hop_length) * hop_length - length
    return right_pad, (window_length - hop_length) // 2


def _abs(z: Array) -> Array:
    # |z| with torch's gradient at 0 (sgn(0) = 0) instead of NaN.
    power = jnp.square(z.real) + jnp.square(z.imag)
    positive = power > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, power, 1.0)), 0.0)


def stft(
    x: Array,
    window_length: int,
    hop_length: int,
    window_type: str | None = None,
    match_stride: bool = False,
    padding_type: str = "reflect",
) -> Array:
    """Complex STFT of channels-last audio, framed exactly as audiotools 0.7.2's
    ``AudioSignal.stft`` frames it.

    Args:
      x: audio ``[batch, time, channels]``, floating (computed in float32).
      window_length: FFT size and window length, samples.
      hop_length: samples between frames.
      window_type: see `stft_window` (``None``: ``"hann"``).
      match_stride: audiotools' ``match_stride`` (see `stft_padding`; drops 2 frames per end).
      padding_type: ``torch.nn.functional.pad`` mode of the `match_stride` padding
        (``"reflect"``, audiotools' default, ``"constant"``, ``"replicate"`` or
        ``"circular"``); ``torch.stft``'s own centring pad is always reflect.

    Returns:
      complex64 ``[batch, frames, window_length // 2 + 1, channels]``, ``frames = 1 + (time +
      right_pad + 2 * pad) // hop_length`` (minus 4 with `match_stride`); unnormalised, as
      ``torch.stft``.

    Raises:
      ValueError: if `x` is not 3-D, `padding_type` is unknown, `match_stride` with
        ``hop_length != window_length // 4``, or `x` is too short for reflect padding
        (``torch.stft`` needs more than ``window_length // 2`` samples after the first pad).

    Example:
      >>> x = jax.ShapeDtypeStruct((2, 16000, 1), jnp.float32)
      >>> out = jax.eval_shape(lambda x: stft(x, 512, 128), x)
      >>> out.shape, out.dtype
      ((2, 126, 257, 1), dtype('complex64'))
    """
    if x.ndim != 3:
        raise ValueError(f"audio must be [batch, time, channels], got shape {x.shape}")
    if padding_type not in _TORCH_PAD_MODES:
        raise ValueError(
            f"padding_type must be one of {tuple(_TORCH_PAD_MODES)}, got {padding_type!r}"
        )
    length = x.shape[1]
    right_pad, pad = stft_padding(length, window_length, hop_length, match_stride)
    half = window_length // 2
    if (pad and length <= pad) or length + 2 * pad + right_pad <= half:
        raise ValueError(
            f"audio of {length} samples is too short for reflect padding at window_length="
            f"{window_length}"
        )
    y = jnp.swapaxes(x.astype(jnp.float32), 1, 2)  # [batch, channels, time]
    if pad or right_pad:
        y = jnp.pad(
            y, ((0, 0), (0, 0), (pad, pad + right_pad)), mode=_TORCH_PAD_MODES[padding_type]
        )
    y = jnp.pad(y, ((0, 0), (0, 0), (half, half)), mode="reflect")
    n_frames = 1 + (y.shape[-1] - window_length) // hop_length
    index = (
        np.arange(n_frames)[:, None] * hop_length + np.arange(window_length)[None, :]
    )  # [frames, window]
    frames = y[:, :, index]  # [batch, channels, frames, window]
    window = jnp.asarray(stft_window(window_type, window_length))[None, None, None, :]
    spectrum = jnp.fft.rfft(frames * window, axis=-1)
    if match_stride:
        spectrum = spectrum[:, :, 2:-2]
    return jnp.transpose(spectrum, (0, 2, 3, 1))


def stft_magnitude(
    x: Array,
    window_length: int,
    hop_length: int,
    window_type: str | None = None,
    match_stride: bool = False,
    padding_type: str = "reflect",
) -> Array:
    """``|STFT|`` of channels-last audio (`stft`, audiotools 0.7.2's framing).

    Args and Raises: as `stft`.

    Returns:
      float32 ``[batch, frames, window_length // 2 + 1, channels]`` (see `stft`). The gradient
      of ``|z|`` at ``z = 0`` is 0, as torch's.

    Example:
      >>> x = jax.ShapeDtypeStruct((2, 16000, 1), jnp.float32)
      >>> jax.eval_shape(lambda x: stft_magnitude(x, 512, 128), x).shape
      (2, 126, 257, 1)
    """
    return _abs(stft(x, window_length, hop_length, window_type, match_stride, padding_type))
