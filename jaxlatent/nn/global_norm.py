"""Global normalisation with cumulative running statistics (SpeechBrain's `GlobalNorm`).

One scalar mean and one scalar standard deviation are accumulated over **every** unpadded
element seen so far (not an exponential moving average) and used to map the input to a
desired mean and standard deviation. The statistics are `nnx.BatchStat` variables named as
SpeechBrain's buffers (`running_mean`, `running_std`, `weight` = the running element count),
plus `step_count`, which SpeechBrain keeps as a Python attribute; keeping it as an array lets
the ``update_steps`` condition be traced, so the module runs under `nnx.jit` without
retracing from one step to the next.

Data parallelism: under `jax.jit` over sharded arrays the module sees the global batch and
XLA inserts the reductions (leave ``axis_name=None``). Under `jax.pmap` / `jax.shard_map`
each device sees its shard; with ``axis_name`` set to the mapped axis (the training core's
`jaxlatent.training.set_axis_name` does it) the element count, the masked sum and the masked
sum of squared deviations from the global mean are `psum`-ed, so every device merges the
statistics of the global batch into identical running statistics, those one device would
keep (up to float32 summation order).

Source: SpeechBrain 1.1.2 `speechbrain.processing.features.GlobalNorm` (with
`mean_std_update`, `gaussian_statistics`, `combine_gaussian_statistics`,
`make_padding_mask`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import check_floating, check_relative_length
from jaxlatent._collectives import psum_if
from jaxlatent.masking import make_padding_mask

Array = jax.Array


def _mean_std_update(
    x: Array,
    mask: Array,
    run_count: Array,
    run_mean: Array,
    run_std: Array,
    axis_name: str | None = None,
) -> tuple[Array, Array, Array]:
    """Combine running (count, mean, std) with the masked statistics of `x` (all axes).

    With `axis_name`, `x` is one device's shard and the count, the sum and the sum of
    squared deviations from the (global) mean are `psum`-ed: the statistics are those of
    the global batch.
    """
    x = x.astype(jnp.float32)
    maskf = mask.astype(jnp.float32)
    number = psum_if(jnp.sum(mask), axis_name).astype(jnp.float32)
    mean = psum_if(jnp.sum(maskf * x), axis_name) / number
    variance = psum_if(jnp.sum(maskf * jnp.square(x - mean)), axis_name) / number  # biased
    count = run_count + number
    left_weight = run_count / count
    right_weight = number / count
    new_mean = left_weight * run_mean + right_weight * mean
    left_var = jnp.square(run_std) + jnp.square(new_mean - run_mean)
    right_var = variance + jnp.square(new_mean - mean)
    new_var = left_weight * left_var + right_weight * right_var
    return count, new_mean, jnp.sqrt(new_var)


class GlobalNorm(nnx.Module):
    """Normalise with one global mean/std accumulated over all unpadded elements.

    ``y = (x - running_mean) / running_std * norm_std + norm_mean``. Before normalising, every
    call (unless `frozen`, `skip_update=True`, or ``step_count >= update_steps``) merges the
    statistics of the unpadded elements of `x` into the running ones, exactly as if they had
    been computed over the concatenation of everything seen so far (biased variance).

    SpeechBrain behaviours kept on purpose:

    * the statistics update on **every** call, in training and evaluation alike;
    * padded positions (rule "ceil with tolerance", `jaxlatent.masking.make_padding_mask`)
      are filled with ``normalize(mask_value)``, not with `mask_value` itself (0 becomes
      ``-running_mean / running_std``);
    * there is no epsilon: a zero running std gives inf/NaN, and a first call whose mask is
      empty gives NaN statistics (SpeechBrain raises ZeroDivisionError there);
    * gradients flow through the statistics computed in the same call (the torch buffers
      keep their autograd history in SpeechBrain too).

    Statistics are computed in float32; the output has the dtype of `x`.

    Args:
      norm_mean: desired mean of the output.
      norm_std: desired standard deviation of the output.
      update_steps: number of calls that update the statistics (None: all of them).
      length_dim: the padded axis that `lengths` refers to (SpeechBrain's default is 2).
      mask_value: default value whose normalisation fills padded positions.
      axis_name: the mapped axis (`jax.pmap` / `jax.shard_map`) the batch is split over, or
        None (one device, or `jax.jit` over sharded arrays). When set, the statistics merged
        into the running ones are those of the global batch: the masked element count, the
        masked sum and then the masked sum of squared deviations from the global mean are
        `psum`-ed over the axis. Not in SpeechBrain (under DDP each process keeps its own
        statistics).

    Attributes:
      running_mean, running_std, weight: scalar float32 `nnx.BatchStat` (torch buffers).
      step_count: scalar int32 `nnx.BatchStat`, the number of calls so far.
      frozen: static Python bool; `freeze()`/`unfreeze()` set it (a change retraces jit).
        SpeechBrain's module state, kept for parity and carried by the converters; models
        choose per call with `skip_update` instead (`NormalizingAutoencoder` passes
        ``skip_update=not train``).
      axis_name: static; see Args.

    Source: SpeechBrain 1.1.2 `speechbrain.processing.features.GlobalNorm`.

    Example:
      >>> norm = GlobalNorm(norm_mean=0.5, norm_std=0.2, update_steps=3, length_dim=1)
      >>> norm(jnp.array([[1.0, 2.0, 3.0]])).tolist()
      [[0.2551, 0.5, 0.7449]]
      >>> y = norm(jnp.array([[5.0, 10.0, -4.0]]))
      >>> y.tolist()
      [[0.6027, 0.8397, 0.1761]]
      >>> norm.denormalize(y).tolist()
      [[5.0, 10.0, -4.0]]
      >>> norm.freeze()
      >>> norm(jnp.array([[100.0, -100.0, -50.0]])).tolist()
      [[5.1054, -4.374, -2.0041]]
      >>> int(norm.step_count[...]), float(norm.weight[...])
      (3, 6.0)
    """

    def __init__(
        self,
        norm_mean: float = 0.0,
        norm_std: float = 1.0,
        update_steps: int | None = None,
        length_dim: int = 2,
        mask_value: float = 0.0,
        axis_name: str | None = None,
    ):
        self.running_mean = nnx.BatchStat(jnp.zeros((), jnp.float32))
        self.running_std = nnx.BatchStat(jnp.zeros((), jnp.float32))
        self.weight = nnx.BatchStat(jnp.zeros((), jnp.float32))
        self.step_count = nnx.BatchStat(jnp.zeros((), jnp.int32))
        self.norm_mean = norm_mean
        self.norm_std = norm_std
        self.update_steps = update_steps
        self.length_dim = length_dim
        self.mask_value = mask_value
        self.frozen = False
        self.axis_name = axis_name

    def __call__(
        self,
        x: Array,
        lengths: Array | None = None,
        mask_value: float | Array | None = None,
        skip_update: bool = False,
    ) -> Array:
        """Update the statistics (if due) and normalise `x`.

        Args:
          x: floating array ``[batch, ...]`` with the padded axis at `length_dim`.
          lengths: relative lengths ``[batch]`` in [0, 1] (None: nothing is padded).
          mask_value: value whose normalisation fills padded positions (None: the
            constructor's `mask_value`).
          skip_update: do not update the statistics in this call (static bool).

        Returns:
          The normalised array, shape and dtype of `x`.

        Raises:
          ValueError: if `x` is not floating, `length_dim` is not an axis of `x` other than
            0, or `lengths` is not ``[batch]`` or (when concrete) outside [0, 1].
          NameError: if `axis_name` is set and the statistics are updated outside a
            `jax.pmap` / `jax.shard_map` that binds it (JAX's unbound-axis error).
        """
        x = jnp.asarray(x)
        check_floating("x", x)
        if not 0 < self.length_dim < x.ndim:
            raise ValueError(
                f"GlobalNorm length_dim={self.length_dim} is not a non-batch axis of x with "
                f"shape {tuple(x.shape)}"
            )
        if lengths is None:
            lengths = jnp.ones((x.shape[0],), jnp.float32)
        check_relative_length(lengths, x.shape[0], name="lengths")
        if mask_value is None:
            mask_value = self.mask_value
        mask = jnp.broadcast_to(make_padding_mask(x, lengths, length_dim=self.length_dim), x.shape)

        if not skip_update and not self.frozen:
            old = (self.weight[...], self.running_mean[...], self.running_std[...])
            new = _mean_std_update(x, mask, *old, axis_name=self.axis_name)
            if self.update_steps is not None:
                due = self.step_count[...] < self.update_steps
                new = tuple(jnp.where(due, n, o) for n, o in zip(new, old, strict=True))
            self.weight[...], self.running_mean[...], self.running_std[...] = new

        y = self.normalize(x)
        fill = self.normalize(jnp.asarray(mask_value, jnp.float32)).astype(y.dtype)
        y = jnp.where(mask, y, fill)
        self.step_count[...] = self.step_count[...] + 1
        return y

    def normalize(self, x: Array) -> Array:
        """``(x - running_mean) / running_std * norm_std + norm_mean`` (no update, no epsilon)."""
        x = jnp.asarray(x)
        mean = self.running_mean[...].astype(x.dtype)
        std = self.running_std[...].astype(x.dtype)
        return (x - mean) / std * self.norm_std + self.norm_mean

    def denormalize(self, x: Array) -> Array:
        """Invert :meth:`normalize`: ``(x - norm_mean) / norm_std * running_std + running_mean``."""
        x = jnp.asarray(x)
        x = (x - self.norm_mean) / self.norm_std
        return x * self.running_std[...].astype(x.dtype) + self.running_mean[...].astype(x.dtype)

    def freeze(self) -> None:
        """Stop updating the running statistics."""
        self.frozen = True

    def unfreeze(self) -> None:
        """Resume updating the running statistics."""
        self.frozen = False
