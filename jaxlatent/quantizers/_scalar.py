"""Shared machinery of the implicit-codebook quantizers (FSQ, LFQ and their residual forms).

Private: building the projections (applied by
:func:`jaxlatent.quantizers._projection.project`), the fixed rotation buffer, usage counts
that skip dropped layers, the residual quantizer-dropout index and the argument checks the four
modules share.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import check_floating, shape_str
from jaxlatent._collectives import psum_if
from jaxlatent.precision import PrecisionLike, resolve_precision
from jaxlatent.quantizers.stats import perplexity

Array = jax.Array


class Buffer(nnx.Variable):
    """A fixed, non-trained array of a quantizer (the reference's persistent buffer), such as
    the orthogonal rotation: never an `nnx.Param`, so optimizers leave it alone."""


def need_rngs(rngs, what: str) -> nnx.Rngs:
    if rngs is None:
        raise ValueError(f"rngs is required to initialise {what}, got None")
    return rngs


def linear(d_in: int, d_out: int, bias: bool, rngs, precision: PrecisionLike) -> nnx.Linear:
    """The reference's ``nn.Linear(d_in, d_out)`` (kernel ``[d_in, d_out]``), its matmul at
    `precision` (:mod:`jaxlatent.precision`)."""
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=bias,
        precision=resolve_precision(precision),
        rngs=need_rngs(rngs, "the projections"),
    )


def projections(has: bool, dim: int, code_dim: int, bias: bool, rngs, precision: PrecisionLike):
    """``(project_in, project_out)`` linears between `dim` and `code_dim`, or ``(None, None)``."""
    if not has:
        return nnx.data(None), nnx.data(None)
    return (
        linear(dim, code_dim, bias, rngs, precision),
        linear(code_dim, dim, bias, rngs, precision),
    )


def matmul(a: Array, b: Array, precision) -> Array:
    """``a @ b`` at `precision` (a `jax.lax.Precision` or None)."""
    return jnp.matmul(a, b, precision=precision)


def orthogonal(d: int, rngs) -> Buffer:
    """A random orthogonal ``[d, d]`` matrix (the reference's ``nn.init.orthogonal_``)."""
    key = need_rngs(rngs, "orthogonal_rotation").params()
    return Buffer(jax.nn.initializers.orthogonal()(key, (d, d), jnp.float32))


def check_input(x, dim: int, name: str = "x") -> Array:
    """`x` as a floating array ``[batch, ..., dim]``; ValueError naming the mismatch."""
    x = jnp.asarray(x)
    check_floating(name, x)
    if x.ndim < 2 or x.shape[-1] != dim:
        raise ValueError(
            f"{name} must have shape [batch, ..., dim] with dim={dim}, got shape {shape_str(x)}"
        )
    return x


def check_mask(mask, shape: tuple[int, ...]) -> Array | None:
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_ or mask.shape != shape:
        raise ValueError(
            f"mask must be a bool array of shape {shape} (x.shape[:-1]), got {mask.dtype} "
            f"{shape_str(mask)}"
        )
    return mask


def usage(indices: Array, codebook_size: int, axis_name: str | None, mask=None):
    """``(counts int32 [K], perplexity float32 [])`` of `indices` (entries < 0, the dropped
    layers, and masked-out entries are not counted); counts are global under `axis_name`."""
    valid = indices >= 0
    if mask is not None:
        valid = valid & jnp.broadcast_to(
            mask.reshape(mask.shape + (1,) * (indices.ndim - mask.ndim)), indices.shape
        )
    idx = jnp.where(valid, indices, codebook_size).reshape(-1)
    counts = jax.ops.segment_sum(
        jnp.ones(idx.shape, jnp.int32), idx, num_segments=codebook_size + 1
    )[:codebook_size]
    counts = psum_if(counts, axis_name)
    return counts, perplexity(counts)


def dropout_index(key: Array, cutoff: int, num_quantizers: int, multiple_of: int) -> Array:
    """The last residual layer kept by quantizer dropout: uniform in ``[cutoff, Q)``, rounded
    up so that the number of kept layers is a multiple of `multiple_of` (int32 scalar)."""
    index = jax.random.randint(key, (), cutoff, num_quantizers, jnp.int32)
    if multiple_of != 1:
        index = (index + multiple_of) // multiple_of * multiple_of - 1
    return index


def check_dropout(quantize_dropout, cutoff, multiple_of, num_quantizers) -> None:
    if not isinstance(cutoff, int) or cutoff < 0:
        raise ValueError(f"quantize_dropout_cutoff_index must be an int >= 0, got {cutoff!r}")
    if not isinstance(multiple_of, int) or multiple_of < 1:
        raise ValueError(f"quantize_dropout_multiple_of must be an int >= 1, got {multiple_of!r}")
    if quantize_dropout and num_quantizers > 1 and cutoff >= num_quantizers:
        raise ValueError(
            f"quantize_dropout_cutoff_index={cutoff} must be < num_quantizers={num_quantizers}"
        )


def check_channels_last(name: str, value) -> None:
    if value:
        raise ValueError(
            f"{name}={value!r}: jaxlatent quantizers are channels-last ([batch, ..., dim]); "
            "move the channel axis last instead"
        )


def is_power_of_two(n) -> bool:
    return isinstance(n, int) and n >= 1 and math.log2(n).is_integer()
