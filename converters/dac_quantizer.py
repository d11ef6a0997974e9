"""Conversion tables for DAC's quantizers (`dac.nn.quantize` / SpeechBrain `discrete.dac`).

torch module                                   jaxlatent target
---------------------------------------------  ----------------------------------------------
``{p}.in_proj``  weight-normed ``Conv1d(k=1)``  ``{p}/in_proj``  `WNConv1d` (g, v, bias)
``{p}.out_proj`` weight-normed ``Conv1d(k=1)``  ``{p}/out_proj`` `WNConv1d`
``{p}.codebook.weight`` ``[K, d]``               ``{p}/codebook`` ``[K, d]`` (no transform)

for one `VectorQuantize`, and ``quantizers.{i}`` → ``quantizers/{i}`` for each quantizer of a
`ResidualVectorQuantize`. Both weight-norm key styles are handled (`style`): the official
package's ``weight_g``/``weight_v`` ("legacy") and SpeechBrain's
``parametrizations.weight.original0/1``. The DAC model converter reuses
:func:`residual_vector_quantize_table` with the prefixes ``"quantizer"``/``"quantizer"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from converters.assign import assign_strict, export_state_dict
from converters.errors import ConversionError
from converters.tables import (
    Table,
    WeightNormStyle,
    detect_weight_norm_style,
    tensor,
    weight_norm_conv,
)


def _dot(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _slash(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def vector_quantize_table(torch_prefix: str, jax_prefix: str, *, style: WeightNormStyle) -> Table:
    """Table of one `VectorQuantize`: ``in_proj``, ``out_proj`` and ``codebook.weight``."""
    table: Table = {}
    for proj in ("in_proj", "out_proj"):
        table |= weight_norm_conv(
            _dot(torch_prefix, proj), _slash(jax_prefix, proj), style=style, ndim=1
        )
    table |= tensor(_dot(torch_prefix, "codebook.weight"), _slash(jax_prefix, "codebook"))
    return table


def residual_vector_quantize_table(
    n_codebooks: int,
    *,
    style: WeightNormStyle,
    torch_prefix: str = "",
    jax_prefix: str = "",
) -> Table:
    """Table of a `ResidualVectorQuantize` with `n_codebooks` quantizers.

    Args:
      n_codebooks: number of quantizers.
      style: ``"legacy"`` (official DAC checkpoints) or ``"parametrizations"`` (SpeechBrain).
      torch_prefix: prefix of the RVQ in the torch state_dict (``"quantizer"`` inside DAC).
      jax_prefix: '/'-joined path of the RVQ in the NNX module (``"quantizer"`` inside DAC).

    Example:
      >>> table = residual_vector_quantize_table(
      ...     2, style="legacy", torch_prefix="quantizer", jax_prefix="quantizer"
      ... )
      >>> table["quantizer.quantizers.1.in_proj.weight_g"].jax_path
      'quantizer/quantizers/1/in_proj/weight_g'
      >>> len(table)
      14
    """
    table: Table = {}
    for i in range(n_codebooks):
        table |= vector_quantize_table(
            _dot(torch_prefix, f"quantizers.{i}"),
            _slash(jax_prefix, f"quantizers/{i}"),
            style=style,
        )
    return table


def _style_of(state_dict: Mapping[str, Any]) -> WeightNormStyle:
    style = detect_weight_norm_style(state_dict)
    if style is None:
        raise ConversionError(
            "the state_dict has no weight-normalised convolution keys (weight_g/weight_v or "
            "parametrizations.weight.original0/1): not a DAC quantizer"
        )
    return style


def load_residual_vector_quantize(module, state_dict: Mapping[str, Any]) -> WeightNormStyle:
    """Copy a torch `ResidualVectorQuantize` state_dict into `module` (strict, atomic).

    The weight-norm key style is detected from the keys.

    Returns:
      The detected style.

    Raises:
      ConversionError: on any missing, unexpected or mis-shaped key (nothing is assigned).
    """
    style = _style_of(state_dict)
    table = residual_vector_quantize_table(module.n_codebooks, style=style)
    assign_strict(module, state_dict, table)
    return style


def load_vector_quantize(module, state_dict: Mapping[str, Any]) -> WeightNormStyle:
    """Copy a torch `VectorQuantize` state_dict into `module` (strict, atomic)."""
    style = _style_of(state_dict)
    assign_strict(module, state_dict, vector_quantize_table("", "", style=style))
    return style


def export_residual_vector_quantize(module, *, style: WeightNormStyle = "legacy") -> dict:
    """The torch-layout state_dict (numpy arrays) of a jaxlatent `ResidualVectorQuantize`."""
    return export_state_dict(
        module, residual_vector_quantize_table(module.n_codebooks, style=style)
    )
