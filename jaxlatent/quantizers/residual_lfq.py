"""Residual LFQ: a stack of :class:`~jaxlatent.quantizers.LFQ` layers with codebook scales
``2 ** -i``, each quantizing what the previous ones left (and its grouped form).

Residual quantization as in SoundStream (Zeghidour et al. 2021, arXiv:2107.03312, Alg. 1) with
lookup-free layers (Yu et al. 2023, arXiv:2310.05737); follows vector-quantize-pytorch 1.32.0
``ResidualLFQ`` / ``GroupedResidualLFQ`` (class names, constructor arguments, formulas),
channels-last.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike
from jaxlatent.quantizers import _residual as rs
from jaxlatent.quantizers import _scalar as sc
from jaxlatent.quantizers._projection import project
from jaxlatent.quantizers.lfq import LFQ

Array = jax.Array
_NEEDS_KEY = "quantize_dropout or frac_per_sample_entropy < 1"


class ResidualLFQOutput(NamedTuple):
    """Output of :meth:`ResidualLFQ.__call__` (with a leading group axis ``G`` on every field
    but `quantized` for :meth:`GroupedResidualLFQ.__call__`). Per-layer values are 0 for the
    layers dropped by quantizer dropout and, except the counts, in evaluation."""

    #: ``[batch, ..., dim]``: the sum of the kept layers' codes, projected out.
    quantized: Array
    #: int32 ``[batch, ..., num_quantizers]``; -1 for dropped layers.
    indices: Array
    #: float32 ``[num_quantizers]``: each layer's weighted auxiliary loss (:class:`LFQ`).
    losses: Array
    #: float32 ``[num_quantizers]``.
    per_sample_entropy: Array
    #: float32 ``[num_quantizers]`` (global under `axis_name`).
    batch_entropy: Array
    #: float32 ``[num_quantizers]`` (unweighted).
    commitment_loss: Array
    #: int32 ``[num_quantizers, codebook_size]`` (global under `axis_name`).
    counts: Array
    #: float32 ``[num_quantizers]``.
    perplexity: Array


class ResidualLFQ(rs.LayerDropout, nnx.Module):
    """Residual lookup-free quantizer, channels-last ``[batch, ..., dim]``.

    Args:
      dim: input dimension (projected to ``log2(codebook_size)`` channels when different).
      num_quantizers: number of layers ``Q``; layer ``i`` has ``codebook_scale = 2 ** -i``.
      codebook_size: a power of two.
      quantize_dropout, quantize_dropout_cutoff_index, quantize_dropout_multiple_of: as in
        :class:`~jaxlatent.quantizers.ResidualFSQ` (one draw from the call's `key`).
      soft_clamp_input_value: the first layer's soft clamp, halved at each layer.
      rngs: initialisation randomness.
      precision: precision of the projections' matmuls and of every layer's (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`; default
        ``"highest"``).
      **kwargs: further :class:`LFQ` arguments of every layer.

    Raises:
      ValueError: for a `codebook_size` that is not a power of two, an out-of-range dropout
        cutoff, or invalid layer arguments.

    Example:
      >>> rlfq = ResidualLFQ(dim=4, num_quantizers=2, codebook_size=16)
      >>> out = rlfq(jnp.full((1, 3, 4), 0.7))
      >>> out.indices[0, 0], out.quantized[0, 0]
      (Array([15,  0], dtype=int32), Array([0.5, 0.5, 0.5, 0.5], dtype=float32))
    """

    def __init__(
        self,
        *,
        dim: int,
        num_quantizers: int,
        codebook_size: int,
        quantize_dropout: bool = False,
        quantize_dropout_cutoff_index: int = 0,
        quantize_dropout_multiple_of: int = 1,
        soft_clamp_input_value: float | None = None,
        rngs: nnx.Rngs | None = None,
        precision: PrecisionLike = DEFAULT_PRECISION,
        **kwargs,
    ):
        if not sc.is_power_of_two(codebook_size):
            raise ValueError(f"codebook_size must be a power of 2 for LFQ, got {codebook_size!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if not isinstance(num_quantizers, int) or num_quantizers < 1:
            raise ValueError(f"num_quantizers must be a positive int, got {num_quantizers!r}")
        codebook_dim = int(math.log2(codebook_size))
        self.dim, self.num_quantizers, self.codebook_size = dim, num_quantizers, codebook_size
        self.has_projections = codebook_dim != dim
        self.project_in, self.project_out = sc.projections(
            self.has_projections, dim, codebook_dim, True, rngs, precision
        )
        layers = []
        for i in range(num_quantizers):
            layers.append(
                LFQ(
                    dim=codebook_dim,
                    codebook_scale=2**-i,
                    soft_clamp_input_value=soft_clamp_input_value,
                    rngs=rngs,
                    precision=precision,
                    **kwargs,
                )
            )
            if soft_clamp_input_value is not None:
                soft_clamp_input_value *= 0.5
        self.layers = nnx.List(layers)
        if self.layers[0].has_projections:
            raise ValueError(f"the layers of ResidualLFQ cannot have projections ({kwargs})")
        sc.check_dropout(
            quantize_dropout,
            quantize_dropout_cutoff_index,
            quantize_dropout_multiple_of,
            num_quantizers,
        )
        self.quantize_dropout = bool(quantize_dropout) and num_quantizers > 1
        self.quantize_dropout_cutoff_index = quantize_dropout_cutoff_index
        self.quantize_dropout_multiple_of = quantize_dropout_multiple_of

    @property
    def codebooks(self) -> Array:
        """float32 ``[Q, codebook_size, log2(codebook_size)]``: each layer's codes."""
        return jnp.stack([layer.codebook for layer in self.layers])

    def get_codes_from_indices(self, indices) -> Array:
        """Codes of every layer, float32 ``[Q, batch, ..., log2(codebook_size)]``, from
        indices ``[batch, ..., q]`` (``q < Q`` only with quantize dropout); -1 marks a
        dropped layer (zero codes). Like the reference, the codes are not l2-normalised
        even for spherical layers.

        Raises:
          ValueError: for non-integer indices or too many / too few layers.
        """
        return rs.layer_codes(
            indices,
            self.num_quantizers,
            self.quantize_dropout,
            lambda i, idx: self.layers[i]._codes_of(idx),
            batch_axis=False,
        )

    def get_output_from_indices(self, indices) -> Array:
        """The quantized output ``[batch, ..., dim]`` of indices ``[batch, ..., q]``."""
        return project(self.project_out, jnp.sum(self.get_codes_from_indices(indices), 0))

    def _needs_key(self) -> tuple[bool, bool]:
        return self.quantize_dropout, self.layers[0].frac_per_sample_entropy < 1

    def __call__(
        self,
        x,
        *,
        train: bool = False,
        key: Array | None = None,
        axis_name: str | None = None,
        mask=None,
    ) -> ResidualLFQOutput:
        """Quantize `x` ``[batch, ..., dim]`` with every layer (or the kept ones).

        Args:
          x: floating features ``[batch, ..., dim]``.
          train: straight-through outputs, losses and quantizer dropout.
          key: PRNG key, required in training with quantize dropout or
            ``frac_per_sample_entropy < 1``.
          axis_name: mapped batch axis (see :meth:`LFQ.__call__`).
          mask: optional bool ``[batch, ...]`` (see :meth:`LFQ.__call__`).

        Returns:
          :class:`ResidualLFQOutput`.

        Raises:
          ValueError: as :meth:`LFQ.__call__`, or a needed `key` is missing.
        """
        x = sc.check_input(x, self.dim)
        drop, sampled = self._needs_key()
        key, last = self._key_and_last(train, key, drop or sampled, _NEEDS_KEY)
        return self._forward(x, train, key if train and sampled else None, last, axis_name, mask)

    def _forward(self, x, train, key, last, axis_name, mask) -> ResidualLFQOutput:
        x = project(self.project_in, x)
        keys = [None] * len(self.layers) if key is None else jax.random.split(key, len(self.layers))

        def layer_fn(i, residual):
            out = self.layers[i](residual, train=train, key=keys[i], axis_name=axis_name, mask=mask)
            return (
                out.quantized,
                out.indices,
                out.loss,
                out.per_sample_entropy,
                out.batch_entropy,
                out.commitment_loss,
            )

        run = rs.residual_pass(x, self.num_quantizers, layer_fn, last)
        counts, ppl = rs.layer_usage(
            run.indices, [self.codebook_size] * self.num_quantizers, axis_name, mask
        )
        return ResidualLFQOutput(
            project(self.project_out, run.quantized), run.indices, *run.values, counts, ppl
        )


class GroupedResidualLFQ(rs.GroupedDecode, nnx.Module):
    """`groups` independent :class:`ResidualLFQ` on equal slices of the channels.

    Args:
      dim: input dimension, divisible by `groups`.
      groups: number of groups ``G``.
      accept_image_fmap: must be False (channels-last only).
      rngs: initialisation randomness.
      **kwargs: :class:`ResidualLFQ` arguments of every group (``dim`` excluded).

    Raises:
      ValueError: if `dim` is not divisible by `groups`, or as :class:`ResidualLFQ`.

    Example:
      >>> g = GroupedResidualLFQ(dim=8, groups=2, num_quantizers=2, codebook_size=16)
      >>> g(jnp.zeros((1, 3, 8))).losses.shape
      (2, 2)
    """

    def __init__(
        self,
        *,
        dim: int,
        groups: int = 1,
        accept_image_fmap: bool = False,
        rngs: nnx.Rngs | None = None,
        **kwargs,
    ):
        group_dim = rs.group_dim(dim, groups, accept_image_fmap)
        self.dim, self.groups = dim, groups
        self.rvqs = nnx.List(
            [ResidualLFQ(dim=group_dim, rngs=rngs, **kwargs) for _ in range(groups)]
        )
        self.codebook_size = self.rvqs[0].codebook_size

    @property
    def codebooks(self) -> Array:
        """float32 ``[G, Q, codebook_size, log2(codebook_size)]``."""
        return jnp.stack([rvq.codebooks for rvq in self.rvqs])

    def __call__(
        self,
        x,
        *,
        train: bool = False,
        key: Array | None = None,
        axis_name: str | None = None,
        mask=None,
    ) -> ResidualLFQOutput:
        """Quantize `x` ``[batch, ..., dim]`` group by group; the quantizer dropout keeps the
        same layers in every group (one draw from `key`, as the reference's shared seed).

        Raises:
          ValueError: as :meth:`ResidualLFQ.__call__`.
        """
        x = sc.check_input(x, self.dim)
        first = self.rvqs[0]
        drop, sampled = first._needs_key()
        key, last = first._key_and_last(train, key, drop or sampled, _NEEDS_KEY)
        chunks = jnp.split(x, self.groups, axis=-1)
        outs = [
            rvq._forward(
                chunk,
                train,
                jax.random.fold_in(key, g) if train and sampled else None,
                last,
                axis_name,
                mask,
            )
            for g, (rvq, chunk) in enumerate(zip(self.rvqs, chunks, strict=True))
        ]
        return rs.combine_groups(outs, ResidualLFQOutput)
