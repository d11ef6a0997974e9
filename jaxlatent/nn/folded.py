"""Convolutions with their kernel computed once: weight norm folded, polyphase precomputed.

A weight-normalised convolution (:mod:`jaxlatent.nn.weight_norm`) recomputes
``g * v / ||v||`` from its parameters on every call, and a transposed convolution in polyphase
form (:func:`~jaxlatent.nn.conv.conv_transpose_polyphase`) rearranges its kernel on every
call. Training needs that (the parameters change); inference with fixed parameters does not,
and where a call covers few positions the kernel work costs more than the convolution itself:
a streaming step of one DAC code frame reads every weight of the model once, so recomputing
the kernels tripled its memory traffic, and the polyphase rearrangement of the 16 kHz
decoder's first upsampling kernel (75 MB) alone took ~0.15 s per call on the 2-core CPU
(benchmarks/bench_streaming.py).

:func:`fold_convolutions` returns a copy of a module in which every convolution of
:mod:`jaxlatent.nn` is a :class:`FoldedConv`: the kernel the layer applies
(``g * v / ||v||`` for weight norm, as `torch.nn.utils.remove_weight_norm`), computed once,
in polyphase form for a transposed convolution that has one. The copy computes the same
outputs, up to float32 rounding of where the kernel was computed (a few ulps); it is for
inference: its parameters are the folded kernels, not ``weight_g``/``weight_v``.
"""

from __future__ import annotations

import functools
import math
from typing import TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent.nn.conv import (
    _ConvNd,
    _polyphase_applies,
    conv_along_axis_as_matmul,
    polyphase_apply,
    polyphase_kernel,
)

Array = jax.Array
M = TypeVar("M", bound=nnx.Module)

__all__ = ["FoldedConv", "fold_convolutions"]

_STATIC = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "output_padding",
    "groups",
    "precision",
)


def _is_polyphase(layer: _ConvNd) -> bool:
    return layer.transposed and _polyphase_applies(layer.kernel_size, layer.stride, layer.dilation)


def _folded_kernel(layer: _ConvNd) -> Array:
    """The kernel `layer` applies, in polyphase form where it has one."""
    kernel = layer.effective_kernel()
    return polyphase_kernel(kernel, layer.stride) if _is_polyphase(layer) else kernel


def _unpolyphase(phases: Array, kernel_size: tuple[int, ...], stride: tuple[int, ...]) -> Array:
    """The inverse of :func:`~jaxlatent.nn.conv.polyphase_kernel`: ``[*(kernel_size /
    stride), in, prod(stride) * out]`` back to ``[*kernel_size, in, out]`` (a rearrangement)."""
    ndim = len(stride)
    taps, c_in = phases.shape[:ndim], phases.shape[ndim]
    c_out = phases.shape[-1] // math.prod(stride)
    # flipped [m1, m2, .., in, s1, s2, .., out] -> [m1, s1, m2, s2, .., in, out]
    split = jnp.flip(phases, axis=tuple(range(ndim))).reshape(*taps, c_in, *stride, c_out)
    order = (*(a for m in range(ndim) for a in (m, ndim + 1 + m)), ndim, 2 * ndim + 1)
    return jnp.transpose(split, order).reshape(*kernel_size, c_in, c_out)


@functools.lru_cache(maxsize=16)
def _folded_kernels(graphdef):
    """Jitted ``state -> [kernel]`` of a list of layers (one compilation per structure; the
    kernels of a whole model in one pass instead of a few eager operations per layer)."""
    return jax.jit(lambda state: [_folded_kernel(layer) for layer in nnx.merge(graphdef, state)])


