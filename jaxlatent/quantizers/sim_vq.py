"""SimVQ: vector quantization with a frozen random codebook reparameterised by a learned
linear transform (Zhu et al. 2024, "Addressing Representation Collapse in Vector Quantized
Models with One Linear Layer", arXiv:2411.02038).

The codes are ``C = frozen_codebook @ W`` (``frozen_codebook [K, d_f]`` fixed,
``W = code_transform``, learned): every gradient step on `W` moves the whole codebook, so no
code dies. Follows vector-quantize-pytorch 1.32.0 ``SimVQ`` (class name, constructor
arguments, formulas), channels-last:

* nearest code by Euclidean distance to the transformed codebook (no gradient through the
  search);
* loss ``commitment_weight · (mse(sg(x), q) + w_in · mse(x, sg(q)))`` with
  ``w_in = input_to_quantize_commit_loss_weight`` (the first term trains `W`);
* the output is `q` with the rotation-trick gradient to `x`
  (:func:`~jaxlatent.quantizers.rotation_trick`, the default) or straight-through.

Differences: the output's forward value is the code itself (the reference's ``rotate_to``
rounds); indices are int32 (torch: int64); the usage statistics are added.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import shape_str
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike
from jaxlatent.quantizers import _scalar as sc
from jaxlatent.quantizers.rotation import estimator
from jaxlatent.quantizers.search import lookup_codes, nearest_code

Array = jax.Array


class SimVQOutput(NamedTuple):
    """Output of :meth:`SimVQ.__call__`."""

    #: ``[batch, ..., dim]``, float32: the transformed codes, with the rotation-trick (or
    #: straight-through) gradient to the input.
    quantized: Array
    #: int32 ``[batch, ...]``.
    indices: Array
    #: float32 scalar: the weighted commitment loss (the reference's third output).
    loss: Array
    #: int32 ``[codebook_size]``: this batch's code usage (global under `axis_name`).
    counts: Array
    #: float32 scalar: perplexity of that usage.
    perplexity: Array


def _positive(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class SimVQ(nnx.Module):
    """SimVQ quantizer, channels-last ``[batch, ..., dim]``.

    Args:
      dim: feature dimension of the input and the codes.
      codebook_size: number of codes ``K``.
      codebook_transform: an NNX module mapping ``[K, frozen_codebook_dim]`` to ``[K, dim]``
        (default: a bias-free ``nnx.Linear``, the reference's ``nn.Linear(d_f, dim,
        bias=False)``; only the default converts with :mod:`converters.vector_quantize`).
      init_fn: function applied to the frozen codebook at construction (default identity).
      channel_first: must be False (channels-last only).
      rotation_trick: rotation-trick gradient to the input (default True, as the reference);
        False: straight-through.
      input_to_quantize_commit_loss_weight: weight ``w_in`` of ``mse(x, sg(q))`` (0.25).
      commitment_weight: overall loss weight (1.0).
      frozen_codebook_dim: ``d_f`` (default `dim`).
      rngs: initialisation randomness: the frozen codebook is ``N(0, 1) · d_f ** -0.5``
        (a :class:`~jaxlatent.quantizers._scalar.Buffer`, never trained).
      precision: precision of the default `codebook_transform`'s matmul (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`; default
        ``"highest"``); the nearest-code search is at ``HIGHEST`` whatever this is.

    Raises:
      ValueError: for a non-positive size, `channel_first`, or an unknown `precision`.

    Source: vector-quantize-pytorch 1.32.0 ``vector_quantize_pytorch.sim_vq.SimVQ``.

    Example:
      >>> vq = SimVQ(dim=4, codebook_size=16, rngs=nnx.Rngs(0))
      >>> out = vq(jnp.ones((2, 3, 4)))
      >>> out.quantized.shape, out.indices.shape, out.loss.shape
      ((2, 3, 4), (2, 3), ())
      >>> bool((vq.indices_to_codes(out.indices) == out.quantized).all())
      True
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        codebook_transform: nnx.Module | None = None,
        init_fn: Callable[[Array], Array] | None = None,
        channel_first: bool = False,
        rotation_trick: bool = True,
        input_to_quantize_commit_loss_weight: float = 0.25,
        commitment_weight: float = 1.0,
        frozen_codebook_dim: int | None = None,
        *,
        rngs: nnx.Rngs | None = None,
        precision: PrecisionLike = DEFAULT_PRECISION,
    ):
        self.dim = _positive("dim", dim)
        self.codebook_size = _positive("codebook_size", codebook_size)
        sc.check_channels_last("channel_first", channel_first)
        fd = dim if frozen_codebook_dim is None else frozen_codebook_dim
        self.frozen_codebook_dim = _positive("frozen_codebook_dim", fd)
        rngs = sc.need_rngs(rngs, "SimVQ")
        codebook = jax.random.normal(rngs.params(), (codebook_size, fd), jnp.float32)
        codebook = codebook * jnp.float32(fd**-0.5)
        if init_fn is not None:
            codebook = jnp.asarray(init_fn(codebook), jnp.float32)
        self.frozen_codebook = sc.Buffer(codebook)
        if codebook_transform is None:
            codebook_transform = sc.linear(fd, dim, False, rngs, precision)
        self.code_transform = codebook_transform
        self.rotation_trick = bool(rotation_trick)
        self.input_to_quantize_commit_loss_weight = float(input_to_quantize_commit_loss_weight)
        self.commitment_weight = float(commitment_weight)

    @property
    def codebook(self) -> Array:
        """The implicit codebook ``code_transform(frozen_codebook)``, float32 ``[K, dim]``."""
        return self.code_transform(self.frozen_codebook[...])

    def indices_to_codes(self, indices) -> Array:
        """Codes of integer `indices` ``[batch, ...]`` → float32 ``[batch, ..., dim]``: rows
        of :attr:`codebook` (bit-identical to the quantized output of the same indices).

        Raises:
          ValueError: if `indices` is not integer or (when concrete) out of range.
        """
        return lookup_codes(self.codebook, indices)

    def __call__(self, x, *, axis_name: str | None = None) -> SimVQOutput:
        """Quantize `x` ``[batch, ..., dim]`` (floating; computed in float32).

        Args:
          x: floating features ``[batch, ..., dim]``.
          axis_name: mapped batch axis (usage counts of the global batch).

        Returns:
          :class:`SimVQOutput`.

        Raises:
          ValueError: if `x` is not floating or not ``[batch, ..., dim]``.
        """
        x = sc.check_input(x, self.dim).astype(jnp.float32)
        codebook = self.codebook
        if codebook.shape != (self.codebook_size, self.dim):
            raise ValueError(
                f"codebook_transform maps the frozen codebook to shape {shape_str(codebook)}, "
                f"expected ({self.codebook_size}, {self.dim})"
            )
        flat = x.reshape(-1, self.dim)
        indices = nearest_code(flat, jax.lax.stop_gradient(codebook), metric="l2", form="addmm")
        q = jnp.take(codebook, indices, axis=0)
        sg = jax.lax.stop_gradient
        loss = jnp.mean(jnp.square(sg(flat) - q)) + jnp.mean(
            jnp.square(flat - sg(q))
        ) * jnp.float32(self.input_to_quantize_commit_loss_weight)
        quantized = estimator(self.rotation_trick)(flat, q).reshape(x.shape)
        indices = indices.reshape(x.shape[:-1])
        counts, ppl = sc.usage(indices, self.codebook_size, axis_name)
        return SimVQOutput(
            quantized, indices, loss * jnp.float32(self.commitment_weight), counts, ppl
        )
