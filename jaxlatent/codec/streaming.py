"""`StreamingEncoder` / `StreamingDecoder`: DAC coding of a stream, pushed piece by piece.

The encoder takes audio at the model's rate as it arrives and returns the code frames that
are final so far; the decoder takes code frames and returns the samples that are final so
far. Concatenated, the outputs are exactly the whole-signal ``DAC.encode`` codes of the
hop-padded signal (up to float32 near-ties of the nearest-code search) and the whole-signal
``DAC.decode`` audio (within float32 round-off), whatever the push sizes: every layer keeps
its own state (:mod:`jaxlatent.models.dac.streaming`) and emits an output as soon as all its
inputs have arrived.

Latency: a code frame (``hop`` samples) is final once ``encoder lookahead`` more samples have
arrived; decoded samples once ``decoder lookahead`` more code frames have. These are the right
receptive fields (:func:`jaxlatent.models.dac.receptive_field`), from the config:

========================  ==========================  ==========================
variant                   encoder lookahead           decoder lookahead
========================  ==========================  ==========================
``44khz_8kbps`` / 16kbps  3733 samples (84.6 ms)      10 frames (5120 samples, 116.1 ms)
``24khz``                 2493 samples (103.9 ms)     10 frames (3200 samples, 133.3 ms)
``16khz``                 2493 samples (155.8 ms)     10 frames (3200 samples, 200.0 ms)
========================  ==========================  ==========================

Loudness normalisation and resampling are not applied (they need the whole signal): the
stream is mono or multi-channel audio at the model's rate, each channel a separate stream.

Compilation: one step per number of frames ``k`` (powers of two from ``min_step_frames`` up
to ``max_step_frames``); a push runs as many steps as the buffered input allows, largest
first, so every push size reuses those few compiled steps (one jitted call per step, the state
donated). Positions are int32: a stream may hold up to 2**31 - 1 samples (13.5 hours at
44.1 kHz).

Speed: a stream runs the model with its convolutions folded once
(:func:`jaxlatent.nn.fold_convolutions`: no weight-norm or polyphase kernel work per step),
but a step still reads every weight of the model once, whatever its ``k`` (297 MB for the
16/24 kHz models, 13-17 ms on the 2-core CPU of the benchmarks: most of one frame's 20 or
13.3 ms), and XLA:CPU runs the convolutions of small steps well below their whole-signal
efficiency (the wide layers of few positions run as matrix products instead,
:class:`~jaxlatent.nn.FoldedConv`): steps of one frame cannot keep up there. From about eight
frames per step the work is compute-bound: about 2 GFLOP per code frame (encoder + decoder),
21 ms of CPU time per frame on one core of that CPU, so keeping up needs both cores (and
steps of eight frames or more at 24 kHz). ``min_step_frames``
trades latency for throughput: pushes are coalesced until that many frames can be computed
in one step, which adds up to ``min_step_frames - 1`` frames of waiting on each side
(:attr:`coalescing_samples`) and divides the weight reads per frame by as much
(benchmarks/results/bench_streaming-cpu.md).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from flax import nnx

from jaxlatent._checks import check_n_quantizers
from jaxlatent.models.dac.receptive import stage_lengths
from jaxlatent.models.dac.streaming import (
    decoder_stream_plan,
    encoder_stream_plan,
    initial_state,
    stream_step,
)
from jaxlatent.nn.folded import fold_convolutions

__all__ = ["StreamingDecoder", "StreamingEncoder"]

#: Stage lengths while the stream's length is unknown (nothing is cut at the right).
_OPEN = np.iinfo(np.int32).max
_STEP_NAMES = ("min_step_frames", "max_step_frames")


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _dac_config(model):
    config = getattr(model, "config", None)
    if config is None or not all(hasattr(model, a) for a in ("encoder", "quantizer", "decoder")):
        raise ValueError(f"model must be a DAC model, got {type(model).__name__}")
    return config


@functools.lru_cache(maxsize=64)
def _jitted_step(step, graphdef, treedef, k: int, decoder: bool, n_q: int):
    """``step`` of `k` frames on the flat parameter leaves, jitted, the state donated."""

    def run(leaves, state, x, starts, lengths):
        model = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
        return step(model, state, x, starts, lengths, k=k, decoder=decoder, n_q=n_q)

    return jax.jit(run, donate_argnums=1)


class _Stream:
    """Steps of a stream over a buffer of pending input (the shared machinery)."""

    def __init__(
        self,
        model,
        plan,
        channels: int,
        steps: tuple[int, int],
        decoder: bool,
        n_q: int,
    ):
        self.config = _dac_config(model)
        self.channels = _positive("channels", channels)
        min_k, max_k = (_positive(n, v) for n, v in zip(_STEP_NAMES, steps, strict=True))
        if min_k > max_k:
            raise ValueError(f"min_step_frames={min_k} must not exceed max_step_frames={max_k}")
        self._max_k = 1 << (max_k.bit_length() - 1)
        self._min_k = min(1 << (min_k - 1).bit_length(), self._max_k)
        self._plan, self._decoder, self._n_q = plan, decoder, n_q
        self._graphdef, params = nnx.split(fold_convolutions(model))
        self._leaves, self._treedef = jax.tree.flatten(params)
        self._steps: dict[int, object] = {}
        # Committed to a device, as every later state (the outputs of a step): an uncommitted
        # first state would compile the step a second time.
        self._state = jax.device_put(
            initial_state(model, plan, self.channels, decoder=decoder), jax.local_devices()[0]
        )
        self._n = plan.first  # frames out so far (negative: the zeros before the signal)
        self._received = 0
        self._closed = False
        self._lengths = np.full(len(plan.stages), _OPEN, np.int32)

    def _check_open(self):
        if self._closed:
            raise ValueError("the stream is flushed; start a new one")

    def _step(self, k: int):
        fn = self._steps.get(k)
        if fn is None:
            fn = self._steps[k] = _jitted_step(
                stream_step, self._graphdef, self._treedef, k, self._decoder, self._n_q
            )
        return fn

    def _run(self, pending: np.ndarray, unit: int, final: bool = False) -> tuple[np.ndarray, list]:
        """Run steps while `pending` (last axis: input positions) holds ``min_k`` whole frames
        (any whole frame when `final`)."""
        outs = []
        while pending.shape[-1] >= (1 if final else self._min_k) * unit:
            k = min(self._max_k, 1 << ((pending.shape[-1] // unit).bit_length() - 1))
            x = pending[..., : k * unit]
            x = x[..., None] if not self._decoder else x
            self._state, out = self._step(k)(
                self._leaves, self._state, x, self._plan.starts(self._n), self._lengths
            )
            pending = pending[..., k * unit :]
            outs.append((self._n, k, out))
            self._n += k
        return pending, outs

    @property
    def lookahead_ms(self) -> float:
        """:attr:`lookahead_samples` in milliseconds at the model's rate."""
        return 1000.0 * self.lookahead_samples / self.config.sample_rate

    @property
    def coalescing_samples(self) -> int:
        """Samples (of input audio, or of code frames as ``frames * hop``) that may arrive,
        beyond :attr:`lookahead_samples`, before a frame's step runs: ``(min_step - 1) * hop``
        for the smallest step ``min_step`` (0 with the default ``min_step_frames=1``)."""
        return (self._min_k - 1) * self.config.hop_length

    @property
    def step_frames(self) -> tuple[int, ...]:
        """The step sizes in code frames a push may run (powers of two), smallest first."""
        return tuple(1 << i for i in range(self._min_k.bit_length() - 1, self._max_k.bit_length()))


