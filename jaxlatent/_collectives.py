"""Cross-device reductions that are no-ops outside a mapped axis.

Modules whose statistics must cover the global batch (EMA codebooks, `GlobalNorm`) take an
optional ``axis_name``: under `jax.pmap` / `jax.shard_map` it names the mapped batch axis and
their local sums are `psum`-ed over it; with None (one device, or `jax.jit` over sharded
arrays, where XLA inserts the reductions) nothing is reduced.
"""

from __future__ import annotations

import jax


def psum_if(x, axis_name: str | None):
    """`lax.psum` over `axis_name`, or `x` unchanged when it is None."""
    return x if axis_name is None else jax.lax.psum(x, axis_name)
