"""Laplacian filter and the Laplacian-variance sharpness loss, channels-last.

SpeechBrain works on single-channel images in PyTorch's layout, ``[batch, 1, H, W]`` (or
unbatched ``[1, H, W]``); here the same data is ``[batch, H, W, 1]`` (or ``[H, W, 1]``),
and outputs keep that layout. Values are identical to SpeechBrain's on the transposed data.

Source: Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a
comparative study", ICPR 2000 (variance of the Laplacian as a sharpness measure);
SpeechBrain 1.1.2 `speechbrain.nnet.losses` (`Laplacian`, `LaplacianVarianceLoss`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxlatent._checks import check_choice, check_floating, check_relative_length, shape_str
from jaxlatent.masking import ceil_tolerance_mask

Array = jax.Array

#: Axis permutations from the channels-last layout to SpeechBrain's (PyTorch) layout.
_TO_TORCH = {4: (0, 3, 1, 2), 3: (2, 0, 1)}


@dataclasses.dataclass(frozen=True)
class Laplacian:
    """Valid 2-D convolution with the ``k × k`` Laplacian kernel (all -1, centre ``k² - 1``).

    No padding, stride 1: the output is ``(k - 1)`` smaller along H and W. The kernel is
    symmetric, so convolution and cross-correlation agree.

    Args:
      kernel_size: `k` (≥ 1; an even `k` puts the centre at ``k // 2`` as SpeechBrain does).
      dtype: dtype of the kernel; the input must have the same dtype (PyTorch's `conv2d`
        refuses mixed dtypes too).

    Call args:
      data: ``[batch, H, W, 1]`` or unbatched ``[H, W, 1]`` (SpeechBrain: ``[batch, 1, H, W]``
        / ``[1, H, W]``), exactly one channel, H and W ≥ `k`.

    Returns:
      ``[batch, H - k + 1, W - k + 1, 1]`` (or unbatched ``[H - k + 1, W - k + 1, 1]``).

    Raises:
      ValueError: if `kernel_size` < 1, or `data` is not ``[(batch,) H, W, 1]`` with H, W ≥
        `k`, is not floating point or does not have the kernel's dtype.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.Laplacian`.

    Example:
      >>> lap = Laplacian(3)
      >>> lap.get_kernel()[:, :, 0, 0]  # HWIO layout; SpeechBrain's is [1, 1, k, k]
      Array([[-1., -1., -1.],
             [-1.,  8., -1.],
             [-1., -1., -1.]], dtype=float32)
      >>> data = jnp.eye(6) + jnp.eye(6)[::-1]
      >>> lap(data[..., None])[..., 0]
      Array([[ 6., -3., -3.,  6.],
             [-3.,  4.,  4., -3.],
             [-3.,  4.,  4., -3.],
             [ 6., -3., -3.,  6.]], dtype=float32)
    """

    kernel_size: int
    dtype: Any = jnp.float32

    def __post_init__(self):
        if not isinstance(self.kernel_size, int) or self.kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive int, got {self.kernel_size!r}")

    def get_kernel(self) -> Array:
        """The kernel in HWIO layout ``[k, k, 1, 1]`` and dtype `dtype`."""
        k = self.kernel_size
        kernel = -jnp.ones((k, k), self.dtype)
        kernel = kernel.at[k // 2, k // 2].set(k**2 - 1.0)
        return kernel[:, :, None, None]

    def __call__(self, data) -> Array:
        data = jnp.asarray(data)
        k = self.kernel_size
        if data.ndim not in (3, 4) or data.shape[-1] != 1:
            raise ValueError(
                "data must have shape [batch, H, W, 1] or [H, W, 1] (one channel, "
                f"channels-last), got {shape_str(data)}"
            )
        if min(data.shape[-3:-1]) < k:
            raise ValueError(
                f"data's H and W must be at least kernel_size={k}, got {shape_str(data)}"
            )
        check_floating("data", data)
        if data.dtype != jnp.dtype(self.dtype):
            raise ValueError(
                f"data has dtype {data.dtype} but the kernel has dtype "
                f"{jnp.dtype(self.dtype)}; cast data or build Laplacian(..., dtype=...)"
            )
        return _laplacian(data, self.get_kernel())


@jax.jit
def _laplacian(data: Array, kernel: Array) -> Array:
    batched = data if data.ndim == 4 else data[None]
    out = jax.lax.conv_general_dilated(
        batched,
        kernel,
        window_strides=(1, 1),
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return out if data.ndim == 4 else out[0]


def _torch_len_dim(len_dim: int | None, ndim: int) -> int:
    """SpeechBrain's `len_dim` (an axis of the PyTorch layout) for a channels-last axis."""
    if len_dim is None:
        return 1
    if not -ndim <= len_dim < ndim:
        raise ValueError(f"len_dim={len_dim} is out of range for a {ndim}-D input")
    torch_dim = _TO_TORCH[ndim].index(len_dim % ndim)
    if torch_dim == 0:
        role = "batch axis" if ndim == 4 else "channel axis of an unbatched input"
        raise ValueError(
            f"len_dim={len_dim} is the {role}, which SpeechBrain treats as the batch of the "
            "length mask; choose the H or W axis (or the channel axis of a batched input)"
        )
    return torch_dim


def _masked_variance(x: Array, mask: Array, axes: tuple[int, ...]) -> Array:
    """Unbiased (N - 1) variance of the masked entries over `axes` (NaN for N ≤ 1)."""
    n = jnp.sum(mask, axis=axes, keepdims=True, dtype=x.dtype)
    mean = jnp.sum(jnp.where(mask, x, 0), axis=axes, keepdims=True) / n
    squares = jnp.sum(jnp.where(mask, (x - mean) ** 2, 0), axis=axes, keepdims=True)
    variance = jnp.where(n > 0, squares / (n - 1), jnp.nan)  # torch.var of nothing is NaN
    return variance.reshape(squares.shape[: x.ndim - len(axes)])


@functools.partial(jax.jit, static_argnums=(2, 3))
def _variance_loss(lap: Array, length: Array | None, torch_len_dim: int, per_item: bool):
    lap = jnp.moveaxis(jnp.transpose(lap, _TO_TORCH[lap.ndim]), torch_len_dim, 1)
    if length is None:
        mask = jnp.ones(lap.shape, bool)
    else:  # SpeechBrain's compute_length_mask: rule "ceil with tolerance" along axis 1.
        mask = ceil_tolerance_mask(length, lap.shape[1])
        mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (lap.ndim - 2)), lap.shape)
    if per_item:
        return -_masked_variance(lap, mask, tuple(range(1, lap.ndim)))
    return -_masked_variance(lap, mask, tuple(range(lap.ndim)))


