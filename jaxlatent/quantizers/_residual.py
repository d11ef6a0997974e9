"""The residual-quantization loop shared by ResidualFSQ, ResidualLFQ, ResidualSimVQ and
ResidualVQ (SoundStream, Zeghidour et al. 2021, arXiv:2107.03312, Alg. 1, as in
vector-quantize-pytorch 1.32.0's residual modules).

Private: layer ``i`` quantizes the residual that layers ``0..i-1`` left,
``residual ← residual − sg(q_i)``, the output is ``Σ q_i``; quantizer dropout keeps the layers
up to `last`. Also the decoding of per-layer indices (``-1``: a dropped layer), the per-layer
usage statistics, the dropout draw and key check (:class:`LayerDropout`), and the grouped
forms' channel split and decoding (:class:`GroupedDecode`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxlatent._checks import shape_str
from jaxlatent.quantizers import _scalar as sc

Array = jax.Array

#: ``layer_fn(i, residual) -> (quantized, indices, *values)``: layer `i` on its residual; the
#: values are per-layer scalars (losses, entropies), zeroed for dropped layers.
LayerFn = Callable[[int, Array], tuple[Array, ...]]


class ResidualPass(NamedTuple):
    """What :func:`residual_pass` returns."""

    #: ``[batch, ..., d]``: the sum of the kept layers' quantized outputs.
    quantized: Array
    #: int32 ``[batch, ..., Q]``; -1 for the layers dropped by quantizer dropout.
    indices: Array
    #: one ``[Q]`` array per value `layer_fn` returned after the indices (0 if dropped).
    values: tuple[Array, ...]


def residual_pass(x: Array, num_layers: int, layer_fn: LayerFn, last=None) -> ResidualPass:
    """Run `num_layers` residual layers on `x` ``[batch, ..., d]``.

    Args:
      x: the (projected) input.
      num_layers: ``Q``.
      layer_fn: ``(i, residual) -> (quantized, indices, *values)`` of layer `i`.
      last: None (every layer kept) or the int32 scalar index of the last kept layer: the
        later layers still run (static shapes) but contribute zero, index -1 and value 0.

    Returns:
      :class:`ResidualPass`.
    """
    quantized_out, residual = 0.0, x
    all_indices, all_values = [], []
    for i in range(num_layers):
        quantized, indices, *values = layer_fn(i, residual)
        if last is not None:
            keep = i <= last
            quantized = jnp.where(keep, quantized, 0.0)
            indices = jnp.where(keep, indices, -1)
            values = [jnp.where(keep, v, 0.0) for v in values]
        residual = residual - jax.lax.stop_gradient(quantized)
        quantized_out = quantized_out + quantized
        all_indices.append(indices)
        all_values.append(values)
    return ResidualPass(
        quantized_out,
        jnp.stack(all_indices, axis=-1),
        tuple(jnp.stack(v) for v in zip(*all_values, strict=True)),
    )


def layer_usage(indices: Array, codebook_sizes: Sequence[int], axis_name, mask=None):
    """``(counts int32 [Q, max K], perplexity float32 [Q])`` of each layer's indices
    ``[batch, ..., Q]`` (dropped and masked entries not counted; counts zero-padded to the
    largest codebook; global under `axis_name`)."""
    stats = [sc.usage(indices[..., i], k, axis_name, mask) for i, k in enumerate(codebook_sizes)]
    k_max = max(codebook_sizes)
    return (
        jnp.stack([jnp.pad(c, (0, k_max - c.shape[0])) for c, _ in stats]),
        jnp.stack([p for _, p in stats]),
    )


def layer_codes(
    indices,
    num_layers: int,
    quantize_dropout: bool,
    decode: Callable[[int, Array], Array],
    *,
    batch_axis: bool,
) -> Array:
    """Every layer's codes ``[Q, batch, ..., d]`` from indices ``[batch, ..., q]``.

    ``q < Q`` only with `quantize_dropout` (the missing layers count as dropped); -1 marks a
    dropped layer, whose codes are zero; ``decode(i, idx)`` gives layer `i`'s codes of valid
    indices. `batch_axis`: the indices need a batch axis before the layer axis.

    Raises:
      ValueError: for non-integer indices or too many / too few layers.
    """
    indices = jnp.asarray(indices)
    min_ndim, layout = (2, "[batch, ..., Q]") if batch_axis else (1, "[..., Q]")
    if not jnp.issubdtype(indices.dtype, jnp.integer) or indices.ndim < min_ndim:
        raise ValueError(
            f"indices must be integer {layout}, got {indices.dtype} {shape_str(indices)}"
        )
    n = indices.shape[-1]
    if n > num_layers or (n < num_layers and not quantize_dropout):
        raise ValueError(
            f"indices have {n} layers ({shape_str(indices)}), expected "
            f"num_quantizers={num_layers} (fewer only with quantize_dropout)"
        )
    pad = [(0, 0)] * (indices.ndim - 1) + [(0, num_layers - n)]
    indices = jnp.pad(indices.astype(jnp.int32), pad, constant_values=-1)
    codes = []
    for i in range(num_layers):
        idx = indices[..., i]
        c = decode(i, jnp.maximum(idx, 0))
        codes.append(jnp.where((idx >= 0)[..., None], c, 0.0))
    return jnp.stack(codes)


class LayerDropout:
    """Quantizer dropout of a residual module: the class sets `num_quantizers`,
    `quantize_dropout_cutoff_index` and `quantize_dropout_multiple_of`."""

    def dropout_index(self, key: Array) -> Array:
        """The last layer kept by quantizer dropout for `key` (int32 scalar)."""
        return sc.dropout_index(
            key,
            self.quantize_dropout_cutoff_index,
            self.num_quantizers,
            self.quantize_dropout_multiple_of,
        )

    def _key_and_last(self, train: bool, key, needed: bool, what: str):
        """``(key, last)`` of a call: ValueError when `key` is None in training and `needed`
        (naming `what`, the options that need it); in training with quantizer dropout, `last`
        is drawn from a split of `key` and the other half goes on (else `last` is None)."""
        if train and needed and key is None:
            raise ValueError(f"key is required in training with {what}, got None")
        last = None
        if train and self.quantize_dropout:
            key, k_drop = jax.random.split(key)
            last = self.dropout_index(k_drop)
        return key, last


class GroupedDecode:
    """Decoding of a grouped residual module: the class sets `rvqs`, one residual module
    per group of channels."""

    def get_codes_from_indices(self, indices) -> Array:
        """float32 ``[G, Q, batch, ..., d]`` (``d``: a group's code dimension) from indices
        ``[G, batch, ..., q]``.

        Raises:
          ValueError: as the groups' ``get_codes_from_indices``, or for a group axis that is
            not ``G``.
        """
        pairs = zip(self.rvqs, _groups(indices, len(self.rvqs)), strict=True)
        return jnp.stack([r.get_codes_from_indices(i) for r, i in pairs])

    def get_output_from_indices(self, indices) -> Array:
        """``[batch, ..., dim]`` from indices ``[G, batch, ..., q]``.

        Raises:
          ValueError: as :meth:`get_codes_from_indices`.
        """
        pairs = zip(self.rvqs, _groups(indices, len(self.rvqs)), strict=True)
        return jnp.concatenate([r.get_output_from_indices(i) for r, i in pairs], axis=-1)


def group_dim(dim, groups, accept_image_fmap) -> int:
    """Each group's dimension ``dim // groups`` of a grouped residual module; ValueError for
    `accept_image_fmap` (channels-last only) or a `dim` not divisible by `groups`."""
    sc.check_channels_last("accept_image_fmap", accept_image_fmap)
    if not isinstance(groups, int) or groups < 1 or not isinstance(dim, int) or dim % groups:
        raise ValueError(f"dim={dim!r} must be divisible by groups={groups!r}")
    return dim // groups


def _groups(indices, groups: int) -> Array:
    indices = jnp.asarray(indices)
    if indices.ndim < 1 or indices.shape[0] != groups:
        raise ValueError(
            f"indices must have a leading group axis of {groups}, got shape {shape_str(indices)}"
        )
    return indices


def combine_groups(outs: Sequence[tuple], output_cls):
    """One `output_cls` from the groups' outputs: `quantized` (the first field) concatenated
    on the channels, every other field stacked on a new leading group axis."""
    return output_cls(
        jnp.concatenate([o[0] for o in outs], axis=-1),
        *(jnp.stack(field) for field in list(zip(*outs, strict=True))[1:]),
    )
