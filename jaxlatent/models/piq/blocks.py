"""PIQ's convolutional blocks: `ResBlockAudio`, `Conv2dEncoder_v2` and `weights_init`.

Channels-last ports of SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ` (Paissan, Subakan &
Ravanelli 2023, "Posthoc Interpretation via Quantization", arXiv:2303.12659) on
``[batch, H, W, channels]`` arrays, built from jaxlatent's torch-exact layers.

Train/eval (the project's convention, README "Layout convention"): every ``__call__`` takes
``train: bool = False``. True normalises with the batch statistics and updates the BatchNorm
running statistics (torch's training mode), False (default) uses the running statistics
(torch's eval mode). NNX's ``.train()``/``.eval()`` do not change what a call computes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.nn import BatchNorm, Conv2d, ConvTranspose2d

Array = jax.Array


class ResBlockAudio(nnx.Module):
    """``x + BN(Conv1x1(ReLU(BN(Conv3x3(x)))))``, no final activation.

    torch `block` indices: 0 → `conv1` (3×3, padding 1), 1 → `bn1`, 2 ReLU, 3 → `conv2` (1×1),
    4 → `bn2`.

    Args:
      dim: channels of the input and the output.
      rngs: `nnx.Rngs` (torch's default initialisation).

    Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.ResBlockAudio`.

    Example:
      SpeechBrain's doctest input (traced with `jax.eval_shape`, nothing computed):

      >>> run = lambda x: ResBlockAudio(128, rngs=nnx.Rngs(0))(x)
      >>> jax.eval_shape(run, jnp.ones((2, 16, 16, 128))).shape
      (2, 16, 16, 128)
    """

    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.dim = dim
        self.conv1 = Conv2d(dim, dim, 3, 1, 1, rngs=rngs)
        self.bn1 = BatchNorm(dim)
        self.conv2 = Conv2d(dim, dim, 1, rngs=rngs)
        self.bn2 = BatchNorm(dim)

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        """Apply the block to ``[batch, H, W, dim]``; returns the same shape.

        Raises:
          ValueError: if `x` is not a floating ``[batch, H, W, dim]`` array.
        """
        check_floating("x", x)
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(
                f"ResBlockAudio expects [batch, H, W, {self.dim}], got shape {shape_str(x)}"
            )
        ura = not train
        h = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        return x + self.bn2(self.conv2(h), use_running_average=ura)


class Conv2dEncoder_v2(nnx.Module):
    """Log-spectrogram encoder: 4 × [Conv2d(4, stride 2, padding 1) → BN → ReLU], ResBlockAudio.

    Each conv maps a spatial size ``n`` to ``floor(n / 2)``.

    Args:
      dim: channels of the embeddings.
      rngs: `nnx.Rngs` (torch's default initialisation; SpeechBrain applies no
        `weights_init` here).

    Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.Conv2dEncoder_v2`.

    Example:
      SpeechBrain's doctest shape (traced with `jax.eval_shape`, nothing computed):

      >>> run = lambda x: Conv2dEncoder_v2(rngs=nnx.Rngs(0))(x)
      >>> jax.eval_shape(run, jnp.ones((3, 431, 513))).shape
      (3, 26, 32, 256)
    """

    def __init__(self, dim: int = 256, *, rngs: nnx.Rngs):
        self.dim = dim
        self.conv1 = Conv2d(1, dim, 4, 2, 1, rngs=rngs)
        self.bn1 = BatchNorm(dim)
        self.conv2 = Conv2d(dim, dim, 4, 2, 1, rngs=rngs)
        self.bn2 = BatchNorm(dim)
        self.conv3 = Conv2d(dim, dim, 4, 2, 1, rngs=rngs)
        self.bn3 = BatchNorm(dim)
        self.conv4 = Conv2d(dim, dim, 4, 2, 1, rngs=rngs)
        self.bn4 = BatchNorm(dim)
        self.resblock = ResBlockAudio(dim, rngs=rngs)

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        """Encode log-power spectrograms ``[batch, time, freq]`` → ``[batch, T', F', dim]``.

        Raises:
          ValueError: if `x` is not a floating 3-D array or is too short (< 16 frames/bins).
        """
        check_floating("x", x)
        if x.ndim != 3 or min(x.shape[1:]) < 16:
            raise ValueError(
                f"Conv2dEncoder_v2 expects [batch, time, freq] with time, freq >= 16, got shape "
                f"{shape_str(x)}"
            )
        ura = not train
        h = x[..., None]
        for conv, bn in (
            (self.conv1, self.bn1),
            (self.conv2, self.bn2),
            (self.conv3, self.bn3),
            (self.conv4, self.bn4),
        ):
            h = jax.nn.relu(bn(conv(h), use_running_average=ura))
        return self.resblock(h, train=train)


def weights_init(module: nnx.Module, *, rngs: nnx.Rngs) -> None:
    """SpeechBrain's `weights_init`, applied to every conv of `module` in place.

    Every `Conv2d`/`ConvTranspose2d` gets a Xavier-uniform kernel (bound
    ``sqrt(6 / ((in + out) · kh · kw))``, the same for both: torch's fan computation is
    symmetric here) and a zero bias; BatchNorm and the codebook keep their initialisation.
    Initial distributions match SpeechBrain's; values do not (different random generators).

    Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.weights_init` (Glorot & Bengio 2010).
    """
    for _, node in nnx.iter_graph(module):
        if isinstance(node, Conv2d | ConvTranspose2d):
            shape = node.kernel.shape
            bound = math.sqrt(6.0 / ((node.in_channels + node.out_channels) * math.prod(shape[:2])))
            node.kernel[...] = jax.random.uniform(
                rngs.params(), shape, node.kernel.dtype, -bound, bound
            )
            if node.bias is not None:
                node.bias[...] = jnp.zeros_like(node.bias[...])
