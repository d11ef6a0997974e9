"""Window geometry of the official chunked DAC ``compress`` (delay, window, hop, chunk count).

For audio longer than ``win_duration`` the official ``CodecMixin.compress`` sets the padding
of every convolution to 0, zero-pads the signal by the model's ``delay`` on both sides, and
codes windows of ``n_samples = ceil(win_duration * sample_rate / hop_length) * hop_length``
samples starting every ``get_output_length(n_samples)`` samples (the length the unpadded
encoder *and* decoder would return for one window), the last window zero-padded to full
size. ``get_output_length`` and ``get_delay`` walk every ``Conv1d`` / ``ConvTranspose1d`` in
module order with float arithmetic, ``floor`` forwards and ``ceil`` backwards; the functions
here walk the same list, derived from a :class:`~jaxlatent.models.dac.DACConfig` (the
quantizer's kernel-1 projections do not change lengths but are listed, as in torch).

Source: descript-audio-codec 1.0.0 ``dac.model.base.CodecMixin.get_delay`` /
``get_output_length`` / ``compress``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

from jaxlatent.models.dac.config import DACConfig

__all__ = ["ChunkPlan", "ConvGeometry", "chunk_plan", "conv_geometry", "delay", "output_length"]


class ConvGeometry(NamedTuple):
    """Length-relevant attributes of one convolution (torch's module order)."""

    kernel: int
    stride: int
    dilation: int
    transposed: bool


def _residual_unit(dilation: int) -> list[ConvGeometry]:
    return [ConvGeometry(7, 1, dilation, False), ConvGeometry(1, 1, 1, False)]


def conv_geometry(config: DACConfig) -> list[ConvGeometry]:
    """Every convolution of ``dac.DAC(**config.to_kwargs())`` in ``model.modules()`` order.

    Example:
      >>> len(conv_geometry(DACConfig.dac_16khz()))  # 2 + 4 * 7 encoder, 24 quantizer, 2 + 4 * 7
      84
    """
    convs = [ConvGeometry(7, 1, 1, False)]
    for s in config.encoder_rates:
        for d in (1, 3, 9):
            convs += _residual_unit(d)
        convs.append(ConvGeometry(2 * s, s, 1, False))
    convs.append(ConvGeometry(3, 1, 1, False))
    convs += [ConvGeometry(1, 1, 1, False)] * (2 * config.n_codebooks)  # in_proj, out_proj
    convs.append(ConvGeometry(7, 1, 1, False))
    for s in config.decoder_rates:
        convs.append(ConvGeometry(2 * s, s, 1, True))
        for d in (1, 3, 9):
            convs += _residual_unit(d)
    convs.append(ConvGeometry(7, 1, 1, False))
    return convs


def output_length(config: DACConfig, input_length: int) -> int:
    """``get_output_length``: samples out of the *unpadded* encoder + decoder.

    Example:
      >>> output_length(DACConfig.dac_44khz_8kbps(), 44544)
      28522
    """
    length = input_length
    for c in conv_geometry(config):
        if c.transposed:
            length = (length - 1) * c.stride + c.dilation * (c.kernel - 1) + 1
        else:
            length = ((length - c.dilation * (c.kernel - 1) - 1) / c.stride) + 1
        length = math.floor(length)
    return length


def delay(config: DACConfig) -> int:
    """``get_delay``: samples of zero padding the chunked ``compress`` adds on each side.

    Example:
      >>> delay(DACConfig.dac_44khz_8kbps()), delay(DACConfig.dac_16khz())
      (7904, 5264)
    """
    l_out = output_length(config, 0)
    length = l_out
    for c in reversed(conv_geometry(config)):
        if c.transposed:
            length = ((length - c.dilation * (c.kernel - 1) - 1) / c.stride) + 1
        else:
            length = (length - 1) * c.stride + c.dilation * (c.kernel - 1) + 1
        length = math.ceil(length)
    return (length - l_out) // 2


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """How the official ``compress`` cuts `length` samples (at the model rate) into windows.

    Attributes:
      chunked: ``False`` when the audio fits one window (then one unpadded-window pass with
        the convolutions padded, ``padding=True`` in the file).
      window: samples per window given to the encoder (``length`` when not chunked).
      hop: samples between window starts (``length`` when not chunked).
      delay: zeros added before and after the signal (0 when not chunked).
      n_chunks: number of windows.
    """

    chunked: bool
    window: int
    hop: int
    delay: int
    n_chunks: int

    @property
    def padded_length(self) -> int:
        """Samples of the zero-padded signal the windows are cut from."""
        return max(self.n_chunks - 1, 0) * self.hop + self.window


def chunk_plan(config: DACConfig, length: int, win_duration: float | None) -> ChunkPlan:
    """The windows of ``compress`` for `length` samples at ``config.sample_rate``.

    Args:
      config: the model's configuration.
      length: samples per channel after resampling to the model rate (>= 1).
      win_duration: window in seconds; ``None`` codes everything in one pass.

    Returns:
      A :class:`ChunkPlan`.

    Raises:
      ValueError: if `length` < 1, `win_duration` is not a positive finite number, or the
        window is so short that the unpadded codec returns nothing (the reference then loops
        forever or crashes, descript-audio-codec issue #49); the message gives the minimum.

    Example:
      >>> plan = chunk_plan(DACConfig.dac_44khz_8kbps(), 441000, 1.0)
      >>> plan.window, plan.hop, plan.n_chunks
      (44544, 28522, 16)
    """
    if length < 1:
        raise ValueError(f"audio must have at least one sample, got length {length}")
    sr = config.sample_rate
    if win_duration is not None:
        check_win_duration(win_duration)
    if win_duration is None or length / sr <= win_duration:
        return ChunkPlan(False, length, length, 0, 1)
    n_samples = int(win_duration * sr)
    n_samples = int(math.ceil(n_samples / config.hop_length) * config.hop_length)
    hop = output_length(config, n_samples)
    if hop < 1:
        minimum = next(
            k * config.hop_length
            for k in range(1, 1 << 20)
            if output_length(config, k * config.hop_length) >= 1
        )
        raise ValueError(
            f"win_duration={win_duration} s gives windows of {n_samples} samples, too short for "
            f"this model's receptive field; use at least {minimum / sr:.3f} s"
        )
    return ChunkPlan(True, n_samples, hop, delay(config), len(range(0, length, hop)))


def check_win_duration(win_duration) -> None:
    """Raise ``ValueError`` unless `win_duration` is a positive finite number of seconds."""
    if (
        isinstance(win_duration, bool)
        or not isinstance(win_duration, int | float)
        or not math.isfinite(win_duration)
        or win_duration <= 0
    ):
        raise ValueError(f"win_duration must be a positive number of seconds, got {win_duration!r}")
