"""DAC building blocks on channels-last audio: Snake, residual units, encoder/decoder blocks.

Same layers, arithmetic and parameters as descript-audio-codec 1.0.0 ``dac/nn/layers.py`` and
``dac/model/dac.py`` (identical to SpeechBrain 1.1.2 ``speechbrain.lobes.models.discrete.dac``),
with ``[batch, time, channels]`` arrays instead of torch's ``[batch, channels, time]``.
Convolutions are :class:`jaxlatent.nn.WNConv1d` / :class:`jaxlatent.nn.WNConvTranspose1d`
(weight norm with trainable ``weight_g``/``weight_v``; per *input* channel for the transposed
convolution, as torch).

Attribute names follow the roles of the layers (``snake1``, ``conv1``, ``res_unit1``, ...);
:mod:`converters.dac` maps torch's ``nn.Sequential`` indices onto them.

Source: Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN"
(arXiv:2306.06546); Snake from Ziyin et al. 2020, "Neural Networks Fail to Learn Periodic
Functions and How to Fix It" (arXiv:2006.08195).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.models.dac.sin_squared import (
    FAST_RANGE,
    sin_squared_and_derivative,
    sin_squared_and_derivative_reduced,
    sin_squared_reduced,
)
from jaxlatent.nn import Conv1d, WNConv1d, WNConvTranspose1d
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

Array = jax.Array

__all__ = [
    "DecoderBlock",
    "EncoderBlock",
    "ResidualUnit",
    "Snake1d",
    "init_weights",
    "snake",
]

#: Added to alpha before the reciprocal, exactly as the reference (not ``1/alpha + eps``).
SNAKE_EPS = 1e-9


def snake(x: Array, alpha: Array) -> Array:
    """Snake activation ``x + 1/(alpha + 1e-9) * sin(alpha * x)**2``.

    Computed in float32 whatever the input dtype (bfloat16/float16 inputs are upcast and the
    result cast back), so low-precision activations do not lose the small periodic term.
    ``alpha == 0`` gives ``x`` exactly (the sine term is 0). ``sin**2`` is the fast vectorised
    one of :mod:`jaxlatent.models.dac.sin_squared` (within 1.5e-7 of the exact value; XLA's
    ``jnp.sin`` made Snake a third of the codec's CPU time); arrays where some
    ``|alpha * x| >= 8192`` (or NaN/inf) use ``jnp.sin``. The derivative is the analytic one
    (``dy/dx = 1 + alpha/(alpha + 1e-9) * sin(2 alpha x)``, a custom JVP from the same
    reduction: forward and reverse mode, within float32 round-off of differentiating the
    formula).

    Args:
      x: ``[batch, time, channels]``, floating.
      alpha: ``[1, 1, channels]`` frequencies (any floating dtype).

    Returns:
      ``[batch, time, channels]`` in the dtype of `x`.

    Raises:
      ValueError: if `x` is not floating, is not rank 3, or `alpha` is not ``[1, 1, channels]``.

    Source: descript-audio-codec 1.0.0 ``dac.nn.layers.snake`` (SpeechBrain 1.1.2
    ``speechbrain.lobes.models.discrete.dac.snake``), channels-last.

    Example:
      >>> snake(jnp.full((1, 1, 1), 0.5), jnp.ones((1, 1, 1)))  # 0.5 + sin(0.5)**2
      Array([[[0.72984886]]], dtype=float32)
    """
    check_floating("x", x)
    if x.ndim != 3 or jnp.shape(alpha) != (1, 1, x.shape[-1]):
        raise ValueError(
            f"snake expects x [batch, time, channels] and alpha [1, 1, channels], got x "
            f"{shape_str(x)} and alpha {shape_str(alpha)}"
        )
    y = _snake_f32(x.astype(jnp.float32), jnp.asarray(alpha).astype(jnp.float32))
    return y.astype(x.dtype)


def _in_fast_range(x32: Array, a32: Array) -> Array:
    """Every ``|alpha * x| < FAST_RANGE``: one reduction over x (per channel), no ``alpha * x``
    in memory; NaN or inf anywhere fails the check."""
    return (
        jnp.max(jnp.abs(a32[0, 0]) * jnp.max(jnp.abs(x32), axis=(0, 1), initial=0.0)) < FAST_RANGE
    )


@jax.custom_jvp
def _snake_f32(x32: Array, a32: Array) -> Array:
    """Snake on float32 ``x [batch, time, channels]`` and ``alpha [1, 1, channels]``.

    Both branches of the range check are single fused loops over x. The derivative is a
    custom JVP: differentiating through the sine polynomial made XLA keep about ten
    activation-sized intermediates per Snake and cost more than the convolutions' own
    gradients (the 16 kHz codec's gradient: 2.36 s -> 1.67 s on the 2-core benchmark CPU);
    the rule computes ``dy/dx`` and ``dy/dalpha`` in the forward loop (two residuals), which
    reverse mode turns into one product and one sum over batch and time.
    """
    scale = jnp.reciprocal(a32 + SNAKE_EPS)
    return jax.lax.cond(
        _in_fast_range(x32, a32),
        lambda: x32 + scale * sin_squared_reduced(a32 * x32),
        lambda: x32 + scale * jnp.square(jnp.sin(a32 * x32)),
    )


@_snake_f32.defjvp
def _snake_f32_jvp(primals, tangents):
    # y = x + s * sin(a x)**2 with s = 1 / (a + eps):
    # dy/dx = 1 + s * a * sin(2 a x), dy/da = s * x * sin(2 a x) - s**2 * sin(a x)**2
    x32, a32 = primals
    x_dot, a_dot = tangents
    scale = jnp.reciprocal(a32 + SNAKE_EPS)

    def with_derivatives(sin_squared_fn):
        s2, s2_prime = sin_squared_fn(a32 * x32)
        y = x32 + scale * s2
        return y, 1 + (scale * a32) * s2_prime, scale * x32 * s2_prime - scale * scale * s2

    y, dy_dx, dy_da = jax.lax.cond(
        _in_fast_range(x32, a32),
        lambda: with_derivatives(sin_squared_and_derivative_reduced),
        lambda: with_derivatives(sin_squared_and_derivative),
    )
    return y, x_dot * dy_dx + a_dot * dy_da


class Snake1d(nnx.Module):
    """Snake with one trainable frequency per channel, ``alpha`` ``[1, 1, channels]`` (ones).

    Source: ``dac.nn.layers.Snake1d`` (torch ``alpha`` ``[1, channels, 1]``).

    Example:
      >>> Snake1d(3)(jnp.zeros((2, 5, 3))).shape
      (2, 5, 3)
    """

    def __init__(self, channels: int, *, param_dtype=jnp.float32):
        self.alpha = nnx.Param(jnp.ones((1, 1, channels), param_dtype))

    def __call__(self, x: Array) -> Array:
        """``[batch, time, channels]`` -> same shape and dtype."""
        return snake(x, self.alpha[...])


def _conv_kwargs(param_dtype, precision, rngs):
    return {"param_dtype": param_dtype, "precision": precision, "rngs": rngs}


class ResidualUnit(nnx.Module):
    """``x + conv1x1(snake(conv7_dilated(snake(x))))``, the skip centre-cropped to fit.

    With the reference's padding (``3 * dilation``) the lengths match and nothing is cropped;
    the crop matters when the call runs the convolutions without padding (``padding=False``,
    as the reference's chunked ``compress``), and then removes ``(len(x) - len(y)) // 2``
    samples per side.

    Args:
      dim: channels in and out.
      dilation: dilation of the kernel-7 convolution.

    Source: ``dac.model.dac.ResidualUnit``.

    Example:
      >>> unit = ResidualUnit(4, dilation=3, rngs=nnx.Rngs(0))
      >>> unit(jnp.zeros((1, 20, 4))).shape
      (1, 20, 4)
    """

    def __init__(
        self,
        dim: int = 16,
        dilation: int = 1,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        kw = _conv_kwargs(param_dtype, precision, rngs)
        pad = ((7 - 1) * dilation) // 2
        self.snake1 = Snake1d(dim, param_dtype=param_dtype)
        self.conv1 = WNConv1d(dim, dim, kernel_size=7, dilation=dilation, padding=pad, **kw)
        self.snake2 = Snake1d(dim, param_dtype=param_dtype)
        self.conv2 = WNConv1d(dim, dim, kernel_size=1, **kw)

    def __call__(self, x: Array, *, padding: bool = True) -> Array:
        """``[batch, time, dim]`` -> ``[batch, time', dim]``: ``time' == time`` with `padding`,
        ``time - 6 * dilation`` without (every convolution run with padding 0)."""
        y = self.conv1(self.snake1(x), padding=padding)
        y = self.conv2(self.snake2(y), padding=padding)
        pad = (x.shape[1] - y.shape[1]) // 2
        if pad > 0:
            x = x[:, pad:-pad]
        return x + y


class EncoderBlock(nnx.Module):
    """Three residual units (dilations 1, 3, 9) at ``dim // 2`` channels, Snake, then a strided
    convolution (kernel ``2*stride``, padding ``ceil(stride/2)``) to `dim` channels.

    Output length ``floor((L + 2*ceil(s/2) - 2*s) / s) + 1``: ``L // s`` for even strides,
    ``(L + 1) // s`` for odd ones.

    Source: ``dac.model.dac.EncoderBlock``.

    Example:
      >>> block = nnx.eval_shape(lambda: EncoderBlock(8, stride=5, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((1, 24, 4), jnp.float32)
      >>> nnx.eval_shape(lambda m, x: m(x), block, x).shape  # (24 + 1) // 5
      (1, 5, 8)
    """

    def __init__(
        self,
        dim: int = 16,
        stride: int = 1,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        kw = _conv_kwargs(param_dtype, precision, rngs)
        half = dim // 2
        self.res_unit1 = ResidualUnit(half, dilation=1, **kw)
        self.res_unit2 = ResidualUnit(half, dilation=3, **kw)
        self.res_unit3 = ResidualUnit(half, dilation=9, **kw)
        self.snake1 = Snake1d(half, param_dtype=param_dtype)
        self.conv1 = WNConv1d(
            half,
            dim,
            kernel_size=2 * stride,
            stride=stride,
            padding=math.ceil(stride / 2),
            **kw,
        )

    def __call__(self, x: Array, *, padding: bool = True) -> Array:
        """``[batch, time, dim // 2]`` -> ``[batch, time / stride, dim]`` (with `padding`;
        ``padding=False`` runs every convolution with padding 0)."""
        for unit in (self.res_unit1, self.res_unit2, self.res_unit3):
            x = unit(x, padding=padding)
        return self.conv1(self.snake1(x), padding=padding)


class DecoderBlock(nnx.Module):
    """Snake, a transposed convolution (kernel ``2*stride``, padding ``ceil(stride/2)``,
    magnitude per input channel) to `output_dim` channels, then residual units (1, 3, 9).

    No ``output_padding``, as the reference and its released checkpoints: the output has
    ``L * s`` samples for even strides but **``L * s - 1``** for odd ones (the 16 and 24 kHz
    models' stride 5), so those decoders return ``hop * frames - 8`` samples.

    Source: ``dac.model.dac.DecoderBlock``.

    Example:
      >>> block = nnx.eval_shape(lambda: DecoderBlock(8, 4, stride=5, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((1, 6, 8), jnp.float32)
      >>> nnx.eval_shape(lambda m, x: m(x), block, x).shape  # 6 * 5 - 1
      (1, 29, 4)
    """

    def __init__(
        self,
        input_dim: int = 16,
        output_dim: int = 8,
        stride: int = 1,
        *,
        param_dtype=jnp.float32,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        kw = _conv_kwargs(param_dtype, precision, rngs)
        self.snake1 = Snake1d(input_dim, param_dtype=param_dtype)
        self.conv_t1 = WNConvTranspose1d(
            input_dim,
            output_dim,
            kernel_size=2 * stride,
            stride=stride,
            padding=math.ceil(stride / 2),
            **kw,
        )
        self.res_unit1 = ResidualUnit(output_dim, dilation=1, **kw)
        self.res_unit2 = ResidualUnit(output_dim, dilation=3, **kw)
        self.res_unit3 = ResidualUnit(output_dim, dilation=9, **kw)

    def __call__(self, x: Array, *, padding: bool = True) -> Array:
        """``[batch, time, input_dim]`` -> ``[batch, time * stride (- 1 if odd), output_dim]``
        (with `padding`; ``padding=False`` runs every convolution with padding 0)."""
        x = self.conv_t1(self.snake1(x), padding=padding)
        for unit in (self.res_unit1, self.res_unit2, self.res_unit3):
            x = unit(x, padding=padding)
        return x


def init_weights(module: nnx.Module) -> None:
    """Zero the bias of every (non-transposed) convolution in `module`, in place.

    This is the *effective* result of the reference's ``init_weights`` (applied by
    ``dac.DAC.__init__``): its ``trunc_normal_(m.weight, std=0.02)`` writes to the weight that
    weight norm recomputes from g and v before every forward pass, so it has no effect; only
    the ``Conv1d`` biases are zeroed. Transposed convolutions (not ``Conv1d`` subclasses) keep
    their default uniform bias, and g/v keep their default initialisation.

    Example:
      >>> unit = ResidualUnit(2, rngs=nnx.Rngs(0))
      >>> init_weights(unit)
      >>> float(jnp.abs(unit.conv1.bias[...]).sum())
      0.0
    """
    for _, sub in nnx.iter_modules(module):
        if isinstance(sub, Conv1d) and sub.bias is not None:
            sub.bias.set_value(jnp.zeros_like(sub.bias[...]))
