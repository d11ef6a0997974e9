"""Eval and training metrics the registries of `jaxlatent train` share."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlatent.quantizers import code_counts

Array = jax.Array


def codes_used(indices: Array, codebook_size: int) -> Array:
    """Number of distinct codes in `indices` (float32 scalar; int codes of any shape).

    Raises:
      ValueError: see `jaxlatent.quantizers.code_counts` (non-integer or, when concrete,
        out-of-range codes).

    Example:
      >>> float(codes_used(jnp.array([[0, 3], [3, 3]]), 8))
      2.0
    """
    return jnp.sum(code_counts(indices, codebook_size) > 0).astype(jnp.float32)