class StreamingEncoder(_Stream):
    """Code a stream of audio at the model's rate into DAC codes, exactly.

    Args:
      model: a :class:`~jaxlatent.models.dac.DAC`.
      channels: channels of the stream (each coded as its own mono stream, as ``compress``).
      n_quantizers: codebooks (default all).
      max_step_frames: largest step in code frames (rounded down to a power of two).
      min_step_frames: smallest step in code frames (rounded up to a power of two, at most
        the largest): pushes are coalesced until a step of that many frames can run (the
        rest at :meth:`flush`). Steps of more frames cost little more than one (every step
        reads all weights), at the price of up to :attr:`coalescing_samples` more latency;
        1 (the default) emits every frame as soon as it is final.

    Raises:
      ValueError: for a model that is not a DAC, a non-positive `channels`,
        `max_step_frames` or `min_step_frames`, ``min_step_frames > max_step_frames``, or
        `n_quantizers` outside ``[1, n_codebooks]``.

    Example:
      >>> import numpy as np
      >>> from jaxlatent.models.dac import DAC, DACConfig
      >>> config = DACConfig(encoder_dim=2, encoder_rates=(2, 5), latent_dim=4, decoder_dim=4,
      ...                    decoder_rates=(5, 2), n_codebooks=2, codebook_size=8,
      ...                    codebook_dim=2, sample_rate=8000)
      >>> enc = StreamingEncoder(DAC(config, rngs=nnx.Rngs(0)), max_step_frames=4)
      >>> enc.lookahead_samples
      135
      >>> x = np.zeros(1000, np.float32)
      >>> parts = [enc.push(x[:7]), enc.push(x[7:]), enc.flush()]
      >>> [p.shape for p in parts]  # frames become final 135 samples after their end
      [(1, 2, 0), (1, 2, 86), (1, 2, 14)]
    """

    def __init__(
        self,
        model,
        *,
        channels: int = 1,
        n_quantizers: int | None = None,
        max_step_frames: int = 16,
        min_step_frames: int = 1,
    ):
        config = _dac_config(model)
        n_q = check_n_quantizers(n_quantizers, config.n_codebooks)
        plan = encoder_stream_plan(config)
        steps = (min_step_frames, max_step_frames)
        super().__init__(model, plan, channels, steps, False, n_q)
        hop = self.config.hop_length
        self._pending = np.zeros((self.channels, -(self._n * hop + self._plan.ends[0])), np.float32)

    @property
    def lookahead_samples(self) -> int:
        """Samples that must arrive after a code frame's last sample before it is final."""
        return self._plan.lookahead

    def push(self, samples) -> np.ndarray:
        """The next samples: float ``[n]`` (one channel) or ``[n, channels]``, model rate.

        Returns:
          int32 codes ``[channels, n_q, frames]`` of the frames that became final (possibly
          none).

        Raises:
          ValueError: if `samples` is not a floating array of this stream's channels, holds
            NaN/Inf, or the stream was flushed (the stream is unchanged).
        """
        self._check_open()
        x = np.asarray(samples)
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"samples must be floating point audio, got dtype {x.dtype}")
        if x.ndim == 1 and self.channels == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"samples must be [n, channels={self.channels}] (or [n] for one channel), got "
                f"shape {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("samples contain NaN or Inf")
        self._received += x.shape[0]
        pending = np.concatenate([self._pending, x.T.astype(np.float32)], axis=1)
        self._pending, outs = self._run(pending, self.config.hop_length)
        return self._collect(outs, None)

    def _collect(self, outs, stop: int | None) -> np.ndarray:
        codes = []
        for n, k, out in outs:
            lo, hi = max(n, 0), n + k if stop is None else min(n + k, stop)
            if hi > lo:
                codes.append(np.asarray(out)[:, :, lo - n : hi - n])
        if not codes:
            return np.zeros((self.channels, self._n_q, 0), np.int32)
        return np.concatenate(codes, axis=-1).astype(np.int32)

    def flush(self) -> np.ndarray:
        """End the stream: the remaining code frames (the signal zero-padded to whole frames).

        Returns:
          int32 codes ``[channels, n_q, frames]``; all the stream's frames, concatenated, are
          ``ceil(samples / hop)``.

        Raises:
          ValueError: if the stream was already flushed.
        """
        self._check_open()
        hop = self.config.hop_length
        frames = -(-self._received // hop)
        self._lengths = np.minimum(
            stage_lengths(self._plan.stages, frames * hop)[:-1], _OPEN
        ).astype(np.int32)
        need = (frames - self._n) * hop - self._pending.shape[1]
        pending = np.pad(self._pending, ((0, 0), (0, max(need, 0))))
        _, outs = self._run(pending[:, : max((frames - self._n) * hop, 0)], hop, final=True)
        self._closed = True
        return self._collect(outs, frames)


class StreamingDecoder(_Stream):
    """Decode a stream of DAC codes into audio at the model's rate, exactly.

    Args:
      model: a :class:`~jaxlatent.models.dac.DAC`.
      channels: rows of the codes (channels of the stream).
      n_quantizers: codebooks of the codes (default all).
      max_step_frames: largest step in code frames (rounded down to a power of two).
      min_step_frames: smallest step in code frames, as :class:`StreamingEncoder`'s.

    Raises:
      ValueError: as :class:`StreamingEncoder`.
    """

    def __init__(
        self,
        model,
        *,
        channels: int = 1,
        n_quantizers: int | None = None,
        max_step_frames: int = 16,
        min_step_frames: int = 1,
    ):
        config = _dac_config(model)
        n_q = check_n_quantizers(n_quantizers, config.n_codebooks)
        plan = decoder_stream_plan(config)
        steps = (min_step_frames, max_step_frames)
        super().__init__(model, plan, channels, steps, True, n_q)
        zeros = -(self._n + self._plan.ends[0])  # code frames before the signal
        self._pending = np.zeros((self.channels, n_q, zeros), np.int32)

    @property
    def lookahead_samples(self) -> int:
        """Samples of code frames (``frames * hop``) that must arrive after a sample's frame
        before the sample is final."""
        return self._plan.lookahead * self.config.hop_length

    def push(self, codes) -> np.ndarray:
        """The next code frames: integer ``[channels, n_q, frames]``.

        Returns:
          float32 ``[channels, samples]`` at the model's rate: the samples that became final.

        Raises:
          ValueError: if `codes` is not an integer array of this stream's shape, holds codes
            outside ``[0, codebook_size)``, or the stream was flushed (the stream is
            unchanged).
        """
        self._check_open()
        c = np.asarray(codes)
        if not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"codes must be an integer array, got dtype {c.dtype}")
        if c.ndim != 3 or c.shape[:2] != (self.channels, self._n_q):
            raise ValueError(
                f"codes must be [channels={self.channels}, n_q={self._n_q}, frames], got shape "
                f"{c.shape}"
            )
        size = self.config.codebook_size
        if c.size and (c.min() < 0 or c.max() >= size):
            raise ValueError(
                f"codes must lie in [0, codebook_size={size}), got {c.min()}..{c.max()}"
            )
        self._received += c.shape[-1]
        pending = np.concatenate([self._pending, c.astype(np.int32)], axis=-1)
        self._pending, outs = self._run(pending, 1)
        return self._collect(outs, None)

    def _collect(self, outs, stop: int | None) -> np.ndarray:
        hop = self.config.hop_length
        audio = []
        for n, k, out in outs:
            lo = max(n, 0) * hop
            hi = (n + k) * hop if stop is None else min((n + k) * hop, stop)
            if hi > lo:
                audio.append(np.asarray(out)[:, lo - n * hop : hi - n * hop])
        if not audio:
            return np.zeros((self.channels, 0), np.float32)
        return np.concatenate(audio, axis=-1)

    def flush(self) -> np.ndarray:
        """End the stream: the remaining samples.

        Returns:
          float32 ``[channels, samples]``; all the stream's samples, concatenated, are those
          of ``DAC.decode`` of all its frames (``hop * frames``, 8 fewer for the 16/24 kHz
          variants).

        Raises:
          ValueError: if the stream was already flushed.
        """
        self._check_open()
        hop, frames = self.config.hop_length, self._received
        lengths = stage_lengths(self._plan.stages, frames)
        total = lengths[-1] if frames else 0
        self._lengths = np.minimum(lengths[:-1], _OPEN).astype(np.int32)
        steps = max(-(-total // hop) - self._n, 0)
        need = steps - self._pending.shape[-1]
        pending = np.pad(self._pending, ((0, 0), (0, 0), (0, max(need, 0))))
        _, outs = self._run(pending[..., :steps], 1, final=True)
        self._closed = True
        return self._collect(outs, total)
