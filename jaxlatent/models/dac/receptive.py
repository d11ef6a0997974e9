"""Receptive field of the DAC encoder and decoder, and the layer geometry of exact windows.

With ``padding=True`` (the whole-signal :meth:`~jaxlatent.models.dac.DAC.encode` /
:meth:`~jaxlatent.models.dac.DAC.decode`) every convolution zero-pads its own input, so an
output position depends on a fixed span of inputs around it. The encoder and the decoder are
written here as chains of *stages*, each a length-preserving convolution (``conv``: a
kernel-``k`` convolution, dilation ``d``, half-width ``(k - 1) * d // 2``), a residual unit
(``res``: half-width ``3 * dilation``, its kernel-7 dilated convolution), a strided
convolution (``down``: kernel ``2 * s``, stride ``s``, padding ``ceil(s / 2)``) or a
transposed one (``up``: the same, transposed). :func:`needed_ranges` walks the chain
backwards: the positions of every stage's input that a range of outputs depends on.
:func:`receptive_field` gives the spans of one code frame and one frame of audio.

Source: the layers of descript-audio-codec 1.0.0 ``dac.model.dac`` (``Encoder``,
``EncoderBlock``, ``ResidualUnit``, ``DecoderBlock``, ``Decoder``; Kumar et al. 2023,
arXiv:2306.06546).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

from jaxlatent.models.dac.config import DACConfig

__all__ = [
    "ReceptiveField",
    "Stage",
    "decoder_stages",
    "encoder_stages",
    "needed_ranges",
    "receptive_field",
    "stage_lengths",
]

#: Dilations of the three residual units of every encoder / decoder block.
_DILATIONS = (1, 3, 9)


class Stage(NamedTuple):
    """One length-relevant step of the encoder or decoder.

    Attributes:
      kind: ``"conv"`` / ``"res"`` (stride 1, `half` positions of context each side),
        ``"down"`` (strided convolution) or ``"up"`` (transposed convolution).
      half: context each side of a stride-1 stage (0 for ``down`` / ``up``).
      stride: stride of ``down`` / ``up`` (1 otherwise).
      pad: padding of ``down`` / ``up`` (``ceil(stride / 2)``; ``half`` otherwise).
    """

    kind: str
    half: int = 0
    stride: int = 1
    pad: int = 0


def _block_units() -> list[Stage]:
    return [Stage("res", 3 * d, 1, 3 * d) for d in _DILATIONS]


@functools.lru_cache(maxsize=64)
def encoder_stages(config: DACConfig) -> tuple[Stage, ...]:
    """The encoder as stages: conv k7, per rate (3 residual units, down), snake + conv k3.

    Example:
      >>> [s.kind for s in encoder_stages(DACConfig(encoder_rates=(2,)))]
      ['conv', 'res', 'res', 'res', 'down', 'conv']
    """
    stages = [Stage("conv", 3, 1, 3)]
    for s in config.encoder_rates:
        stages += [*_block_units(), Stage("down", 0, s, math.ceil(s / 2))]
    return (*stages, Stage("conv", 1, 1, 1))


@functools.lru_cache(maxsize=64)
def decoder_stages(config: DACConfig) -> tuple[Stage, ...]:
    """The decoder as stages: conv k7, per rate (up, 3 residual units), snake + conv k7, tanh.

    Example:
      >>> [s.kind for s in decoder_stages(DACConfig(decoder_rates=(2,), decoder_dim=8))]
      ['conv', 'up', 'res', 'res', 'res', 'conv']
    """
    stages = [Stage("conv", 3, 1, 3)]
    for s in config.decoder_rates:
        stages += [Stage("up", 0, s, math.ceil(s / 2)), *_block_units()]
    return (*stages, Stage("conv", 3, 1, 3))


def _back(stage: Stage, a: int, b: int) -> tuple[int, int]:
    """Input positions ``[a', b')`` that outputs ``[a, b)`` of `stage` depend on."""
    if stage.kind in ("conv", "res"):
        return a - stage.half, b + stage.half
    s, p = stage.stride, stage.pad
    if stage.kind == "down":  # output j reads inputs j*s - p ... j*s - p + 2s - 1
        return a * s - p, (b - 1) * s - p + 2 * s
    # up: output t receives inputs i with i*s <= t + p < i*s + 2s
    return (a + p) // s - 1, (b - 1 + p) // s + 1


def needed_ranges(stages: tuple[Stage, ...], a: int, b: int) -> list[tuple[int, int]]:
    """Half-open position ranges ``[start, stop)`` at every stage for outputs ``[a, b)``.

    Entry ``i`` is the input range of ``stages[i]``; the last entry is ``(a, b)`` itself.
    Positions are those of the whole-signal computation (they may be negative or past the
    end: those inputs are the zero padding).

    Example:
      >>> needed_ranges((Stage("conv", 3, 1, 3), Stage("down", 0, 2, 1)), 0, 1)
      [(-4, 6), (-1, 3), (0, 1)]
    """
    out = [(a, b)]
    for stage in reversed(stages):
        a, b = _back(stage, a, b)
        out.append((a, b))
    return out[::-1]


def stage_lengths(stages: tuple[Stage, ...], length: int) -> list[int]:
    """Input length of every stage (and the output length last) in the whole-signal
    computation with padding, for an input of `length` positions.

    Example:
      >>> stage_lengths(decoder_stages(DACConfig.dac_16khz())[:2], 3)  # conv, up x8
      [3, 3, 24]
    """
    out = [length]
    for stage in stages:
        s, p = stage.stride, stage.pad
        if stage.kind == "down":
            length = (length + 2 * p - 2 * s) // s + 1
        elif stage.kind == "up":
            length = (length - 1) * s - 2 * p + 2 * s
        out.append(length)
    return out


class ReceptiveField(NamedTuple):
    """Context of the whole-signal (``padding=True``) encoder and decoder of one config.

    Attributes:
      encoder_samples: ``(left, right)``: code frame ``f`` depends on the input samples
        ``[f * hop - left, (f + 1) * hop + right)`` and on no other (``hop = hop_length``).
      encoder_frames: the same in code frames, rounded up (``ceil(samples / hop)``).
      decoder_frames: ``(left, right)``: the decoded samples ``[f * hop, (f + 1) * hop)``
        depend on the code frames ``[f - left, f + 1 + right)`` and on no other.
      decoder_samples: the decoder's context in samples (``decoder_frames * hop``).
    """

    encoder_samples: tuple[int, int]
    encoder_frames: tuple[int, int]
    decoder_frames: tuple[int, int]
    decoder_samples: tuple[int, int]


@functools.lru_cache(maxsize=64)
def receptive_field(config: DACConfig) -> ReceptiveField:
    """The receptive field of `config`'s encoder and decoder, computed from the layers.

    Args:
      config: the model's :class:`~jaxlatent.models.dac.DACConfig`.

    Returns:
      A :class:`ReceptiveField` (all entries non-negative ints).

    Example:
      >>> rf = receptive_field(DACConfig.dac_44khz_8kbps())
      >>> rf.encoder_samples, rf.encoder_frames, rf.decoder_frames
      ((3733, 3733), (8, 8), (10, 10))
    """
    hop = config.hop_length
    a, b = needed_ranges(encoder_stages(config), 0, 1)[0]
    enc = (-a, b - hop)
    a, b = needed_ranges(decoder_stages(config), 0, hop)[0]
    dec = (-a, b - 1)
    return ReceptiveField(
        enc,
        (-(-enc[0] // hop), -(-enc[1] // hop)),
        dec,
        (dec[0] * hop, dec[1] * hop),
    )
