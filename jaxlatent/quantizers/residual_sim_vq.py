"""Residual SimVQ: a stack of :class:`~jaxlatent.quantizers.SimVQ` layers, each quantizing
what the previous ones left (SoundStream, Zeghidour et al. 2021, arXiv:2107.03312, Alg. 1;
SimVQ, Zhu et al. 2024, arXiv:2411.02038).

Follows vector-quantize-pytorch 1.32.0 ``ResidualSimVQ`` (class name, constructor arguments,
formulas), channels-last: ``residual ← residual − sg(q_i)``, output ``Σ q_i``, one loss per
layer. Quantizer dropout (training only) keeps the layers up to one drawn from the call's
`key` (the reference draws it with Python's ``random``); dropped layers have index -1 and
loss 0.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent.quantizers import _residual as rs
from jaxlatent.quantizers import _scalar as sc
from jaxlatent.quantizers.sim_vq import SimVQ

Array = jax.Array


class ResidualSimVQOutput(NamedTuple):
    """Output of :meth:`ResidualSimVQ.__call__`."""

    #: ``[batch, ..., dim]``, float32: the sum of the kept layers' codes.
    quantized: Array
    #: int32 ``[batch, ..., num_quantizers]``; -1 for layers dropped by quantizer dropout.
    indices: Array
    #: float32 ``[num_quantizers]``: each layer's weighted commitment loss (0 if dropped).
    losses: Array
    #: int32 ``[num_quantizers, codebook_size]``: each layer's code usage (global under
    #: `axis_name`; dropped layers count nothing).
    counts: Array
    #: float32 ``[num_quantizers]``: perplexity of each layer's usage.
    perplexity: Array


class ResidualSimVQ(rs.LayerDropout, nnx.Module):
    """Residual SimVQ, channels-last ``[batch, ..., dim]``.

    Args:
      dim: feature dimension.
      num_quantizers: number of layers ``Q``.
      codebook_size: codes per layer.
      heads: must be 1 (as in the reference).
      quantize_dropout: in training, keep only the layers up to a random one drawn uniformly
        from ``[quantize_dropout_cutoff_index, Q)`` with the call's `key`.
      quantize_dropout_cutoff_index: first layer that may be the last kept one.
      quantize_dropout_multiple_of: round the number of kept layers up to a multiple.
      channel_first: must be False (channels-last only).
      rotation_trick: rotation-trick gradients in every layer (default True, as the
        reference).
      rngs: initialisation randomness.
      **sim_vq_kwargs: further :class:`SimVQ` arguments of every layer.

    Raises:
      ValueError: for ``heads != 1``, `channel_first`, an out-of-range dropout cutoff, or
        invalid layer arguments.

    Source: vector-quantize-pytorch 1.32.0 ``residual_sim_vq.ResidualSimVQ``.

    Example:
      >>> rvq = ResidualSimVQ(dim=4, num_quantizers=3, codebook_size=16, rngs=nnx.Rngs(0))
      >>> out = rvq(jnp.ones((2, 5, 4)))
      >>> out.indices.shape, out.losses.shape
      ((2, 5, 3), (3,))
      >>> bool(jnp.allclose(rvq.get_output_from_indices(out.indices), out.quantized))
      True
    """

    def __init__(
        self,
        *,
        dim: int,
        num_quantizers: int,
        codebook_size: int,
        heads: int = 1,
        quantize_dropout: bool = False,
        quantize_dropout_cutoff_index: int = 0,
        quantize_dropout_multiple_of: int = 1,
        channel_first: bool = False,
        rotation_trick: bool = True,
        rngs: nnx.Rngs | None = None,
        **sim_vq_kwargs,
    ):
        if heads != 1:
            raise ValueError(f"heads={heads!r}: ResidualSimVQ supports only heads=1")
        sc.check_channels_last("channel_first", channel_first)
        if not isinstance(num_quantizers, int) or num_quantizers < 1:
            raise ValueError(f"num_quantizers must be a positive int, got {num_quantizers!r}")
        sc.check_dropout(
            quantize_dropout,
            quantize_dropout_cutoff_index,
            quantize_dropout_multiple_of,
            num_quantizers,
        )
        self.dim = dim
        self.num_quantizers = num_quantizers
        self.layers = nnx.List(
            [
                SimVQ(
                    dim,
                    codebook_size,
                    rotation_trick=rotation_trick,
                    rngs=rngs,
                    **sim_vq_kwargs,
                )
                for _ in range(num_quantizers)
            ]
        )
        self.codebook_size = self.layers[0].codebook_size
        self.quantize_dropout = bool(quantize_dropout) and num_quantizers > 1
        self.quantize_dropout_cutoff_index = quantize_dropout_cutoff_index
        self.quantize_dropout_multiple_of = quantize_dropout_multiple_of

    @property
    def codebooks(self) -> Array:
        """Every layer's implicit codebook, float32 ``[Q, codebook_size, dim]``."""
        return jnp.stack([layer.codebook for layer in self.layers])

    def get_codes_from_indices(self, indices) -> Array:
        """Codes of every layer, float32 ``[Q, batch, ..., dim]``, from indices
        ``[batch, ..., q]`` (``q < Q`` only with quantize dropout; the rest count as dropped);
        -1 marks a dropped layer (zero codes).

        Raises:
          ValueError: for non-integer indices or too many / too few layers.
        """
        return rs.layer_codes(
            indices,
            self.num_quantizers,
            self.quantize_dropout,
            lambda i, idx: self.layers[i].indices_to_codes(idx),
            batch_axis=True,
        )

    def get_output_from_indices(self, indices) -> Array:
        """The quantized output ``[batch, ..., dim]`` of indices ``[batch, ..., q]``."""
        return jnp.sum(self.get_codes_from_indices(indices), 0)

    def __call__(
        self,
        x,
        *,
        train: bool = False,
        key: Array | None = None,
        axis_name: str | None = None,
    ) -> ResidualSimVQOutput:
        """Quantize `x` ``[batch, ..., dim]`` with every layer (or the kept ones).

        Args:
          x: floating features ``[batch, ..., dim]``.
          train: apply quantizer dropout, when configured.
          key: PRNG key of the quantizer dropout, required in training with it.
          axis_name: mapped batch axis (usage counts of the global batch).

        Returns:
          :class:`ResidualSimVQOutput`.

        Raises:
          ValueError: if `x` is not floating or not ``[batch, ..., dim]``, or `key` is None
            in training with quantize dropout.
        """
        x = sc.check_input(x, self.dim).astype(jnp.float32)
        last = None
        if train and self.quantize_dropout:
            if key is None:
                raise ValueError("key is required in training with quantize_dropout, got None")
            last = self.dropout_index(key)

        def layer_fn(i, residual):
            out = self.layers[i](residual, axis_name=axis_name)
            return out.quantized, out.indices, out.loss

        run = rs.residual_pass(x, self.num_quantizers, layer_fn, last)
        counts, ppl = rs.layer_usage(
            run.indices, [self.codebook_size] * self.num_quantizers, axis_name
        )
        return ResidualSimVQOutput(run.quantized, run.indices, *run.values, counts, ppl)
