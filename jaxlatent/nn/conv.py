"""Channels-last convolutions with PyTorch's arguments and arithmetic.

`Conv1d`/`Conv2d` and `ConvTranspose1d`/`ConvTranspose2d` take the arguments of their torch
namesakes (`stride`, `padding`, `dilation`, `groups`, `output_padding`) and produce the same
output sizes and values, but work on channels-last arrays (`[batch, time, channels]`,
`[batch, height, width, channels]`). Kernels are stored as ``[*kernel_size, in/groups, out]``
(the layout of `flax.nnx.Conv`) for both convolutions and transposed convolutions, so a torch
checkpoint converts with a fixed axis permutation (see `converters.tables`).

A transposed convolution has two equivalent forms, both exactly torch's ``ConvTranspose``
(checked against torch in tests/parity/test_layers.py and against each other in
tests/unit/test_conv_transpose.py). When every kernel size is a multiple of its stride (DAC's
decoder: kernel ``2 * stride``) and there is no dilation, :func:`conv_transpose_polyphase`: one
stride-1 convolution to ``prod(stride) * out`` channels and a reshape that interleaves the
phases (no multiply-add on inserted zeros). Otherwise :func:`conv_transpose_dilated`, the
"fractionally strided" convolution: the input dilated by `stride`, padded by ``dilation*(k-1) -
padding`` (plus `output_padding` on the right; negative values crop), and correlated with the
spatially flipped kernel.

The layers call :func:`conv_transpose`, which picks the form and defines the gradients by hand
(a `jax.custom_vjp`, the same for both forms): the transposed convolution is the adjoint of a
strided convolution ``C``, so the input gradient is ``C`` of the output gradient and the kernel
gradient is ``C``'s kernel gradient. Autodiff would give the same values, but for the
fractionally strided form the kernel gradient is a convolution with input dilation that XLA:CPU
runs in a naive loop, 10–70x slower than the whole torch backward of the layer on DAC's decoder
shapes (benchmarks/bench_train.py), and autodiff of the polyphase form was 15-20x slower than
the hand-written gradient on those shapes. Forward-mode differentiation (`jax.jvp`) of the
layers is therefore not supported.

:func:`conv_along_axis_as_matmul` computes a convolution along the time axis as im2col + one
matrix product, for the narrow convolutions XLA:CPU runs slowly (a ``(k, 1)`` 2-D kernel; a 1-d
convolution with few output rows); :class:`~jaxlatent.nn.FoldedConv` and DAC's multi-period
discriminator use it with the kernel a layer's ``effective_kernel()`` returns.

A 1-d convolution with fewer output rows (``batch * time_out``) than output channels (DAC's
widest layers at its training size: 19-152 frames, 512-1536 channels) keeps XLA's forward
bit for bit but takes its derivatives as matrix products (:func:`conv_with_matmul_gradient`,
a `jax.custom_jvp`), and a transposed convolution with as few input rows takes its adjoint
one product per tap: XLA:CPU's convolution gradients copy the whole kernel transposed there.
Measured on this project's 2-core CPU, single layers' gradients are 1.1-2.3x faster; the 16 kHz
DAC's whole gradient (batch 2 x 0.38 s) took 1.53-1.66 s against 1.60-1.74 s in interleaved
runs (tests/unit/test_conv_matmul_gradient.py checks the gradients against the convolution's).

Initialisation follows torch's defaults (uniform in ``±1/sqrt(fan_in)`` for kernel and bias),
so models trained from scratch start from the same distribution as their torch counterparts.

Every layer and function here takes ``precision`` (a name of
:data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`; default ``"highest"``, float32
products on every backend), the ``precision_config`` of its convolutions, the hand-written
gradients' included.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.custom_derivatives import SymbolicZero

from jaxlatent._rng import next_key
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike, resolve_precision

Array = jax.Array
IntOrTuple = int | Sequence[int]

_DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}


def _tuple(value: IntOrTuple, n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{name} must have {n} entries, got {value}")
    return value


class TransposedConvSpec(NamedTuple):
    """Static arguments of :func:`conv_transpose` (torch's names and meaning)."""

    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    precision: Any = None


def _fractionally_strided(x: Array, w: Array, spec: TransposedConvSpec) -> Array:
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + op)
        for k, p, d, op in zip(
            w.shape[:-2], spec.padding, spec.dilation, spec.output_padding, strict=True
        )
    ]
    n = len(spec.stride)
    return jax.lax.conv_general_dilated(
        x,
        jnp.flip(w, axis=tuple(range(n))),
        window_strides=(1,) * n,
        padding=pads,
        lhs_dilation=spec.stride,
        rhs_dilation=spec.dilation,
        dimension_numbers=_DIMENSION_NUMBERS[n],
        precision=spec.precision,
    )