class FoldedConv(_ConvNd):
    """A convolution of :mod:`jaxlatent.nn` (plain, transposed, weight-normalised or not) with
    the kernel it applies stored as a plain parameter, computed once from `layer`.

    Same call and outputs as `layer` (up to float32 rounding of the kernel, computed outside
    the caller's computation); ``kernel`` is ``[*kernel_size, in/groups, out]``, or for a
    transposed convolution whose kernel sizes are multiples of its strides (no dilation) the
    :func:`~jaxlatent.nn.conv.polyphase_kernel` ``[*(kernel_size / stride), in,
    prod(stride) * out]`` (``polyphase`` True).

    Args:
      layer: a ``Conv1d``/``Conv2d``/``ConvTranspose1d``/``ConvTranspose2d`` or weight-normalised
        ``WNConv*`` (the parameters are read now; later changes to `layer` do not show).
      kernel: the kernel to store, already computed from `layer` (:func:`fold_convolutions`
        computes all layers' in one compiled pass); default: computed now.

    Raises:
      TypeError: if `layer` is not one of those convolutions.

    Example:
      >>> from jaxlatent.nn import WNConvTranspose1d
      >>> up = WNConvTranspose1d(4, 2, kernel_size=4, stride=2, padding=1, rngs=nnx.Rngs(0))
      >>> folded = FoldedConv(up)
      >>> folded.kernel.shape, folded.polyphase  # [taps, in, stride * out]
      ((2, 4, 4), True)
      >>> x = jax.numpy.ones((1, 5, 4))
      >>> bool(jax.numpy.allclose(folded(x), up(x), atol=1e-6))
      True
    """

    def __init__(self, layer: _ConvNd, *, kernel: Array | None = None):
        if not isinstance(layer, _ConvNd):
            raise TypeError(f"FoldedConv needs a convolution layer, got {type(layer).__name__}")
        self.ndim, self.transposed = layer.ndim, layer.transposed
        for name in _STATIC:
            setattr(self, name, getattr(layer, name))
        self.polyphase = _is_polyphase(layer)
        self.kernel = nnx.Param(_folded_kernel(layer) if kernel is None else kernel)
        self.bias = None if layer.bias is None else nnx.Param(layer.bias[...])

    def __call__(self, x: Array, *, padding: bool = True) -> Array:
        """As the layer's call: ``[batch, *spatial, in]`` -> ``[batch, *spatial_out, out]``.

        A plain 1-d convolution (``groups=1``, not transposed) with no more output rows
        (``batch * time_out``) than output channels runs as one matrix product of its im2col
        matrix ``[rows, k * in]`` with the kernel ``[k * in, out]`` (a free reshape) instead
        of an XLA convolution: in that regime (a streaming step of a few frames through the
        wide layers) XLA:CPU's convolutions are slower (1.1-1.9x in the CPU time of DAC's
        widest layers at one frame per step; no difference at eight).

        Raises:
          ValueError: if `x` does not have the expected rank or channel count.
        """
        self._check_input(x)
        pad = self.padding[0] if padding else 0
        if not self.polyphase and self._matmul_applies(x, pad):
            y = conv_along_axis_as_matmul(
                x,
                self.kernel[...].astype(x.dtype),
                stride=self.stride[0],
                dilation=self.dilation[0],
                padding=pad,
                precision=self.precision,
            )
            if self.bias is not None:
                y = y + self.bias[...].astype(y.dtype).reshape(1, 1, -1)
            return y
        if not self.polyphase:
            return super().__call__(x, padding=padding)
        pads = self.padding if padding else (0,) * self.ndim
        y = polyphase_apply(
            x,
            self.kernel[...].astype(x.dtype),
            self.kernel_size,
            self.stride,
            pads,
            self.output_padding,
            precision=self.precision,
        )
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype).reshape((1,) * (y.ndim - 1) + (-1,))
        return y

    def effective_kernel(self) -> Array:
        """The kernel the layer applies, ``[*kernel_size, in/groups, out]`` as every
        convolution's (the stored polyphase `kernel` rearranged back when `polyphase`)."""
        kernel = self.kernel[...]
        return _unpolyphase(kernel, self.kernel_size, self.stride) if self.polyphase else kernel

    def _matmul_applies(self, x: Array, pad: int) -> bool:
        """Whether this plain 1-d convolution of `x` (padding `pad`) runs as a matmul."""
        if self.ndim != 1 or self.transposed or self.groups != 1:
            return False
        taps, stride, dilation = self.kernel_size[0], self.stride[0], self.dilation[0]
        rows = x.shape[0] * ((x.shape[1] + 2 * pad - dilation * (taps - 1) - 1) // stride + 1)
        return 0 < rows <= self.out_channels


def fold_convolutions(module: M) -> M:
    """A copy of `module` whose every convolution layer is a :class:`FoldedConv`.

    The copy shares no variables with `module` (changing either leaves the other as it is);
    the other parameters' arrays are shared (JAX arrays are immutable). A module without
    convolutions (or already folded) comes back as an equal copy.

    Args:
      module: any NNX module, e.g. a :class:`~jaxlatent.models.dac.DAC`.

    Returns:
      The copy, of the type of `module` (a :class:`FoldedConv` if `module` is a convolution).

    Example:
      >>> from jaxlatent.nn import WNConv1d
      >>> class Net(nnx.Module):
      ...     def __init__(self):
      ...         self.convs = nnx.List([WNConv1d(2, 2, 3, rngs=nnx.Rngs(0))])
      >>> type(fold_convolutions(Net()).convs[0]).__name__
      'FoldedConv'
    """
    if isinstance(module, _ConvNd) and not isinstance(module, FoldedConv):
        return FoldedConv(module)
    graphdef, state = nnx.split(module)
    copy = nnx.merge(graphdef, jax.tree.map(lambda a: a, state))  # new variables, same arrays
    found = [
        (path, layer)
        for path, layer in nnx.iter_modules(copy)
        if path and isinstance(layer, _ConvNd) and not isinstance(layer, FoldedConv)
    ]
    if not found:
        return copy
    layers = [layer for _, layer in found]
    kernels = _folded_kernels(nnx.graphdef(layers))(nnx.state(layers))
    for (path, layer), kernel in zip(found, kernels, strict=True):
        parent = copy
        for key in path[:-1]:
            parent = parent[key] if isinstance(key, int) else getattr(parent, key)
        folded = FoldedConv(layer, kernel=kernel)
        if isinstance(path[-1], int):
            parent[path[-1]] = folded
        else:
            setattr(parent, path[-1], folded)
    return copy
