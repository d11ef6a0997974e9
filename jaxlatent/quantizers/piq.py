"""SpeechBrain PIQ's class-partitioned vector quantization, channels-last.

Port of the quantizer of SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ` (Posthoc
Interpretation via Quantization: Paissan, Subakan & Ravanelli 2023, arXiv:2303.12659; VQ-VAE:
van den Oord et al. 2017, arXiv:1711.00937). The codebook of `K` codes is split into
`num_classes` contiguous blocks plus `shared_keys` codes at the end; a vector is quantized to
its nearest code among those of its item's class. The search is jaxlatent's exact chunked
:func:`~jaxlatent.quantizers.nearest_code` (``form="addmm"``, SpeechBrain's float32
association ``(‖c‖² + ‖x‖²) - 2 x·c``) with the irrelevant codes passed as its `forbidden`
table; gradients use the shared :func:`~jaxlatent.quantizers.straight_through`.

The partition itself is in :mod:`jaxlatent.quantizers.piq_partition` (re-exported here).

Behaviour kept from SpeechBrain (quirks included):

* **Partition rounding.** Code ``j < K - shared_keys`` belongs to class
  ``round_half_even(linspace(-0.5, num_classes - 0.51, K - shared_keys)[j])`` where the
  linspace is torch's float32 one: ``step = (end - start) / (steps - 1)`` in float32 and element
  ``i`` is ``fma(step, i, start)`` for ``i < steps // 2``, ``fma(-step, steps - 1 - i, end)``
  otherwise (one float32 rounding). This matches torch 2.13's CPU ``torch.linspace``
  bit for bit (checked on 70 800 configurations, ``num_classes ≤ 100``, ``K ≤ 4096``); the
  rounded table is what matters and ``np.linspace`` gets it wrong for e.g.
  ``num_classes=46, K=512``. Block sizes differ by at most one.
* **Shared keys are forbidden in training.** With ``stage="TRAIN"`` (``training=True``) the last
  `shared_keys` codes are *irrelevant* to every class; in any other stage they are allowed for
  every class.
* A vector whose codes are all irrelevant (e.g. ``K - shared_keys`` codes, training, and no code
  of its class) gets index 0 (`torch.min` of an all-``inf`` row).
* ``VQEmbedding.__call__`` (SpeechBrain's ``forward``) ignores the module's settings and uses
  the defaults of ``VectorQuantization``: ``num_classes=10, activate_class_partitioning=True,
  shared_keys=10, training=True``. They are this method's keyword defaults here.
* **Gradient routing.** ``vector_quantization_straight_through`` passes the output cotangent
  unchanged to the inputs *and* scatter-adds it into the selected codebook rows (the gradient of
  a gather). ``VQEmbedding.straight_through`` calls it with a **detached** codebook, so its
  first output trains only the encoder, and re-gathers the codes from the live codebook for its
  second output, which trains only the codebook.

Differences: indices are int32 (torch: int64); `labels` may be omitted when class partitioning
is off (SpeechBrain crashes); concrete labels that are not whole numbers in
``[0, num_classes)`` raise ``ValueError`` (SpeechBrain silently forbids every non-shared code;
under `jax.jit` labels cannot be checked and that behaviour is reproduced); inputs may have any
number of spatial axes ``[batch, ..., dim]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.quantizers.piq_partition import (
    check_labels,
    check_partition,
    class_of_code,
    get_irrelevant_regions,
    torch_linspace_f32,
)
from jaxlatent.quantizers.rotation import rotation_trick as rotate_to_codes
from jaxlatent.quantizers.search import lookup_codes, nearest_code
from jaxlatent.quantizers.straight_through import straight_through

__all__ = [
    "VQEmbedding",
    "VQEmbeddingOutput",
    "VQStraightThroughOutput",
    "VectorQuantization",
    "VectorQuantizationStraightThrough",
    "class_of_code",
    "get_irrelevant_regions",
    "torch_linspace_f32",
    "vector_quantization",
    "vector_quantization_straight_through",
]

Array = jax.Array


# --------------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------------


class VQStraightThroughOutput(NamedTuple):
    """Output of :func:`vector_quantization_straight_through` (SpeechBrain's 2-tuple)."""

    #: ``[batch, ..., dim]``: the chosen code vectors (straight-through gradients).
    codes: Array
    #: int32 ``[batch · ...]``: the flat code indices.
    indices: Array


def _check_vq_inputs(inputs, codebook) -> None:
    check_floating("inputs", inputs)
    check_floating("codebook", codebook)
    if jnp.ndim(codebook) != 2:
        raise ValueError(f"codebook must be 2-D [K, dim], got shape {shape_str(codebook)}")
    if jnp.ndim(inputs) < 2 or jnp.shape(inputs)[-1] != jnp.shape(codebook)[1]:
        raise ValueError(
            f"inputs must be [batch, ..., dim] with the codebook's dim: inputs has shape "
            f"{shape_str(inputs)}, codebook has shape {shape_str(codebook)} ([K, dim])"
        )


def vector_quantization(
    inputs,
    codebook,
    labels=None,
    num_classes: int = 10,
    activate_class_partitioning: bool = True,
    shared_keys: int = 10,
    training: bool = True,
) -> Array:
    """Class-partitioned nearest-code indices (no gradient).

    Args:
      inputs: floating ``[batch, W, H, dim]`` (any number of axes between batch and dim).
      codebook: floating ``[K, dim]``.
      labels: ``[batch]`` class of each item (integer or floating); may be None only when
        `activate_class_partitioning` is False.
      num_classes: number of classes of the partition.
      activate_class_partitioning: restrict each item to its class's codes (and, outside
        training, the shared codes).
      shared_keys: number of shared codes at the end of the codebook.
      training: stage ``"TRAIN"`` (shared codes forbidden) or not (shared codes allowed).

    Returns:
      int32 ``[batch, W, H]``: exact argmin of the squared distance over the allowed codes
      (lowest index on ties; 0 when no code is allowed).

    Raises:
      ValueError: non-floating inputs/codebook, feature dimension mismatch, bad labels (shape,
        dtype, values outside ``[0, num_classes)`` when concrete) or partition sizes.

    Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.VectorQuantization`.

    Example:
      >>> indices = vector_quantization(
      ...     jnp.ones((3, 14, 25, 256)), jnp.zeros((1024, 256)), jnp.array([1.0, 0.0, 2.0])
      ... )
      >>> indices.shape, indices.dtype
      ((3, 14, 25), dtype('int32'))
    """
    _check_vq_inputs(inputs, codebook)
    inputs, codebook = jnp.asarray(inputs), jnp.asarray(codebook)
    batch, k = inputs.shape[0], codebook.shape[0]
    if not activate_class_partitioning:
        check_partition(k, num_classes, shared_keys)
        if labels is not None:
            check_labels(labels, num_classes, batch)
        return nearest_code(inputs, codebook, form="addmm")
    if labels is None:
        raise ValueError("labels [batch] are required when activate_class_partitioning=True")
    labels = check_labels(labels, num_classes, batch)
    table = get_irrelevant_regions(
        labels, k, num_classes, N_shared=shared_keys, stage="TRAIN" if training else "VALID"
    )
    item = jnp.arange(batch, dtype=jnp.int32).reshape((batch,) + (1,) * (inputs.ndim - 2))
    rows = jnp.broadcast_to(item, inputs.shape[:-1])
    return nearest_code(inputs, codebook, form="addmm", forbidden=table, forbidden_rows=rows)


def vector_quantization_straight_through(
    inputs,
    codebook,
    labels=None,
    num_classes: int = 10,
    activate_class_partitioning: bool = True,
    shared_keys: int = 10,
    training: bool = True,
) -> VQStraightThroughOutput:
    """Class-partitioned quantization with straight-through gradients.

    The forward value of `codes` is exactly ``codebook[indices]``. In the backward pass the
    cotangent of `codes` goes unchanged to `inputs` and is scatter-added into the selected
    rows of `codebook` (pass ``jax.lax.stop_gradient(codebook)`` to train the encoder only, as
    `VQEmbedding.straight_through` does).

    Args:
      inputs, codebook, labels, num_classes, activate_class_partitioning, shared_keys,
        training: as in :func:`vector_quantization`.

    Returns:
      :class:`VQStraightThroughOutput` ``(codes [batch, W, H, dim], indices [batch·W·H])``.

    Raises:
      ValueError: as :func:`vector_quantization`.

    Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.VectorQuantizationStraightThrough`.

    Example:
      >>> codes, indices = vector_quantization_straight_through(
      ...     jnp.ones((3, 14, 25, 256)), jnp.zeros((1024, 256)), jnp.array([1.0, 0.0, 2.0])
      ... )
      >>> codes.shape, indices.shape
      ((3, 14, 25, 256), (1050,))
    """
    indices = vector_quantization(
        inputs,
        codebook,
        labels,
        num_classes,
        activate_class_partitioning,
        shared_keys,
        training,
    )
    q = lookup_codes(codebook, indices)
    # straight_through: value q, identity cotangent to `inputs`. The subtracted term is an exact
    # zero (q finite) that keeps q's value and sign bit and gives q an identity cotangent too,
    # which lookup_codes' gather turns into torch's index_add_ into the codebook.
    codes = straight_through(jnp.asarray(inputs), q) - (jax.lax.stop_gradient(q) - q)
    return VQStraightThroughOutput(codes, indices.reshape(-1))


class VectorQuantization:
    """SpeechBrain's name: ``VectorQuantization.apply(...)`` is :func:`vector_quantization`."""

    apply = staticmethod(vector_quantization)


class VectorQuantizationStraightThrough:
    """``VectorQuantizationStraightThrough.apply(...)`` is
    :func:`vector_quantization_straight_through`."""

    apply = staticmethod(vector_quantization_straight_through)


# --------------------------------------------------------------------------------------------
# The codebook module
# --------------------------------------------------------------------------------------------


class VQEmbeddingOutput(NamedTuple):
    """Output of :meth:`VQEmbedding.straight_through` (equal values, different gradients)."""

    #: ``[batch, H, W, dim]``: codes whose gradient goes to the input only.
    z_q_x: Array
    #: ``[batch, H, W, dim]``: the same codes, whose gradient goes to the codebook only.
    z_q_x_bar: Array


class VQEmbedding(nnx.Module):
    """PIQ's class-partitioned VQ dictionary, channels-last.

    Args:
      K: number of codes.
      D: code dimension.
      numclasses: number of classes (used by :meth:`straight_through`).
      activate_class_partitioning: restrict each item to its class's codes.
      shared_keys: number of shared codes at the end of the codebook.
      rotation_trick: give :meth:`straight_through`'s `z_q_x` the rotation-trick gradient
        (:func:`~jaxlatent.quantizers.rotation_trick`, Fifty et al. 2024) instead of
        SpeechBrain's straight-through (the default, as in the reference).
      rngs: `nnx.Rngs` with a ``params`` stream; the codebook is drawn from
        ``U(-1/K, 1/K)`` as in SpeechBrain.

    Attributes:
      embedding: `nnx.Param` ``[K, D]`` (torch ``embedding.weight``).

    The stage is the explicit ``train`` keyword of both methods (default False: evaluation,
    where the shared codes are allowed), not a module mode: NNX's ``.train()``/``.eval()``
    change nothing. SpeechBrain's module starts in training mode, and its ``forward`` always
    quantizes as in training, so its calls pair with ``train=True`` here.

    Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.VQEmbedding`.

    Example:
      SpeechBrain's doctest shapes (traced with `jax.eval_shape`, nothing computed):

      >>> def run(z_e_x, labels):
      ...     vq = VQEmbedding(1024, 256, rngs=nnx.Rngs(0))
      ...     return vq(z_e_x, labels), vq.straight_through(z_e_x, labels)
      >>> indices, (z_q_x, z_q_x_bar) = jax.eval_shape(
      ...     run, jnp.ones((3, 14, 25, 256)), jnp.array([1.0, 0.0, 2.0])
      ... )
      >>> indices.shape, z_q_x.shape, z_q_x_bar.shape
      ((3, 14, 25), (3, 14, 25, 256), (3, 14, 25, 256))
    """

    def __init__(
        self,
        K: int,
        D: int,
        numclasses: int = 50,
        activate_class_partitioning: bool = True,
        shared_keys: int = 0,
        *,
        rotation_trick: bool = False,
        rngs: nnx.Rngs,
    ):
        check_partition(K, numclasses, shared_keys)
        self.rotation_trick = bool(rotation_trick)
        self.K, self.D = K, D
        self.numclasses = numclasses
        self.activate_class_partitioning = activate_class_partitioning
        self.shared_keys = shared_keys
        self.embedding = nnx.Param(
            jax.random.uniform(rngs.params(), (K, D), jnp.float32, -1.0 / K, 1.0 / K)
        )

    def _check_input(self, z_e_x) -> None:
        check_floating("z_e_x", z_e_x)
        if jnp.ndim(z_e_x) != 4 or jnp.shape(z_e_x)[-1] != self.D:
            raise ValueError(
                f"z_e_x must be [batch, H, W, {self.D}] (channels-last, D={self.D}), got shape "
                f"{shape_str(z_e_x)}"
            )

    def __call__(
        self,
        z_e_x,
        labels=None,
        *,
        num_classes: int = 10,
        activate_class_partitioning: bool = True,
        shared_keys: int = 10,
        train: bool = False,
    ) -> Array:
        """Code indices of `z_e_x` (SpeechBrain's ``forward``; no gradient).

        The class keywords' defaults are SpeechBrain's: its ``forward`` ignores the module's
        `numclasses`, `activate_class_partitioning`, `shared_keys` and training mode and uses
        ``VectorQuantization``'s defaults (10 classes, partitioning on, 10 shared keys,
        training). Pass ``num_classes=self.numclasses`` etc. for the module's own settings,
        and ``train=True`` for SpeechBrain's stage (the default here is evaluation, jaxlatent's
        convention).

        Args:
          z_e_x: floating ``[batch, H, W, D]``.
          labels: ``[batch]`` class labels.
          num_classes, activate_class_partitioning, shared_keys: as :func:`vector_quantization`.
          train: stage ``"TRAIN"`` (True: shared codes forbidden) or evaluation (False).

        Returns:
          int32 ``[batch, H, W]``.

        Raises:
          ValueError: as :func:`vector_quantization`, or if `z_e_x` is not ``[batch, H, W, D]``.
        """
        self._check_input(z_e_x)
        return vector_quantization(
            z_e_x,
            self.embedding[...],
            labels,
            num_classes,
            activate_class_partitioning,
            shared_keys,
            train,
        )

    def straight_through(self, z_e_x, labels=None, *, train: bool = False):
        """Quantize with the module's settings; returns :class:`VQEmbeddingOutput`.

        `z_q_x` is the straight-through output computed with a detached codebook (gradient to
        `z_e_x` only; the rotation-trick gradient with ``rotation_trick=True``); `z_q_x_bar`
        re-gathers the same codes from the live codebook (gradient
        to the codebook only). Both have the values ``embedding[indices]``.

        Args:
          z_e_x: floating ``[batch, H, W, D]``.
          labels: ``[batch]`` class labels.
          train: stage ``"TRAIN"`` (True) or evaluation (False), SpeechBrain's
            ``self.training``.

        Raises:
          ValueError: as :func:`vector_quantization`, or if `z_e_x` is not ``[batch, H, W, D]``.
        """
        self._check_input(z_e_x)
        weight = self.embedding[...]
        z_q_x, indices = vector_quantization_straight_through(
            z_e_x,
            jax.lax.stop_gradient(weight),
            labels,
            self.numclasses,
            self.activate_class_partitioning,
            self.shared_keys,
            train,
        )
        z_q_x_bar = lookup_codes(weight, indices).reshape(z_q_x.shape)
        if self.rotation_trick:
            z_q_x = rotate_to_codes(jnp.asarray(z_e_x), jax.lax.stop_gradient(z_q_x_bar))
        return VQEmbeddingOutput(z_q_x, z_q_x_bar)
