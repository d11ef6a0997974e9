"""DAC discriminator weights (``dac.model.discriminator.Discriminator``) <-> jaxlatent.

Reads the reference's ``state_dict`` (a mapping, or a file holding one) and its
``save(path, package=False)`` file ``{"state_dict", "metadata": {"kwargs"}}``;
:func:`load_discriminator` returns ``(config, model)``. :func:`export_discriminator` writes the
same layout, which ``Discriminator.load`` reads. Both weight-norm key styles are read
(``weight_g``/``weight_v`` of ``torch.nn.utils.weight_norm``, the reference's, and
``parametrizations.weight.original0/1``); export writes the reference's.

The configuration: `config` when given, else the file's ``metadata["kwargs"]``, else
:meth:`DiscriminatorConfig.recipe`. The periods, rates, FFT sizes, sample rate and band
edges leave no trace in the weights (only how many sub-discriminators of each kind and bands
there are), and audiotools' ``BaseModel.save`` stores the *defaults* of the constructor as
``kwargs`` (``Discriminator`` keeps no attribute of those names), so a file saved by the
reference from a non-default discriminator carries the recipe's kwargs; pass its `config`
then (an explicit `config` takes precedence over the metadata). Files written by
:func:`export_discriminator` store the model's true kwargs.

Conversion is strict, as the generator's (:mod:`converters.dac`): every key is used, every
parameter filled, every shape checked; a :class:`~converters.errors.ConversionError` names
the file and lists every missing, unexpected and mis-shaped key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from converters import assign, checkpoint_files, errors, state_dicts, tables
from converters.errors import CheckpointError, ConversionError
from converters.tables import Table, WeightNormStyle
from jaxlatent.models.dac import Discriminator, DiscriminatorConfig
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

__all__ = [
    "discriminator_from_state_dict",
    "discriminator_state_dict",
    "discriminator_table",
    "export_discriminator",
    "load_discriminator",
]


def _wn(torch_prefix: str, jax_prefix: str, style: WeightNormStyle, ndim: int) -> Table:
    return tables.weight_norm_conv(torch_prefix, jax_prefix, style=style, ndim=ndim)


def discriminator_table(config: DiscriminatorConfig, style: WeightNormStyle = "legacy") -> Table:
    """torch key -> NNX path of every tensor of ``Discriminator(**config.to_kwargs())``.

    The reference wraps each activated convolution in ``nn.Sequential(conv, LeakyReLU)``
    (hence ``convs.{j}.0``); the post convolutions are bare.

    Example:
      >>> table = discriminator_table(DiscriminatorConfig.recipe())
      >>> len(table), table["discriminators.5.band_convs.4.3.0.weight_v"].jax_path
      (324, 'discriminators/5/band_convs/4/3/weight_v')
    """
    table: Table = {}
    index = 0
    for n_convs, ndim, kinds in ((5, 2, config.periods), (6, 1, config.rates)):
        for _ in kinds:
            t, j = f"discriminators.{index}", f"discriminators/{index}"
            for k in range(n_convs):
                table |= _wn(f"{t}.convs.{k}.0", f"{j}/convs/{k}", style, ndim)
            table |= _wn(f"{t}.conv_post", f"{j}/conv_post", style, ndim)
            index += 1
    for _ in config.fft_sizes:
        t, j = f"discriminators.{index}", f"discriminators/{index}"
        for b in range(len(config.bands)):
            for k in range(5):
                table |= _wn(f"{t}.band_convs.{b}.{k}.0", f"{j}/band_convs/{b}/{k}", style, 2)
        table |= _wn(f"{t}.conv_post", f"{j}/conv_post", style, 2)
        index += 1
    return table


def discriminator_from_state_dict(
    state_dict: Mapping[str, Any],
    config: DiscriminatorConfig,
    *,
    param_dtype=jnp.float32,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> Discriminator:
    """A :class:`Discriminator` with `config` holding `state_dict` (torch tensors or numpy
    arrays, either weight-norm key style), strictly.

    Raises:
      ConversionError: on mixed key styles or any missing, unexpected or mis-shaped key.
    """
    style = tables.detect_weight_norm_style(state_dict) or "legacy"
    module = nnx.eval_shape(
        lambda: Discriminator(
            config, param_dtype=param_dtype, precision=precision, rngs=nnx.Rngs(0)
        )
    )
    assign.assign_strict(module, state_dict, discriminator_table(config, style))
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))


def discriminator_state_dict(
    model: Discriminator, *, style: WeightNormStyle = "legacy"
) -> dict[str, np.ndarray]:
    """The reference state_dict of `model` (writable numpy arrays, exact copies)."""
    exported = assign.export_state_dict(model, discriminator_table(model.config, style))
    return {k: np.array(v, copy=True) for k, v in exported.items()}


def _read(
    source: str | os.PathLike | Mapping[str, Any], where: str
) -> tuple[dict[str, Any], DiscriminatorConfig | None]:
    obj = source if isinstance(source, Mapping) else checkpoint_files.load_torch_checkpoint(source)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{where}: expected a state_dict or a dict with 'state_dict', got {type(obj).__name__}"
        )
    meta_config = None
    if "state_dict" in obj:
        state_dict, metadata = obj["state_dict"], obj.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, Mapping) or "kwargs" not in metadata:
                raise CheckpointError(
                    f"{where}: metadata has no 'kwargs' (the Discriminator arguments)"
                )
            try:
                meta_config = DiscriminatorConfig.from_kwargs(metadata["kwargs"])
            except (ValueError, TypeError) as e:
                raise CheckpointError(f"{where}: invalid metadata['kwargs']: {e}") from e
    else:
        state_dict = obj
    state_dicts.check_state_dict(state_dict, where)
    if not state_dict:
        raise CheckpointError(f"{where}: the state_dict is empty")
    return dict(state_dict), meta_config


def load_discriminator(
    source: str | os.PathLike | Mapping[str, Any],
    config: DiscriminatorConfig | None = None,
    *,
    param_dtype=jnp.float32,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> tuple[DiscriminatorConfig, Discriminator]:
    """Convert a reference discriminator's weights to a :class:`Discriminator`.

    Args:
      source: a path (read with ``torch.load(weights_only=True)``) or a loaded object: the
        reference's ``save()`` dict ``{"state_dict", "metadata": {"kwargs"}}``, a
        ``{"state_dict": ...}``, or a bare state_dict (torch tensors or numpy arrays).
      config: the configuration; default: the file's ``metadata["kwargs"]``, else the recipe
        (see the module docstring for why an explicit config overrides the metadata).
      param_dtype: dtype of the JAX parameters.
      precision: precision of the convolutions (:mod:`jaxlatent.precision`).

    Returns:
      ``(config, model)``, as :func:`converters.dac.convert_checkpoint`.

    Raises:
      FileNotFoundError: if a path does not exist.
      CheckpointError: if the file is empty, truncated, corrupt or unsafe, is not one of the
        layouts above, holds a value that is not a dense real tensor, or its
        ``metadata["kwargs"]`` are invalid or name more sub-discriminators or bands than
        the state_dict has tensors.
      ConversionError: if the weights do not fit the configuration (naming the file and
        every missing, unexpected and mis-shaped key).
    """
    where = "checkpoint" if isinstance(source, Mapping) else os.fspath(source)
    state_dict, meta_config = _read(source, where)
    config_source = None
    if config is None:
        config = DiscriminatorConfig.recipe() if meta_config is None else meta_config
        if meta_config is not None:
            config_source = f"metadata['kwargs'] {meta_config.to_kwargs()}"
    counts = {
        "sub-discriminators": config.n_discriminators,
        "MRD bands": len(config.fft_sizes) * len(config.bands),
    }
    state_dicts.check_counts_fit(where, state_dict, counts)
    try:
        model = discriminator_from_state_dict(
            state_dict, config, param_dtype=param_dtype, precision=precision
        )
    except ConversionError as e:
        raise errors.located_error(e, where, config_source=config_source) from e
    return config, model


def export_discriminator(
    model: Discriminator,
    path: str | os.PathLike,
    *,
    style: WeightNormStyle = "legacy",
) -> None:
    """Write `model` as the reference's ``save(path, package=False)`` file, atomically:
    ``{"state_dict": ..., "metadata": {"kwargs": model.config.to_kwargs()}}``, which
    ``dac.model.discriminator.Discriminator.load`` reads. The tensors are exact copies of the
    parameters (``weight_g``/``weight_v`` by default), so loading the file back gives the same
    model bit for bit.
    """
    checkpoint_files.save_torch_checkpoint(
        {
            "state_dict": discriminator_state_dict(model, style=style),
            "metadata": {"kwargs": model.config.to_kwargs()},
        },
        path,
    )
