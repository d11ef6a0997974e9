"""Batch normalisation with PyTorch's exact semantics, channels-last.

Differences from `flax.nnx.BatchNorm` that matter for parity with torch checkpoints and
torch training runs:

* the running variance is updated with the **unbiased** batch variance (``n/(n-1)``) while
  the batch itself is normalised with the biased one, as `torch.nn.BatchNorm*d` does;
* `momentum` is torch's (weight of the new batch, default 0.1), and ``momentum=None`` gives
  torch's cumulative average using `num_batches_tracked`;
* `num_batches_tracked` is kept, so a torch state_dict converts key for key.

Statistics are computed in float32 whatever the input dtype. With `axis_name` (inside
`jax.pmap` / `jax.shard_map` over that named axis) the batch mean and variance are those of
the global batch across devices, i.e. what one device computes on the concatenated batch
(torch's SyncBatchNorm); under `jax.jit` with a batch-sharded input no axis name is needed.
Train/eval: the call's ``use_running_average`` keyword, which jaxlatent's models always pass
(``use_running_average=not train``: the explicit ``train`` convention); without it the layer
falls back to its NNX ``use_running_average`` attribute (what ``.eval()``/``.train()`` set),
for use as a standalone NNX layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


def _bcast(v: Array, ndim: int) -> Array:
    return v.reshape((1,) * (ndim - 1) + (-1,))


class BatchNorm(nnx.Module):
    """`torch.nn.BatchNorm1d/2d` over the last (channel) axis of ``[batch, ..., channels]``.

    Args:
      num_features: number of channels ``C``.
      eps: added to the variance (torch default 1e-5).
      momentum: torch momentum (weight of the new batch statistics), or None for a
        cumulative average.
      affine: learn `scale` and `bias` (torch `weight`/`bias`).
      track_running_stats: keep `mean`, `var` and `num_batches_tracked`.
      use_running_average: normalise with the running statistics (eval mode).
      axis_name: named mapped axis (pmap/shard_map) over which batch statistics are
        averaged, or None for per-device statistics. Must be bound when the layer runs in
        training mode; `jaxlatent.training` sets it for data-parallel steps.

    Example:
      >>> bn = BatchNorm(3)
      >>> y = bn(jnp.arange(12.0).reshape(2, 2, 3))
      >>> y.shape, bn.num_batches_tracked[...]
      ((2, 2, 3), Array(1, dtype=int32))
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        use_running_average: bool = False,
        axis_name: str | None = None,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        del rngs  # deterministic initialisation, accepted for a uniform constructor signature
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.use_running_average = use_running_average
        self.axis_name = axis_name
        self.scale = nnx.Param(jnp.ones((num_features,), param_dtype)) if affine else None
        self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype)) if affine else None
        if track_running_stats:
            self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
            self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
            self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))
        else:
            self.mean = self.var = self.num_batches_tracked = None

    def __call__(self, x: Array, *, use_running_average: bool | None = None) -> Array:
        """Normalise `x` ``[batch, ..., C]``; returns the same shape and dtype.

        Raises:
          ValueError: if the last axis of `x` is not `num_features`.
        """
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"BatchNorm expects {self.num_features} channels on the last axis, "
                f"got shape {tuple(x.shape)}"
            )
        if use_running_average is None:
            use_running_average = self.use_running_average
        x32 = x.astype(jnp.float32)
        if use_running_average and self.mean is not None:
            mean, var = self.mean[...], self.var[...]
        else:
            axes = tuple(range(x.ndim - 1))
            mean = self._mean(jnp.mean(x32, axis=axes))
            var = self._mean(jnp.mean(jnp.square(x32 - _bcast(mean, x.ndim)), axis=axes))
            if self.mean is not None and not use_running_average:
                n = x.size // self.num_features
                if self.axis_name is not None:
                    n *= jax.lax.axis_size(self.axis_name)
                count = self.num_batches_tracked[...] + 1
                self.num_batches_tracked[...] = count
                m = 1.0 / count.astype(jnp.float32) if self.momentum is None else self.momentum
                unbiased = var * (n / max(n - 1, 1))
                self.mean[...] = (1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
                self.var[...] = (1 - m) * self.var[...] + m * jax.lax.stop_gradient(unbiased)
        y = (x32 - _bcast(mean, x.ndim)) * _bcast(jax.lax.rsqrt(var + self.eps), x.ndim)
        if self.scale is not None:
            scale = _bcast(self.scale[...].astype(jnp.float32), x.ndim)
            y = y * scale + _bcast(self.bias[...].astype(jnp.float32), x.ndim)
        return y.astype(x.dtype)

    def _mean(self, local: Array) -> Array:
        """Average per-device statistics over `axis_name` (equal shards: the global mean)."""
        return local if self.axis_name is None else jax.lax.pmean(local, self.axis_name)
