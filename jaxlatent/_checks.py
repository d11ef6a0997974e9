"""Argument validation shared by jaxlatent's public functions (private module).

Checks that need concrete values (ranges, NaN) run only when the value is concrete; under
`jax.jit` the argument is a tracer and only static properties (shape, dtype) are checked.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when `x` holds concrete values (not a tracer inside a jax transform)."""
    return not isinstance(x, jax.core.Tracer)


def shape_str(x: Any) -> str:
    return str(tuple(jnp.shape(x)))


def check_floating(name: str, x: Any) -> None:
    """Raise ValueError unless `x` has a floating-point dtype."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {dtype}")


def positive_int(name: str, value: Any) -> int:
    """`value` as an ``int``; ValueError unless it is an integer >= 1 (``bool`` is not)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")


def check_relative_length(length: Any, batch: int | None = None, *, name: str = "length") -> None:
    """Validate relative lengths: a 1-D array of fractions in [0, 1], one per batch item.

    Raises:
      ValueError: if `length` is not 1-D, does not have `batch` entries, or (when concrete)
        has values outside [0, 1] or NaN.
    """
    if jnp.ndim(length) != 1:
        raise ValueError(f"{name} must be 1-D [batch], got shape {shape_str(length)}")
    if batch is not None and jnp.shape(length)[0] != batch:
        raise ValueError(
            f"{name} has {jnp.shape(length)[0]} entries but the batch has {batch} items"
        )
    if is_concrete(length):
        values = np.asarray(length, dtype=np.float64)
        if np.isnan(values).any():
            raise ValueError(f"{name} contains NaN: {values}")
        if (values < 0).any() or (values > 1).any():
            raise ValueError(f"relative {name} must lie in [0, 1], got {values}")


def check_no_nan(name: str, x: Any) -> None:
    """Raise ValueError if a concrete floating array contains NaN or Inf."""
    if is_concrete(x) and jnp.issubdtype(jnp.result_type(x), jnp.floating):
        if not bool(np.isfinite(np.asarray(x)).all()):
            raise ValueError(f"{name} contains NaN or Inf values")


def check_n_quantizers(n_quantizers: Any, n_codebooks: int) -> int:
    """The number of residual quantizers to run: `n_quantizers`, or all when ``None``.

    Raises:
      ValueError: if `n_quantizers` is not ``None`` or an integer (bool excluded) in
        ``[1, n_codebooks]``.
    """
    if n_quantizers is None:
        return n_codebooks
    if isinstance(n_quantizers, bool) or not isinstance(n_quantizers, int | np.integer):
        raise ValueError(
            f"n_quantizers must be an integer in [1, n_codebooks={n_codebooks}], got "
            f"{n_quantizers!r}"
        )
    if not 1 <= n_quantizers <= n_codebooks:
        raise ValueError(f"n_quantizers={n_quantizers} must lie in [1, n_codebooks={n_codebooks}]")
    return int(n_quantizers)
