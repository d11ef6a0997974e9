"""SpeechBrain's 1-D convolution (`speechbrain.nnet.CNN.Conv1d`): padding modes on top of torch's.

SpeechBrain's `Conv1d` takes ``[batch, time, channels]`` and pads the time axis itself before
a `torch.nn.Conv1d` (its state_dict keys are ``conv.weight``/``conv.bias``, or
``conv.parametrizations.weight.original0/1`` with weight norm). This wrapper does the same
around :class:`jaxlatent.nn.Conv1d` (or :class:`jaxlatent.nn.WNConv1d`), stored as ``conv``,
so a converted checkpoint maps key for key.

Source: SpeechBrain 1.1.2 `speechbrain.nnet.CNN.Conv1d` and `get_padding_elem`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import check_choice
from jaxlatent.nn.conv import Conv1d
from jaxlatent.nn.weight_norm import WNConv1d
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

Array = jax.Array

#: torch `F.pad` mode -> `jnp.pad` mode.
_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap", "constant": "constant"}


def get_padding_elem(l_in: int, stride: int, kernel_size: int, dilation: int) -> list[int]:
    """SpeechBrain's "same" padding ``[left, right]`` (it passes the *channel count* as L_in).

    For ``stride > 1`` it is ``k // 2`` on both sides; otherwise
    ``floor((L_in - L_out) / 2)`` with ``L_out = L_in - dilation * (k - 1)``, i.e.
    ``floor(dilation * (k - 1) / 2)``, whatever `l_in` is.

    Example:
      >>> get_padding_elem(16, 1, 5, 2), get_padding_elem(16, 2, 4, 1)
      ([4, 4], [2, 2])
    """
    if stride > 1:
        return [math.floor(kernel_size / 2)] * 2
    l_out = math.floor((l_in - dilation * (kernel_size - 1) - 1) / stride) + 1
    return [math.floor((l_in - l_out) / 2)] * 2


class SpeechBrainConv1d(nnx.Module):
    """`speechbrain.nnet.CNN.Conv1d` on ``[batch, time, channels]`` (kernel in ``conv``).

    Args:
      out_channels: output channels.
      kernel_size: kernel size (odd unless ``padding="valid"`` when `input_shape` is given,
        as SpeechBrain checks).
      input_shape: input shape ``[batch, time, channels]`` (or ``[batch, time]``: one channel
        and a squeezed output when ``out_channels == 1``); alternatively `in_channels`.
      in_channels: input channels.
      stride, dilation, groups, bias: as `torch.nn.Conv1d`.
      padding: 'same' (pad ``get_padding_elem`` on both sides with `padding_mode`; keeps the
        length for stride 1 and odd kernels), 'valid' (none) or 'causal' (``(k-1)*dilation``
        zeros on the left).
      padding_mode: torch `F.pad` mode of 'same': 'reflect' (SpeechBrain's default),
        'replicate', 'circular' or 'constant'.
      weight_norm: use a weight-normalised kernel (`WNConv1d`, SpeechBrain's
        `parametrizations.weight_norm`).
      default_padding: the symmetric zero padding of the inner torch conv (default 0).
      precision: precision of the convolution (:mod:`jaxlatent.precision`; default
        ``"highest"``).
      rngs: NNX RNGs for the initialisation.

    Not supported: ``skip_transpose=True`` (inputs are always channels-last here) and
    `conv_init` (only the initialisation differs; converted weights are unaffected).

    Raises:
      ValueError: for neither/both of `input_shape`/`in_channels` missing, an even kernel
        with 'same'/'causal' padding (when `input_shape` is given), an unknown `padding` or
        `padding_mode`, or (at call time) a reflect/circular pad not smaller than the input.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.CNN.Conv1d`.

    Example:
      >>> conv = SpeechBrainConv1d(8, 5, input_shape=(10, 40, 16), rngs=nnx.Rngs(0))
      >>> conv(jnp.ones((10, 40, 16))).shape
      (10, 40, 8)
    """

    def __init__(
        self,
        out_channels: int,
        kernel_size: int,
        input_shape: tuple[int, ...] | None = None,
        in_channels: int | None = None,
        stride: int = 1,
        dilation: int = 1,
        padding: str = "same",
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "reflect",
        weight_norm: bool = False,
        default_padding: int = 0,
        *,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        check_choice("padding", padding, ("same", "valid", "causal"))
        check_choice("padding_mode", padding_mode, tuple(_PAD_MODES))
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.padding = padding
        self.padding_mode = padding_mode
        self.unsqueeze = False
        if input_shape is None and in_channels is None:
            raise ValueError("Must provide one of input_shape or in_channels")
        if in_channels is None:
            if len(input_shape) == 2:
                self.unsqueeze = True
                in_channels = 1
            elif len(input_shape) == 3:
                in_channels = input_shape[2]
            else:
                raise ValueError(f"conv1d expects 2d, 3d inputs. Got {len(input_shape)}")
            if padding != "valid" and kernel_size % 2 == 0:
                raise ValueError(f"The field kernel size must be an odd number. Got {kernel_size}.")
        self.in_channels = in_channels
        cls = WNConv1d if weight_norm else Conv1d
        self.conv = cls(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=default_padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            precision=precision,
            rngs=rngs,
        )

    def __call__(self, x: Array) -> Array:
        """Pad as SpeechBrain does and convolve: ``[batch, time, in] -> [batch, time', out]``."""
        x = jnp.asarray(x)
        if self.unsqueeze:
            x = x[..., None]
        if self.padding == "same":
            left, right = get_padding_elem(
                self.in_channels, self.stride, self.kernel_size, self.dilation
            )
            time = x.shape[1]
            if (self.padding_mode == "reflect" and max(left, right) >= time) or (
                self.padding_mode == "circular" and max(left, right) > time
            ):
                raise ValueError(
                    f"{self.padding_mode} padding of ({left}, {right}) needs a longer input than "
                    f"shape {tuple(x.shape)} (time axis 1)"
                )
            if left or right:
                x = jnp.pad(x, ((0, 0), (left, right), (0, 0)), mode=_PAD_MODES[self.padding_mode])
        elif self.padding == "causal":
            num_pad = (self.kernel_size - 1) * self.dilation
            x = jnp.pad(x, ((0, 0), (num_pad, 0), (0, 0)))
        y = self.conv(x)
        if self.unsqueeze and y.shape[-1] == 1:
            y = y[..., 0]
        return y
