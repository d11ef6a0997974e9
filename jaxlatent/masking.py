"""Relative lengths to masks, by SpeechBrain's exact rules.

SpeechBrain passes `length` as *relative* lengths: one fraction in [0, 1] per batch item,
the share of the padded axis that holds real data. SpeechBrain 1.1.2 turns them into masks
with four different rules, which disagree on float32 round-off (e.g. `length = 7/13` over
13 frames: rule "ceil with tolerance" keeps 7 frames, rule "plain ceil" keeps 8). Each
jaxlatent function uses the rule its SpeechBrain counterpart uses:

=====================  ==========================================  ==============================
rule                   position ``i`` is valid when                SpeechBrain users
=====================  ==========================================  ==============================
ceil with tolerance    ``i < length * L - 1e-6`` (float32)         ``compute_length_mask``,
                                                                   ``make_padding_mask``
plain ceil             ``i < length * L`` (float32)                ``clean_padding``, autoencoder
                                                                   losses
round                  ``i < round_half_even(length * L)``         CTC, transducer, KD losses
none                   every position                              ``kldiv_loss`` with smoothing,
                                                                   SI-SNR
=====================  ==========================================  ==============================

All functions here are jit-compatible; the arithmetic is done in the dtype of `length`
(float32 by default) exactly as SpeechBrain does it in torch.

Source: SpeechBrain 1.1.2, `speechbrain/dataio/dataio.py` (`length_to_mask`,
`clean_padding`), `speechbrain/nnet/losses.py` (`compute_length_mask`) and
`speechbrain/processing/features.py` (`make_padding_mask`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_relative_length

Array = jax.Array

#: Tolerance subtracted by SpeechBrain's "ceil with tolerance" rule.
LENGTH_EPS = 1e-6


def _checked_float_length(length) -> Array:
    """Relative lengths checked (`check_relative_length`), as a floating array."""
    check_relative_length(length)
    length = jnp.asarray(length)
    if not jnp.issubdtype(length.dtype, jnp.floating):
        length = length.astype(jnp.float32)
    return length


def length_to_mask(length, max_len: int, *, dtype=jnp.bool_) -> Array:
    """Mask of *absolute* lengths: ``mask[b, i] = i < length[b]``.

    Args:
      length: absolute lengths (possibly fractional), shape ``[batch]``.
      max_len: size of the time axis ``L`` (static int).
      dtype: output dtype (default bool).

    Returns:
      Array ``[batch, L]`` of `dtype`.

    Example:
      >>> length_to_mask(jnp.array([2, 0, 3]), 3).astype(int)
      Array([[1, 1, 0],
             [0, 0, 0],
             [1, 1, 1]], dtype=int32)
    """
    length = jnp.asarray(length)
    positions = jnp.arange(max_len, dtype=length.dtype)
    return (positions[None, :] < length[:, None]).astype(dtype)


def ceil_tolerance_mask(length, max_len: int, *, eps: float = LENGTH_EPS, dtype=jnp.bool_):
    """Rule "ceil with tolerance": valid iff ``i < length * L - eps``; shape ``[batch, L]``.

    The number of valid frames is ``ceil(length * L - 1e-6)``, robust to float32 round-off.
    Used by `compute_length_mask` and `make_padding_mask`.

    Raises:
      ValueError: if `length` is not 1-D or (when concrete) outside [0, 1].

    Example:
      >>> ceil_tolerance_mask(jnp.array([7 / 13]), 13).sum()
      Array(7, dtype=int32)
    """
    return length_to_mask(_checked_float_length(length) * max_len - eps, max_len, dtype=dtype)


def plain_ceil_mask(length, max_len: int, *, dtype=jnp.bool_) -> Array:
    """Rule "plain ceil": valid iff ``i < length * L`` (float32); shape ``[batch, L]``.

    Used by SpeechBrain's `clean_padding` (both autoencoders) and the autoencoder losses.
    Differs from :func:`ceil_tolerance_mask` when ``float32(n / d) * d`` rounds above ``n``.

    Raises:
      ValueError: if `length` is not 1-D or (when concrete) outside [0, 1].

    Example:
      >>> plain_ceil_mask(jnp.array([7 / 13]), 13).sum()
      Array(8, dtype=int32)
    """
    return length_to_mask(_checked_float_length(length) * max_len, max_len, dtype=dtype)


def round_lengths(length, max_len: int) -> Array:
    """Rule "round": absolute lengths ``round_half_even(length * L)`` as int32, shape ``[batch]``.

    Used by the CTC, transducer and knowledge-distillation losses (torch.round is
    half-to-even, as is `jnp.round`).

    Example:
      >>> round_lengths(jnp.array([0.45, 0.5, 1.0]), 5)
      Array([2, 2, 5], dtype=int32)
    """
    return jnp.round(_checked_float_length(length) * max_len).astype(jnp.int32)


def _expand_mask(mask: Array, ndim: int, len_dim: int) -> Array:
    """Place a ``[batch, L]`` mask on axes (0, len_dim) of an `ndim`-D array (size 1 elsewhere)."""
    len_dim = len_dim % ndim
    if len_dim == 0:
        raise ValueError("len_dim must not be the batch axis 0")
    shape = [1] * ndim
    shape[0] = mask.shape[0]
    shape[len_dim] = mask.shape[1]
    return mask.reshape(shape)


def clean_padding(x, length, *, len_dim: int = 1, mask_value: float = 0.0) -> Array:
    """Set padded positions of `x` to `mask_value` (rule "plain ceil").

    Args:
      x: array ``[batch, ...]`` with the padded axis at `len_dim`.
      length: relative lengths ``[batch]`` in [0, 1]; None returns `x` unchanged.
      len_dim: the padded axis (not 0).
      mask_value: value written at padded positions.

    Returns:
      Array of the shape and dtype of `x`.

    Source: SpeechBrain 1.1.2 `speechbrain.dataio.dataio.clean_padding`.

    Example:
      >>> x = jnp.arange(5.0)[None].repeat(2, axis=0)
      >>> clean_padding(x, jnp.array([0.4, 1.0]), mask_value=-1.0)
      Array([[ 0.,  1., -1., -1., -1.],
             [ 0.,  1.,  2.,  3.,  4.]], dtype=float32)
    """
    if length is None:
        return x
    x = jnp.asarray(x)
    mask = plain_ceil_mask(length, x.shape[len_dim])
    mask = _expand_mask(mask, x.ndim, len_dim)
    return jnp.where(mask, x, jnp.asarray(mask_value, dtype=x.dtype))


def make_padding_mask(x, length=None, *, length_dim: int = 1, eps: float = LENGTH_EPS) -> Array:
    """Boolean padding mask for `x` (rule "ceil with tolerance").

    Args:
      x: array ``[batch, ...]``.
      length: relative lengths ``[batch]``, or None for an all-True mask.
      length_dim: the padded axis.
      eps: tolerance of the ceil rule.

    Returns:
      bool array with the size of `x` on axes 0 and `length_dim` and 1 elsewhere.

    Source: SpeechBrain 1.1.2 `speechbrain.processing.features.make_padding_mask`.
    """
    x = jnp.asarray(x)
    if length is None:
        length = jnp.ones((x.shape[0],), jnp.float32)
    mask = ceil_tolerance_mask(length, x.shape[length_dim], eps=eps)
    return _expand_mask(mask, x.ndim, length_dim)
