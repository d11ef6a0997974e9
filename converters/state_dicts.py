"""State_dicts as read from files: their values as numpy, and the checks of what they hold.

:func:`to_numpy` turns a torch tensor (without importing torch) or an array-like into numpy;
:func:`check_state_dict` checks that a mapping holds dense real tensors by name,
:func:`check_keys_and_shapes` that it has exactly the expected keys and shapes, and
:func:`check_counts_fit` that a configuration read from a file's metadata does not ask for more
layers than it has tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from converters.errors import CheckpointError, ConversionError


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor or array-like as a numpy array (bfloat16/float16 through float32)."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        return value.numpy()
    return np.asarray(value)


_REAL_TORCH_DTYPES = frozenset(
    f"torch.{name}"
    for name in (
        "bool", "uint8", "int8", "int16", "int32", "int64",
        "float16", "bfloat16", "float32", "float64",
    )
)  # fmt: skip


def check_state_dict(state_dict: Any, where: str) -> None:
    """Check that `state_dict` maps names to dense real tensors (torch or numpy).

    Raises:
      CheckpointError: naming `where` and the first offending key, if `state_dict` is not a
        mapping, a key is not a string, or a value is not a dense (strided, unquantized)
        tensor of a bool, integer or floating dtype.
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"{where}: 'state_dict' is not a mapping of names to tensors, but a "
            f"{type(state_dict).__name__}"
        )
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"{where}: 'state_dict' is not a mapping of names to tensors: key "
                f"{str(key)[:100]!r} is a {type(key).__name__}"
            )
        if isinstance(value, np.ndarray):
            ok = value.dtype.kind in "biuf"
        elif hasattr(value, "detach") and hasattr(value, "layout"):  # a torch.Tensor
            ok = (
                str(value.dtype) in _REAL_TORCH_DTYPES
                and str(value.layout) == "torch.strided"
                and not value.is_quantized
            )
        else:
            ok = False
        if not ok:
            what = f"{type(value).__name__} {getattr(value, 'dtype', '')}".strip()
            raise CheckpointError(
                f"{where}: 'state_dict' is not a mapping of names to tensors: {key[:200]!r} "
                f"is a {what}, not a dense bool, integer or float tensor"
            )


def check_keys_and_shapes(
    state_dict: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], what: str
) -> None:
    """Raise unless `state_dict` has exactly the keys of `expected`, each of its shape.

    Raises:
      ConversionError: ``"state_dict does not match {what}"``, listing every missing,
        unexpected and mis-shaped key.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: {tuple(to_numpy(v).shape)}, expected {expected[k]}"
        for k, v in state_dict.items()
        if k in expected and tuple(to_numpy(v).shape) != expected[k]
    ]
    if missing or unexpected or mismatched:
        raise ConversionError(
            f"state_dict does not match {what}",
            missing=missing,
            unexpected=unexpected,
            mismatched=mismatched,
        )


def check_counts_fit(where: str, state_dict: Mapping[str, Any], counts: Mapping[str, int]) -> None:
    """Refuse a configuration (from a file's metadata) with more layers than tensors.

    Checked before any table or model is built, so that a mutated count in a file does not
    make a converter build millions of layers: each of `counts` (layers, codebooks, each
    with at least one tensor) must be at most the number of tensors in `state_dict`. (Sizes
    need no such bound: they are compared against the tensors' shapes on abstract arrays.)

    Raises:
      CheckpointError: naming `where` and every count that is too large.
    """
    too_many = [f"{k}={v}" for k, v in counts.items() if v > len(state_dict)]
    if too_many:
        raise CheckpointError(
            f"{where}: metadata['kwargs'] {', '.join(too_many)} exceed the "
            f"{len(state_dict)} tensors of the state_dict"
        )
