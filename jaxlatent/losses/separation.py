"""Speech separation losses: SI-SNR and SNR, alone and under permutation invariant training.

Layouts follow SpeechBrain: `cal_si_snr`/`cal_snr` take time first (``[time, batch,
sources]``), the ``*_with_pitwrapper`` functions batch first (``[batch, time, sources]``).
Nothing here mutates its inputs (SpeechBrain's `cal_si_snr` multiplies `estimate_source`
in place by an all-ones mask).

Every division is an IEEE division in SpeechBrain's order (see `_ieee.true_divide`): for a
perfect estimate the SI-SNR is set by round-off alone, and this keeps SpeechBrain's
doctest values, the float32-fragile one included.

Source: Le Roux et al., "SDR – half-baked or well done?", ICASSP 2019 (SI-SNR); SpeechBrain
1.1.2 `speechbrain.nnet.losses` (`cal_si_snr`, `cal_snr`, `get_mask`,
`get_si_snr_with_pitwrapper`, `get_snr_with_pitwrapper`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.losses._ieee import no_contract, true_divide
from jaxlatent.losses.pit import PitWrapper

Array = jax.Array

#: SpeechBrain's epsilon, added in three places of SI-SNR and two of SNR.
EPS = 1e-8


def _check_pair(source, estimate_source, layout: str) -> tuple[Array, Array]:
    source = jnp.asarray(source)
    estimate_source = jnp.asarray(estimate_source)
    if source.shape != estimate_source.shape:
        raise ValueError(
            f"source and estimate_source must have the same shape {layout}, got source "
            f"{shape_str(source)} and estimate_source {shape_str(estimate_source)}"
        )
    if source.ndim < 3:
        raise ValueError(f"source must have shape {layout}, got {shape_str(source)}")
    check_floating("source", source)
    check_floating("estimate_source", estimate_source)
    return source, estimate_source


def _zero_mean(x: Array) -> Array:
    # SpeechBrain divides the time sum by a float32 tensor of lengths (all equal to T).
    n_samples = jnp.asarray(x.shape[0], jnp.float32)
    return x - true_divide(jnp.sum(x, axis=0, keepdims=True), n_samples)


@jax.jit
def _si_snr(source: Array, estimate_source: Array) -> Array:
    s_target = _zero_mean(source)
    s_estimate = _zero_mean(estimate_source)
    dot = jnp.sum(no_contract(s_estimate * s_target), axis=0, keepdims=True)
    s_target_energy = jnp.sum(no_contract(s_target**2), axis=0, keepdims=True) + EPS
    proj = true_divide(dot * s_target, s_target_energy)
    e_noise = s_estimate - proj
    ratio = true_divide(
        jnp.sum(no_contract(proj**2), axis=0), jnp.sum(no_contract(e_noise**2), axis=0) + EPS
    )
    return -(10 * jnp.log10(ratio + EPS))[None]


@jax.jit
def _snr(source: Array, estimate_source: Array) -> Array:
    s_target = _zero_mean(source)
    s_estimate = _zero_mean(estimate_source)
    ratio = true_divide(
        jnp.sum(no_contract(s_target**2), axis=0),
        jnp.sum(no_contract((s_estimate - s_target) ** 2), axis=0) + EPS,
    )
    return -(10 * jnp.log10(ratio + EPS))[None]


def cal_si_snr(source, estimate_source) -> Array:
    """Negative scale-invariant SNR in dB, per batch item and source.

    With ``s = source - mean_t(source)``, ``ŝ`` likewise and EPS = 1e-8::

        proj = (Σ_t ŝ·s) · s / (Σ_t s² + EPS)
        si_snr = 10 · log10(Σ_t proj² / (Σ_t (ŝ - proj)² + EPS) + EPS)

    Args:
      source: float ``[time, batch, sources]`` (any number of axes ≥ 3: time first,
        every other axis is kept), the reference signals.
      estimate_source: float, same shape, the estimates.

    Returns:
      ``-si_snr`` with a leading singleton axis: ``[1, batch, sources]`` (``[1, ...]`` in
      general), in the promoted dtype of the inputs and float32.

    Raises:
      ValueError: if the shapes differ, have fewer than 3 axes, or an input is not
        floating point (SpeechBrain's doctest passes int64 and computes in float32;
        cast integers with ``.astype(jnp.float32)`` for the same numbers).

    Quirks kept: SpeechBrain's length mask is all ones (every item has length `time`), so
    no masking happens. Not kept: SpeechBrain multiplies `estimate_source` by that mask in
    place, mutating the caller's tensor (and failing on a leaf that requires grad).

    Float32 fragility: when the estimate equals the source, ``ŝ - proj`` is pure round-off
    and SI-SNR is ``10·log10(Σ proj² / (round-off + 1e-8))``. In the example, entry
    ``[0, 0, 1]`` has a round-off energy of 4.66e-9 (comparable to EPS): float32 gives
    144.1789, float64 gives 145.8392, and replacing one IEEE division by a multiplication
    with the reciprocal (what XLA does by default) gives 144.3187. Entry ``[0, 1, 0]``
    happens to have zero round-off in float32 (130.9283 is the EPS bound
    ``10·log10(Σ s² / 1e-8)``); a reciprocal multiplication would give 130.4955. This port
    performs SpeechBrain's divisions and sums in SpeechBrain's order and reproduces both on
    CPU, but such values are round-off, not SI-SNR: do not expect them across platforms.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.cal_si_snr`.

    Example:
      >>> x = jnp.array([[1.0, 0], [123, 45], [34, 5], [2312, 421]])
      >>> xhat = x[:, jnp.array([1, 0])]
      >>> x = jnp.repeat(x[:, :, None], 2, axis=2)
      >>> xhat = jnp.repeat(xhat[:, None, :], 2, axis=1)
      >>> (-cal_si_snr(x, xhat)).round(4)
      Array([[[ 25.2142, 144.1789],
              [130.9283,  25.2142]]], dtype=float32)
    """
    source, estimate_source = _check_pair(source, estimate_source, "[time, batch, sources]")
    return _si_snr(source, estimate_source)


def cal_snr(source, estimate_source) -> Array:
    """Negative SNR in dB (binaural layout), per channel, batch item and source.

    ``snr = 10 · log10(Σ_t s² / (Σ_t (ŝ - s)² + EPS) + EPS)`` with `s`, `ŝ` the time-centred
    source and estimate and EPS = 1e-8.

    Args:
      source: float ``[time, ears, batch, sources]`` (any number of axes ≥ 3, time first).
      estimate_source: float, same shape.

    Returns:
      ``-snr`` with a leading singleton axis: ``[1, ears, batch, sources]``.

    Raises:
      ValueError: if the shapes differ, have fewer than 3 axes, or an input is not
        floating point.

    Like :func:`cal_si_snr`, no masking happens and the inputs are not mutated (SpeechBrain
    multiplies `estimate_source` in place by an all-ones mask). SpeechBrain has no doctest.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.cal_snr`.

    Example:
      >>> s = jnp.array([1.0, -1.0, 1.0, -1.0]).reshape(4, 1, 1, 1)
      >>> -cal_snr(s, 0.5 * s)  # 10·log10(4 / 1) = 6.0206 dB
      Array([[[[6.0206]]]], dtype=float32)
    """
    source, estimate_source = _check_pair(source, estimate_source, "[time, ears, batch, sources]")
    return _snr(source, estimate_source)


def get_mask(source, source_lengths) -> Array:
    """Time mask from absolute lengths: ``mask[t, ..., b, 0] = 1`` iff ``t < len_b``.

    Args:
      source: ``[time, batch, sources]`` or ``[time, ..., batch, sources]`` (batch is the
        second-to-last axis); only its shape and dtype are used.
      source_lengths: integer ``[batch]`` absolute lengths.

    Returns:
      ``[time, ..., batch, 1]`` in `source`'s dtype.

    Raises:
      ValueError: if `source` has fewer than 3 axes, or `source_lengths` is not an integer
        array of shape ``[batch]``.

    Quirk kept: SpeechBrain zeroes ``mask[len_b:, b]`` with a Python slice, so a negative
    length ``-k`` zeroes the last ``k`` frames instead of none or all of them.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.get_mask`.

    Example:
      >>> mask = get_mask(jnp.zeros((4, 3, 2)), jnp.array([2, 1, 4]))
      >>> mask.shape
      (4, 3, 1)
      >>> mask[..., 0]
      Array([[1., 1., 1.],
             [1., 0., 1.],
             [0., 0., 1.],
             [0., 0., 1.]], dtype=float32)
    """
    source = jnp.asarray(source)
    source_lengths = jnp.asarray(source_lengths)
    if source.ndim < 3:
        raise ValueError(
            f"source must have shape [time, ..., batch, sources], got {shape_str(source)}"
        )
    n_time, batch = source.shape[0], source.shape[-2]
    if source_lengths.shape != (batch,):
        raise ValueError(
            f"source_lengths must have shape [batch] = ({batch},) for source "
            f"{shape_str(source)}, got {shape_str(source_lengths)}"
        )
    if not jnp.issubdtype(source_lengths.dtype, jnp.integer):
        raise ValueError(
            f"source_lengths must hold integer lengths, got dtype {source_lengths.dtype}"
        )
    start = jnp.where(source_lengths < 0, jnp.maximum(source_lengths + n_time, 0), source_lengths)
    valid = jnp.arange(n_time)[:, None] < start[None, :]  # [T, B]
    shape = (n_time,) + (1,) * (source.ndim - 3) + (batch, 1)
    out_shape = (*source.shape[:-1], 1)
    return jnp.broadcast_to(valid.reshape(shape), out_shape).astype(source.dtype)


def _check_pit_pair(source, estimate_source, layout: str) -> tuple[Array, Array]:
    source = jnp.asarray(source)
    estimate_source = jnp.asarray(estimate_source)
    if source.ndim < 3 or source.shape != estimate_source.shape:
        raise ValueError(
            f"source and estimate_source must have the same shape {layout}, got source "
            f"{shape_str(source)} and estimate_source {shape_str(estimate_source)}"
        )
    check_floating("source", source)
    check_floating("estimate_source", estimate_source)
    return source, estimate_source


def get_si_snr_with_pitwrapper(source, estimate_source) -> Array:
    """Permutation invariant negative SI-SNR, averaged over sources.

    ``PitWrapper(cal_si_snr)(source, estimate_source).loss``: for each item, the source
    permutation of `estimate_source` with the lowest mean ``-SI-SNR`` (`source` is the
    reference inside :func:`cal_si_snr`).

    Args:
      source: float ``[batch, time, sources]``.
      estimate_source: float ``[batch, time, sources]``.

    Returns:
      float ``[batch]``.

    Raises:
      ValueError: if the shapes differ or have fewer than 3 axes, or an input is not
        floating point (SpeechBrain's doctest uses int64 input, computed in float32).

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.get_si_snr_with_pitwrapper`.

    Example:
      >>> x = jnp.arange(600.0).reshape(3, 100, 2)
      >>> xhat = x[:, :, jnp.array([1, 0])]
      >>> -get_si_snr_with_pitwrapper(x, xhat)
      Array([135.2284, 135.2284, 135.2284], dtype=float32)
    """
    source, estimate_source = _check_pit_pair(source, estimate_source, "[batch, time, sources]")
    return PitWrapper(cal_si_snr)(source, estimate_source).loss


def get_snr_with_pitwrapper(source, estimate_source) -> Array:
    """Permutation invariant negative SNR (binaural), averaged over ears and sources.

    ``PitWrapper(cal_snr)(source, estimate_source).loss``; the per-item loss matrix
    ``[1, ears, S, S]`` is averaged over ears before the permutation search.

    Args:
      source: float ``[batch, time, ears, sources]``.
      estimate_source: float ``[batch, time, ears, sources]``.

    Returns:
      float ``[batch]``.

    Raises:
      ValueError: if the shapes differ or have fewer than 3 axes, or an input is not
        floating point.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.get_snr_with_pitwrapper` (no
    doctest there).

    Example:
      >>> s = jnp.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])  # [time, sources]
      >>> s = s[None, :, None, :]  # [batch=1, time=4, ears=1, sources=2]
      >>> -get_snr_with_pitwrapper(s, 0.5 * s[..., ::-1])  # best: swap back, 10·log10(4)
      Array([6.0206], dtype=float32)
    """
    source, estimate_source = _check_pit_pair(
        source, estimate_source, "[batch, time, ears, sources]"
    )
    return PitWrapper(cal_snr)(source, estimate_source).loss