def _adjoint_conv(z: Array, w: Array, spec: TransposedConvSpec) -> Array:
    """The strided convolution ``C`` with ``conv_transpose(x, w) == Cᵀ x`` (kernel `w`
    ``[*k, in, out]`` of the transposed convolution is ``C``'s with the last two axes swapped)."""
    conv_spec = ConvSpec(spec.stride, spec.padding, spec.dilation, 1, spec.precision)
    return _conv(z, jnp.swapaxes(w, -1, -2), conv_spec)


def _adjoint_conv_by_taps(z: Array, w: Array, spec: TransposedConvSpec) -> Array:
    """:func:`_adjoint_conv` of a 1-d transposed convolution as matrix products per tap
    against `w` as stored (faster for few rows, :func:`_few_rows`; no transposed copy of the
    kernel)."""
    return _conv_by_taps(
        z,
        w,
        stride=spec.stride[0],
        dilation=spec.dilation[0],
        padding=spec.padding[0],
        precision=spec.precision,
        kernel_out_in=True,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose(x: Array, w: Array, spec: TransposedConvSpec) -> Array:
    """torch's ``conv_transpose1d/2d`` (no bias, groups 1) on channels-last arrays.

    Args:
      x: ``[batch, *spatial, in]``.
      w: ``[*kernel_size, in, out]`` (same dtype as `x`).
      spec: stride, padding, dilation, output_padding (one entry per spatial axis), precision.

    Returns:
      ``[batch, *spatial_out, out]``, spatial_out ``(L - 1)*stride - 2*padding +
      dilation*(k - 1) + output_padding + 1``.

    Gradients (reverse mode only) are those of the adjoint strided convolution (see the
    module docstring); they equal autodiff of the forward up to float summation order.
    """
    return _transposed_forward(x, w, spec)


def _transposed_forward(x: Array, w: Array, spec: TransposedConvSpec) -> Array:
    """The forward value: polyphase when it applies (faster), else fractionally strided."""
    args = (x, w, spec.stride, spec.padding, spec.output_padding)
    if _polyphase_applies(w.shape[:-2], spec.stride, spec.dilation):
        return conv_transpose_polyphase(*args, precision=spec.precision)
    return conv_transpose_dilated(*args, spec.dilation, precision=spec.precision)


def _conv_transpose_fwd(x, w, spec):
    return _transposed_forward(x, w, spec), (x, w)


def _conv_transpose_bwd(spec, residuals, g):
    x, w = residuals
    adjoint = _adjoint_conv
    if len(spec.stride) == 1 and _few_rows(x.shape[0] * x.shape[1], w.shape[-2], w.shape[0]):
        adjoint = _adjoint_conv_by_taps
    dx, vjp_w = jax.vjp(lambda w_: adjoint(g, w_, spec), w)
    # With output_padding >= stride (torch allows it when dilation > output_padding) C's
    # output is longer than x, and x is its prefix (the rest multiplies zeros).
    spatial = x.shape[1:-1]
    if dx.shape[1:-1] != spatial:
        extra = [(0, o - i) for i, o in zip(spatial, dx.shape[1:-1], strict=True)]
        x = jnp.pad(x, [(0, 0), *extra, (0, 0)])
        dx = dx[(slice(None), *(slice(0, i) for i in spatial), slice(None))]
    (dw,) = vjp_w(x)
    return dx.astype(x.dtype), dw.astype(w.dtype)


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


class ConvSpec(NamedTuple):
    """Static arguments of a convolution (torch's names and meaning, one entry per spatial
    axis; `padding` on both sides)."""

    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int = 1
    precision: Any = None


def _conv(x: Array, w: Array, spec: ConvSpec) -> Array:
    return jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=spec.stride,
        padding=[(p, p) for p in spec.padding],
        rhs_dilation=spec.dilation,
        dimension_numbers=_DIMENSION_NUMBERS[len(spec.stride)],
        feature_group_count=spec.groups,
        precision=spec.precision,
    )


