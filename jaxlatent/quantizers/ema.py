"""Generic VQ-VAE vector quantizer with gradient or EMA codebooks, k-means init and dead-code
restarts, correct under data parallelism.

:class:`VectorQuantizer` quantizes channels-last vectors ``[..., dim]`` with the shared core
(:func:`~jaxlatent.quantizers.nearest_code`, :func:`~jaxlatent.quantizers.straight_through`,
:func:`~jaxlatent.quantizers.perplexity`). A frozen :class:`VectorQuantizerConfig` selects how
the codebook learns:

* ``codebook_update="gradient"``: the codebook is an `nnx.Param` trained by the optimizer
  through the codebook loss ``mean((q - sg(z))²)`` (van den Oord et al. 2017,
  arXiv:1711.00937, eq. 3);
* ``codebook_update="ema"``: the codebook follows exponential moving averages of the per-code
  vector counts and sums (van den Oord et al. 2017, App. A.1; Razavi et al. 2019,
  arXiv:1906.00446). The codebook, `cluster_size`, `embed_sum` and the `initialized` flag are
  :class:`CodebookEMA` variables, **not** `nnx.Param`: ``nnx.Optimizer(model, tx,
  wrt=nnx.Param)`` never sees them. The codebook loss is 0.

Both modes add the commitment loss ``beta · mean((z - sg(q))²)``. Optional extras (SoundStream,
Zeghidour et al. 2021, arXiv:2107.03312): k-means initialisation from the first training batch
and restarts of codes whose EMA usage falls below a threshold.

The EMA maths follow lucidrains' vector-quantize-pytorch 1.32.0 `VectorQuantize` (see
:mod:`~jaxlatent.quantizers.codebook_ops`): `cluster_size` starts at ones and `embed_sum` at
the codebook, ``lerp(old, new, 1 - decay)`` without zero-debiasing, Laplace smoothing with
`eps`; in a training call the codebook used for the search is the one **before** this batch's
update (k-means init, if due, runs first). Its kmeans leaves an empty cluster's code at zero
(``embed_sum = mean · 0``), kept here; a dead-code restart revives it.

State changes only when ``train=True``; evaluation calls never touch it. Under `jax.pmap` /
`jax.shard_map` pass the mapped batch axis as `axis_name`: counts, sums and random choices are
then those of the global batch (the losses stay per-device means: reduce the total loss with
`lax.pmean` as usual). Under `jax.jit` with a sharded batch leave `axis_name=None`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import check_choice, check_floating, shape_str
from jaxlatent.quantizers import codebook_ops as ops
from jaxlatent.quantizers.rotation import estimator
from jaxlatent.quantizers.search import (
    CODE_CHUNK,
    VECTOR_CHUNK,
    l2_normalize,
    lookup_codes,
    nearest_code,
)
from jaxlatent.quantizers.stats import perplexity

Array = jax.Array
CodebookUpdate = Literal["gradient", "ema"]


def _positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclasses.dataclass(frozen=True)
class VectorQuantizerConfig:
    """Hyper-parameters of :class:`VectorQuantizer` (frozen, hashable: a static jit argument).

    Attributes:
      codebook_size: number of codes ``K``.
      dim: vector dimension ``D`` (the last axis of the input).
      codebook_update: ``"gradient"`` (codebook loss + optimizer) or ``"ema"``.
      beta: commitment-loss weight (0.25 in van den Oord et al.).
      decay: EMA decay of `cluster_size` / `embed_sum`, in ``[0, 1)``.
      eps: Laplace-smoothing constant of the EMA cluster sizes (> 0).
      metric: ``"l2"`` or ``"cosine"`` (inputs and codes l2-normalised, outputs unit vectors).
      kmeans_init: initialise the codebook by k-means on the first training batch.
      kmeans_iters: Lloyd iterations of that k-means (>= 1).
      rotation_trick: route the gradient to the input with the rotation trick
        (:func:`~jaxlatent.quantizers.rotation_trick`, Fifty et al. 2024) instead of
        straight-through. Default False (the VQ-VAE estimator); the :meth:`lucidrains`
        preset turns it on for ``dim > 1`` as vector-quantize-pytorch does.
      dead_code_threshold: in training, codes whose EMA cluster size falls below this are
        replaced by random batch vectors (0 disables; SoundStream uses 2).
      reset_cluster_size: EMA cluster size given to a replaced code (None: the threshold).
      axis_name: default mapped axis for the cross-device `psum` (see the module docstring).
      vector_chunk, code_chunk: chunk sizes of the nearest-code search (None: the backend's
        defaults, see :func:`~jaxlatent.quantizers.default_chunks`).

    Raises:
      ValueError: for an unknown `codebook_update`/`metric` or an out-of-range value.

    Example:
      >>> cfg = VectorQuantizerConfig.vqvae_ema(codebook_size=16, dim=4)
      >>> cfg.codebook_update, cfg.decay, cfg.replace(codebook_update="gradient").decay
      ('ema', 0.99, 0.99)
    """

    codebook_size: int
    dim: int
    codebook_update: CodebookUpdate = "ema"
    beta: float = 0.25
    decay: float = 0.99
    eps: float = 1e-5
    metric: Literal["l2", "cosine"] = "l2"
    kmeans_init: bool = False
    kmeans_iters: int = 10
    rotation_trick: bool = False
    dead_code_threshold: float = 0.0
    reset_cluster_size: float | None = None
    axis_name: str | None = None
    vector_chunk: int | None = VECTOR_CHUNK
    code_chunk: int | None = CODE_CHUNK

    def __post_init__(self):
        _positive_int("codebook_size", self.codebook_size)
        _positive_int("dim", self.dim)
        _positive_int("kmeans_iters", self.kmeans_iters)
        for name in ("vector_chunk", "code_chunk"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        check_choice("codebook_update", self.codebook_update, ("gradient", "ema"))
        check_choice("metric", self.metric, ("l2", "cosine"))
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {self.decay}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not self.dead_code_threshold >= 0:
            raise ValueError(f"dead_code_threshold must be >= 0, got {self.dead_code_threshold}")
        if self.reset_cluster_size is not None and not self.reset_cluster_size >= 0:
            raise ValueError(f"reset_cluster_size must be >= 0, got {self.reset_cluster_size}")

    @property
    def reset_size(self) -> float:
        """Cluster size given to a restarted code."""
        r = self.reset_cluster_size
        return float(self.dead_code_threshold if r is None else r)

    def replace(self, **changes) -> VectorQuantizerConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def vqvae(cls, codebook_size: int = 512, dim: int = 64, **changes) -> VectorQuantizerConfig:
        """VQ-VAE with a gradient-trained codebook, beta 0.25 (van den Oord et al. 2017)."""
        return cls(codebook_size, dim, codebook_update="gradient", beta=0.25, **changes)

    @classmethod
    def vqvae_ema(cls, codebook_size: int = 512, dim: int = 64, **changes) -> VectorQuantizerConfig:
        """VQ-VAE with EMA codebook updates, decay 0.99, eps 1e-5 (ibid., App. A.1)."""
        kw = dict(codebook_update="ema", beta=0.25, decay=0.99, eps=1e-5) | changes
        return cls(codebook_size, dim, **kw)

    @classmethod
    def soundstream(
        cls, codebook_size: int = 1024, dim: int = 128, **changes
    ) -> VectorQuantizerConfig:
        """EMA codebook with k-means init from the first batch and restarts of codes with EMA
        usage below 2 (Zeghidour et al. 2021, §3.3)."""
        kw = dict(decay=0.99, kmeans_init=True, kmeans_iters=10, dead_code_threshold=2.0)
        return cls(codebook_size, dim, codebook_update="ema", **(kw | changes))

    @classmethod
    def lucidrains(cls, codebook_size: int, dim: int, **changes) -> VectorQuantizerConfig:
        """The defaults of vector-quantize-pytorch's ``VectorQuantize`` (decay 0.8, eps 1e-5,
        commitment weight 1, rotation trick when ``dim > 1``)."""
        kw = dict(codebook_update="ema", beta=1.0, decay=0.8, eps=1e-5)
        kw |= dict(rotation_trick=dim > 1) | changes
        return cls(codebook_size, dim, **kw)


class CodebookEMA(nnx.BatchStat):
    """Quantizer state changed by training calls, never by the optimizer (an `nnx.BatchStat`
    subclass, so ``nnx.state(model, nnx.BatchStat)`` collects it with BatchNorm statistics)."""


class VectorQuantizerOutput(NamedTuple):
    """Output of :meth:`VectorQuantizer.__call__`."""

    #: ``[..., dim]``, dtype of the input: the code vectors with straight-through (or
    #: rotation-trick) gradients to the input; exactly ``decode(indices)`` of the codebook
    #: used for the search (in a training call, the codebook before this call's update).
    quantized: Array
    #: int32 ``[...]``.
    indices: Array
    #: float32 scalar: ``codebook_loss + beta · commitment_loss``.
    loss: Array
    #: float32 scalar: ``mean((z - sg(q))²)`` (unweighted; trains the encoder).
    commitment_loss: Array
    #: float32 scalar: ``mean((q - sg(z))²)`` in gradient mode, 0 in EMA mode.
    codebook_loss: Array
    #: float32 scalar: perplexity of this batch's code usage (global under `axis_name`).
    perplexity: Array
    #: int32 ``[codebook_size]``: this batch's code counts (global under `axis_name`).
    counts: Array


class VectorQuantizer(nnx.Module):
    """Vector quantizer for VQ-VAE-style models, channels-last ``[..., dim]``.

    Args:
      config: :class:`VectorQuantizerConfig`.
      rngs: initialisation randomness; the codebook starts uniform in ``[-1/K, 1/K]`` (the
        VQ-VAE initialisation of Sonnet/PyTorch-VAE; l2-normalised for cosine).

    State: ``codebook [K, dim]`` (`nnx.Param` in gradient mode, :class:`CodebookEMA` in EMA
    mode), ``cluster_size [K]`` (EMA of the code counts, starts at 1, tracked in both modes
    for dead-code restarts), ``embed_sum [K, dim]`` (EMA mode only, else None) and
    ``initialized`` (bool; False until the k-means init has run when `kmeans_init`).

    Example:
      >>> cfg = VectorQuantizerConfig.vqvae_ema(codebook_size=8, dim=2)
      >>> vq = VectorQuantizer(cfg, rngs=nnx.Rngs(0))
      >>> x = jnp.ones((3, 5, 2))
      >>> out = vq(x, train=True)
      >>> out.quantized.shape, out.indices.shape, out.indices.dtype, out.codebook_loss
      ((3, 5, 2), (3, 5), dtype('int32'), Array(0., dtype=float32))
      >>> vq.cluster_size[...].sum() > 8  # EMA counts moved towards the 15 vectors
      Array(True, dtype=bool)
      >>> out = vq(x)  # evaluation: no state change
      >>> bool((vq.decode(out.indices) == out.quantized).all())
      True
    """

    def __init__(self, config: VectorQuantizerConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, VectorQuantizerConfig):
            raise ValueError(f"config must be a VectorQuantizerConfig, got {type(config)}")
        self.config = config
        k, d = config.codebook_size, config.dim
        codebook = jax.random.uniform(rngs.params(), (k, d), jnp.float32, -1.0 / k, 1.0 / k)
        if config.metric == "cosine":
            codebook = l2_normalize(codebook)
        if config.codebook_update == "ema":
            self.codebook = CodebookEMA(codebook)
            self.embed_sum = CodebookEMA(codebook)
        else:
            self.codebook = nnx.Param(codebook)
            self.embed_sum = None
        self.cluster_size = CodebookEMA(jnp.ones((k,), jnp.float32))
        self.initialized = CodebookEMA(jnp.asarray(not config.kmeans_init))

    # -- lookups ---------------------------------------------------------------------------
    def codes(self) -> Array:
        """The code vectors ``[K, dim]`` the quantizer outputs (l2-normalised for cosine)."""
        codebook = self.codebook[...]
        return l2_normalize(codebook) if self.config.metric == "cosine" else codebook

    def decode(self, indices) -> Array:
        """Code vectors of integer `indices` ``[...]`` → float32 ``[..., dim]``.

        Raises:
          ValueError: if `indices` is not integer or (when concrete) out of range.
        """
        return lookup_codes(self.codes(), indices)

    def _vectors(self, x) -> tuple[Array, Array]:
        x = jnp.asarray(x)
        check_floating("x", x)
        k, d = self.config.codebook_size, self.config.dim
        if x.ndim < 1 or x.shape[-1] != d:
            raise ValueError(
                f"feature dimension mismatch: x has shape {shape_str(x)} ([..., dim]) but the "
                f"codebook has shape ({k}, {d}) ([codebook_size, dim])"
            )
        z = x.reshape(-1, d).astype(jnp.float32)
        return x, (l2_normalize(z) if self.config.metric == "cosine" else z)

    def _search(self, z: Array, codes: Array) -> Array:
        # `z` and `codes` are already normalised for cosine: the plain squared L2 argmin.
        # "addmm" is lucidrains' association ((|x|² + |c|²) - 2 x·c), so near-ties agree.
        cfg = self.config
        return nearest_code(
            z,
            codes,
            metric="l2",
            form="addmm",
            vector_chunk=cfg.vector_chunk,
            code_chunk=cfg.code_chunk,
        )

    def encode(self, x) -> Array:
        """Nearest-code indices of `x` ``[..., dim]`` → int32 ``[...]`` (no state change).

        Raises:
          ValueError: if `x` is not floating or its last axis is not `dim`.
        """
        x, z = self._vectors(x)
        return self._search(z, self.codes()).reshape(x.shape[:-1])

    # -- forward ---------------------------------------------------------------------------
    def __call__(
        self,
        x,
        *,
        train: bool = False,
        key: Array | None = None,
        axis_name: str | None = None,
    ) -> VectorQuantizerOutput:
        """Quantize `x` ``[..., dim]``; in training, update the codebook state.

        Args:
          x: floating vectors ``[..., dim]`` (any float dtype; searched in float32).
          train: update `cluster_size` (and in EMA mode `embed_sum` and the codebook), run
            the k-means init if due and restart dead codes. False leaves all state alone.
          key: PRNG key, required in training when `kmeans_init` or `dead_code_threshold`
            is set; under pmap/shard_map it must be the same on every device.
          axis_name: mapped batch axis for the cross-device reductions (default: the
            config's).

        Returns:
          :class:`VectorQuantizerOutput`.

        Raises:
          ValueError: if `x` is not floating, its last axis is not `dim`, the training batch
            is empty, or a required `key` is missing.
        """
        cfg = self.config
        axis_name = cfg.axis_name if axis_name is None else axis_name
        x, z = self._vectors(x)
        needs_key = cfg.kmeans_init or cfg.dead_code_threshold > 0
        if train and z.shape[0] == 0:
            raise ValueError(f"cannot train on an empty batch: x has shape {shape_str(x)}")
        if train and needs_key and key is None:
            raise ValueError(
                "key is required in training with kmeans_init or dead_code_threshold > 0"
            )
        k_init = k_dead = None
        if train and needs_key:
            k_init, k_dead = jax.random.split(key)
        zs = jax.lax.stop_gradient(z)
        if train and cfg.kmeans_init:
            self._kmeans_init(k_init, zs, axis_name)

        codes = self.codes()
        idx = self._search(z, codes)
        q = jnp.take(codes, idx, axis=0)
        commitment = jnp.mean(jnp.square(z - jax.lax.stop_gradient(q)))
        if cfg.codebook_update == "gradient":
            codebook_loss = jnp.mean(jnp.square(q - zs))
        else:
            codebook_loss = jnp.zeros((), jnp.float32)
        loss = codebook_loss + jnp.float32(cfg.beta) * commitment
        quantized = estimator(cfg.rotation_trick)(z, q).astype(x.dtype).reshape(x.shape)

        if train:
            counts, sums = ops.batch_code_stats(zs, idx, cfg.codebook_size, axis_name)
            self._update(zs, counts, sums, k_dead, axis_name)
        else:
            counts = ops.psum_if(
                jax.ops.segment_sum(
                    jnp.ones(idx.shape, jnp.float32), idx, num_segments=cfg.codebook_size
                ),
                axis_name,
            )
        return VectorQuantizerOutput(
            quantized,
            idx.reshape(x.shape[:-1]),
            loss,
            commitment,
            codebook_loss,
            perplexity(counts),
            counts.astype(jnp.int32),
        )

    # -- state updates (training only) -----------------------------------------------------
    def _state(self) -> tuple[Array, Array, Array | None]:
        es = None if self.embed_sum is None else self.embed_sum[...]
        return self.codebook[...], self.cluster_size[...], es

    def _set_state(self, codebook, cluster_size, embed_sum) -> None:
        sg = jax.lax.stop_gradient
        self.codebook[...] = sg(codebook).astype(self.codebook[...].dtype)
        self.cluster_size[...] = sg(cluster_size)
        if self.embed_sum is not None:
            self.embed_sum[...] = sg(embed_sum)

    def _kmeans_init(self, key: Array, zs: Array, axis_name: str | None) -> None:
        cfg = self.config
        cosine = cfg.metric == "cosine"
        codebook, cluster_size, embed_sum = self._state()
        has_sum = embed_sum is not None

        def run(_):
            means, sizes = ops.kmeans(
                key, zs, cfg.codebook_size, cfg.kmeans_iters, cosine=cosine, axis_name=axis_name
            )
            new_sum = means * sizes[:, None]
            new_codes = ops.codes_from_ema(new_sum, sizes, cfg.eps, cosine=cosine)
            return new_codes.astype(codebook.dtype), sizes, new_sum if has_sum else sizes

        def keep(_):
            return codebook, cluster_size, embed_sum if has_sum else cluster_size

        new = jax.lax.cond(self.initialized[...], keep, run, None)
        # not _set_state: its stop_gradient would cut the codebook's gradient in gradient mode
        # once initialised (the `keep` branch passes the live codebook through; `run` is built
        # from stopped inputs)
        self.codebook[...] = new[0]
        self.cluster_size[...] = jax.lax.stop_gradient(new[1])
        if has_sum:
            self.embed_sum[...] = jax.lax.stop_gradient(new[2])
        self.initialized[...] = jnp.asarray(True)

    def _update(self, zs, counts, sums, key, axis_name) -> None:
        cfg = self.config
        codebook, cluster_size, embed_sum = self._state()
        weight = 1.0 - cfg.decay
        cluster_size = ops.ema_lerp(cluster_size, counts, weight)
        if embed_sum is not None:
            embed_sum = ops.ema_lerp(embed_sum, sums, weight)
            codebook = ops.codes_from_ema(
                embed_sum, cluster_size, cfg.eps, cosine=cfg.metric == "cosine"
            )
        if cfg.dead_code_threshold > 0:
            codebook, cluster_size, embed_sum = ops.restart_dead_codes(
                key,
                zs,
                codebook,
                cluster_size,
                embed_sum,
                threshold=cfg.dead_code_threshold,
                reset_size=cfg.reset_size,
                axis_name=axis_name,
            )
        self._set_state(codebook, cluster_size, embed_sum)
