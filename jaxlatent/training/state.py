"""The training state: an NNX model split into arrays, plus optimizer state, step and PRNG key.

`TrainState` is a plain pytree (a `flax.struct.PyTreeNode`) so the same train step runs
under `jax.jit`, `jax.pmap` and `jax.shard_map` without NNX's graph-walking transforms, and
writes nothing back to Python objects. The model is kept as
``graphdef, params, model_state = nnx.split(model, nnx.Param, ...)``:

* `params` — the `nnx.Param` variables, the only thing optax sees and differentiates;
* `model_state` — every other variable (BatchNorm `BatchStat` running statistics, EMA
  codebooks, RNG counters): updated by the forward pass, never by the optimizer;
* `graphdef` — the static structure, a non-pytree field (hashable, compared by `jax.jit`).

The split uses explicit filters only (no shared submodules, no `DiffState`), so it keeps
working when Flax makes tree-mode NNX the default (FLIP 5310).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

Array = jax.Array


class TrainState(struct.PyTreeNode):
    """Everything a training run updates, as a pytree of arrays (see the module docstring).

    Attributes:
      step: int32 scalar, the number of optimizer updates applied so far.
      params: `nnx.State` of the trainable variables (`nnx.Param` by default).
      model_state: `nnx.State` of all other variables (BatchStat, EMA, RNG state).
      opt_state: the optax state of `params`.
      key: a typed PRNG key (``jax.random.key``); each step splits it and hands one half to
        the loss function, so a resumed run draws the same numbers as an uninterrupted one.
      graphdef: the model's static structure (not a pytree leaf).

    Example:
      >>> import optax
      >>> from flax import nnx
      >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
      >>> state = TrainState.create(model, optax.sgd(0.1), key=0)
      >>> int(state.step), state.params["kernel"].shape
      (0, (2, 3))
      >>> state.merge()(jnp.ones((1, 2))).shape
      (1, 3)
    """

    step: Array
    params: nnx.State
    model_state: nnx.State
    opt_state: Any
    key: Array
    graphdef: Any = struct.field(pytree_node=False)

    @classmethod
    def create(
        cls,
        model: nnx.Module,
        tx: optax.GradientTransformation,
        *,
        key: int | Array = 0,
        param_filter: Any = nnx.Param,
    ) -> TrainState:
        """Split `model` and initialise the optimizer state.

        Args:
          model: any NNX module (its mode comes from the loss's ``train`` argument).
          tx: the optax transformation (e.g. from `jaxlatent.training.make_optimizer`).
          key: an int seed or a PRNG key (typed or raw uint32) for the per-step keys.
          param_filter: NNX filter selecting the trainable variables (default `nnx.Param`).

        Raises:
          ValueError: if the filter selects no variables.
        """
        graphdef, params, model_state = nnx.split(model, param_filter, ...)
        if not jax.tree.leaves(params):
            raise ValueError(f"param_filter {param_filter!r} selects no variables of the model")
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=model_state,
            opt_state=tx.init(params),
            key=as_typed_key(key),
            graphdef=graphdef,
        )

    def merge(self) -> nnx.Module:
        """A fresh NNX module holding this state's arrays (the original model is untouched)."""
        return nnx.merge(self.graphdef, self.params, self.model_state)

    def arrays(self) -> dict[str, Any]:
        """The pytree that checkpoints store: every field except `graphdef`."""
        return {
            "step": self.step,
            "params": self.params,
            "model_state": self.model_state,
            "opt_state": self.opt_state,
            "key": self.key,
        }

    def with_arrays(self, arrays: dict[str, Any]) -> TrainState:
        """This state with its fields replaced by `arrays` (the inverse of `arrays`)."""
        return self.replace(**arrays)


def as_typed_key(key: int | Array) -> Array:
    """An int seed, a raw ``uint32[2]`` key or a typed key → a typed PRNG key."""
    if isinstance(key, int):
        return jax.random.key(key)
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)
