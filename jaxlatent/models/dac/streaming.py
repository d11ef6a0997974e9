"""Streaming steps of the DAC encoder and decoder with per-layer state (exact, whole-signal).

A step advances the stream by ``k`` code frames. Every stage (see
:mod:`jaxlatent.models.dac.receptive`) keeps the last ``context`` positions of its input as
state; a step appends the ``k * scale`` new positions the previous stage produced, runs the
stage without padding on them and keeps the new tail. A stage emits an output as soon as all
the inputs it depends on have arrived, so after the stream has produced frames ``< N``:

* the encoder has read the input samples ``< N * hop + lookahead`` (``lookahead`` is the
  right receptive field, :func:`~jaxlatent.models.dac.receptive_field`);
* the decoder has read the code frames ``< N + lookahead``.

Positions before 0 and (once the stream's length is known, at its end) past the
whole-signal length of each stage are zeroed before every convolution, as in
:mod:`jaxlatent.models.dac.windowed`: the values are those of the whole-signal computation
with padding. The state's shapes do not depend on ``k``, so steps of any size continue one
stream; each ``k`` compiles once.

Source: the layers of descript-audio-codec 1.0.0 ``dac.model.dac`` (Kumar et al. 2023,
arXiv:2306.06546); the streaming is this package's.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxlatent.models.dac.config import DACConfig
from jaxlatent.models.dac.receptive import Stage, decoder_stages, encoder_stages
from jaxlatent.models.dac.windowed import _decoder_fns, _encoder_fns

Array = jax.Array

__all__ = [
    "StreamPlan",
    "decoder_stream_plan",
    "encoder_stream_plan",
    "initial_state",
    "stream_step",
]


def _end(stage: Stage, b: int) -> int:
    """End (exclusive) of the inputs that outputs ``< b`` of `stage` depend on."""
    if stage.kind in ("conv", "res"):
        return b + stage.half
    s, p = stage.stride, stage.pad
    if stage.kind == "down":
        return (b - 1) * s - p + 2 * s
    return (b - 1 + p) // s + 1


def _start(stage: Stage, a: int) -> int:
    """Start of the inputs that outputs ``>= a`` of `stage` depend on."""
    if stage.kind in ("conv", "res"):
        return a - stage.half
    s, p = stage.stride, stage.pad
    if stage.kind == "down":
        return a * s - p
    return (a + p) // s - 1


@dataclasses.dataclass(frozen=True)
class StreamPlan:
    """Static geometry of a stream (independent of the step size).

    Attributes:
      stages: the stages.
      ends: ``e_i`` for ``N = 0``: stage ``i``'s input has been read up to
        ``N * scale[i] + ends[i]`` when frames ``< N`` are out (last entry: the output).
      scale: positions per frame at every stage's input (and the output, last).
      context: state positions kept per stage.
      first: the frame ``N`` a stream starts from: every stage's state lies before position 0
        (zeros), the outputs of frames ``< 0`` are discarded.
    """

    stages: tuple[Stage, ...]
    ends: tuple[int, ...]
    scale: tuple[int, ...]
    context: tuple[int, ...]
    first: int

    @property
    def lookahead(self) -> int:
        """Input positions past the last emitted frame's end that the stream has read."""
        return self.ends[0]

    def starts(self, n: int) -> np.ndarray:
        """int32 ``[stages]``: position of every stage buffer's first element in the step
        that starts when frames ``< n`` are out."""
        return np.array(
            [n * m + e - c for e, m, c in zip(self.ends, self.scale, self.context, strict=False)],
            np.int32,
        )


