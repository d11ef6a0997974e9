"""Lookup-free quantization (LFQ): each code channel is quantized to its sign (times
`codebook_scale`), the code index is the bit pattern; an entropy loss keeps every sample's
code assignment confident and the batch's code usage diverse.

Yu et al. 2023, "Language Model Beats Diffusion: Tokenizer is Key to Visual Generation"
(MAGVIT-v2), arXiv:2310.05737 §3.1 (eq. 3 and the entropy penalty); the spherical variant (BSQ)
of Zhao et al. 2024, arXiv:2406.07548. Follows vector-quantize-pytorch 1.32.0 ``LFQ`` (class
name, constructor arguments and every formula), channels-last.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlatent._checks import shape_str
from jaxlatent._collectives import psum_if
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike, resolve_precision
from jaxlatent.quantizers import _scalar as sc
from jaxlatent.quantizers._projection import project
from jaxlatent.quantizers.straight_through import straight_through

Array = jax.Array


class LFQOutput(NamedTuple):
    """Output of :meth:`LFQ.__call__`. The losses are 0 in evaluation (``train=False``), as in
    the reference."""

    #: ``[batch, ..., dim]``, dtype of the input: the codes (projected out); in training with
    #: straight-through gradients to the input, in evaluation without gradient to it.
    quantized: Array
    #: int32 ``[batch, ...]`` (``[batch, ..., num_codebooks]`` when `keep_num_codebooks_dim`).
    indices: Array
    #: float32 scalar: ``entropy_loss_weight · entropy_aux + commitment_loss_weight ·
    #: commitment`` with ``entropy_aux = per_sample_entropy - diversity_gamma · batch_entropy``
    #: (through ``softplus(· + entropy_loss_offset)`` when experimental_softplus_entropy_loss).
    loss: Array
    #: float32 scalar: mean entropy (nats) of each token's soft code assignment (this device).
    per_sample_entropy: Array
    #: float32 scalar: entropy of the batch-mean assignment (global under `axis_name`).
    batch_entropy: Array
    #: float32 scalar: ``mean((z - sg(q))²)`` (unweighted; 0 when its weight is 0).
    commitment_loss: Array
    #: int32 ``[codebook_size]``: code usage over all codebooks (global under `axis_name`).
    counts: Array
    #: float32 scalar: perplexity of that usage.
    perplexity: Array


def _l2norm(t: Array) -> Array:
    norm = jnp.sqrt(jnp.sum(jnp.square(t), axis=-1, keepdims=True))
    return t / jnp.maximum(norm, 1e-12)


def _entropy(prob: Array) -> Array:
    return jnp.sum(-prob * jnp.log(jnp.maximum(prob, 1e-5)), axis=-1)


class CosineSimLinear(nnx.Module):
    """``scale · normalize(x) @ normalize(W, axis=0)``, ``W [dim_in, dim_out]`` (LFQ's
    ``cosine_sim_project_in``; the reference's ``CosineSimLinear``, initialised N(0, 1)); the
    matmul at `precision` (:mod:`jaxlatent.precision`)."""

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        scale: float = 1.0,
        *,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        self.scale = float(scale)
        self.precision = resolve_precision(precision)
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (dim_in, dim_out), jnp.float32))

    def __call__(self, x: Array) -> Array:
        w = self.weight[...]
        w = w / jnp.maximum(jnp.sqrt(jnp.sum(jnp.square(w), axis=0, keepdims=True)), 1e-12)
        return sc.matmul(_l2norm(x), w, self.precision) * self.scale


class LFQ(nnx.Module):
    """Lookup-free quantizer, channels-last ``[batch, ..., dim]``.

    Args:
      dim: input dimension (default ``log2(codebook_size) · num_codebooks``).
      codebook_size: a power of two (default ``2 ** dim``); ``log2`` of it is the number of
        code channels (bits) per codebook.
      entropy_loss_weight, commitment_loss_weight: loss weights.
      diversity_gamma: weight of the batch entropy in the entropy loss.
      straight_through_activation: function applied to the input of the straight-through
        estimator in training (default identity).
      num_codebooks: independent codes per vector; keep_num_codebooks_dim as in :class:`FSQ`.
      codebook_scale: code values ``±codebook_scale``.
      frac_per_sample_entropy: in ``(0, 1]``: below 1, the entropies use a random fraction of
        the tokens, drawn with the call's `key`.
      has_projections: force the projections on/off (default: when `dim` differs from the
        code channels); projection_has_bias as in :class:`FSQ`.
      soft_clamp_input_value: ``tanh(x / c) · c`` of the projected input (``c >=
        codebook_scale``).
      cosine_sim_project_in, cosine_sim_project_in_scale: a :class:`CosineSimLinear` input
        projection with that scale (default `codebook_scale`).
      channel_first: must be None or False (channels-last only).
      experimental_softplus_entropy_loss, entropy_loss_offset: softplus of the shifted
        entropy loss.
      spherical: l2-normalise inputs and codes (times `codebook_scale`) (BSQ).
      force_quantization_f32: quantize in float32 (cast back afterwards).
      orthogonal_rotation: a fixed random orthogonal rotation of the code channels.
      rngs: initialisation randomness (projections, rotation).
      precision: precision of the projections' and the rotation's matmuls (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`; default
        ``"highest"``). The entropy loss's distances to the codes are at ``HIGHEST``.

    Raises:
      ValueError: if neither `dim` nor `codebook_size` is given, `codebook_size` is not a
        power of two, `frac_per_sample_entropy` is outside ``(0, 1]``,
        `soft_clamp_input_value` < `codebook_scale`, `num_codebooks` > 1 without
        `keep_num_codebooks_dim`, `channel_first` is True, or `rngs` is missing.

    Example:
      >>> lfq = LFQ(codebook_size=16)
      >>> out = lfq(jnp.array([[[0.5, -1.0, 2.0, -0.1]]]), train=True)
      >>> out.indices, out.quantized
      (Array([[10]], dtype=int32), Array([[[ 1., -1.,  1., -1.]]], dtype=float32))
    """

    def __init__(
        self,
        *,
        dim: int | None = None,
        codebook_size: int | None = None,
        entropy_loss_weight: float = 0.1,
        commitment_loss_weight: float = 0.0,
        diversity_gamma: float = 1.0,
        straight_through_activation: Callable[[Array], Array] | None = None,
        num_codebooks: int = 1,
        keep_num_codebooks_dim: bool | None = None,
        codebook_scale: float = 1.0,
        frac_per_sample_entropy: float = 1.0,
        has_projections: bool | None = None,
        projection_has_bias: bool = True,
        soft_clamp_input_value: float | None = None,
        cosine_sim_project_in: bool = False,
        cosine_sim_project_in_scale: float | None = None,
        channel_first: bool | None = None,
        experimental_softplus_entropy_loss: bool = False,
        entropy_loss_offset: float = 5.0,
        spherical: bool = False,
        force_quantization_f32: bool = True,
        orthogonal_rotation: bool = False,
        rngs: nnx.Rngs | None = None,
        precision: PrecisionLike = DEFAULT_PRECISION,
    ):
        self.precision = resolve_precision(precision)
        if dim is None and codebook_size is None:
            raise ValueError("either dim or codebook_size must be given for LFQ")
        if codebook_size is not None and not sc.is_power_of_two(codebook_size):
            raise ValueError(f"codebook_size must be a power of 2 for LFQ, got {codebook_size!r}")
        if dim is not None and (not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if not isinstance(num_codebooks, int) or num_codebooks < 1:
            raise ValueError(f"num_codebooks must be a positive int, got {num_codebooks!r}")
        sc.check_channels_last("channel_first", channel_first)
        if not 0 < frac_per_sample_entropy <= 1:
            raise ValueError(
                f"frac_per_sample_entropy must lie in (0, 1], got {frac_per_sample_entropy!r}"
            )
        if soft_clamp_input_value is not None and soft_clamp_input_value < codebook_scale:
            raise ValueError(
                f"soft_clamp_input_value={soft_clamp_input_value} must be >= "
                f"codebook_scale={codebook_scale}"
            )
        self.codebook_size = 2**dim if codebook_size is None else codebook_size
        self.codebook_dim = int(math.log2(self.codebook_size))
        codebook_dims = self.codebook_dim * num_codebooks
        self.dim = codebook_dims if dim is None else dim
        self.num_codebooks = num_codebooks
        keep = num_codebooks > 1 if keep_num_codebooks_dim is None else keep_num_codebooks_dim
        if num_codebooks > 1 and not keep:
            raise ValueError(
                f"keep_num_codebooks_dim=False is impossible with num_codebooks={num_codebooks}"
            )
        self.keep_num_codebooks_dim = bool(keep)
        self.has_projections = (
            self.dim != codebook_dims if has_projections is None else bool(has_projections)
        )
        if self.has_projections and cosine_sim_project_in:
            scale = codebook_scale if cosine_sim_project_in_scale is None else (
                cosine_sim_project_in_scale
            )  # fmt: skip
            self.project_in = CosineSimLinear(
                self.dim,
                codebook_dims,
                scale,
                precision=self.precision,
                rngs=sc.need_rngs(rngs, "the projections"),
            )
            self.project_out = sc.linear(
                codebook_dims, self.dim, projection_has_bias, rngs, self.precision
            )
        else:
            self.project_in, self.project_out = sc.projections(
                self.has_projections,
                self.dim,
                codebook_dims,
                projection_has_bias,
                rngs,
                self.precision,
            )
        self.activation = straight_through_activation
        self.spherical = spherical
        self.orthogonal_rot = (
            sc.orthogonal(self.codebook_dim, rngs) if orthogonal_rotation else None
        )
        self.frac_per_sample_entropy = float(frac_per_sample_entropy)
        self.diversity_gamma = float(diversity_gamma)
        self.entropy_loss_weight = float(entropy_loss_weight)
        self.codebook_scale = float(codebook_scale)
        self.commitment_loss_weight = float(commitment_loss_weight)
        self.soft_clamp_input_value = soft_clamp_input_value
        self.entropy_loss_offset = float(entropy_loss_offset)
        self.experimental_softplus_entropy_loss = experimental_softplus_entropy_loss
        self.force_quantization_f32 = force_quantization_f32

    # -- codes -------------------------------------------------------------------------------
    def bit_mask(self) -> np.ndarray:
        """``2 ** arange(codebook_dim - 1, -1, -1)``, int32: the first channel is the most
        significant bit of an index (the reference's ``mask`` buffer)."""
        return (2 ** np.arange(self.codebook_dim - 1, -1, -1)).astype(np.int32)

    def bits_to_codes(self, bits: Array) -> Array:
        return bits * self.codebook_scale * 2 - self.codebook_scale

    @property
    def codebook(self) -> Array:
        """All codes ``±codebook_scale``, float32 ``[codebook_size, codebook_dim]`` (before the
        spherical normalisation, as the reference's ``codebook``)."""
        return self._codes_of(jnp.arange(self.codebook_size, dtype=jnp.int32))

    def _codes_of(self, indices: Array) -> Array:
        bits = (indices[..., None] & self.bit_mask().reshape((1,) * indices.ndim + (-1,))) != 0
        return self.bits_to_codes(bits.astype(jnp.float32))

    def _maybe_l2norm(self, t: Array) -> Array:
        return _l2norm(t) * self.codebook_scale if self.spherical else t

    def indices_to_codes(self, indices, project_out: bool = True) -> Array:
        """Indices ``[batch, ...]`` (``[..., num_codebooks]`` with `keep_num_codebooks_dim`) →
        float32 ``[batch, ..., dim]`` (``[..., codebook_dim · num_codebooks]`` without
        `project_out`), equal to the evaluation output of :meth:`__call__`.

        Raises:
          ValueError: for non-integer indices or a codebook axis other than `num_codebooks`.
        """
        indices = jnp.asarray(indices)
        if not jnp.issubdtype(indices.dtype, jnp.integer):
            raise ValueError(f"indices must be integer, got dtype {indices.dtype}")
        if not self.keep_num_codebooks_dim:
            indices = indices[..., None]
        if indices.shape[-1] != self.num_codebooks:
            raise ValueError(
                f"indices must have a last axis of num_codebooks={self.num_codebooks}, got "
                f"shape {shape_str(indices)}"
            )
        codes = self._maybe_l2norm(self._codes_of(indices.astype(jnp.int32)))
        if self.orthogonal_rot is not None:
            codes = sc.matmul(codes, self.orthogonal_rot[...].T, self.precision)
        codes = codes.reshape((*codes.shape[:-2], -1))
        return project(self.project_out, codes) if project_out else codes

    # -- losses ------------------------------------------------------------------------------
    def _token_weights(self, n: int, mask, key) -> Array:
        """float32 ``[n]``: 1 for the tokens the entropies use (masked, then sampled)."""
        valid = jnp.ones((n,), bool) if mask is None else mask.reshape(-1)
        if self.frac_per_sample_entropy < 1:
            if mask is None:
                n_sampled = int(n * self.frac_per_sample_entropy)
            else:
                count = jnp.sum(valid).astype(jnp.float32)
                n_sampled = jnp.floor(count * self.frac_per_sample_entropy).astype(jnp.int32)
            scores = jnp.where(valid, jax.random.uniform(key, (n,)), 2.0)
            valid = jnp.argsort(jnp.argsort(scores)) < n_sampled
        return valid.astype(jnp.float32)

    def _entropies(self, z: Array, weights: Array, inv_temperature, axis_name):
        codebook = self._maybe_l2norm(self.codebook)
        tokens = z.reshape(-1, self.num_codebooks, self.codebook_dim)
        distance = -2 * jnp.einsum(
            "nid,jd->nij", tokens, codebook, precision=jax.lax.Precision.HIGHEST
        )
        prob = jax.nn.softmax(-distance * inv_temperature, axis=-1)
        w = weights[:, None]
        n = jnp.sum(weights)
        per_sample = jnp.sum(w * _entropy(prob)) / (n * self.num_codebooks)
        prob_sum = psum_if(jnp.sum(w[..., None] * prob, axis=0), axis_name)
        avg_prob = prob_sum / psum_if(n, axis_name)
        return per_sample, jnp.mean(_entropy(avg_prob))

    # -- forward -----------------------------------------------------------------------------
    def __call__(
        self,
        x,
        *,
        train: bool = False,
        key: Array | None = None,
        axis_name: str | None = None,
        inv_temperature: float = 100.0,
        mask=None,
    ) -> LFQOutput:
        """Quantize `x` ``[batch, ..., dim]``; in training, also the entropy and commitment
        losses.

        Args:
          x: floating features ``[batch, ..., dim]``.
          train: straight-through output and the auxiliary losses (0 otherwise).
          key: PRNG key, required in training when ``frac_per_sample_entropy < 1``.
          axis_name: mapped batch axis: the batch entropy's mean assignment and the usage
            counts are then those of the global batch (the per-sample entropy and the
            commitment loss stay per-device means: `lax.pmean` the loss as usual).
          inv_temperature: inverse temperature of the soft assignments.
          mask: optional bool ``[batch, ...]``: tokens left out of the losses and counts.

        Returns:
          :class:`LFQOutput`.

        Raises:
          ValueError: if `x` is not floating or its last axis is not `dim`, `mask` has the
            wrong shape or dtype, or the key is missing.
        """
        x = sc.check_input(x, self.dim)
        mask = sc.check_mask(mask, x.shape[:-1])
        sampled = train and self.frac_per_sample_entropy < 1
        if sampled and key is None:
            raise ValueError(
                "key is required in training with frac_per_sample_entropy="
                f"{self.frac_per_sample_entropy}, got None"
            )
        z = project(self.project_in, x)
        if self.soft_clamp_input_value is not None:
            c = self.soft_clamp_input_value
            z = jnp.tanh(z / c) * c
        z = z.reshape((*z.shape[:-1], self.num_codebooks, self.codebook_dim))
        if self.orthogonal_rot is not None:
            z = sc.matmul(z, self.orthogonal_rot[...], self.precision)
        z = self._maybe_l2norm(z)
        orig_dtype = z.dtype
        if self.force_quantization_f32:
            z = z.astype(jnp.float32)
        value = jnp.full_like(z, self.codebook_scale)
        q = jnp.where(z > 0, value, -value)
        bits = self.bit_mask().reshape((1,) * (z.ndim - 1) + (-1,))
        indices = jnp.sum((q > 0).astype(jnp.int32) * bits, axis=-1)
        q = self._maybe_l2norm(q)
        zero = jnp.zeros((), jnp.float32)
        per_sample = batch_entropy = commitment = zero
        if train:
            act = z if self.activation is None else self.activation(z)
            out = straight_through(act, q)
            weights = self._token_weights(indices.size // self.num_codebooks, mask, key)
            per_sample, batch_entropy = self._entropies(z, weights, inv_temperature, axis_name)
            aux = per_sample - self.diversity_gamma * batch_entropy
            if self.experimental_softplus_entropy_loss:
                aux = jax.nn.softplus(aux + self.entropy_loss_offset)
            if self.commitment_loss_weight > 0:
                sq = jnp.square(z - jax.lax.stop_gradient(q))
                if mask is None:
                    commitment = jnp.mean(sq)
                else:
                    m = mask.reshape((*mask.shape, 1, 1)).astype(jnp.float32)
                    commitment = jnp.sum(m * sq) / (jnp.sum(m) * sq.shape[-2] * sq.shape[-1])
        else:
            out, aux = q, zero
        out = out.astype(orig_dtype)
        if self.orthogonal_rot is not None:
            out = sc.matmul(out, self.orthogonal_rot[...].T, self.precision)
        out = project(self.project_out, out.reshape((*out.shape[:-2], -1)))
        counts, ppl = sc.usage(indices, self.codebook_size, axis_name, mask)
        if not self.keep_num_codebooks_dim:
            indices = indices[..., 0]
        loss = aux * self.entropy_loss_weight + commitment * self.commitment_loss_weight
        return LFQOutput(out, indices, loss, per_sample, batch_entropy, commitment, counts, ppl)
