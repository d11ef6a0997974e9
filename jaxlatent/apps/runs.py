"""What the commands share about a `jaxlatent train` run: its initial state, its parallel
modes, its picture grid.

`jaxlatent train` builds and checkpoints the state; `jaxlatent sample` / `generate` rebuild
the same template to restore it; `jaxlatent demo` checks its ``parallel`` setting against the
same modes.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jaxlatent import training
from jaxlatent.apps.spec import ModelSpec
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike, set_precision

#: the ``--parallel`` modes of `jaxlatent train` (``"auto"``: sharded on several devices).
PARALLEL = ("auto", "single", "sharded", "pmap", "shard_map")
#: pictures per grid (images); examples in the eval batch.
GRID = 16


def initial_state(
    spec: ModelSpec,
    preset: Any,
    num_classes: int,
    tx,
    seed: int,
    *,
    model: nnx.Module | None = None,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> training.TrainState:
    """The freshly initialised `TrainState` of a run (also the template that restores it).

    Args:
      spec: the registered model.
      preset: one of ``spec.presets``' values.
      num_classes: classes of the run's data.
      tx: the optax transformation.
      seed: initialisation seed (also the seed of the state's step keys).
      model: start from this module instead (``--init-from``).
      precision: of every convolution and matmul of the model (``--precision``,
        :func:`jaxlatent.precision.set_precision`).
    """
    if model is None:  # one compiled initialiser instead of one small program per parameter
        model = nnx.jit(lambda: spec.build(preset, num_classes, nnx.Rngs(seed)))()
    set_precision(model, precision)
    return training.TrainState.create(model, tx, key=seed)


def initial_gan_state(
    spec: ModelSpec,
    preset: Any,
    objective: training.GANObjective,
    seed: int,
    *,
    generator: nnx.Module | None = None,
    discriminator: nnx.Module | None = None,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> training.GANTrainState:
    """The freshly initialised `GANTrainState` of an adversarial run (``--objective recipe``).

    Args:
      spec: a registered model with an adversarial recipe.
      preset: one of ``spec.presets``' values.
      objective: ``spec.adversarial(preset, ...)`` (its two optimizers).
      seed: initialisation seed of both models (the discriminator's is ``seed + 1``), also
        the seed of the state's step keys.
      generator, discriminator: start from these modules instead (``--init-from``,
        ``--init-discriminator``).
      precision: of every convolution and matmul of both models (``--precision``).
    """
    if generator is None:
        generator = nnx.jit(lambda: spec.build(preset, 0, nnx.Rngs(seed)))()
    if discriminator is None:
        build = spec.build_discriminator
        discriminator = nnx.jit(lambda: build(preset, nnx.Rngs(seed + 1)))()
    set_precision(generator, precision)
    set_precision(discriminator, precision)
    return objective.init(generator, discriminator, key=seed)
