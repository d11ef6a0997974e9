"""The class partition of SpeechBrain PIQ's codebook (host-side tables, torch's float32 rounding).

Code ``j < K - N_shared`` of a PIQ codebook belongs to class
``round_half_even(torch.linspace(-0.5, num_classes - 0.51, K - N_shared)[j])`` (float32); the
last `N_shared` codes are shared. The table is computed once per configuration on the host with
torch's exact float32 linspace arithmetic (see :func:`torch_linspace_f32`), and
:func:`get_irrelevant_regions` expands it for a batch of labels (jit-compatible in the labels).

Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.get_irrelevant_regions` (Paissan,
Subakan & Ravanelli 2023, arXiv:2303.12659).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxlatent._checks import is_concrete, shape_str

Array = jax.Array


# --------------------------------------------------------------------------------------------
# The class partition
# --------------------------------------------------------------------------------------------


def torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch's CPU float32 ``torch.linspace(start, end, steps)``, bit for bit (numpy).

    Args:
      start: first value (rounded to float32).
      end: last value (rounded to float32).
      steps: number of values (``>= 0``; below ``2**24``).

    Returns:
      float32 numpy array ``[steps]``.

    Example:
      >>> torch_linspace_f32(-0.5, 1.0, 4)
      array([-0.5,  0. ,  0.5,  1. ], dtype=float32)
    """
    if steps < 0 or steps >= 2**24:
        raise ValueError(f"steps must lie in [0, 2**24), got {steps}")
    start32, end32 = np.float32(start), np.float32(end)
    if steps <= 1:
        return np.full((steps,), start32, np.float32)
    step = np.float32((end32 - start32) / np.float32(steps - 1))
    i = np.arange(steps, dtype=np.float64)
    # The float64 expressions are exact (a 24-bit step times an integer below 2**24, plus a
    # float32), so one cast to float32 rounds once, like a fused multiply-add.
    lower = (np.float64(start32) + np.float64(step) * i).astype(np.float32)
    upper = (np.float64(end32) - np.float64(step) * (steps - 1 - i)).astype(np.float32)
    return np.where(i < steps // 2, lower, upper)


def check_partition(K: int, num_classes: int, N_shared: int) -> None:
    """Raise ValueError unless the partition sizes are valid ints with N_shared <= K."""
    for name, value in (("K", K), ("num_classes", num_classes), ("N_shared", N_shared)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if K < 1 or num_classes < 1 or N_shared < 0:
        raise ValueError(
            f"need K >= 1, num_classes >= 1 and N_shared >= 0, got K={K}, "
            f"num_classes={num_classes}, N_shared={N_shared}"
        )
    if N_shared > K:
        raise ValueError(f"N_shared={N_shared} shared keys do not fit in a codebook of K={K}")


@functools.lru_cache(maxsize=256)
def class_of_code(K: int, num_classes: int, N_shared: int = 5) -> np.ndarray:
    """The class owning each non-shared code: int32 ``[K - N_shared]`` (cached, read-only).

    ``round_half_even(torch.linspace(-0.5, num_classes - 0.51, K - N_shared))`` in float32
    (see :func:`torch_linspace_f32`). The shared codes ``K - N_shared .. K - 1`` have no class.

    Raises:
      ValueError: if the sizes are not ints, ``K < 1``, ``num_classes < 1``, ``N_shared < 0``
        or ``N_shared > K``.

    Example:
      >>> class_of_code(20, 3, 5)
      array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2], dtype=int32)
    """
    check_partition(K, num_classes, N_shared)
    table = np.round(torch_linspace_f32(-0.5, num_classes - 0.51, K - N_shared)).astype(np.int32)
    table.setflags(write=False)
    return table


def check_labels(labels, num_classes: int, batch: int | None = None) -> Array:
    """`labels` as an array; ValueError unless 1-D numeric (and, when concrete, whole numbers
    in ``[0, num_classes)``) with `batch` entries."""
    labels = jnp.asarray(labels)
    dtype = labels.dtype
    if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise ValueError(f"labels must be an integer or floating array, got dtype {dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D [batch], got shape {shape_str(labels)}")
    if batch is not None and labels.shape[0] != batch:
        raise ValueError(
            f"labels has shape {shape_str(labels)} but the inputs have {batch} batch items"
        )
    if is_concrete(labels) and labels.size:
        values = np.asarray(labels, np.float64)
        bad = (values != np.round(values)) | (values < 0) | (values >= num_classes)
        if bad.any():
            raise ValueError(
                f"labels must be whole numbers in [0, {num_classes}) (num_classes="
                f"{num_classes}), got {np.unique(values[bad]).tolist()}"
            )
    return labels


def get_irrelevant_regions(labels, K: int, num_classes: int, N_shared: int = 5, stage="TRAIN"):
    """Which codes each label may not use: bool ``[N, K]`` (True = irrelevant, forbidden).

    Code ``j < K - N_shared`` is irrelevant unless it belongs to the label's class
    (:func:`class_of_code`); the last `N_shared` codes are irrelevant for every label when
    ``stage == "TRAIN"`` and relevant for every label otherwise.

    Args:
      labels: integer or floating ``[N]`` class labels (compared to the class ids as torch
        does: in float32 for floating labels).
      K: codebook size.
      num_classes: number of classes.
      N_shared: number of shared codes at the end of the codebook.
      stage: ``"TRAIN"`` or anything else (evaluation).

    Returns:
      bool array ``[N, K]``.

    Raises:
      ValueError: for invalid sizes (see :func:`class_of_code`), labels that are not 1-D or
        not numeric, or (when concrete) labels that are not whole numbers in
        ``[0, num_classes)``.

    Source: SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ.get_irrelevant_regions`.

    Example:
      >>> irr = get_irrelevant_regions(jnp.array([1.0, 0.0, 2.0]), 20, 3, 5)
      >>> irr.shape
      (3, 20)
      >>> irr[0].astype(int)
      Array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=int32)
    """
    classes = class_of_code(K, num_classes, N_shared)
    labels = check_labels(labels, num_classes)
    if jnp.issubdtype(labels.dtype, jnp.floating):
        own = jnp.asarray(classes, jnp.float32)[None, :] == labels.astype(jnp.float32)[:, None]
    else:
        own = jnp.asarray(classes)[None, :] == labels.astype(jnp.int32)[:, None]
    shared = jnp.full((labels.shape[0], N_shared), stage == "TRAIN", jnp.bool_)
    return jnp.concatenate([~own, shared], axis=1)
