"""Data-parallel training: one device, `jax.pmap`, `jax.jit` over a sharded mesh, `shard_map`.

All four wrap the same pure step (`jaxlatent.training.make_train_step`) and share one
interface: ``put_state`` places a `TrainState` (replicated on every device),
``put_batch`` places one process-local batch (split along its leading axis), calling the
object runs a train step, ``evaluate`` an eval step. The state keeps the same logical
(unstacked) layout in every mode, so checkpoints move freely between them. Each wrapper takes
``(loss_fn, tx)``, or a `jaxlatent.training.GANObjective` in place of `loss_fn` (no `tx`:
the objective carries both optimizers) to train a `GANTrainState` the same way.

* `SingleDevice` — ``jax.jit`` on one device.
* `PmapDataParallel` — ``jax.pmap`` over the local devices with named-axis reductions:
  the state is broadcast (``in_axes=None``), gradients and metrics are ``pmean``-ed, batch
  statistics are synced (for existing pmap jobs; `jax.pmap` is in maintenance mode).
* `ShardedDataParallel` — ``jax.jit`` with `NamedSharding` over a 1-D `Mesh` whose axis
  type is `AxisType.Auto` (``jax.make_mesh`` defaults to Explicit since jax 0.9): batch
  sharded on ``'data'``, state replicated; XLA inserts the gradient all-reduce and computes
  global-batch BatchNorm statistics by itself.
* `ShardMapDataParallel` — ``jax.jit(jax.shard_map(...))`` for state that needs explicit
  collectives: the loss is ``pmean``-ed once before differentiation and gradients are not
  reduced again (inside shard_map they are already summed over replicated parameters).

With the same global batch all four give the same parameters up to float32 round-off
(tests/unit/test_training_parallel.py), provided the loss is a mean over examples (equal
per-device shards make the mean of per-device means the global mean; a loss averaged over
a data-dependent count, e.g. valid frames of padded sequences, is averaged per device first
under pmap/shard_map). Aux metrics are averaged the same way, so log means, not maxima.
Randomness: sharded jit draws exactly the single-device numbers; pmap/shard_map fold the
device index into the step key (independent per-device noise, not the same numbers), and
RNG streams stored inside modules (``nnx.Rngs``, e.g. Dropout) are identical on every
device, so prefer the `key` handed to the loss function.

Multi-process runs (see `jaxlatent.training.distributed`) use `ShardedDataParallel` or
`ShardMapDataParallel` over all global devices; each process feeds its own slice of the
global batch. `PmapDataParallel` maps over local devices and is tested single-process only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P

from jaxlatent.training.gan_step import GANObjective
from jaxlatent.training.state import TrainState
from jaxlatent.training.step import LossFn, make_eval_step, make_train_step


def _steps(
    loss_fn: LossFn | GANObjective,
    tx: optax.GradientTransformation | None,
    *,
    axis_name: str | None = None,
    reduce: str = "grads",
    eval_axis_name: str | None = None,
    **step_kwargs: Any,
):
    """``(train_step, eval_step)`` of a loss function and its `tx`, or of a `GANObjective`."""
    mp = step_kwargs.get("mixed_precision")
    if isinstance(loss_fn, GANObjective):
        if tx is not None:
            raise ValueError("a GANObjective carries its two optimizers: pass tx=None")
        step = loss_fn.train_step(axis_name=axis_name, reduce=reduce, **step_kwargs)
        return step, loss_fn.eval_step(axis_name=eval_axis_name, mixed_precision=mp)
    if tx is None:
        raise ValueError("tx (the optax transformation) is required with a loss function")
    step = make_train_step(loss_fn, tx, axis_name=axis_name, reduce=reduce, **step_kwargs)
    return step, make_eval_step(loss_fn, mixed_precision=mp, axis_name=eval_axis_name)


def _batch_size(batch: Any) -> int:
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in jax.tree.leaves(batch)}
    if not sizes or -1 in sizes or len(sizes) != 1:
        shapes = jax.tree.map(np.shape, batch)
        raise ValueError(f"batch leaves must share one leading batch axis, got shapes {shapes}")
    return sizes.pop()


def _copy(tree: Any) -> Any:
    """Fresh buffers for every array (the train steps donate their input state).

    ``jax.device_put(x, replicated_sharding, may_alias=False)`` still reuses `x`'s buffer
    for the shard on `x`'s device (jax 0.10.2), so the copy is made explicitly.
    """
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _replicate_global(x: Any, sharding: NamedSharding) -> jax.Array:
    """Replicate a host-identical value over a mesh that spans several processes."""
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = _replicate_global(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


class DataParallel:
    """Interface and shared checks of the data-parallel step wrappers (see module doc)."""

    #: devices a global batch is split over (all processes together).
    num_devices: int = 1

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ValueError unless a global batch of `batch_size` splits evenly.

        Call it before training; `put_batch` checks every batch as well.
        """
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        if batch_size % self.num_devices:
            raise ValueError(
                f"batch size {batch_size} is not divisible by the {self.num_devices} devices "
                f"of {type(self).__name__}; use a multiple of {self.num_devices}"
            )
        if batch_size % jax.process_count():
            raise ValueError(
                f"batch size {batch_size} is not divisible by the {jax.process_count()} processes"
            )

    def put_state(self, state: TrainState) -> TrainState:
        """A copy of `state` replicated on this trainer's devices.

        Always a copy: the train step donates its input state, and the caller's arrays
        (e.g. those of the model the state was split from) must stay valid.
        """
        raise NotImplementedError

    def put_batch(self, batch: Any) -> Any:
        """Place one process-local batch (leading axis split over the devices).

        Raises:
          ValueError: if the leaves disagree on the batch size or the global batch size
            is not divisible by the device count.
        """
        raise NotImplementedError

    def __call__(self, state: TrainState, batch: Any) -> tuple[TrainState, dict]:
        return self._train(state, batch)

    def evaluate(self, state: TrainState, batch: Any) -> dict:
        return self._eval(state, batch)


