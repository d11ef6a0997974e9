"""Strict assignment of a state_dict into an NNX module through a table, and export back.

* :func:`assign_strict` copies a state_dict into a module: every source key must be used,
  every target variable filled, every shape must agree, otherwise a
  :class:`~converters.errors.ConversionError` lists what is missing, unexpected or
  mis-shaped — nothing is assigned on error.
* :func:`export_state_dict` turns the module back into a torch-layout state_dict.

The tables are built with :mod:`converters.tables`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from converters.errors import ConversionError
from converters.state_dicts import to_numpy
from converters.tables import Table


def _path_str(path: tuple[Any, ...]) -> str:
    return "/".join(str(p) for p in path)


def module_variables(module: nnx.Module) -> dict[str, nnx.Variable]:
    """'/'-joined path -> Variable of every Param/BatchStat-like variable (RNG state excluded)."""
    state = nnx.state(module, nnx.Not(nnx.RngState))
    return {_path_str(path): var for path, var in nnx.to_flat_state(state)}


def _check_table(table: Table) -> None:
    seen: dict[str, str] = {}
    for key, rule in table.items():
        if rule.jax_path in seen:
            raise ValueError(
                f"conversion table maps both {seen[rule.jax_path]!r} and {key!r} to "
                f"{rule.jax_path!r}"
            )
        seen[rule.jax_path] = key


def assign_strict(
    module: nnx.Module,
    state_dict: Mapping[str, Any],
    table: Table,
    *,
    dont_load: Iterable[str] = (),
) -> None:
    """Copy `state_dict` into `module` through `table`, strictly and atomically.

    Args:
      module: the target NNX module (its variables are overwritten in place).
      state_dict: torch-layout tensors (torch tensors or numpy arrays) by key.
      table: the converter table.
      dont_load: torch keys allowed to be present but ignored (an explicit allow-list).

    Raises:
      ConversionError: listing every checkpoint key the table does not use, every table key
        absent from the checkpoint, every target path missing from the module, every module
        variable the table does not fill, and every shape mismatch. Nothing is assigned.
    """
    _check_table(table)
    dont_load = set(dont_load)
    variables = module_variables(module)
    unexpected = [k for k in state_dict if k not in table and k not in dont_load]
    missing = [f"{k} -> {r.jax_path}" for k, r in table.items() if k not in state_dict]
    bad_targets = [
        f"{r.jax_path} (from {k})" for k, r in table.items() if r.jax_path not in variables
    ]
    covered = {r.jax_path for r in table.values()}
    unfilled = [
        f"{p} (module variable, no checkpoint key maps to it)"
        for p in variables
        if p not in covered
    ]
    mismatched = []
    values: dict[str, np.ndarray] = {}
    for key, rule in table.items():
        if key not in state_dict or rule.jax_path not in variables:
            continue
        src = to_numpy(state_dict[key])
        var = variables[rule.jax_path]
        target = var.get_value()
        try:
            value = rule.transform.to_jax(src)
        except ValueError as e:
            mismatched.append(f"{key}: {e}")
            continue
        if tuple(value.shape) != tuple(target.shape):
            mismatched.append(
                f"{key} {tuple(src.shape)} -> {rule.jax_path}: got {tuple(value.shape)} after "
                f"{rule.transform.name}, expected {tuple(target.shape)}"
            )
            continue
        values[rule.jax_path] = value.astype(target.dtype)
    if unexpected or missing or bad_targets or unfilled or mismatched:
        raise ConversionError(
            f"checkpoint does not match {type(module).__name__}",
            missing=missing + bad_targets + unfilled,
            unexpected=unexpected,
            mismatched=mismatched,
        )
    for path, value in values.items():
        # A JAX array (a copy): the module never aliases the caller's numpy buffers.
        variables[path].set_value(jnp.asarray(value))


def export_state_dict(module: nnx.Module, table: Table) -> dict[str, np.ndarray]:
    """The torch-layout state_dict of `module` (numpy arrays), through the same `table`.

    Raises:
      ConversionError: if a table path is missing from the module or a module variable is not
        covered by the table.
    """
    _check_table(table)
    variables = module_variables(module)
    missing = [r.jax_path for r in table.values() if r.jax_path not in variables]
    covered = {r.jax_path for r in table.values()}
    unexported = [p for p in variables if p not in covered]
    if missing or unexported:
        raise ConversionError(
            f"table does not match {type(module).__name__}",
            missing=missing,
            unexpected=unexported,
        )
    return {
        key: np.array(rule.transform.to_torch(np.asarray(variables[rule.jax_path].get_value())))
        for key, rule in table.items()
    }
