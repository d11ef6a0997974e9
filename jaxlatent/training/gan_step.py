"""The GAN train step: one discriminator update, then one generator update, per step.

A `GANObjective` holds three functions and the two optimizers::

    generate(generator, batch, *, key, train) -> (fake, aux)
    discriminator_loss(discriminator, fake, batch, *, train) -> (loss, metrics)
    generator_loss(discriminator, fake, aux, batch, *, train) -> (loss, metrics)

`fake` is a pytree of floating arrays computed from the generator's parameters (e.g. the
decoded audio and the codec's quantizer losses): everything the generator's loss
differentiates. `aux` is anything else of the forward pass (e.g. integer codes), passed to
`generator_loss` undifferentiated. Its `train_step` builds the pure step
``(GANTrainState, batch) -> (GANTrainState, metrics)``, wrappable by the data-parallel
wrappers of `jaxlatent.training.parallel` (pass the objective in place of the loss
function, and no `tx`). Each step, as descript-audio-codec's ``scripts/train.py``:

1. the generator runs once (``train=True``, the step's key) under `jax.vjp`;
2. the discriminator's loss on ``stop_gradient(fake)`` is differentiated and its optimizer
   applied;
3. the generator's loss, with the *updated* discriminator, is differentiated with respect to
   `fake`, pulled back through the generator's forward pass of 1 (not recomputed) and the
   generator's optimizer applied.

Reductions across devices follow `jaxlatent.training.make_train_step`: ``reduce="grads"``
(pmap) ``pmean``s both models' gradients; ``reduce="loss"`` (shard_map) ``pmean``s both
losses before differentiation; model state is synced and metrics averaged in both. The
discriminator's model state is the one its own update produced; the calls made while
differentiating the generator's loss discard theirs.
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
from jaxlatent.training.gan_state import GANTrainState
from jaxlatent.training.step import _restore_dtypes, set_axis_name, sync_model_state

Array = jax.Array


def _fresh(graphdef, params, model_state, axis_name, sync) -> nnx.Module:
    # fresh Variable objects: NNX refuses to mutate a Variable of an outer trace level
    model = nnx.merge(graphdef, params, jax.tree.map(lambda x: x, model_state))
    if sync:
        set_axis_name(model, axis_name)
    return model


def _floats(tree: dict[str, Any]) -> dict[str, Array]:
    return {k: jnp.asarray(v, jnp.float32) for k, v in tree.items()}


def _check_scalar(loss: Array, what: str) -> Array:
    if jnp.ndim(loss) != 0:
        raise ValueError(f"{what} must return a scalar loss, got shape {jnp.shape(loss)}")
    return loss.astype(jnp.float32)


def _check_fake(fake: Any) -> None:
    bad = [
        jax.tree_util.keystr(p)
        for p, x in jax.tree_util.tree_flatten_with_path(fake)[0]
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating)
    ]
    if bad:
        raise ValueError(
            f"generate must return floating `fake` leaves (put the others in `aux`), got {bad}"
        )


@dataclasses.dataclass(frozen=True)
class GANObjective:
    """Two models, two losses and two optimizers (see the module docstring).

    Attributes:
      generate: ``generate(generator, batch, *, key, train) -> (fake, aux)``.
      discriminator_loss: ``(discriminator, fake, batch, *, train) -> (loss, metrics)``;
        `fake` arrives with its gradient stopped.
      generator_loss: ``(discriminator, fake, aux, batch, *, train) -> (loss, metrics)``.
      generator_tx: the optax transformation of the generator's parameters.
      discriminator_tx: the one of the discriminator's parameters.
      generator_lr: the generator's learning rate or schedule, logged as ``learning_rate``
        (None: not logged).

    Metrics of a step: ``loss`` (the generator's), ``disc_loss``, ``grad_norm`` and
    ``grad_norm_d`` (global norms of the reduced gradients before clipping),
    ``learning_rate``, and both losses' metrics (names must not clash).
    """

    generate: Callable[..., tuple[Any, Any]]
    discriminator_loss: Callable[..., tuple[Array, dict[str, Array]]]
    generator_loss: Callable[..., tuple[Array, dict[str, Array]]]
    generator_tx: optax.GradientTransformation
    discriminator_tx: optax.GradientTransformation
    generator_lr: float | optax.Schedule | None = None

    def init(
        self, generator: nnx.Module, discriminator: nnx.Module, *, key: int | Array = 0
    ) -> GANTrainState:
        """`GANTrainState.create` with this objective's optimizers."""
        return GANTrainState.create(
            generator, discriminator, self.generator_tx, self.discriminator_tx, key=key
        )

    def train_step(
        self,
        *,
        axis_name: str | None = None,
        reduce: Literal["grads", "loss"] = "grads",
        sync_batch_stats: bool = True,
        per_device_keys: bool = True,
        mixed_precision: Any = None,
        learning_rate: Any = None,
    ) -> Callable[[GANTrainState, Any], tuple[GANTrainState, dict[str, Array]]]:
        """``train_step(state, batch) -> (state, metrics)`` (pure; wrap it in a transform).

        Args:
          axis_name, reduce, sync_batch_stats, per_device_keys: as
            `jaxlatent.training.make_train_step`.
          mixed_precision: must be None (GAN steps run in full precision).
          learning_rate: ignored (the objective's `generator_lr` is logged).

        Raises:
          ValueError: for a `mixed_precision` policy or an unknown `reduce`.
        """
        check_choice("reduce", reduce, ("grads", "loss"))
        if mixed_precision is not None:
            raise ValueError("GANObjective steps run in full precision: mixed_precision=None")
        sync = axis_name is not None and sync_batch_stats
        by_loss = axis_name is not None and reduce == "loss"
        by_grads = axis_name is not None and reduce == "grads"

        def train_step(state: GANTrainState, batch: Any):
            key, step_key = jax.random.split(state.key)
            if axis_name is not None and per_device_keys:
                step_key = jax.random.fold_in(step_key, jax.lax.axis_index(axis_name))

            # 1. the generator's forward pass, kept for its backward pass in 3.
            def forward(g_params):
                gen = _fresh(state.g_graphdef, g_params, state.g_model_state, axis_name, sync)
                fake, aux = self.generate(gen, batch, key=step_key, train=True)
                return fake, (aux, nnx.split(gen, nnx.Param, ...)[2])

            fake, pullback, (aux, g_model_state) = jax.vjp(forward, state.g_params, has_aux=True)
            _check_fake(fake)

            # 2. the discriminator's update on the stop-gradient generator output.
            def d_objective(d_params):
                disc = _fresh(state.d_graphdef, d_params, state.d_model_state, axis_name, sync)
                loss, metrics = self.discriminator_loss(
                    disc, jax.lax.stop_gradient(fake), batch, train=True
                )
                loss = _check_scalar(loss, "discriminator_loss")
                if by_loss:
                    loss = jax.lax.pmean(loss, axis_name)
                return loss, (metrics, nnx.split(disc, nnx.Param, ...)[2])

            (d_loss, (d_metrics, d_model_state)), d_grads = jax.value_and_grad(
                d_objective, has_aux=True
            )(state.d_params)
            if by_grads:
                d_grads = jax.lax.pmean(d_grads, axis_name)
            if sync:
                d_model_state = sync_model_state(d_model_state, axis_name)
            d_model_state = _restore_dtypes(d_model_state, state.d_model_state)
            d_updates, d_opt_state = self.discriminator_tx.update(
                d_grads, state.d_opt_state, state.d_params
            )
            d_params = optax.apply_updates(state.d_params, d_updates)

            # 3. the generator's update against the updated discriminator.
            def g_objective(fake):
                disc = _fresh(state.d_graphdef, d_params, d_model_state, axis_name, sync)
                loss, metrics = self.generator_loss(disc, fake, aux, batch, train=True)
                loss = _check_scalar(loss, "generator_loss")
                if by_loss:
                    loss = jax.lax.pmean(loss, axis_name)
                return loss, metrics

            (g_loss, g_metrics), fake_grads = jax.value_and_grad(g_objective, has_aux=True)(fake)
            (g_grads,) = pullback(fake_grads)
            if by_grads:
                g_grads = jax.lax.pmean(g_grads, axis_name)
            if sync:
                g_model_state = sync_model_state(g_model_state, axis_name)
            g_model_state = _restore_dtypes(g_model_state, state.g_model_state)
            g_updates, g_opt_state = self.generator_tx.update(
                g_grads, state.g_opt_state, state.g_params
            )

            metrics = {
                "loss": g_loss,
                "disc_loss": d_loss,
                **_floats(d_metrics),
                **_floats(g_metrics),
            }
            if axis_name is not None:
                metrics = jax.lax.pmean(metrics, axis_name)
            metrics["grad_norm"] = optax.tree.norm(g_grads)
            metrics["grad_norm_d"] = optax.tree.norm(d_grads)
            lr = self.generator_lr
            if lr is not None:
                metrics["learning_rate"] = jnp.asarray(
                    lr(state.step) if callable(lr) else lr, jnp.float32
                )
            new_state = state.replace(
                step=state.step + 1,
                key=key,
                g_params=optax.apply_updates(state.g_params, g_updates),
                g_model_state=g_model_state,
                g_opt_state=g_opt_state,
                d_params=d_params,
                d_model_state=d_model_state,
                d_opt_state=d_opt_state,
            )
            return new_state, metrics

        return train_step

    def eval_step(
        self, *, axis_name: str | None = None, mixed_precision: Any = None
    ) -> Callable[[GANTrainState, Any], dict[str, Array]]:
        """``eval_step(state, batch) -> metrics``: both losses with ``train=False``, no update.

        The generator gets a key derived from the state's without advancing it; model state
        computed on the way is discarded. Metrics are averaged over `axis_name` when given.

        Raises:
          ValueError: for a `mixed_precision` policy.
        """
        if mixed_precision is not None:
            raise ValueError("GANObjective steps run in full precision: mixed_precision=None")

        def eval_step(state: GANTrainState, batch: Any):
            key = jax.random.fold_in(state.key, 1)
            fake, aux = self.generate(state.generator(), batch, key=key, train=False)
            disc = state.discriminator()
            d_loss, d_metrics = self.discriminator_loss(disc, fake, batch, train=False)
            g_loss, g_metrics = self.generator_loss(disc, fake, aux, batch, train=False)
            metrics = {
                "loss": _check_scalar(g_loss, "generator_loss"),
                "disc_loss": _check_scalar(d_loss, "discriminator_loss"),
                **_floats(d_metrics),
                **_floats(g_metrics),
            }
            if axis_name is not None:
                metrics = jax.lax.pmean(metrics, axis_name)
            return metrics

        return eval_step
