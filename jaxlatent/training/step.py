"""The train step: a pure function ``(TrainState, batch) -> (TrainState, metrics)``.

Any NNX model trains with any loss written as::

    def loss_fn(model, batch, *, key, train) -> tuple[loss, dict[str, Array]]

`model` is a fresh module merged from the state inside the step (mutate it freely: its
non-Param variables — BatchNorm statistics, EMA codebooks — are carried out of the step as
the new `model_state`), `batch` is one (per-device) batch pytree, `key` a PRNG key for this
step, `train` is True in the train step and False in the eval step: the loss passes it on to
the model (``model(x, train=train)``, jaxlatent's one train/eval convention), as the steps
never switch NNX's ``.train()``/``.eval()`` module state. `loss` is a scalar; `aux_metrics`
is a dict of scalars that is logged (and averaged across devices).

The step is built unjitted so the data-parallel wrappers of `jaxlatent.training.parallel`
can wrap it in `jax.jit`, `jax.pmap` or `jax.shard_map`. Reductions across devices:

* ``axis_name=None`` — no collectives (one device, or `jax.jit` over sharded arrays, where
  XLA inserts them);
* ``reduce="grads"`` — pmap style: local loss, ``pmean`` of gradients and metrics;
* ``reduce="loss"`` — shard_map style: differentiate ``pmean(local loss)``. Inside
  `jax.shard_map` the gradient of a replicated parameter is already summed over the axis, so
  gradients are *not* reduced again (that would multiply them by the device count).

In both collective modes floating `model_state` leaves are averaged (``pmean``) and integer
leaves take the maximum, and modules with an ``axis_name`` attribute (`jaxlatent.nn.BatchNorm`,
`nnx.BatchNorm`, `jaxlatent.nn.GlobalNorm`, the EMA VQ models) get the step's axis name so
batch statistics are global-batch statistics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxlatent._checks import check_choice
from jaxlatent.training.state import TrainState

Array = jax.Array
LossFn = Callable[..., tuple[Array, dict[str, Array]]]
StepFn = Callable[[TrainState, Any], tuple[TrainState, dict[str, Array]]]


def make_optimizer(
    optimizer: str | Callable[..., optax.GradientTransformation] = "adam",
    learning_rate: float | optax.Schedule = 1e-3,
    *,
    clip_grad_norm: float | None = None,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """An optax optimizer with an optional learning-rate schedule and gradient clipping.

    Args:
      optimizer: an optax factory name (``"adam"``, ``"adamw"``, ``"sgd"``, ...) or the
        factory itself; it is called as ``factory(learning_rate=..., **kwargs)``.
      learning_rate: a float or an optax schedule (``step -> lr``), e.g.
        ``optax.warmup_cosine_decay_schedule(...)``.
      clip_grad_norm: clip gradients to this global L2 norm before the update (None: off).
      **kwargs: passed to the factory (``b1``, ``weight_decay``, ``momentum``, ...).

    Raises:
      ValueError: if `optimizer` is not an optax factory or `clip_grad_norm` is not positive.

    Example:
      >>> tx = make_optimizer("adamw", 1e-3, clip_grad_norm=1.0, weight_decay=1e-4)
      >>> type(tx).__name__
      'GradientTransformationExtraArgs'
    """
    if isinstance(optimizer, str):
        factory = getattr(optax, optimizer, None)
        if not callable(factory):
            raise ValueError(f"unknown optimizer {optimizer!r}: not an optax factory")
    else:
        factory = optimizer
    tx = factory(learning_rate=learning_rate, **kwargs)
    if clip_grad_norm is not None:
        if not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be positive, got {clip_grad_norm}")
        tx = optax.chain(optax.clip_by_global_norm(clip_grad_norm), tx)
    return tx


@dataclasses.dataclass(frozen=True)
class MixedPrecision:
    """bf16 (or fp16) compute with fp32 master parameters, cast at the step boundary.

    Inside the differentiated function the floating parameters (except those selected by
    `keep_fp32`) and the floating batch leaves of rank >= 2 (signals, images) are cast to
    `compute_dtype`; per-example vectors (relative lengths, weights) stay fp32 so masks do
    not change. Gradients flow back through the cast, so they and the optimizer state are
    fp32. The model's own fp32 islands (BatchNorm statistics, VQ distances, losses computed
    in fp32) are untouched; `model_state` keeps its dtypes and the loss is cast to fp32.

    Attributes:
      compute_dtype: the compute dtype (default ``jnp.bfloat16``).
      keep_fp32: an NNX filter of parameters that are not cast (e.g. a codebook class).
    """

    compute_dtype: Any = jnp.bfloat16
    keep_fp32: Any = None

    def cast_params(self, params: nnx.State) -> nnx.State:
        if self.keep_fp32 is None:
            return _cast_floating(params, self.compute_dtype)
        keep, rest = nnx.split_state(params, self.keep_fp32, ...)
        return nnx.merge_state(keep, _cast_floating(rest, self.compute_dtype))

    def cast_batch(self, batch: Any) -> Any:
        def cast(x):
            if jnp.ndim(x) >= 2 and jnp.issubdtype(jnp.result_type(x), jnp.floating):
                return jnp.asarray(x).astype(self.compute_dtype)
            return x

        return jax.tree.map(cast, batch)


def _cast_floating(tree: Any, dtype: Any) -> Any:
    def cast(x):
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree.map(cast, tree)


def _restore_dtypes(new: Any, old: Any) -> Any:
    def cast(n, o):
        return n.astype(o.dtype) if jnp.issubdtype(o.dtype, jnp.floating) else n

    return jax.tree.map(cast, new, old)


def sync_model_state(model_state: Any, axis_name: str) -> Any:
    """Average floating leaves (``pmean``) and take the max of integer leaves over an axis.

    A floating leaf is averaged as ``x0 + pmean(x - x0)``, ``x0`` being its value on the
    axis's first device, so a leaf that is already the same on every device (statistics
    merged with ``psum``: EMA codebooks, `jaxlatent.nn.GlobalNorm`) comes back bit-for-bit
    unchanged; a plain ``pmean`` rounds ``(x + ... + x) / n`` (by one ulp on 8 CPU
    devices), which would drift such state away from one device's a little every step.
    """

    def sync(x):
        if jnp.issubdtype(x.dtype, jnp.floating):
            first = jnp.where(jax.lax.axis_index(axis_name) == 0, x, jnp.zeros_like(x))
            first = jax.lax.psum(first, axis_name)  # one non-zero term: exact
            return first + jax.lax.pmean(jnp.where(x == first, 0, x - first), axis_name)
        if jnp.issubdtype(x.dtype, jnp.integer):
            return jax.lax.pmax(x, axis_name)
        return x  # PRNG keys and booleans: identical on every device

    return jax.tree.map(sync, model_state)


def set_axis_name(model: nnx.Module, axis_name: str | None) -> None:
    """Set ``axis_name`` on every submodule that has that attribute (batch norms, GlobalNorm)."""
    for _, module in nnx.iter_modules(model):
        if hasattr(module, "axis_name"):
            module.axis_name = axis_name


def _merge(state: TrainState, params: nnx.State, axis_name: str | None, sync: bool):
    # Fresh Variable objects: NNX refuses to mutate a Variable created at an outer trace
    # level, and the model state is updated inside `jax.value_and_grad`.
    model_state = jax.tree.map(lambda x: x, state.model_state)
    model = nnx.merge(state.graphdef, params, model_state)
    if sync:
        set_axis_name(model, axis_name)
    return model


def _check_loss(loss: Array) -> Array:
    if jnp.ndim(loss) != 0:
        raise ValueError(f"loss_fn must return a scalar loss, got shape {jnp.shape(loss)}")
    return loss.astype(jnp.float32)


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    mixed_precision: MixedPrecision | None = None,
    axis_name: str | None = None,
    reduce: Literal["grads", "loss"] = "grads",
    sync_batch_stats: bool = True,
    per_device_keys: bool = True,
    learning_rate: float | optax.Schedule | None = None,
) -> StepFn:
    """Build ``train_step(state, batch) -> (state, metrics)`` (pure; wrap it in a transform).

    Args:
      loss_fn: ``loss_fn(model, batch, *, key, train) -> (loss, aux_metrics)``.
      tx: the optax transformation that `state.opt_state` was initialised with.
      mixed_precision: a `MixedPrecision` policy, or None for full precision.
      axis_name: the mapped axis of `jax.pmap` / `jax.shard_map`, None otherwise.
      reduce: ``"grads"`` (pmap: pmean the gradients) or ``"loss"`` (shard_map: pmean the
        loss, gradients arrive reduced); ignored without `axis_name`.
      sync_batch_stats: with `axis_name`, set it on batch-norm layers and sync model state.
      per_device_keys: with `axis_name`, fold the device index into the step key so devices
        draw independent noise (a mapped run then draws different numbers than one device;
        `jax.jit` over sharded arrays reproduces the single-device numbers exactly).
      learning_rate: the float or schedule given to the optimizer, to log it as a metric.

    Returns:
      The step. `metrics` holds ``loss``, ``grad_norm`` (global norm of the averaged
      gradient before clipping), ``learning_rate`` when given, and the aux metrics; in
      collective modes all are averaged over the axis.
    """
    check_choice("reduce", reduce, ("grads", "loss"))
    sync = axis_name is not None and sync_batch_stats

    def train_step(state: TrainState, batch: Any):
        key, step_key = jax.random.split(state.key)
        if axis_name is not None and per_device_keys:
            step_key = jax.random.fold_in(step_key, jax.lax.axis_index(axis_name))
        inputs = batch if mixed_precision is None else mixed_precision.cast_batch(batch)

        def objective(params):
            if mixed_precision is not None:
                params = mixed_precision.cast_params(params)
            model = _merge(state, params, axis_name, sync)
            loss, aux = loss_fn(model, inputs, key=step_key, train=True)
            loss = _check_loss(loss)
            if axis_name is not None and reduce == "loss":
                loss = jax.lax.pmean(loss, axis_name)
            _, _, model_state = nnx.split(model, nnx.Param, ...)
            return loss, (aux, model_state)

        (loss, (aux, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        metrics = {"loss": loss, **{k: jnp.asarray(v, jnp.float32) for k, v in aux.items()}}
        if axis_name is not None:
            if reduce == "grads":
                grads = jax.lax.pmean(grads, axis_name)
            metrics = jax.lax.pmean(metrics, axis_name)
            if sync:
                model_state = sync_model_state(model_state, axis_name)
        model_state = _restore_dtypes(model_state, state.model_state)
        metrics["grad_norm"] = optax.tree.norm(grads)
        if learning_rate is not None:
            lr = learning_rate(state.step) if callable(learning_rate) else learning_rate
            metrics["learning_rate"] = jnp.asarray(lr, jnp.float32)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            model_state=model_state,
            opt_state=opt_state,
            key=key,
        )
        return new_state, metrics

    return train_step


def make_eval_step(
    loss_fn: LossFn,
    *,
    mixed_precision: MixedPrecision | None = None,
    axis_name: str | None = None,
) -> Callable[[TrainState, Any], dict[str, Array]]:
    """Build ``eval_step(state, batch) -> metrics``: the loss in eval mode, no update.

    `loss_fn` is called with ``train=False`` (which it passes to the model: running
    statistics, no dropout) and a key derived from the state's key without advancing it; the
    model state it computes is discarded. Metrics are averaged over `axis_name` when given.
    """

    def eval_step(state: TrainState, batch: Any):
        params = state.params
        inputs = batch
        if mixed_precision is not None:
            params = mixed_precision.cast_params(params)
            inputs = mixed_precision.cast_batch(batch)
        model = nnx.merge(state.graphdef, params, state.model_state)
        key = jax.random.fold_in(state.key, 1)
        loss, aux = loss_fn(model, inputs, key=key, train=False)
        metrics = {"loss": _check_loss(loss), **{k: jnp.asarray(v) for k, v in aux.items()}}
        if axis_name is not None:
            metrics = jax.lax.pmean(metrics, axis_name)
        return metrics

    return eval_step