def _conv_output_length(length: int, taps: int, spec: ConvSpec) -> int:
    span = spec.dilation[0] * (taps - 1) + 1
    return max(0, (length + 2 * spec.padding[0] - span) // spec.stride[0] + 1)


def _gradient_as_matmul(rows: int, channels: int, taps: int) -> bool:
    """Whether a 1-d convolution's gradient is taken in matrix-product form
    (:func:`conv_with_matmul_gradient`): a kernel of several taps and fewer output rows
    (``batch * time_out``) than output channels. There XLA:CPU's convolution gradients copy
    the whole kernel transposed for a handful of rows; on the 16 kHz DAC's widest layers at
    its training size (batch 2, 19-152 frames) the matrix-product gradients are 1.1-2x
    faster. An empty output (no rows) keeps XLA's convolution, whose gradient is zeros."""
    return taps > 1 and 0 < rows < channels


def _few_rows(rows: int, channels: int, taps: int) -> bool:
    """Whether a matrix-product convolution runs per tap (:func:`_conv_by_taps`) rather than
    as im2col: ``rows * taps <= channels``, so the per-tap products ``[taps, rows,
    channels]`` stay smaller than one ``[channels, channels]`` kernel slice. On the 16 kHz
    DAC's 19-frame layers (38 rows) that form's gradients are 1.2-1.5x faster than im2col's,
    which copy the kernel; at 152 frames im2col is faster. Never for an empty input."""
    return taps > 1 and 0 < rows and rows * taps <= channels


def _conv_by_taps(
    x: Array,
    w: Array,
    *,
    stride: int,
    dilation: int,
    padding: int,
    precision: PrecisionLike,
    kernel_out_in: bool = False,
) -> Array:
    """:func:`conv_along_axis_as_matmul` for ``[batch, time, in]`` as one matrix product per
    tap, batched over taps, then summed: ``sum_t x_t @ w[t]`` (``x_t`` the view shifted by
    ``t * dilation``, strided). With ``kernel_out_in`` `w` is ``[taps, out, in]`` and the
    products are ``x_t @ w[t].T``. Neither form copies the kernel (im2col's gradient and a
    transposed kernel do), which dominates when there are few rows."""
    taps = w.shape[0]
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (0, 0)))
    n = (x.shape[1] - dilation * (taps - 1) - 1) // stride + 1
    views = [x[:, t * dilation : t * dilation + (n - 1) * stride + 1 : stride] for t in range(taps)]
    stacked = jnp.stack(views).reshape(taps, -1, x.shape[-1])  # [taps, batch * n, in]
    contract = 2 if kernel_out_in else 1
    y = jax.lax.dot_general(
        stacked,
        w,
        (((2,), (contract,)), ((0,), (0,))),
        precision=resolve_precision(precision),
    )
    return jnp.sum(y, axis=0).reshape(x.shape[0], n, -1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def conv_with_matmul_gradient(x: Array, w: Array, spec: ConvSpec) -> Array:
    """A 1-d convolution (``groups=1``) whose value is ``conv_general_dilated`` and whose
    derivatives are those of :func:`conv_along_axis_as_matmul`.

    The value is bit for bit the plain convolution's (codes do not depend on whether a layer
    uses it). The tangent ``conv(dx, w) + conv(x, dw)`` is computed as matrix products: two
    im2col products, or, for very few rows (``rows * taps <= out``), one product per tap
    batched over taps. Reverse mode (their transpose) gets the input gradient as products
    with the kernel and a col2im sum, and the kernel gradient as products with the shifted
    input: the same values as the convolution's gradients up to summation order, without
    XLA:CPU's transposing copies of wide kernels. Forward and reverse mode both work; zero
    tangents (an argument not differentiated) cost no product.

    Args:
      x: ``[batch, time, in]`` (channels-last).
      w: ``[taps, in, out]``, dtype of `x`.
      spec: stride, padding, dilation (one entry each), ``groups=1``, precision.

    Returns:
      ``[batch, time_out, out]`` with torch's output length.

    Raises:
      ValueError: if the spec is not 1-d with ``groups=1``.
    """
    if len(spec.stride) != 1 or spec.groups != 1:
        raise ValueError(
            f"conv_with_matmul_gradient takes 1-d convolutions with groups=1, got {spec}"
        )
    return _conv(x, w, spec)


def _conv_with_matmul_gradient_jvp(spec, primals, tangents):
    x, w = primals
    y = conv_with_matmul_gradient(x, w, spec)

    args = dict(
        stride=spec.stride[0],
        dilation=spec.dilation[0],
        padding=spec.padding[0],
        precision=spec.precision,
    )
    by_taps = _few_rows(y.shape[0] * y.shape[1], y.shape[2], w.shape[0])

    def conv(a, b):
        if by_taps:
            return _conv_by_taps(a, b, **args)
        return conv_along_axis_as_matmul(a, b, **args)

    dx, dw = tangents
    terms = []
    if not isinstance(dx, SymbolicZero):
        terms.append(conv(dx, w))
    if not isinstance(dw, SymbolicZero):
        terms.append(conv(x, dw))
    if not terms:  # every tangent zero
        return y, jnp.zeros_like(y)
    return y, functools.reduce(jnp.add, terms)


conv_with_matmul_gradient.defjvp(_conv_with_matmul_gradient_jvp, symbolic_zeros=True)


def _torch_uniform(rngs: nnx.Rngs, shape: tuple[int, ...], fan_in: int, dtype) -> Array:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    # A flat draw reshaped gives the same values and compiles several times faster on CPU
    # than a multi-dimensional one. next_key: rngs.params(), cheap under nnx.eval_shape.
    flat = jax.random.uniform(next_key(rngs), (math.prod(shape),), dtype, -bound, bound)
    return flat.reshape(shape)


class _ConvNd(nnx.Module):
    """Shared implementation of the channels-last convolutions (private)."""

    ndim: int
    transposed: bool

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        output_padding: IntOrTuple = 0,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        n = self.ndim
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels={in_channels} and out_channels={out_channels} must be divisible "
                f"by groups={groups}"
            )
        if self.transposed and groups != 1:
            raise NotImplementedError("grouped transposed convolutions are not supported")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _tuple(kernel_size, n, "kernel_size")
        self.stride = _tuple(stride, n, "stride")
        self.padding = _tuple(padding, n, "padding")
        self.dilation = _tuple(dilation, n, "dilation")
        self.output_padding = _tuple(output_padding, n, "output_padding")
        self.groups = groups
        self.precision = resolve_precision(precision)
        receptive = math.prod(self.kernel_size)
        # torch fan_in = weight.size(1) * prod(kernel): in/groups (Conv), out (ConvTranspose).
        fan_in = (out_channels if self.transposed else in_channels // groups) * receptive
        shape = (*self.kernel_size, in_channels // groups, out_channels)
        self.kernel = nnx.Param(_torch_uniform(rngs, shape, fan_in, param_dtype))
        self.bias = (
            nnx.Param(_torch_uniform(rngs, (out_channels,), fan_in, param_dtype)) if bias else None
        )

    def effective_kernel(self) -> Array:
        """The kernel the forward pass applies: ``[*kernel_size, in/groups, out]``, dtype of
        the parameters (the `kernel` parameter itself here; ``g * v / ||v||`` for the
        weight-normalised layers of :mod:`jaxlatent.nn.weight_norm`). Computed on every call
        (differentiable), so call it inside the computation that uses it."""
        return self.kernel[...]

    def _check_input(self, x: Array) -> None:
        if x.ndim != self.ndim + 2 or x.shape[-1] != self.in_channels:
            kind = "[batch, time, channels]" if self.ndim == 1 else "[batch, H, W, channels]"
            raise ValueError(
                f"{type(self).__name__} expects {kind} with {self.in_channels} channels, "
                f"got shape {tuple(x.shape)}"
            )

    def _gradient_as_matmul(self, x: Array, spec: ConvSpec) -> bool:
        if self.ndim != 1 or self.groups != 1:
            return False
        rows = x.shape[0] * _conv_output_length(x.shape[1], self.kernel_size[0], spec)
        return _gradient_as_matmul(rows, self.out_channels, self.kernel_size[0])

    def __call__(self, x: Array, *, padding: bool = True) -> Array:
        """Apply the convolution.

        Args:
          x: ``[batch, *spatial, in_channels]`` (channels-last).
          padding: ``False`` applies the convolution as if built with ``padding=0`` (same
            parameters; the official DAC's chunked ``compress`` runs its convolutions so).

        Returns:
          ``[batch, *spatial_out, out_channels]`` with torch's output sizes.

        Raises:
          ValueError: if `x` does not have the expected rank or channel count.
        """
        self._check_input(x)
        w = self.effective_kernel().astype(x.dtype)
        pads = self.padding if padding else (0,) * self.ndim
        if self.transposed:
            spec = TransposedConvSpec(
                self.stride, pads, self.dilation, self.output_padding, self.precision
            )
            y = conv_transpose(x, w, spec)
        else:
            spec = ConvSpec(self.stride, pads, self.dilation, self.groups, self.precision)
            if self._gradient_as_matmul(x, spec):
                y = conv_with_matmul_gradient(x, w, spec)
            else:
                y = _conv(x, w, spec)
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype).reshape((1,) * (y.ndim - 1) + (-1,))
        return y


# --------------------------------------------------------------------------------------------
# A convolution along one axis as one matrix product (im2col)
# --------------------------------------------------------------------------------------------


def conv_along_axis_as_matmul(
    x: Array,
    w: Array,
    *,
    stride: int = 1,
    dilation: int = 1,
    padding: int = 0,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> Array:
    """A convolution along axis 1 (time) of a channels-last array as one matrix product.

    The `taps` views of the zero-padded `x` shifted by ``t * dilation`` samples and strided
    by `stride` along axis 1 are stacked along channels (the im2col matrix
    ``[batch, time_out, *other, taps * in]``) and multiplied by the kernel flattened to
    ``[taps * in, out]`` (a free reshape): the same sums as ``conv_general_dilated`` (torch's
    ``conv1d``, or a 2-D convolution with kernel ``(taps, 1)``), in another order. Every axis
    between time and channels is treated as a batch axis.

    It exists because XLA:CPU runs some narrow convolutions slowly: a ``(k, 1)`` 2-D
    convolution (DAC's multi-period discriminator, ``[batch, time, period, in]``; about 1.5x
    slower forward and gradient) and a 1-d convolution with no more output rows than output
    channels (a streaming step of a few frames through a wide layer of a
    :class:`~jaxlatent.nn.FoldedConv`; 1.1-1.9x slower in CPU time on DAC's widest layers).

    Args:
      x: ``[batch, time, *other, in]`` (channels-last; any number of `other` axes, e.g. none
        for ``[batch, time, in]`` or the period for ``[batch, time, period, in]``); floating.
      w: ``[taps, in, out]``, same dtype as `x` (a 2-D ``(taps, 1)`` kernel
        ``[taps, 1, in, out]`` is ``w[:, 0]``).
      stride: step along time between output samples (torch's ``stride``).
      dilation: spacing along time between the taps (torch's ``dilation``).
      padding: zeros added at both ends of the time axis before convolving (torch's
        ``padding``).
      precision: precision of the matrix product (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`).

    Returns:
      ``[batch, time_out, *other, out]``, dtype of `x`, with ``time_out = (time + 2*padding -
      dilation*(taps - 1) - 1) // stride + 1`` (torch's output length). No bias.

    Raises:
      ValueError: if `w` is not ``[taps, in, out]`` with the channel count of `x`, `x` has
        fewer than 3 axes, or `x` is too short for one output sample.

    Example:
      >>> x, w = jnp.ones((2, 10, 3, 4)), jnp.ones((5, 4, 6))  # [batch, time, period, in]
      >>> conv_along_axis_as_matmul(x, w, stride=3, padding=2).shape
      (2, 4, 3, 6)
    """
    if x.ndim < 3 or w.ndim != 3 or w.shape[1] != x.shape[-1]:
        raise ValueError(
            f"conv_along_axis_as_matmul needs x [batch, time, ..., in] and w [taps, in, out], "
            f"got shapes {tuple(x.shape)} and {tuple(w.shape)}"
        )
    taps, c_in, c_out = w.shape
    span = dilation * (taps - 1) + 1
    if x.shape[1] + 2 * padding < span:
        raise ValueError(
            f"conv_along_axis_as_matmul needs at least {span} time steps after padding, "
            f"got {x.shape[1]} + 2*{padding}"
        )
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding)) + ((0, 0),) * (x.ndim - 2))
    n = (x.shape[1] - span) // stride + 1
    cols = [x[:, t * dilation : t * dilation + (n - 1) * stride + 1 : stride] for t in range(taps)]
    cols = cols[0] if taps == 1 else jnp.concatenate(cols, axis=-1)  # [.., n, .., taps * in]
    return jnp.dot(cols, w.reshape(taps * c_in, c_out), precision=resolve_precision(precision))


