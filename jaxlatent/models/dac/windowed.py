"""Exact windows of the DAC encoder and decoder: a window of the whole-signal computation.

:func:`encode_window` computes code frames ``[f0, f0 + frames)`` of the whole-signal
``DAC.encode`` (``padding=True``) from the input samples they depend on (the
:func:`~jaxlatent.models.dac.receptive_field` around them); :func:`decode_window` computes
the samples ``[f0 * hop, (f0 + frames) * hop)`` of the whole-signal ``DAC.decode`` from the
code frames they depend on. Every convolution runs without padding on exactly the positions
its outputs need (:func:`~jaxlatent.models.dac.receptive.needed_ranges`); the positions a
convolution reads outside the signal (before 0 or past the whole-signal length of that
layer) are set to zero first, which is the zero padding of the whole-signal computation. So a
window's values are the whole signal's, up to the float32 summation order of differently
shaped convolutions (a few ulps); the quantizer works per frame. The shapes depend on
`frames` only, never on the signal's length or the window's position (those are traced
arguments): one compilation serves every window of every signal.

Source: the layers of descript-audio-codec 1.0.0 ``dac.model.dac`` (Kumar et al. 2023,
arXiv:2306.06546); windowing is this package's.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxlatent.models.dac.config import DACConfig
from jaxlatent.models.dac.receptive import (
    Stage,
    decoder_stages,
    encoder_stages,
    needed_ranges,
    stage_lengths,
)

Array = jax.Array

__all__ = [
    "WindowPlan",
    "decode_window",
    "decoder_plan",
    "encode_window",
    "encoder_plan",
    "layer_lengths",
]


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """Static geometry of one window size of the encoder or the decoder.

    Attributes:
      stages: the stages (:func:`~jaxlatent.models.dac.receptive.encoder_stages` /
        ``decoder_stages``).
      frames: code frames per window.
      ranges: ``[start, stop)`` of every stage's input (and of the output, last) for the
        window of frame 0; the window of frame ``f0`` is shifted by ``f0 * scale[i]``.
      scale: positions per code frame at every stage's input (and the output, last).
    """

    stages: tuple[Stage, ...]
    frames: int
    ranges: tuple[tuple[int, int], ...]
    scale: tuple[int, ...]

    @property
    def input_start(self) -> int:
        """First input position of the window of frame 0 (negative: left context)."""
        return self.ranges[0][0]

    @property
    def input_size(self) -> int:
        """Input positions per window (samples for the encoder, frames for the decoder)."""
        return self.ranges[0][1] - self.ranges[0][0]

    def starts(self, f0: int) -> np.ndarray:
        """int32 ``[stages]``: whole-signal position of every stage input's first element."""
        return np.array(
            [a + f0 * m for (a, _), m in zip(self.ranges[:-1], self.scale, strict=False)],
            np.int32,
        )


