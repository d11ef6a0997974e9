"""Shape helpers of the autoencoders: padding to a multiple of a factor, and trimming.

`pad_divisible` and `DownsamplingPadding` follow the `latent_padding` contract of the
autoencoders, ``(x, length=None) -> (padded_x, new_relative_length)``; `trim_as` crops a
reconstruction back to the shape of its input. All are jit-compatible (shapes are static).

Source: SpeechBrain 1.1.2 `speechbrain.utils.data_utils.pad_divisible` / `trim_as` and
`speechbrain.nnet.unet.DownsamplingPadding`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_relative_length, shape_str

Array = jax.Array


def _axis(len_dim: int, ndim: int, name: str = "len_dim") -> int:
    if not -ndim <= len_dim < ndim:
        raise ValueError(f"{name}={len_dim} is not an axis of an array with {ndim} dimensions")
    return len_dim % ndim


def pad_divisible(
    x: Array,
    length: Array | None = None,
    factor: int = 2,
    len_dim: int = 1,
    pad_value: float = 0,
) -> tuple[Array, Array | None]:
    """Right-pad axis `len_dim` of `x` to a multiple of `factor` and rescale `length`.

    The new relative length is ``length * (L / L_padded)`` (the ratio is a Python float,
    multiplied in the dtype of `length`, as in SpeechBrain), so the same real frames stay
    valid.

    Args:
      x: array of any rank.
      length: relative lengths ``[batch]`` or None.
      factor: the divisibility factor (static positive int).
      len_dim: the axis to pad.
      pad_value: value of the added positions.

    Returns:
      ``(x_padded, length)``: `x` padded on `len_dim` only, and the rescaled `length`
      (None if `length` is None).

    Raises:
      ValueError: if `factor` is not a positive int or `len_dim` is not an axis of `x`.

    Source: SpeechBrain 1.1.2 `speechbrain.utils.data_utils.pad_divisible`.

    Example:
      >>> x_pad, lens = pad_divisible(jnp.array([[1, 2, 3, 4], [5, 6, 0, 0]]),
      ...                             jnp.array([1.0, 0.5]), factor=5)
      >>> x_pad
      Array([[1, 2, 3, 4, 0],
             [5, 6, 0, 0, 0]], dtype=int32)
      >>> lens.tolist()
      [0.8, 0.4]
    """
    x = jnp.asarray(x)
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    axis = _axis(len_dim, x.ndim)
    time = x.shape[axis]
    gap = time % factor
    desired = time + (factor - gap if gap > 0 else 0)
    if desired != time:
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, desired - time)
        x = jnp.pad(x, widths, constant_values=jnp.asarray(pad_value, x.dtype))
    if length is not None:
        length = jnp.asarray(length)
        length = length * (time / desired)
    return x, length


@dataclasses.dataclass(frozen=True)
class DownsamplingPadding:
    """Pad several axes to multiples of `factor`; the length follows axis `len_dim`.

    Each axis in `dims` is padded with :func:`pad_divisible` using the **original**
    `length`; the returned length is the one rescaled for `len_dim` (or the input `length`
    if `len_dim` is not in `dims`), as in SpeechBrain.

    Args:
      factor: the divisibility factor.
      len_dim: the axis the relative lengths refer to.
      dims: the axes to pad (SpeechBrain's default ``(2, 3)``, the spatial axes of its
        channels-first images).

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.unet.DownsamplingPadding`.

    Example:
      >>> padding = DownsamplingPadding(factor=4, dims=(1, 2), len_dim=1)
      >>> x, length = padding(jnp.zeros((4, 7, 14)), jnp.array([1.0, 0.8, 1.0, 0.7]))
      >>> x.shape, length.tolist()
      ((4, 8, 16), [0.875, 0.7, 0.875, 0.6125])
    """

    factor: int
    len_dim: int = 2
    dims: Sequence[int] | None = None

    def __hash__(self) -> int:
        dims = None if self.dims is None else tuple(self.dims)
        return hash((self.factor, self.len_dim, dims))

    def __call__(self, x: Array, length: Array | None = None) -> tuple[Array, Array | None]:
        dims = (2, 3) if self.dims is None else tuple(self.dims)
        updated = length
        for dim in dims:
            x, length_pad = pad_divisible(x, length, self.factor, len_dim=dim)
            if dim == self.len_dim:
                updated = length_pad
        return x, updated


def trim_as(x: Array, other: Array) -> Array:
    """Crop **every** axis of `x` to the size of that axis in `other` (keep the start).

    Raises:
      ValueError: if `x` has fewer axes than `other` or is smaller on some axis.

    Source: SpeechBrain 1.1.2 `speechbrain.utils.data_utils.trim_as`.

    Example:
      >>> trim_as(jnp.zeros((2, 9, 5)), jnp.zeros((2, 7, 4))).shape
      (2, 7, 4)
    """
    shape = jnp.shape(other)
    if jnp.ndim(x) < len(shape) or any(a < b for a, b in zip(jnp.shape(x), shape, strict=False)):
        raise ValueError(
            f"cannot trim an array of shape {shape_str(x)} to shape {tuple(shape)}: the "
            "reconstruction is smaller than the input"
        )
    return x[tuple(slice(0, s) for s in shape)]


def check_length(length: Array | None, x: Array, len_dim: int) -> None:
    """Validate relative lengths against the batch of `x` and check `len_dim` (not 0)."""
    ndim = jnp.ndim(x)
    if not -ndim <= len_dim < ndim or len_dim % ndim == 0:
        raise ValueError(
            f"len_dim={len_dim} must be a non-batch axis of x with shape {shape_str(x)}"
        )
    if length is not None:
        check_relative_length(length, jnp.shape(x)[0])