def _stream_plan(stages: tuple[Stage, ...], out_scale: int) -> StreamPlan:
    ends, scale = [0], [out_scale]
    for stage in reversed(stages):
        ends.append(_end(stage, ends[-1]))
        if stage.kind == "down":
            scale.append(scale[-1] * stage.stride)
        elif stage.kind == "up":
            scale.append(scale[-1] // stage.stride)
        else:
            scale.append(scale[-1])
    ends, scale = ends[::-1], scale[::-1]
    context = tuple(
        ends[i] - _start(stage, ends[i + 1]) for i, stage in enumerate(stages)
    )  # the inputs of the next outputs that have already arrived
    first = -max(-(-e // m) for e, m in zip(ends, scale, strict=True))
    return StreamPlan(stages, tuple(ends), tuple(scale), context, first)


@functools.lru_cache(maxsize=64)
def encoder_stream_plan(config: DACConfig) -> StreamPlan:
    """Stream geometry of the encoder (input in samples, output in code frames)."""
    return _stream_plan(encoder_stages(config), 1)


@functools.lru_cache(maxsize=64)
def decoder_stream_plan(config: DACConfig) -> StreamPlan:
    """Stream geometry of the decoder (input in code frames, output in samples)."""
    return _stream_plan(decoder_stages(config), config.hop_length)


def stream_step(model, state, x, starts, lengths, *, k: int, decoder: bool, n_q: int = 0):
    """One step of `k` frames of a stream.

    Args:
      model: a :class:`~jaxlatent.models.dac.DAC`.
      state: tuple of ``[rows, context_i, channels_i]`` stage states.
      x: the new input: audio ``[rows, k * hop, 1]`` (encoder) or int32 codes
        ``[rows, n_q, k]`` (decoder).
      starts: int32 ``[stages]`` (:meth:`StreamPlan.starts`).
      lengths: int32 ``[stages]``: whole-signal input length of every stage (a large value
        while the stream's length is unknown).
      k: frames per step (static).
      decoder: decode (static; encode when False).
      n_q: quantizers of the encoder (static).

    Returns:
      ``(state, out)``: the new state and the codes ``[rows, n_q, k]`` (encoder) or the
      samples ``[rows, k * hop]`` (decoder) of the frames of this step.
    """
    if decoder:
        plan = decoder_stream_plan(model.config)
        fns = _decoder_fns(model.decoder)
        x = model.quantizer.from_codes(x).z
    else:
        plan = encoder_stream_plan(model.config)
        fns = _encoder_fns(model.encoder)
    new_state = []
    for i, (stage, fn) in enumerate(zip(plan.stages, fns, strict=True)):
        buf = jnp.concatenate([state[i], x.astype(state[i].dtype)], axis=1)
        c = plan.context[i]
        new_state.append(buf[:, buf.shape[1] - c :])
        pos = starts[i] + jnp.arange(buf.shape[1], dtype=jnp.int32)
        keep = (pos >= 0) & (pos < lengths[i])
        x = fn(jnp.where(keep[None, :, None], buf, jnp.zeros((), buf.dtype)))
        if stage.kind == "up":  # transposed: keep the new outputs every input term reaches
            # (the full output starts at buffer start * stride - pad; both shift with N)
            off = plan.ends[i + 1] - (plan.ends[i] - c) * stage.stride + stage.pad
            x = x[:, off : off + k * plan.scale[i + 1]]
    if decoder:
        return tuple(new_state), x[..., 0]
    return tuple(new_state), model.quantizer(x, n_q).codes


def initial_state(
    model, plan: StreamPlan, rows: int, *, decoder: bool, dtype=jnp.float32
) -> tuple[Array, ...]:
    """Zero states ``[rows, context_i, channels_i]`` of a new stream."""
    config = model.config
    if not decoder:  # channels of every stage input
        channels = [1]
        dim = config.encoder_dim
        channels.append(dim)
        for _ in config.encoder_rates:
            channels += [dim] * 3
            dim *= 2
            channels.append(dim)
    else:
        channels = [config.latent_dim]
        dim = config.decoder_dim
        channels.append(dim)
        for i, _ in enumerate(config.decoder_rates):
            channels += [dim // 2 ** (i + 1)] * 4
    channels = channels[: len(plan.stages)]
    return tuple(
        jnp.zeros((rows, c, ch), dtype) for c, ch in zip(plan.context, channels, strict=True)
    )