def _plan(stages: tuple[Stage, ...], frames: int, out_scale: int) -> WindowPlan:
    ranges = needed_ranges(stages, 0, frames * out_scale)
    scale = [out_scale]
    for stage in reversed(stages):  # positions per frame at each stage's input
        if stage.kind == "down":
            scale.append(scale[-1] * stage.stride)
        elif stage.kind == "up":
            scale.append(scale[-1] // stage.stride)
        else:
            scale.append(scale[-1])
    scale = scale[::-1]
    # Shift invariance: the window of frame 1 is the window of frame 0 moved by `scale`.
    moved = needed_ranges(stages, out_scale, (frames + 1) * out_scale)
    for (a, b), (c, d), m in zip(ranges, moved, scale, strict=True):
        if (c - a, d - b) != (m, m):  # cannot happen for DAC's layers; guards the geometry
            raise AssertionError(f"window geometry is not shift invariant: {ranges} {moved}")
    return WindowPlan(stages, frames, tuple(ranges), tuple(scale))


@functools.lru_cache(maxsize=64)
def encoder_plan(config: DACConfig, frames: int) -> WindowPlan:
    """Geometry of encoder windows of `frames` code frames (input in samples)."""
    return _plan(encoder_stages(config), frames, 1)


@functools.lru_cache(maxsize=64)
def decoder_plan(config: DACConfig, frames: int) -> WindowPlan:
    """Geometry of decoder windows of ``frames * hop`` samples (input in code frames)."""
    return _plan(decoder_stages(config), frames, config.hop_length)


def layer_lengths(plan: WindowPlan, length: int) -> np.ndarray:
    """int32 ``[stages]``: whole-signal input length of every stage for `length` inputs."""
    return np.array(stage_lengths(plan.stages, length)[:-1], np.int32)


def _encoder_fns(encoder):
    fns = [lambda x: encoder.conv1(x, padding=False)]
    for block in encoder.blocks:
        for unit in (block.res_unit1, block.res_unit2, block.res_unit3):
            fns.append(functools.partial(unit, padding=False))
        fns.append(lambda x, b=block: b.conv1(b.snake1(x), padding=False))
    fns.append(lambda x: encoder.conv2(encoder.snake1(x), padding=False))
    return fns


def _decoder_fns(decoder):
    fns = [lambda x: decoder.conv1(x, padding=False)]
    for block in decoder.blocks:
        fns.append(lambda x, b=block: b.conv_t1(b.snake1(x), padding=False))
        for unit in (block.res_unit1, block.res_unit2, block.res_unit3):
            fns.append(functools.partial(unit, padding=False))
    fns.append(lambda x: jnp.tanh(decoder.conv2(decoder.snake1(x), padding=False)))
    return fns


def _run(plan: WindowPlan, fns, x: Array, starts: Array, lengths: Array) -> Array:
    """The stages on one window: mask each input to the signal, convolve without padding.

    `starts` and `lengths` are ``[stages]`` (every row) or ``[rows, stages]`` (per row: windows
    of different signals in one batch)."""
    rows = (x.shape[0], len(plan.stages))
    starts, lengths = jnp.broadcast_to(starts, rows), jnp.broadcast_to(lengths, rows)
    for i, (stage, fn) in enumerate(zip(plan.stages, fns, strict=True)):
        a, b = plan.ranges[i]
        pos = starts[:, i, None] + jnp.arange(b - a, dtype=jnp.int32)[None, :]
        keep = (pos >= 0) & (pos < lengths[:, i, None])
        x = fn(jnp.where(keep[:, :, None], x, jnp.zeros((), x.dtype)))
        if stage.kind == "up":  # transposed: keep the outputs every input term reaches
            c, d = plan.ranges[i + 1]
            off = c - (a * stage.stride - stage.pad)
            x = x[:, off : off + d - c]
    return x


def encode_window(model, audio: Array, starts: Array, lengths: Array, *, frames: int, n_q: int):
    """Codes of one encoder window.

    Args:
      model: a :class:`~jaxlatent.models.dac.DAC`.
      audio: ``[rows, input_size, 1]`` floating: the whole signal's samples
        ``[f0 * hop + input_start, ...)`` (zeros outside the signal).
      starts: int32 ``[stages]`` (``encoder_plan(config, frames).starts(f0)``), or
        ``[rows, stages]``: one per row (rows of different signals or windows).
      lengths: int32 ``[stages]`` (:func:`layer_lengths` of the whole signal's samples, a
        multiple of ``hop``), or ``[rows, stages]``: one per row.
      frames: code frames per window (static).
      n_q: quantizers (static).

    Returns:
      int32 codes ``[rows, n_q, frames]`` of frames ``[f0, f0 + frames)`` (frames past the
      signal's end are meaningless).
    """
    plan = encoder_plan(model.config, frames)
    z = _run(plan, _encoder_fns(model.encoder), audio, starts, lengths)
    return model.quantizer(z, n_q).codes


def decode_window(model, codes: Array, starts: Array, lengths: Array, *, frames: int):
    """Audio of one decoder window.

    Args:
      model: a :class:`~jaxlatent.models.dac.DAC`.
      codes: int32 ``[rows, n_q, input_size]``: the whole signal's code frames
        ``[f0 + input_start, ...)`` (any valid code outside the signal).
      starts: int32 ``[stages]`` (``decoder_plan(config, frames).starts(f0)``), or
        ``[rows, stages]``: one per row.
      lengths: int32 ``[stages]`` (:func:`layer_lengths` of the whole signal's frames), or
        ``[rows, stages]``: one per row.
      frames: code frames per window (static).

    Returns:
      ``[rows, frames * hop]``: samples ``[f0 * hop, (f0 + frames) * hop)`` of the whole
      signal's decoded audio (samples past its end are meaningless).
    """
    plan = decoder_plan(model.config, frames)
    z = model.quantizer.from_codes(codes).z
    return _run(plan, _decoder_fns(model.decoder), z, starts, lengths)[..., 0]