# --------------------------------------------------------------------------------------------
# Transposed convolution: two equivalent formulations
# --------------------------------------------------------------------------------------------


def _polyphase_applies(kernel_size, stride, dilation) -> bool:
    """The polyphase form is used when every kernel size is a multiple of its stride, some
    stride is > 1 and there is no dilation (DAC's decoder: kernel ``2 * stride``)."""
    return (
        all(d == 1 for d in dilation)
        and all(k % s == 0 for k, s in zip(kernel_size, stride, strict=True))
        and any(s > 1 for s in stride)
    )


def conv_transpose_dilated(
    x: Array,
    w: Array,
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    dilation: Sequence[int],
    *,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> Array:
    """torch's ``conv_transpose{1,2}d`` (no bias, ``groups=1``) as a fractionally strided
    convolution: the input dilated by `stride` (``lhs_dilation``), padded by
    ``dilation*(k-1) - padding`` (plus `output_padding` on the right; negative values crop)
    and correlated with the spatially flipped kernel. Any kernel, stride, padding and dilation.

    Args:
      x: ``[batch, *spatial, in]`` (channels-last).
      w: ``[*kernel_size, in, out]``.
      stride, padding, output_padding, dilation: one int per spatial axis (torch's meaning).
      precision: precision of the convolution (:mod:`jaxlatent.precision`).

    Returns:
      ``[batch, *spatial_out, out]``, ``spatial_out = (L - 1)*stride - 2*padding +
      dilation*(k - 1) + output_padding + 1``.
    """
    return _fractionally_strided(
        x, w, TransposedConvSpec(tuple(stride), tuple(padding), tuple(dilation),
                                 tuple(output_padding), resolve_precision(precision))
    )  # fmt: skip


def conv_transpose_polyphase(
    x: Array,
    w: Array,
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    *,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> Array:
    """torch's ``conv_transpose{1,2}d`` (no bias, ``groups=1``, ``dilation=1``) for kernels
    that are multiples of the stride, in polyphase form.

    With ``k = m*s + r`` the full (uncropped) output at ``n = q*s + r`` is
    ``sum_m x[q - m] @ w[m*s + r]``: one stride-1 convolution with ``k/s`` taps from ``in`` to
    ``prod(s) * out`` channels (the `s` phases side by side), then a reshape that interleaves
    the phases, and the crop of `padding` (left) / to the output length (right;
    `output_padding` beyond the computed samples is zeros, as in torch). Unlike the
    fractionally strided form, no multiply-add touches an inserted zero; 1.13-1.2x faster
    on XLA:CPU for DAC's decoder layers. Equal to :func:`conv_transpose_dilated` up to the
    accumulation order (tests/unit/test_conv_transpose.py).

    Args:
      x: ``[batch, *spatial, in]`` (channels-last).
      w: ``[*kernel_size, in, out]``, every ``kernel_size[i] % stride[i] == 0``.
      stride, padding, output_padding: one int per spatial axis (torch's meaning).
      precision: precision of the convolution (:mod:`jaxlatent.precision`).

    Returns:
      ``[batch, *spatial_out, out]``, ``spatial_out = (L - 1)*stride - 2*padding + k +
      output_padding``.

    Raises:
      ValueError: if a kernel size is not a multiple of its stride.
    """
    kernel = w.shape[: w.ndim - 2]
    phases = polyphase_kernel(w, stride)
    return polyphase_apply(x, phases, kernel, stride, padding, output_padding, precision=precision)


def polyphase_kernel(w: Array, stride: Sequence[int]) -> Array:
    """The stride-1 kernel of :func:`conv_transpose_polyphase`: the `stride` phases of `w` side
    by side, spatially flipped (a rearrangement, no arithmetic).

    Args:
      w: ``[*kernel_size, in, out]`` of the transposed convolution, every
        ``kernel_size[i] % stride[i] == 0``.
      stride: one int per spatial axis.

    Returns:
      ``[*(kernel_size / stride), in, prod(stride) * out]``, dtype of `w`.

    Raises:
      ValueError: if a kernel size is not a multiple of its stride.

    Example:
      >>> polyphase_kernel(jnp.ones((16, 3, 2)), (8,)).shape
      (2, 3, 16)
    """
    ndim = w.ndim - 2
    kernel, (c_in, c_out) = w.shape[:ndim], w.shape[ndim:]
    stride = tuple(stride)
    if any(k % s for k, s in zip(kernel, stride, strict=True)):
        raise ValueError(f"kernel_size {kernel} must be a multiple of stride {stride}")
    taps = tuple(k // s for k, s in zip(kernel, stride, strict=True))
    # [m1, s1, m2, s2, .., in, out] -> [m1, m2, .., in, s1, s2, .., out], flipped in m.
    split = w.reshape(*(v for m, s in zip(taps, stride, strict=True) for v in (m, s)), c_in, c_out)
    order = (*range(0, 2 * ndim, 2), 2 * ndim, *range(1, 2 * ndim, 2), 2 * ndim + 1)
    phases = jnp.transpose(split, order).reshape(*taps, c_in, math.prod(stride) * c_out)
    return jnp.flip(phases, axis=tuple(range(ndim)))


def polyphase_apply(
    x: Array,
    phases: Array,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    *,
    precision: jax.lax.PrecisionLike = None,
) -> Array:
    """:func:`conv_transpose_polyphase` from the precomputed :func:`polyphase_kernel`.

    Args:
      x: ``[batch, *spatial, in]`` (channels-last).
      phases: ``polyphase_kernel(w, stride)`` ``[*(kernel_size / stride), in,
        prod(stride) * out]``.
      kernel_size, stride, padding, output_padding: one int per spatial axis (torch's
        meaning; `kernel_size` of `w`).
      precision: `jax.lax` precision of the convolution.

    Returns:
      ``[batch, *spatial_out, out]``, as :func:`conv_transpose_polyphase`.
    """
    ndim = phases.ndim - 2
    kernel, stride = tuple(kernel_size), tuple(stride)
    taps = phases.shape[:ndim]
    c_out = phases.shape[-1] // math.prod(stride)
    z = jax.lax.conv_general_dilated(
        x,
        phases,
        window_strides=(1,) * ndim,
        padding=[(m - 1, m - 1) for m in taps],
        dimension_numbers=_DIMENSION_NUMBERS[ndim],
        precision=resolve_precision(precision),
    )
    batch, frames = z.shape[0], z.shape[1 : 1 + ndim]  # frames = L + taps - 1
    # [b, q1, q2, .., s1, s2, .., out] -> [b, q1, s1, q2, s2, .., out] -> [b, q1*s1, .., out]
    z = z.reshape(batch, *frames, *stride, c_out)
    order = (0, *(v for i in range(ndim) for v in (1 + i, 1 + ndim + i)), 1 + 2 * ndim)
    full = jnp.transpose(z, order).reshape(
        batch, *(q * s for q, s in zip(frames, stride, strict=True)), c_out
    )
    lengths = [
        (n - 1) * s - 2 * p + k + op
        for n, s, p, k, op in zip(
            x.shape[1:-1], stride, padding, kernel, output_padding, strict=True
        )
    ]
    # Samples past the full output (output_padding > padding) receive no term: zeros.
    extra = [max(0, p + n - f) for p, n, f in zip(padding, lengths, full.shape[1:-1], strict=True)]
    if any(extra):
        full = jnp.pad(full, ((0, 0), *((0, e) for e in extra), (0, 0)))
    crop = tuple(slice(p, p + max(n, 0)) for p, n in zip(padding, lengths, strict=True))
    return full[(slice(None), *crop, slice(None))]


class Conv1d(_ConvNd):
    """`torch.nn.Conv1d` on ``[batch, time, channels]``; kernel ``[k, in/groups, out]``.

    Example:
      >>> conv = Conv1d(2, 4, kernel_size=3, stride=2, padding=1, rngs=nnx.Rngs(0))
      >>> conv.kernel.shape, conv(jnp.ones((1, 10, 2))).shape
      ((3, 2, 4), (1, 5, 4))
    """

    ndim = 1
    transposed = False


class Conv2d(_ConvNd):
    """`torch.nn.Conv2d` on ``[batch, H, W, channels]``; kernel ``[kh, kw, in/groups, out]``."""

    ndim = 2
    transposed = False


class ConvTranspose1d(_ConvNd):
    """`torch.nn.ConvTranspose1d` on ``[batch, time, channels]``; kernel ``[k, in, out]``.

    Output length ``(L - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.

    Example:
      >>> up = ConvTranspose1d(4, 2, kernel_size=4, stride=2, padding=1, rngs=nnx.Rngs(0))
      >>> up(jnp.ones((1, 5, 4))).shape
      (1, 10, 2)
    """

    ndim = 1
    transposed = True


class ConvTranspose2d(_ConvNd):
    """`torch.nn.ConvTranspose2d` on ``[batch, H, W, channels]``; kernel ``[kh, kw, in, out]``."""

    ndim = 2
    transposed = True
