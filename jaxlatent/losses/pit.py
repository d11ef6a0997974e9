"""Permutation invariant training (PIT): SpeechBrain's `PitWrapper` in JAX.

All ``S!`` permutations of the sources are enumerated once as a static int array and every
batch item's cost of every permutation is computed at once; the optimum is the first
minimum in lexicographic order, which is SpeechBrain's tie-break (it scans
``itertools.permutations`` and replaces the incumbent only on a strictly smaller cost).
Memory is ``O(batch · S! · S)``: fine up to 8 or 9 sources.

Source: Yu et al., "Permutation invariant training of deep models for speaker-independent
multi-talker speech separation", ICASSP 2017; SpeechBrain 1.1.2
`speechbrain.nnet.losses.PitWrapper`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlatent._checks import check_floating, shape_str
from jaxlatent.losses._ieee import no_contract, torch_cpu_sum, true_divide

Array = jax.Array


class PitOutput(NamedTuple):
    """Result of :class:`PitWrapper`.

    Attributes:
      loss: float ``[batch]``, the mean base loss over sources under the optimal permutation.
      perms: int32 ``[batch, sources]``; target source ``i`` is matched with prediction
        source ``perms[b, i]``. SpeechBrain returns the same permutations as a list of tuples.
    """

    loss: Array
    perms: Array


@functools.lru_cache(maxsize=16)
def permutations(n_sources: int) -> np.ndarray:
    """All permutations of ``range(n_sources)`` in lexicographic order, int32 ``[S!, S]``.

    Example:
      >>> permutations(3).tolist()
      [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]]
    """
    perms = np.array(list(itertools.permutations(range(n_sources))), dtype=np.int32)
    perms.setflags(write=False)
    return perms


def _item_loss_matrix(base_loss: Callable, pred: Array, target: Array) -> Array:
    """``loss_mat[i, j] = base_loss(pred_j, target_i)`` averaged over the leading axes."""
    n_sources = pred.shape[-1]
    shape = (*pred.shape, n_sources)
    pred_rep = jnp.broadcast_to(pred[..., None, :], shape)  # [..., i, j] = pred[..., j]
    target_rep = jnp.broadcast_to(target[..., :, None], shape)  # [..., i, j] = target[..., i]
    loss_mat = jnp.asarray(base_loss(pred_rep, target_rep))
    if loss_mat.ndim < 2 or loss_mat.shape[-2:] != (n_sources, n_sources):
        raise ValueError(
            "base_loss must not reduce its inputs: called on two arrays of shape "
            f"{shape} (per batch item) it returned shape {shape_str(loss_mat)}, whose last "
            f"two axes should be ({n_sources}, {n_sources})"
        )
    loss_mat = no_contract(loss_mat)  # PyTorch rounds products before summing them
    axes = tuple(range(loss_mat.ndim - 2))
    count = int(np.prod([loss_mat.shape[a] for a in axes]))
    return true_divide(jnp.sum(loss_mat, axis=axes), jnp.asarray(count, loss_mat.dtype))


def _pit(base_loss: Callable, preds: Array, targets: Array) -> PitOutput:
    n_sources = preds.shape[-1]
    loss_mat = jax.vmap(functools.partial(_item_loss_matrix, base_loss))(preds, targets)
    loss_mat = no_contract(loss_mat)
    perms = jnp.asarray(permutations(n_sources))  # [K, S]
    # cost[b, k] = mean_i loss_mat[b, i, perms[k, i]], summed in torch's order so that
    # round-off ties are broken as SpeechBrain breaks them.
    terms = [loss_mat[:, i, perms[:, i]] for i in range(n_sources)]  # S × [B, K]
    costs = true_divide(torch_cpu_sum(terms), jnp.asarray(n_sources, loss_mat.dtype))
    # SpeechBrain keeps permutation k only if `best > cost_k`: NaN costs never win, except a
    # NaN first permutation, which is never replaced.
    nan = jnp.isnan(costs)
    best = jnp.argmin(jnp.where(nan, jnp.inf, costs), axis=-1)
    best = jnp.where(nan[:, 0], 0, best)
    loss = jnp.take_along_axis(costs, best[:, None], axis=-1)[:, 0]
    return PitOutput(loss, perms[best])


_pit_jit = jax.jit(_pit, static_argnums=0)


@dataclasses.dataclass(frozen=True)
class PitWrapper:
    """Permutation invariant wrapper of an unreduced loss (sources on the last axis).

    For each batch item, ``base_loss`` is called (as in SpeechBrain, without the batch axis)
    on ``pred_rep[..., i, j] = pred[..., j]`` and ``target_rep[..., i, j] = target[..., i]``;
    its output is averaged over every axis but the last two, giving
    ``loss_mat[i, j] = loss(prediction j, target i)``. The result is the permutation ``p``
    minimising ``mean_i loss_mat[i, p[i]]``; ties go to the lexicographically first one.

    If ``targets = preds[..., p]`` the returned permutation is ``p``; if
    ``preds = targets[..., p]`` it is ``argsort(p)``.

    Args:
      base_loss: JAX callable ``(predictions, targets) -> unreduced loss`` whose output
        ends with the two source axes (``[..., S, S]``), e.g. ``lambda p, t: (p - t) ** 2``
        or :func:`~jaxlatent.losses.separation.cal_si_snr`. It is traced once per input
        shape (a static argument of an inner `jax.jit` when it is hashable).

    Call args:
      preds: float ``[batch, ..., sources]``.
      targets: ``[batch, ..., sources]``, same shape.

    Returns:
      :class:`PitOutput` ``(loss [batch], perms int32 [batch, sources])``.

    Raises:
      ValueError: if the shapes differ or have fewer than 2 axes, `preds` is not floating
        point, or `base_loss` reduces the source axes.

    Same as SpeechBrain: ties go to the first permutation; a NaN cost never wins, except
    the first permutation's, which is then kept (SpeechBrain's strict ``>`` comparison).
    Each permutation's cost is summed in PyTorch's CPU order and divided like PyTorch, so
    equal loss matrices give bit-identical costs and the same permutation, even when two
    costs differ only by round-off (e.g. with duplicated sources).

    Differences from SpeechBrain: `perms` is an int array instead of a list of tuples. The
    loss matrices themselves are computed by XLA, whose reductions (over time, say) and
    `log10` can differ from PyTorch's in the last bit: two permutations whose costs are
    equal up to float32 round-off, but not exactly, may then be ranked the other way.
    Exact ties and real differences are never affected.

    Source: SpeechBrain 1.1.2 `speechbrain.nnet.losses.PitWrapper`.

    Example:
      >>> pit_mse = PitWrapper(lambda p, t: (p - t) ** 2)
      >>> targets = jax.random.uniform(jax.random.key(0), (2, 32, 4))
      >>> predictions = targets[..., jnp.array([3, 0, 2, 1])]
      >>> loss, opt_p = pit_mse(predictions, targets)
      >>> loss
      Array([0., 0.], dtype=float32)
      >>> opt_p
      Array([[1, 3, 2, 0],
             [1, 3, 2, 0]], dtype=int32)
      >>> bool((pit_mse.reorder_tensor(predictions, opt_p) == targets).all())
      True
    """

    base_loss: Callable[[Array, Array], Array]

    def __call__(self, preds, targets) -> PitOutput:
        preds = jnp.asarray(preds)
        targets = jnp.asarray(targets)
        if preds.shape != targets.shape:
            raise ValueError(
                "preds and targets must have the same shape [batch, ..., sources], got "
                f"preds {shape_str(preds)} and targets {shape_str(targets)}"
            )
        if preds.ndim < 2 or preds.shape[-1] < 1:
            raise ValueError(f"preds must have shape [batch, ..., sources], got {shape_str(preds)}")
        check_floating("preds", preds)
        try:
            hash(self.base_loss)
        except TypeError:  # not usable as a static argument: compile a closure instead
            return jax.jit(functools.partial(_pit, self.base_loss))(preds, targets)
        return _pit_jit(self.base_loss, preds, targets)

    def loss_matrix(self, preds, targets) -> Array:
        """The per-item loss matrices ``[batch, S, S]``, ``[b, i, j] = loss(pred j, target i)``."""
        preds = jnp.asarray(preds)
        return jax.vmap(functools.partial(_item_loss_matrix, self.base_loss))(
            preds, jnp.asarray(targets)
        )

    @staticmethod
    def reorder_tensor(tensor, p) -> Array:
        """Apply the optimal permutations: ``out[b] = tensor[b][..., p[b]]``.

        Args:
          tensor: ``[batch, ..., sources]``.
          p: int ``[batch, sources]`` (e.g. :attr:`PitOutput.perms`) or a list of tuples.

        Returns:
          Array of the shape and dtype of `tensor`.

        Raises:
          ValueError: if `p` is not an integer array of shape ``[batch, sources]``.
        """
        tensor = jnp.asarray(tensor)
        p = jnp.asarray(p)
        if tensor.ndim < 2 or p.shape != (tensor.shape[0], tensor.shape[-1]):
            raise ValueError(
                "p must have shape [batch, sources] matching tensor [batch, ..., sources], "
                f"got p {shape_str(p)} and tensor {shape_str(tensor)}"
            )
        if not jnp.issubdtype(p.dtype, jnp.integer):
            raise ValueError(f"p must hold integer source indices, got dtype {p.dtype}")
        index = p.reshape((p.shape[0],) + (1,) * (tensor.ndim - 2) + (p.shape[1],))
        return jnp.take_along_axis(tensor, jnp.broadcast_to(index, tensor.shape), axis=-1)
