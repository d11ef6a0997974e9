"""Residual vector quantization over :class:`~jaxlatent.quantizers.VectorQuantizer` layers
(SoundStream, Zeghidour et al. 2021, arXiv:2107.03312, Alg. 1), and its grouped form.

Follows vector-quantize-pytorch 1.32.0 ``ResidualVQ`` / ``GroupedResidualVQ`` (class names,
constructor arguments, formulas), channels-last: optional linear projections to
`codebook_dim`, ``residual ← residual − sg(q_i)``, output ``project_out(Σ q_i)``, one loss per
layer. The layers are :class:`~jaxlatent.quantizers.VectorQuantizer` built from one
:class:`~jaxlatent.quantizers.VectorQuantizerConfig` (gradient or EMA codebooks, k-means init,
dead-code restarts, rotation trick; default: the reference's ``VectorQuantize`` defaults,
:meth:`~jaxlatent.quantizers.VectorQuantizerConfig.lucidrains`).

* Quantizer dropout (training only) keeps the layers up to one drawn from the call's `key`
  (the reference draws it with Python's ``random``); dropped layers have index -1, loss 0 and
  **no state update**.
* ``shared_codebook=True``: one codebook for every layer (its state in ``layers[0]``). As in
  the reference, every layer searches the codebook as it was before the call; the EMA counts
  and sums are lerped once per kept layer, in order, the codes recomputed once at the end, and
  dead codes restarted from the residuals of all kept layers.

The beam search, implicit neural codebooks (QINCo), DiVeQ and ``quant_grad_frac`` of the
reference are not implemented.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike
from jaxlatent.quantizers import _residual as rs
from jaxlatent.quantizers import _scalar as sc
from jaxlatent.quantizers import codebook_ops as ops
from jaxlatent.quantizers._projection import project
from jaxlatent.quantizers.ema import VectorQuantizer, VectorQuantizerConfig

Array = jax.Array
_NEEDS_KEY = "quantize_dropout, kmeans_init or dead_code_threshold > 0"


class ResidualVQOutput(NamedTuple):
    """Output of :meth:`ResidualVQ.__call__` (and, with a leading group axis ``G`` on
    `indices`, `losses`, `counts` and `perplexity`, of :meth:`GroupedResidualVQ.__call__`)."""

    #: ``[batch, ..., dim]``, float32: the sum of the kept layers' codes, projected out.
    quantized: Array
    #: int32 ``[batch, ..., num_quantizers]``; -1 for layers dropped by quantizer dropout.
    indices: Array
    #: float32 ``[num_quantizers]``: each layer's loss (codebook + beta · commitment; 0 if
    #: dropped).
    losses: Array
    #: int32 ``[num_quantizers, max(codebook_size)]``: each layer's code usage (global under
    #: `axis_name`; dropped layers count nothing; zero-padded for smaller codebooks).
    counts: Array
    #: float32 ``[num_quantizers]``: perplexity of each layer's usage.
    perplexity: Array


def _snapshot(vq: VectorQuantizer):
    return nnx.clone(nnx.state(vq))


def _keep_or_restore(vq: VectorQuantizer, old, keep: Array) -> None:
    """State of `vq` where `keep`, else its snapshot `old` (a dropped layer is not updated)."""
    new = nnx.state(vq)
    nnx.update(vq, jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, old))


class ResidualVQ(rs.LayerDropout, nnx.Module):
    """Residual vector quantizer, channels-last ``[batch, ..., dim]``.

    Args:
      dim: input dimension.
      num_quantizers: number of layers ``Q`` (default: ``len(codebook_size)``).
      codebook_size: codes per layer (one int, or one per layer).
      codebook_dim: dimension of the codes (default `dim`; otherwise linear projections).
      shared_codebook: one codebook for all layers (needs one codebook size).
      heads: must be 1 (as in the reference).
      quantize_dropout: in training, keep only the layers up to a random one drawn uniformly
        from ``[quantize_dropout_cutoff_index, Q)`` with the call's `key`.
      quantize_dropout_cutoff_index: first layer that may be the last kept one.
      quantize_dropout_multiple_of: round the number of kept layers up to a multiple.
      accept_image_fmap: must be False (channels-last only).
      config: the layers' :class:`VectorQuantizerConfig` (its `codebook_size` and `dim` are
        replaced per layer); default ``VectorQuantizerConfig.lucidrains``.
      rngs: initialisation randomness.
      precision: precision of the projections' matmuls (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`; default
        ``"highest"``); the layers' nearest-code search is at ``HIGHEST`` whatever this is.

    Raises:
      ValueError: for ``heads != 1``, `accept_image_fmap`, a `codebook_size` tuple whose
        length is not `num_quantizers`, different sizes with `shared_codebook`, or an
        out-of-range dropout cutoff.

    Source: vector-quantize-pytorch 1.32.0 ``residual_vq.ResidualVQ``.

    Example:
      >>> rvq = ResidualVQ(dim=4, num_quantizers=3, codebook_size=16, rngs=nnx.Rngs(0))
      >>> out = rvq(jnp.ones((2, 5, 4)), train=True)
      >>> out.indices.shape, out.losses.shape, out.counts.shape
      ((2, 5, 3), (3,), (3, 16))
    """

    def __init__(
        self,
        *,
        dim: int,
        num_quantizers: int | None = None,
        codebook_size: int | tuple[int, ...],
        codebook_dim: int | None = None,
        shared_codebook: bool = False,
        heads: int = 1,
        quantize_dropout: bool = False,
        quantize_dropout_cutoff_index: int = 0,
        quantize_dropout_multiple_of: int = 1,
        accept_image_fmap: bool = False,
        config: VectorQuantizerConfig | None = None,
        rngs: nnx.Rngs | None = None,
        precision: PrecisionLike = DEFAULT_PRECISION,
    ):
        if heads != 1:
            raise ValueError(f"heads={heads!r}: ResidualVQ supports only heads=1")
        sc.check_channels_last("accept_image_fmap", accept_image_fmap)
        sizes = (
            tuple(codebook_size)
            if isinstance(codebook_size, tuple | list)
            else (codebook_size,) * (num_quantizers or 0)
        )
        if num_quantizers is None:
            num_quantizers = len(sizes)
        if not isinstance(num_quantizers, int) or num_quantizers < 1:
            raise ValueError(f"num_quantizers must be a positive int, got {num_quantizers!r}")
        if len(sizes) != num_quantizers:
            raise ValueError(
                f"codebook_size={codebook_size!r} must have num_quantizers={num_quantizers} entries"
            )
        if shared_codebook and len(set(sizes)) != 1:
            raise ValueError(
                f"shared_codebook=True needs one codebook size, got codebook_size={sizes!r}"
            )
        sc.check_dropout(
            quantize_dropout,
            quantize_dropout_cutoff_index,
            quantize_dropout_multiple_of,
            num_quantizers,
        )
        rngs = sc.need_rngs(rngs, "ResidualVQ")
        codebook_dim = dim if codebook_dim is None else codebook_dim
        self.dim, self.codebook_dim = dim, codebook_dim
        self.num_quantizers = num_quantizers
        self.codebook_sizes = sizes
        self.has_projections = codebook_dim != dim
        self.project_in, self.project_out = sc.projections(
            self.has_projections, dim, codebook_dim, True, rngs, precision
        )
        base = config or VectorQuantizerConfig.lucidrains(sizes[0], codebook_dim)
        if not isinstance(base, VectorQuantizerConfig):
            raise ValueError(f"config must be a VectorQuantizerConfig, got {type(base)}")
        n_books = 1 if shared_codebook else num_quantizers
        self.layers = nnx.List(
            [
                VectorQuantizer(base.replace(codebook_size=k, dim=codebook_dim), rngs=rngs)
                for k in sizes[:n_books]
            ]
        )
        self.shared_codebook = bool(shared_codebook)
        self.quantize_dropout = bool(quantize_dropout) and num_quantizers > 1
        self.quantize_dropout_cutoff_index = quantize_dropout_cutoff_index
        self.quantize_dropout_multiple_of = quantize_dropout_multiple_of

    @property
    def codebook_size(self) -> int:
        return self.codebook_sizes[0]

    def _layer(self, i: int) -> VectorQuantizer:
        return self.layers[0 if self.shared_codebook else i]

    def _needs_key(self) -> bool:
        cfg = self.layers[0].config
        return self.quantize_dropout or cfg.kmeans_init or cfg.dead_code_threshold > 0

    @property
    def codebooks(self) -> tuple[Array, ...]:
        """Each layer's codes ``[codebook_size_i, codebook_dim]`` (float32)."""
        return tuple(self._layer(i).codes() for i in range(self.num_quantizers))

    def get_codes_from_indices(self, indices) -> Array:
        """Codes of every layer, float32 ``[Q, batch, ..., codebook_dim]``, from indices
        ``[batch, ..., q]`` (``q < Q`` only with quantize dropout); -1 marks a dropped layer
        (zero codes).

        Raises:
          ValueError: for non-integer indices or too many / too few layers.
        """
        return rs.layer_codes(
            indices,
            self.num_quantizers,
            self.quantize_dropout,
            lambda i, idx: self._layer(i).decode(idx),
            batch_axis=True,
        )

    def get_output_from_indices(self, indices) -> Array:
        """The quantized output ``[batch, ..., dim]`` of indices ``[batch, ..., q]``."""
        return project(self.project_out, jnp.sum(self.get_codes_from_indices(indices), 0))

    def __call__(
        self,
        x,
        *,
        train: bool = False,
        key: Array | None = None,
        axis_name: str | None = None,
    ) -> ResidualVQOutput:
        """Quantize `x` ``[batch, ..., dim]`` with every layer (or the kept ones); in training,
        update the layers' codebook state.

        Args:
          x: floating features ``[batch, ..., dim]``.
          train: quantizer dropout and the layers' state updates (see
            :meth:`VectorQuantizer.__call__`).
          key: PRNG key, required in training with quantize dropout, k-means init or
            dead-code restarts; under pmap/shard_map the same on every device.
          axis_name: mapped batch axis (EMA statistics and usage of the global batch).

        Returns:
          :class:`ResidualVQOutput`.

        Raises:
          ValueError: if `x` is not floating or not ``[batch, ..., dim]``, or a needed `key`
            is missing.
        """
        x = sc.check_input(x, self.dim)
        key, last = self._key_and_last(train, key, self._needs_key(), _NEEDS_KEY)
        return self._forward(x, train, key, last, axis_name)

    def _forward(self, x, train, key, last, axis_name) -> ResidualVQOutput:
        x = project(self.project_in, x.astype(jnp.float32))
        keys = [None] * (self.num_quantizers + 1)
        if train and key is not None:
            keys = list(jax.random.split(key, self.num_quantizers + 1))
        shared = self.shared_codebook and train
        if shared:
            self._shared_kmeans(x, keys[-1], axis_name)
        residuals = []  # each layer's input, for the shared codebook's update

        def layer_fn(i, residual):
            layer = self._layer(i)
            old = _snapshot(layer) if train and last is not None and not shared else None
            out = layer(residual, train=train and not shared, key=keys[i], axis_name=axis_name)
            if old is not None:
                _keep_or_restore(layer, old, i <= last)
            residuals.append(residual)
            return out.quantized, out.indices, out.loss

        run = rs.residual_pass(x, self.num_quantizers, layer_fn, last)
        if shared:
            pairs = [(r, run.indices[..., i]) for i, r in enumerate(residuals)]
            self._shared_update(pairs, keys[-1], axis_name, last)
        counts, ppl = rs.layer_usage(run.indices, self.codebook_sizes, axis_name)
        return ResidualVQOutput(
            project(self.project_out, run.quantized), run.indices, *run.values, counts, ppl
        )

    # -- shared codebook: one update per call, after all layers ----------------------------
    def _shared_kmeans(self, x, key, axis_name) -> None:
        vq = self.layers[0]
        if vq.config.kmeans_init:
            zs = jax.lax.stop_gradient(vq._vectors(x)[1])
            vq._kmeans_init(jax.random.fold_in(key, 1), zs, axis_name)

    def _shared_update(self, residuals, key, axis_name, last) -> None:
        vq = self.layers[0]
        cfg = vq.config
        weight = 1.0 - cfg.decay
        codebook, cluster_size, embed_sum = vq._state()
        vectors = []
        # every kept layer lerps the statistics in order (a dropped layer leaves them alone);
        # the codes are recomputed once, then dead codes restart from all the residuals
        for i, (residual, indices) in enumerate(residuals):
            zs = jax.lax.stop_gradient(vq._vectors(residual)[1])
            idx = indices.reshape(-1)
            valid = idx >= 0
            counts, sums = ops.batch_code_stats(
                jnp.where(valid[:, None], zs, 0.0),
                jnp.where(valid, idx, cfg.codebook_size),
                cfg.codebook_size + 1,
                axis_name,
            )
            keep = True if last is None else i <= last
            new_size = ops.ema_lerp(cluster_size, counts[: cfg.codebook_size], weight)
            cluster_size = jnp.where(keep, new_size, cluster_size)
            if embed_sum is not None:
                new_sum = ops.ema_lerp(embed_sum, sums[: cfg.codebook_size], weight)
                embed_sum = jnp.where(keep, new_sum, embed_sum)
            vectors.append(zs)
        if embed_sum is not None:
            codebook = ops.codes_from_ema(
                embed_sum, cluster_size, cfg.eps, cosine=cfg.metric == "cosine"
            )
        if cfg.dead_code_threshold > 0:
            codebook, cluster_size, embed_sum = ops.restart_dead_codes(
                jax.random.fold_in(key, 2),
                # [n, layers, d] → [(n layers), d], the reference's order; rows of a sharded
                # batch stay contiguous per device, so global row choices match one device
                jnp.stack(vectors, axis=1).reshape(-1, codebook.shape[-1]),
                codebook,
                cluster_size,
                embed_sum,
                threshold=cfg.dead_code_threshold,
                reset_size=cfg.reset_size,
                axis_name=axis_name,
            )
        vq._set_state(codebook, cluster_size, embed_sum)


