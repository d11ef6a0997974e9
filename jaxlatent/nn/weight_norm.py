"""Weight-normalised convolutions with trainable magnitude `weight_g` and direction `weight_v`.

``w = weight_g * weight_v / ||weight_v||`` (Salimans & Kingma 2016, "Weight Normalization",
arXiv:1602.07868), with the norm taken as `torch.nn.utils.weight_norm(module, dim=0)` takes it:
over every axis except torch's axis 0. For a convolution torch's axis 0 is the output channel;
for a **transposed** convolution it is the *input* channel, so the magnitude is per input
channel there. `weight_g` is stored as a vector ``[channels]`` and `weight_v` in the kernel
layout of :mod:`jaxlatent.nn.conv` (``[*kernel_size, in, out]``). Both are `nnx.Param`, so
optimizers train them exactly as torch trains ``weight_g``/``weight_v`` (unlike
`flax.nnx.WeightNorm` in flax 0.12.8, whose scales are not Params).

The norm is computed in float32 whatever the parameter dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent.nn.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, _ConvNd

Array = jax.Array


def weight_norm_kernel(weight_g: Array, weight_v: Array, channel_axis: int) -> Array:
    """``g * v / ||v||`` with the norm over every axis of `v` except `channel_axis`.

    Args:
      weight_g: magnitudes ``[channels]``.
      weight_v: directions, any rank; ``weight_v.shape[channel_axis] == channels``.
      channel_axis: the axis that keeps one magnitude per entry.

    Returns:
      The kernel, shape and dtype of `weight_v`.

    Example:
      >>> v = jnp.array([[3.0, 0.0], [4.0, 1.0]])
      >>> weight_norm_kernel(jnp.array([10.0, 2.0]), v, channel_axis=1)
      Array([[6., 0.],
             [8., 2.]], dtype=float32)
    """
    v32 = weight_v.astype(jnp.float32)
    axis = channel_axis % weight_v.ndim
    reduce = tuple(a for a in range(weight_v.ndim) if a != axis)
    norm = jnp.sqrt(jnp.sum(v32 * v32, axis=reduce, keepdims=True))
    shape = [1] * weight_v.ndim
    shape[axis] = weight_g.shape[0]
    g = weight_g.astype(jnp.float32).reshape(shape)
    return (v32 * (g / norm)).astype(weight_v.dtype)


class _WeightNormMixin:
    """Replaces `kernel` with `weight_g`/`weight_v` (initialised so that w == v, as torch)."""

    def _init_weight_norm(self: _ConvNd) -> None:
        v = self.kernel[...]
        del self.kernel
        self.weight_v = nnx.Param(v)
        self.weight_g = nnx.Param(self._norm(v))

    def _channel_axis(self) -> int:
        # torch dim 0: output channel of a conv (our last axis), input channel of a transposed
        # conv (our second-to-last axis).
        return -2 if self.transposed else -1

    def _norm(self, v: Array) -> Array:
        axis = self._channel_axis() % v.ndim
        reduce = tuple(a for a in range(v.ndim) if a != axis)
        return jnp.sqrt(jnp.sum(jnp.square(v.astype(jnp.float32)), axis=reduce)).astype(v.dtype)

    def effective_kernel(self) -> Array:
        """The kernel the forward pass applies, ``g * v / ||v||``
        (:func:`weight_norm_kernel`): ``[*kernel_size, in/groups, out]``, dtype of
        `weight_v`."""
        return weight_norm_kernel(self.weight_g[...], self.weight_v[...], self._channel_axis())


class WNConv1d(_WeightNormMixin, Conv1d):
    """Weight-normalised `Conv1d` (torch: ``weight_norm(nn.Conv1d(...))``); ``g [out]``.

    Example:
      >>> conv = WNConv1d(2, 4, kernel_size=3, padding=1, rngs=nnx.Rngs(0))
      >>> conv.weight_g.shape, conv.weight_v.shape, conv(jnp.ones((1, 7, 2))).shape
      ((4,), (3, 2, 4), (1, 7, 4))
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_weight_norm()


class WNConv2d(_WeightNormMixin, Conv2d):
    """Weight-normalised `Conv2d`; ``g [out]``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_weight_norm()


class WNConvTranspose1d(_WeightNormMixin, ConvTranspose1d):
    """Weight-normalised `ConvTranspose1d`; ``g [in]`` (per *input* channel, as torch).

    Example:
      >>> up = WNConvTranspose1d(4, 2, kernel_size=4, stride=2, padding=1, rngs=nnx.Rngs(0))
      >>> up.weight_g.shape, up(jnp.ones((1, 5, 4))).shape
      ((4,), (1, 10, 2))
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_weight_norm()


class WNConvTranspose2d(_WeightNormMixin, ConvTranspose2d):
    """Weight-normalised `ConvTranspose2d`; ``g [in]``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_weight_norm()