class SingleDevice(DataParallel):
    """``jax.jit`` of the train step on one device (default: the first local device).

    Args:
      loss_fn, tx: see `make_train_step`.
      device: the device to train on.
      donate: donate the state buffers to the step (saves memory).
      **step_kwargs: `mixed_precision`, `learning_rate` (see `make_train_step`).
    """

    def __init__(
        self,
        loss_fn: LossFn,
        tx: optax.GradientTransformation | None = None,
        *,
        device=None,
        donate: bool = True,
        **step_kwargs: Any,
    ):
        self.device = device or jax.local_devices()[0]
        self.sharding = SingleDeviceSharding(self.device)
        step, evaluate = _steps(loss_fn, tx, **step_kwargs)
        self._train = jax.jit(step, donate_argnums=(0,) if donate else ())
        self._eval = jax.jit(evaluate)

    def put_state(self, state: TrainState) -> TrainState:
        return jax.device_put(_copy(state), self.sharding)

    def put_batch(self, batch: Any) -> Any:
        _batch_size(batch)
        return jax.device_put(batch, self.sharding)


class PmapDataParallel(DataParallel):
    """``jax.pmap`` over local devices: broadcast state, ``pmean`` of gradients and metrics.

    The batch is reshaped on the host to ``[devices, batch/devices, ...]``; the state is
    passed with ``in_axes=None`` and returned with ``out_axes=None`` (one logical copy,
    replicated), so it has the same layout as in the other modes.

    Args:
      loss_fn, tx: see `make_train_step`.
      devices: the devices to map over (default: all local devices).
      axis_name: the pmap axis name (BatchNorm layers are given it).
      **step_kwargs: `mixed_precision`, `learning_rate`, `sync_batch_stats`,
        `per_device_keys` (see `make_train_step`).
    """

    def __init__(
        self,
        loss_fn: LossFn,
        tx: optax.GradientTransformation | None = None,
        *,
        devices: Sequence[Any] | None = None,
        axis_name: str = "batch",
        **step_kwargs: Any,
    ):
        self.devices = list(devices or jax.local_devices())
        self.num_devices = len(self.devices)
        self.axis_name = axis_name
        mesh = Mesh(np.asarray(self.devices), (axis_name,))
        self.sharding = NamedSharding(mesh, P())
        step, evaluate = _steps(
            loss_fn, tx, axis_name=axis_name, reduce="grads", eval_axis_name=axis_name,
            **step_kwargs,
        )  # fmt: skip
        common = dict(axis_name=axis_name, in_axes=(None, 0), devices=self.devices)
        self._train = jax.pmap(step, out_axes=(None, None), **common)
        self._eval = jax.pmap(evaluate, out_axes=None, **common)

    def put_state(self, state: TrainState) -> TrainState:
        return jax.device_put(_copy(state), self.sharding)

    def put_batch(self, batch: Any) -> Any:
        n = _batch_size(batch)
        self.check_batch_size(n * jax.process_count())
        d = self.num_devices
        return jax.tree.map(lambda x: np.asarray(x).reshape((d, n // d, *np.shape(x)[1:])), batch)


class _MeshDataParallel(DataParallel):
    """Shared mesh set-up and batch placement of the jit and shard_map variants."""

    def __init__(
        self,
        loss_fn: LossFn,
        tx: optax.GradientTransformation | None = None,
        *,
        devices: Sequence[Any] | None = None,
        mesh: Mesh | None = None,
        axis_name: str = "data",
        donate: bool = True,
        **step_kwargs: Any,
    ):
        if mesh is None:
            devs = np.asarray(devices if devices is not None else jax.devices())
            mesh = Mesh(devs, (axis_name,), axis_types=(AxisType.Auto,))
        if mesh.axis_names != (axis_name,):
            raise ValueError(
                f"mesh must be 1-D with axis {axis_name!r}, got axes {mesh.axis_names}"
            )
        self.mesh = mesh
        self.axis_name = axis_name
        self.num_devices = mesh.size
        self.replicated = NamedSharding(mesh, P())
        self.data_sharding = NamedSharding(mesh, P(axis_name))
        self._compile(loss_fn, tx, donate=donate, step_kwargs=step_kwargs)

    def _compile(
        self,
        loss_fn: LossFn,
        tx: optax.GradientTransformation | None = None,
        *,
        donate: bool,
        step_kwargs: dict[str, Any],
    ) -> None:
        """Set ``self._train`` and ``self._eval`` (the compiled step and evaluation)."""
        raise NotImplementedError

    def put_state(self, state: TrainState) -> TrainState:
        if jax.process_count() == 1:
            return jax.device_put(_copy(state), self.replicated)
        return jax.tree.map(lambda x: _replicate_global(x, self.replicated), state)

    def put_batch(self, batch: Any) -> Any:
        """Place a process-local batch: the global batch is the processes' batches stacked."""
        n = _batch_size(batch)
        self.check_batch_size(n * jax.process_count())
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self.data_sharding, np.asarray(x)),
            batch,
        )


class ShardedDataParallel(_MeshDataParallel):
    """``jax.jit`` with `NamedSharding`: batch on the ``'data'`` mesh axis, state replicated.

    Args:
      loss_fn, tx: see `make_train_step`.
      devices: devices of the 1-D mesh (default: all global devices), or
      mesh: a 1-D mesh whose only axis is `axis_name` (use ``AxisType.Auto``).
      axis_name: the mesh axis (default ``"data"``).
      donate: donate the state buffers to the step.
      **step_kwargs: `mixed_precision`, `learning_rate` (see `make_train_step`).
    """

    def _compile(self, loss_fn: LossFn, tx: Any, *, donate: bool, step_kwargs: dict) -> None:
        step, evaluate = _steps(loss_fn, tx, **step_kwargs)
        self._train = jax.jit(
            step,
            in_shardings=(self.replicated, self.data_sharding),
            out_shardings=(self.replicated, self.replicated),
            donate_argnums=(0,) if donate else (),
        )
        self._eval = jax.jit(
            evaluate,
            in_shardings=(self.replicated, self.data_sharding),
            out_shardings=self.replicated,
        )


class ShardMapDataParallel(_MeshDataParallel):
    """``jax.jit(jax.shard_map(step))`` with explicit collectives over the ``'data'`` axis.

    Each device runs the step on its ``[batch/devices, ...]`` shard with the replicated
    state; the loss is ``pmean``-ed before differentiation (gradients arrive averaged),
    model state is synced, BatchNorm layers get the axis name. Use it when state needs
    hand-written collectives (e.g. EMA codebook sums ``psum``-ed over the axis).

    Args: as `ShardedDataParallel`, plus `sync_batch_stats` and `per_device_keys`
    (see `make_train_step`).
    """

    def _compile(self, loss_fn: LossFn, tx: Any, *, donate: bool, step_kwargs: dict) -> None:
        axis_name = self.axis_name
        step, evaluate = _steps(
            loss_fn, tx, axis_name=axis_name, reduce="loss", eval_axis_name=axis_name,
            **step_kwargs,
        )  # fmt: skip
        specs = dict(mesh=self.mesh, in_specs=(P(), P(axis_name)))
        self._train = jax.jit(
            jax.shard_map(step, out_specs=(P(), P()), **specs),
            donate_argnums=(0,) if donate else (),
        )
        self._eval = jax.jit(jax.shard_map(evaluate, out_specs=P(), **specs))
