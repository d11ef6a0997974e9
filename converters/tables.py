"""Conversion tables: which torch tensor goes to which NNX variable, in which layout.

A converter is a **table** ``{torch_key: Rule(jax_path, transform)}`` built by small functions
per torch layer (:func:`linear`, :func:`conv`, :func:`conv_transpose`, :func:`weight_norm_conv`,
:func:`batch_norm`, :func:`layer_norm`, :func:`embedding`, :func:`tensor`). The same table
drives both directions (:mod:`converters.assign`: :func:`~converters.assign.assign_strict` and
:func:`~converters.assign.export_state_dict`).

Transforms are named pairs of inverse functions (torch layout -> JAX layout and back); JAX paths
are '/'-joined NNX attribute paths (``"encoder/layers/0/kernel"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from converters.errors import ConversionError

WeightNormStyle = Literal["legacy", "parametrizations"]


# --------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Transform:
    """A named layout change: `to_jax` maps a torch array to JAX layout, `to_torch` inverts it."""

    name: str
    to_jax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]

    def torch_shape(self, jax_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.to_torch(np.empty(jax_shape, np.float32)).shape


def _move_first_two_last(w: np.ndarray) -> np.ndarray:
    # torch (A, B, *k) -> (*k, B, A)
    n = w.ndim
    return np.transpose(w, (*range(2, n), 1, 0))


def _move_last_two_first(w: np.ndarray) -> np.ndarray:
    # (*k, B, A) -> (A, B, *k)
    n = w.ndim
    return np.transpose(w, (n - 1, n - 2, *range(n - 2)))


def _transpose_kernel_to_jax(w: np.ndarray) -> np.ndarray:
    # torch ConvTranspose (in, out, *k) -> (*k, in, out)
    n = w.ndim
    return np.transpose(w, (*range(2, n), 0, 1))


def _transpose_kernel_to_torch(w: np.ndarray) -> np.ndarray:
    n = w.ndim
    return np.transpose(w, (n - 2, n - 1, *range(n - 2)))


def _squeeze_channel_vector(w: np.ndarray) -> np.ndarray:
    if w.ndim == 1:
        return w
    if w.ndim == 0 or any(d != 1 for d in w.shape[1:]):
        raise ValueError(f"expected a per-channel tensor [C, 1, ...], got shape {w.shape}")
    return w.reshape(w.shape[0])


IDENTITY = Transform("identity", lambda w: w, lambda w: w)
#: `nn.Linear.weight` ``[out, in]`` <-> ``kernel [in, out]``.
LINEAR_KERNEL = Transform("linear_kernel", lambda w: w.T, lambda w: w.T)
#: `nn.ConvNd.weight` ``[out, in/g, *k]`` <-> ``kernel [*k, in/g, out]``.
CONV_KERNEL = Transform("conv_kernel", _move_first_two_last, _move_last_two_first)
#: `nn.ConvTransposeNd.weight` ``[in, out, *k]`` <-> ``kernel [*k, in, out]``.
CONV_TRANSPOSE_KERNEL = Transform(
    "conv_transpose_kernel", _transpose_kernel_to_jax, _transpose_kernel_to_torch
)


def channel_vector(torch_ndim: int) -> Transform:
    """Per-channel tensor ``[C, 1, ..., 1]`` (torch_ndim axes) <-> ``[C]`` (weight-norm g)."""
    return Transform(
        f"channel_vector_{torch_ndim}d",
        _squeeze_channel_vector,
        lambda w: w.reshape(w.shape[0], *([1] * (torch_ndim - 1))),
    )


def channels_first_to_last(torch_ndim: int) -> Transform:
    """A broadcast parameter ``[1, C, 1...]`` <-> ``[1, 1..., C]`` (e.g. Snake's alpha)."""
    to_jax = (0, *range(2, torch_ndim), 1)
    to_torch = tuple(int(i) for i in np.argsort(to_jax))
    return Transform(
        f"channels_first_to_last_{torch_ndim}d",
        lambda w: np.transpose(w, to_jax),
        lambda w: np.transpose(w, to_torch),
    )


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """Where a torch tensor goes: the '/'-joined NNX path and the layout transform."""

    jax_path: str
    transform: Transform = IDENTITY


Table = dict[str, Rule]


def join_key(prefix: str, name: str, sep: str) -> str:
    """`name` under `prefix` (joined by `sep`: "." for torch keys, "/" for JAX paths)."""
    return f"{prefix}{sep}{name}" if prefix else name


def tensor(torch_key: str, jax_path: str, transform: Transform = IDENTITY) -> Table:
    """A single tensor (parameter or buffer)."""
    return {torch_key: Rule(jax_path, transform)}


def linear(torch_prefix: str, jax_prefix: str, *, bias: bool = True) -> Table:
    """`nn.Linear` -> `flax.nnx.Linear` (``kernel``, ``bias``)."""
    table = tensor(
        join_key(torch_prefix, "weight", "."), join_key(jax_prefix, "kernel", "/"), LINEAR_KERNEL
    )
    if bias:
        table |= tensor(join_key(torch_prefix, "bias", "."), join_key(jax_prefix, "bias", "/"))
    return table


def conv(torch_prefix: str, jax_prefix: str, *, bias: bool = True) -> Table:
    """`nn.Conv1d/2d` -> `jaxlatent.nn.Conv1d/2d` or `flax.nnx.Conv` (``kernel``, ``bias``)."""
    table = tensor(
        join_key(torch_prefix, "weight", "."), join_key(jax_prefix, "kernel", "/"), CONV_KERNEL
    )
    if bias:
        table |= tensor(join_key(torch_prefix, "bias", "."), join_key(jax_prefix, "bias", "/"))
    return table


def conv_transpose(torch_prefix: str, jax_prefix: str, *, bias: bool = True) -> Table:
    """`nn.ConvTranspose1d/2d` -> `jaxlatent.nn.ConvTranspose1d/2d` (``kernel``, ``bias``)."""
    table = tensor(
        join_key(torch_prefix, "weight", "."),
        join_key(jax_prefix, "kernel", "/"),
        CONV_TRANSPOSE_KERNEL,
    )
    if bias:
        table |= tensor(join_key(torch_prefix, "bias", "."), join_key(jax_prefix, "bias", "/"))
    return table


def weight_norm_names(style: WeightNormStyle) -> tuple[str, str]:
    """torch key suffixes of (g, v) for the legacy and the parametrizations weight norm."""
    if style == "legacy":  # torch.nn.utils.weight_norm (official DAC checkpoints)
        return "weight_g", "weight_v"
    if style == "parametrizations":  # torch.nn.utils.parametrizations.weight_norm
        return "parametrizations.weight.original0", "parametrizations.weight.original1"
    raise ValueError(
        f"unknown weight-norm style {style!r}; expected 'legacy' or 'parametrizations'"
    )


def weight_norm_conv(
    torch_prefix: str,
    jax_prefix: str,
    *,
    style: WeightNormStyle,
    transposed: bool = False,
    ndim: int = 1,
    bias: bool = True,
) -> Table:
    """Weight-normed (transposed) conv -> `jaxlatent.nn.WNConv*` (``weight_g``, ``weight_v``).

    Both torch key styles are supported (`style`): ``weight_g``/``weight_v`` and
    ``parametrizations.weight.original0/1``. For a transposed conv, g is per input channel.
    """
    g_name, v_name = weight_norm_names(style)
    table = tensor(
        join_key(torch_prefix, g_name, "."),
        join_key(jax_prefix, "weight_g", "/"),
        channel_vector(ndim + 2),
    )
    table |= tensor(
        join_key(torch_prefix, v_name, "."),
        join_key(jax_prefix, "weight_v", "/"),
        CONV_TRANSPOSE_KERNEL if transposed else CONV_KERNEL,
    )
    if bias:
        table |= tensor(join_key(torch_prefix, "bias", "."), join_key(jax_prefix, "bias", "/"))
    return table


def batch_norm(
    torch_prefix: str, jax_prefix: str, *, affine: bool = True, track_running_stats: bool = True
) -> Table:
    """`nn.BatchNorm1d/2d` -> `jaxlatent.nn.BatchNorm` (running statistics included)."""
    table: Table = {}
    if affine:
        table |= tensor(join_key(torch_prefix, "weight", "."), join_key(jax_prefix, "scale", "/"))
        table |= tensor(join_key(torch_prefix, "bias", "."), join_key(jax_prefix, "bias", "/"))
    if track_running_stats:
        for src, dst in (
            ("running_mean", "mean"),
            ("running_var", "var"),
            ("num_batches_tracked", "num_batches_tracked"),
        ):
            table |= tensor(join_key(torch_prefix, src, "."), join_key(jax_prefix, dst, "/"))
    return table


def layer_norm(torch_prefix: str, jax_prefix: str, *, affine: bool = True) -> Table:
    """`nn.LayerNorm` (over the last axis) -> `flax.nnx.LayerNorm` (``scale``, ``bias``)."""
    if not affine:
        return {}
    return tensor(
        join_key(torch_prefix, "weight", "."), join_key(jax_prefix, "scale", "/")
    ) | tensor(join_key(torch_prefix, "bias", "."), join_key(jax_prefix, "bias", "/"))


def embedding(torch_prefix: str, jax_prefix: str, *, jax_name: str = "embedding") -> Table:
    """`nn.Embedding` ``weight [N, D]`` -> `flax.nnx.Embed` ``embedding [N, D]``."""
    return tensor(join_key(torch_prefix, "weight", "."), join_key(jax_prefix, jax_name, "/"))


def detect_weight_norm_style(state_dict: Mapping[str, Any]) -> WeightNormStyle | None:
    """Which weight-norm key style a state_dict uses (None if it has no weight-normed layer).

    Raises:
      ConversionError: if the state_dict mixes both styles.
    """
    legacy = any(k.endswith(".weight_g") or k == "weight_g" for k in state_dict)
    param = any("parametrizations.weight.original" in k for k in state_dict)
    if legacy and param:
        raise ConversionError(
            "the state_dict mixes legacy (weight_g/weight_v) and parametrizations weight-norm keys"
        )
    return "legacy" if legacy else ("parametrizations" if param else None)
