"""SpeechBrain autoencoders (`speechbrain.nnet.autoencoders`) <-> jaxlatent, through tables.

Tables are built with the machinery of :mod:`converters.tables` from small per-layer builders,
each ``builder(torch_prefix, jax_prefix) -> Table``:

* `speechbrain.nnet.linear.Linear` (``w.weight``, ``w.bias``) -> `flax.nnx.Linear`:
  :func:`linear`;
* `speechbrain.nnet.CNN.Conv1d` (``conv.weight``, ``conv.bias``) ->
  `jaxlatent.nn.SpeechBrainConv1d` (``conv/kernel``, ``conv/bias``): :func:`conv1d`;
* `speechbrain.processing.features.GlobalNorm` (``running_mean``, ``running_std``,
  ``weight``, + ``step_count``) -> `jaxlatent.nn.GlobalNorm`: :func:`global_norm`;
* `torch.nn.Sequential` (``<i>.``) -> `flax.nnx.Sequential` (``layers/<i>/``):
  :func:`sequential`.

:func:`variational_autoencoder_table` and :func:`normalizing_autoencoder_table` assemble the
table of a whole model from the builders of its submodules (prefixes ``encoder.``,
``decoder.``, ``mean.``, ``log_var.`` / ``norm.``), and :func:`convert_autoencoder` copies a
SpeechBrain model into its jaxlatent twin (strictly, via `assign.assign_strict`).

`GlobalNorm.step_count` is a Python attribute in SpeechBrain, not a buffer; it decides when
``update_steps`` stops the statistics, so it is carried too, under the pseudo-key
``<prefix>step_count`` that :func:`speechbrain_state` adds to the torch state_dict and
:func:`export_autoencoder` returns separately from the real state_dict. The ``frozen`` flag
is copied as well, and static configuration (mask values, ``len_dim``, GlobalNorm's
``norm_mean``/``norm_std``/``update_steps``/``length_dim``, Conv1d padding) is compared, so a
twin built with different settings is a :class:`~converters.errors.ConversionError` instead
of silently different outputs.

torch is imported only in :func:`load_into_speechbrain`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from flax import nnx

from converters import assign, tables
from converters.errors import ConversionError
from converters.tables import Rule, Table

Builder = Callable[[str, str], Table]

#: Transform of the `GlobalNorm.step_count` pseudo-key (a Python int in SpeechBrain).
STEP_COUNT = tables.Transform("python_int_attribute", lambda w: w, lambda w: w)

_join = tables.join_key

#: Static settings compared between a SpeechBrain module and its jaxlatent twin.
_AUTOENCODER_CONFIG = (
    "len_dim",
    "mask_latent",
    "mask_out",
    "out_mask_value",
    "latent_mask_value",
    "latent_stochastic",
)
_GLOBAL_NORM_CONFIG = ("norm_mean", "norm_std", "update_steps", "length_dim", "mask_value")
_CONV_CONFIG = ("kernel_size", "stride", "dilation", "padding", "padding_mode", "in_channels")


# --------------------------------------------------------------------------------------------
# Layer builders
# --------------------------------------------------------------------------------------------


def linear(torch_prefix: str, jax_prefix: str, *, bias: bool = True) -> Table:
    """`speechbrain.nnet.linear.Linear` (``w.weight``, ``w.bias``) -> `flax.nnx.Linear`.

    SpeechBrain's ``max_norm`` (renormalises the weight in every forward) and
    ``combine_dims`` have no counterpart; :func:`convert_autoencoder` rejects them.
    """
    return tables.linear(_join(torch_prefix, "w", "."), jax_prefix, bias=bias)


def conv1d(
    torch_prefix: str, jax_prefix: str, *, bias: bool = True, weight_norm: bool = False
) -> Table:
    """`speechbrain.nnet.CNN.Conv1d` -> `jaxlatent.nn.SpeechBrainConv1d` (its ``conv``).

    Keys ``conv.weight``/``conv.bias``, or with ``weight_norm=True``
    ``conv.parametrizations.weight.original0/1`` (SpeechBrain uses the parametrizations API).
    """
    torch_conv = _join(torch_prefix, "conv", ".")
    jax_conv = _join(jax_prefix, "conv", "/")
    if weight_norm:
        return tables.weight_norm_conv(
            torch_conv, jax_conv, style="parametrizations", ndim=1, bias=bias
        )
    return tables.conv(torch_conv, jax_conv, bias=bias)


def global_norm(torch_prefix: str, jax_prefix: str) -> Table:
    """`speechbrain.processing.features.GlobalNorm` -> `jaxlatent.nn.GlobalNorm`.

    Buffers ``running_mean``, ``running_std``, ``weight`` and the ``step_count`` pseudo-key.
    """
    table: Table = {}
    for name in ("running_mean", "running_std", "weight"):
        table |= tables.tensor(_join(torch_prefix, name, "."), _join(jax_prefix, name, "/"))
    table |= tables.tensor(
        _join(torch_prefix, "step_count", "."), _join(jax_prefix, "step_count", "/"), STEP_COUNT
    )
    return table


def sequential(layers: Mapping[int, Builder]) -> Builder:
    """Builder for `torch.nn.Sequential` -> `flax.nnx.Sequential`.

    Args:
      layers: builder of each layer that has parameters, by its index in the sequence
        (parameter-free layers such as activations are simply left out).

    Example:
      >>> build = sequential({0: linear, 2: conv1d})
      >>> sorted(build("encoder", "encoder"))[:2]
      ['encoder.0.w.bias', 'encoder.0.w.weight']
      >>> build("encoder", "encoder")["encoder.2.conv.weight"].jax_path
      'encoder/layers/2/conv/kernel'
    """

    def build(torch_prefix: str, jax_prefix: str) -> Table:
        table: Table = {}
        for index, builder in layers.items():
            table |= builder(
                _join(torch_prefix, str(index), "."), _join(jax_prefix, f"layers/{index}", "/")
            )
        return table

    return build


def variational_autoencoder_table(
    encoder: Builder,
    decoder: Builder,
    mean: Builder,
    log_var: Builder,
    *,
    torch_prefix: str = "",
    jax_prefix: str = "",
) -> Table:
    """Table of a `VariationalAutoencoder` from the builders of its four submodules."""
    table: Table = {}
    for name, builder in (
        ("encoder", encoder),
        ("decoder", decoder),
        ("mean", mean),
        ("log_var", log_var),
    ):
        table |= builder(_join(torch_prefix, name, "."), _join(jax_prefix, name, "/"))
    return table


def normalizing_autoencoder_table(
    encoder: Builder,
    decoder: Builder,
    norm: Builder = global_norm,
    *,
    torch_prefix: str = "",
    jax_prefix: str = "",
) -> Table:
    """Table of a `NormalizingAutoencoder` (default norm: `GlobalNorm`)."""
    table: Table = {}
    for name, builder in (("encoder", encoder), ("decoder", decoder), ("norm", norm)):
        table |= builder(_join(torch_prefix, name, "."), _join(jax_prefix, name, "/"))
    return table


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def _is_global_norm(module: Any) -> bool:
    buffers = dict(module.named_buffers(recurse=False))
    return (
        type(module).__name__ == "GlobalNorm"
        and hasattr(module, "step_count")
        and {"running_mean", "running_std", "weight"} <= set(buffers)
    )


def speechbrain_state(sb_module: Any) -> dict[str, Any]:
    """`sb_module.state_dict()` plus a ``<prefix>step_count`` entry per `GlobalNorm`."""
    state = dict(sb_module.state_dict())
    for name, module in sb_module.named_modules():
        if _is_global_norm(module):
            state[_join(name, "step_count", ".")] = np.asarray(int(module.step_count))
    return state


def _jax_submodule(root: nnx.Module, path: str) -> Any:
    obj: Any = root
    for part in path.split("/") if path else ():
        if isinstance(obj, list | tuple) or (part.isdigit() and not hasattr(obj, part)):
            obj = obj[int(part)]
        else:
            obj = getattr(obj, part)
    return obj


def _twin(table: Table, key: str, jax_module: nnx.Module) -> Any | None:
    """The jaxlatent module holding the target of torch `key` (None if not in the table)."""
    rule: Rule | None = table.get(key)
    if rule is None:
        return None
    parent = rule.jax_path.rsplit("/", 1)[0] if "/" in rule.jax_path else ""
    try:
        return _jax_submodule(jax_module, parent)
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def _compare(sb: Any, jx: Any, names: Iterable[str], where: str, problems: list[str]) -> None:
    for name in names:
        if hasattr(sb, name) and hasattr(jx, name):
            a, b = getattr(sb, name), getattr(jx, name)
            if a != b:
                problems.append(f"{where}.{name}: SpeechBrain {a!r} != jaxlatent {b!r}")


def _config_problems(sb_module: Any, jax_module: nnx.Module, table: Table) -> list[str]:
    problems: list[str] = []
    where = type(sb_module).__name__
    _compare(sb_module, jax_module, _AUTOENCODER_CONFIG, where, problems)
    if hasattr(sb_module, "latent_padding") and hasattr(jax_module, "latent_padding"):
        if (sb_module.latent_padding is None) != (jax_module.latent_padding is None):
            problems.append(f"{where}.latent_padding: set on one side only")
    for name, module in sb_module.named_modules():
        label = name or where
        kind = type(module).__name__
        if _is_global_norm(module):
            twin = _twin(table, _join(name, "running_mean", "."), jax_module)
            if twin is not None:
                _compare(module, twin, _GLOBAL_NORM_CONFIG, label, problems)
        elif kind == "Linear" and hasattr(module, "w"):
            if getattr(module, "max_norm", None) is not None or getattr(
                module, "combine_dims", False
            ):
                problems.append(f"{label}: Linear max_norm/combine_dims are not supported")
        elif kind == "Conv1d" and hasattr(module, "padding_mode") and hasattr(module, "conv"):
            twin = _wrapper_of(table, name, jax_module)
            if twin is not None:
                if getattr(module, "skip_transpose", False):
                    problems.append(f"{label}: Conv1d skip_transpose=True is not supported")
                _compare(module, twin, _CONV_CONFIG, label, problems)
    return problems


def _wrapper_of(table: Table, sb_name: str, jax_module: nnx.Module) -> Any | None:
    """The `SpeechBrainConv1d` whose inner ``conv`` receives SpeechBrain Conv1d `sb_name`."""
    for suffix in ("conv.weight", "conv.parametrizations.weight.original1"):
        rule = table.get(_join(sb_name, suffix, "."))
        if rule is not None:
            parts = rule.jax_path.split("/")
            try:
                return _jax_submodule(jax_module, "/".join(parts[:-2]))
            except (AttributeError, IndexError, KeyError, TypeError):
                return None
    return None


def convert_autoencoder(
    sb_module: Any, jax_module: nnx.Module, table: Table, *, dont_load: Iterable[str] = ()
) -> nnx.Module:
    """Copy a SpeechBrain autoencoder (or any module the table covers) into `jax_module`.

    Args:
      sb_module: the torch module (e.g. `speechbrain.nnet.autoencoders.VariationalAutoencoder`).
      jax_module: its jaxlatent twin, built with the same architecture and settings.
      table: e.g. from :func:`variational_autoencoder_table`.
      dont_load: torch keys allowed in the state but ignored.

    Returns:
      `jax_module` (modified in place): parameters, buffers, `GlobalNorm.step_count` and
      ``frozen``.

    Raises:
      ConversionError: if static settings differ, or (from `assign.assign_strict`) keys are
        missing/unexpected or shapes differ. Nothing is assigned on error.
    """
    problems = _config_problems(sb_module, jax_module, table)
    if problems:
        raise ConversionError(
            f"{type(jax_module).__name__} is not configured like the SpeechBrain "
            f"{type(sb_module).__name__}",
            mismatched=problems,
        )
    assign.assign_strict(jax_module, speechbrain_state(sb_module), table, dont_load=dont_load)
    for name, module in sb_module.named_modules():
        if _is_global_norm(module):
            twin = _twin(table, _join(name, "running_mean", "."), jax_module)
            if twin is not None and hasattr(twin, "frozen"):
                twin.frozen = bool(module.frozen)
    return jax_module


def export_autoencoder(
    jax_module: nnx.Module, table: Table
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The torch state_dict of `jax_module`, and the ``step_count`` pseudo-keys apart.

    Returns:
      ``(state_dict, attributes)``: `state_dict` loads into the SpeechBrain model with
      ``load_state_dict(strict=True)``; `attributes` maps ``<prefix>step_count`` to an int.
    """
    exported = assign.export_state_dict(jax_module, table)
    attributes = {
        key: int(exported.pop(key)) for key, rule in table.items() if rule.transform is STEP_COUNT
    }
    return exported, attributes


def load_into_speechbrain(sb_module: Any, jax_module: nnx.Module, table: Table) -> Any:
    """Write `jax_module` back into the SpeechBrain model (strict), step counts and flags too.

    Raises:
      ConversionError: if the table does not cover `jax_module`.
      RuntimeError: from torch's ``load_state_dict(strict=True)`` on missing/unexpected keys.
    """
    import torch

    state, attributes = export_autoencoder(jax_module, table)
    sb_module.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True
    )
    for key, value in attributes.items():
        name = key[: -len("step_count")].rstrip(".")
        module = sb_module.get_submodule(name)
        module.step_count = value
        twin = _twin(table, key, jax_module)
        if twin is not None and hasattr(twin, "frozen"):
            module.frozen = bool(twin.frozen)
    return sb_module