@dataclasses.dataclass(frozen=True)
class LaplacianVarianceLoss:
    """Negative variance of the Laplacian: low when the image (spectrogram) is sharp.

    ``loss = -var(laplacian(predictions)[mask])`` with the **unbiased** (N - 1) variance.

    `len_dim` and `length`, channels-last: `len_dim` is an axis of `predictions` as you
    pass it (negative values count from the end), and `length` masks that axis of the
    *Laplacian* (relative to its size ``n - k + 1``) with SpeechBrain's rule "ceil with
    tolerance" (``i < length · (n - k + 1) - 1e-6``). For ``[batch, H, W, 1]``: ``len_dim=1``
    is H (SpeechBrain's ``len_dim=2`` on ``[batch, 1, H, W]``), ``2`` is W (SpeechBrain's
    3), ``3`` or ``-1`` is the channel (SpeechBrain's 1). For unbatched ``[H, W, 1]``: ``0``
    is H (SpeechBrain's 1), ``1`` is W (SpeechBrain's 2), and the channel axis plays the
    batch role, so `length` has one entry.

    The default ``len_dim=None`` means SpeechBrain's default ``len_dim=1`` of the PyTorch
    layout. Quirk kept: for batched input that is the *channel* axis (size 1), so `length`
    does nothing, except that an item with ``length ≤ 1e-6`` is left out entirely (a NaN
    with ``reduction="batch"``). For unbatched input it is H. Pass ``len_dim=1`` (batched)
    to mask time frames on H.

    Args:
      kernel_size: Laplacian kernel size.
      len_dim: the masked axis of the channels-last input, or None (see above).

    Call args:
      predictions: float32 ``[batch, H, W, 1]`` or ``[H, W, 1]``.
      length: relative lengths in [0, 1], one per batch item, or None.
      reduction: None for one variance over all masked values (a scalar); ``"batch"`` for
        one per batch item (``[batch]``; ``[1]`` for unbatched input).

    Returns:
      float32 scalar, or ``[batch]`` with ``reduction="batch"``. NaN where at most one value
      is unmasked (as `torch.var`).

    Raises:
      ValueError: for a bad `predictions` shape or dtype (see :class:`Laplacian`), a
        `len_dim` out of range or on the batch axis, a `length` that is not 1-D with one
        entry per batch item or (when concrete) outside [0, 1], or an unknown `reduction`
        (SpeechBrain treats every value but "batch" as None).

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.LaplacianVarianceLoss`.

    Example:
      >>> lap_loss = LaplacianVarianceLoss(3)
      >>> lap_loss(jnp.ones((6, 6, 1)))
      Array(-0., dtype=float32)
      >>> data = jnp.eye(6) + jnp.eye(6)[::-1]
      >>> lap_loss(data[..., None])
      Array(-17.6, dtype=float32)
    """

    kernel_size: int = 3
    len_dim: int | None = None

    @property
    def laplacian(self) -> Laplacian:
        return Laplacian(kernel_size=self.kernel_size)

    def __call__(self, predictions, length=None, reduction=None) -> Array:
        check_choice("reduction", reduction, (None, "batch"))
        lap = self.laplacian(predictions)
        torch_len_dim = _torch_len_dim(self.len_dim, lap.ndim)
        n_items = 1 if lap.ndim == 3 else lap.shape[0]
        if length is not None:
            length = jnp.asarray(length)
            check_relative_length(length, n_items)
        return _variance_loss(lap, length, torch_len_dim, reduction == "batch")
