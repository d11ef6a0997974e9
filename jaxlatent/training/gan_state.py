"""The training state of a GAN: two NNX models, two optimizer states, one step and PRNG key.

`GANTrainState` is the two-model counterpart of `jaxlatent.training.TrainState`: a plain
pytree (a `flax.struct.PyTreeNode`), so the GAN step (`jaxlatent.training.GANObjective`)
runs under `jax.jit`, `jax.pmap` and `jax.shard_map`, and the same `Checkpointer` stores
it (through `arrays` / `with_arrays`). Each model is split with explicit filters into its
`nnx.Param` variables (seen by its optimizer) and every other variable (model state).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from jaxlatent.training.state import as_typed_key

Array = jax.Array

_PARTS = ("generator", "discriminator")


class GANTrainState(struct.PyTreeNode):
    """Everything a GAN run updates, as a pytree of arrays.

    Attributes:
      step: int32 scalar, the number of (discriminator + generator) updates applied.
      key: a typed PRNG key, split once per step (the half handed to the generator).
      g_params, g_model_state, g_opt_state: the generator's `nnx.Param` variables, its other
        variables and the optax state of its optimizer.
      d_params, d_model_state, d_opt_state: the same for the discriminator.
      g_graphdef, d_graphdef: the two models' static structures (not pytree leaves).

    Example:
      >>> import optax
      >>> g, d = nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.Linear(3, 1, rngs=nnx.Rngs(1))
      >>> state = GANTrainState.create(g, d, optax.sgd(0.1), optax.sgd(0.1), key=0)
      >>> state.generator()(jnp.ones((1, 2))).shape, sorted(state.arrays())
      ((1, 3), ['discriminator', 'generator', 'key', 'step'])
    """

    step: Array
    key: Array
    g_params: nnx.State
    g_model_state: nnx.State
    g_opt_state: Any
    d_params: nnx.State
    d_model_state: nnx.State
    d_opt_state: Any
    g_graphdef: Any = struct.field(pytree_node=False)
    d_graphdef: Any = struct.field(pytree_node=False)

    @classmethod
    def create(
        cls,
        generator: nnx.Module,
        discriminator: nnx.Module,
        generator_tx: optax.GradientTransformation,
        discriminator_tx: optax.GradientTransformation,
        *,
        key: int | Array = 0,
    ) -> GANTrainState:
        """Split both models (`nnx.Param` vs the rest) and initialise both optimizer states.

        Raises:
          ValueError: if either model has no `nnx.Param` variables.
        """
        g_graphdef, g_params, g_rest = nnx.split(generator, nnx.Param, ...)
        d_graphdef, d_params, d_rest = nnx.split(discriminator, nnx.Param, ...)
        for name, params in zip(_PARTS, (g_params, d_params), strict=True):
            if not jax.tree.leaves(params):
                raise ValueError(f"the {name} has no nnx.Param variables to train")
        return cls(
            step=jnp.zeros((), jnp.int32),
            key=as_typed_key(key),
            g_params=g_params,
            g_model_state=g_rest,
            g_opt_state=generator_tx.init(g_params),
            d_params=d_params,
            d_model_state=d_rest,
            d_opt_state=discriminator_tx.init(d_params),
            g_graphdef=g_graphdef,
            d_graphdef=d_graphdef,
        )

    def generator(self) -> nnx.Module:
        """A fresh generator module holding this state's arrays."""
        return nnx.merge(self.g_graphdef, self.g_params, self.g_model_state)

    def discriminator(self) -> nnx.Module:
        """A fresh discriminator module holding this state's arrays."""
        return nnx.merge(self.d_graphdef, self.d_params, self.d_model_state)

    def arrays(self) -> dict[str, Any]:
        """The pytree that checkpoints store: every field except the graphdefs."""
        return {
            "step": self.step,
            "key": self.key,
            "generator": {
                "params": self.g_params,
                "model_state": self.g_model_state,
                "opt_state": self.g_opt_state,
            },
            "discriminator": {
                "params": self.d_params,
                "model_state": self.d_model_state,
                "opt_state": self.d_opt_state,
            },
        }

    def with_arrays(self, arrays: dict[str, Any]) -> GANTrainState:
        """This state with its fields replaced by `arrays` (the inverse of `arrays`)."""
        g, d = arrays["generator"], arrays["discriminator"]
        return self.replace(
            step=arrays["step"],
            key=arrays["key"],
            g_params=g["params"],
            g_model_state=g["model_state"],
            g_opt_state=g["opt_state"],
            d_params=d["params"],
            d_model_state=d["model_state"],
            d_opt_state=d["opt_state"],
        )