class GroupedResidualVQ(rs.GroupedDecode, nnx.Module):
    """`groups` independent :class:`ResidualVQ` on equal slices of the channels.

    Args:
      dim: input dimension, divisible by `groups`.
      groups: number of groups ``G``.
      accept_image_fmap: must be False (channels-last only).
      rngs: initialisation randomness.
      **kwargs: :class:`ResidualVQ` arguments of every group (``dim`` excluded).

    Raises:
      ValueError: if `dim` is not divisible by `groups`, or as :class:`ResidualVQ`.

    Source: vector-quantize-pytorch 1.32.0 ``residual_vq.GroupedResidualVQ``.

    Example:
      >>> g = GroupedResidualVQ(dim=6, groups=2, num_quantizers=2, codebook_size=8,
      ...                       rngs=nnx.Rngs(0))
      >>> g(jnp.zeros((1, 4, 6))).indices.shape
      (2, 1, 4, 2)
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
            [ResidualVQ(dim=group_dim, rngs=rngs, **kwargs) for _ in range(groups)]
        )

    def __call__(
        self,
        x,
        *,
        train: bool = False,
        key: Array | None = None,
        axis_name: str | None = None,
    ) -> ResidualVQOutput:
        """Quantize `x` ``[batch, ..., dim]``, group by group; the quantizer dropout keeps the
        same layers in every group (one draw from `key`, as the reference's shared seed).

        Raises:
          ValueError: as :meth:`ResidualVQ.__call__`.
        """
        x = sc.check_input(x, self.dim)
        first = self.rvqs[0]
        key, last = first._key_and_last(train, key, first._needs_key(), _NEEDS_KEY)
        chunks = jnp.split(x, self.groups, axis=-1)
        keys = [None] * self.groups if key is None else list(jax.random.split(key, self.groups))
        outs = [
            rvq._forward(c, train, k, last, axis_name)
            for rvq, c, k in zip(self.rvqs, chunks, keys, strict=True)
        ]
        return rs.combine_groups(outs, ResidualVQOutput)
