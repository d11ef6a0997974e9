"""Conversion of lucidrains' vector-quantize-pytorch 1.32.0 quantizers (`FSQ`,
`ResidualFSQ`, `GroupedResidualFSQ`, `LFQ`, `ResidualLFQ`, `GroupedResidualLFQ`, `SimVQ`,
`ResidualSimVQ`, `ResidualVQ`, `GroupedResidualVQ`) to and from the jaxlatent modules of the
same names, in both directions.

Their only weights are the linear projections, the optional fixed rotation, and SimVQ's
frozen codebook and code transform:

torch key                                         jaxlatent target
------------------------------------------------  --------------------------------------------
``{p}.project_in.weight`` ``[out, in]`` (+ bias)   ``{p}/project_in/kernel`` ``[in, out]``
``{p}.project_in.weight`` ``[in, out]`` (LFQ's     ``{p}/project_in/weight`` (no transform)
cosine-similarity projection)
``{p}.project_out.weight`` (+ bias)                ``{p}/project_out/kernel``
``{p}.orthogonal_rot`` ``[d, d]``                  ``{p}/orthogonal_rot``
``{p}.frozen_codebook`` ``[K, d_f]`` (SimVQ)        ``{p}/frozen_codebook``
``{p}.code_transform.weight`` ``[dim, d_f]``       ``{p}/code_transform/kernel`` ``[d_f, dim]``
``{p}.layers.{i}._codebook.embed`` ``[1, K, d]``   ``{p}/layers/{i}/codebook`` ``[K, d]``
``….embed_avg`` / ``….cluster_size`` / ``….initted``  ``…/embed_sum`` / ``…/cluster_size`` /
(ResidualVQ, one head)                             ``…/initialized``
``{p}.layers.{i}.…`` (residual)                    ``{p}/layers/{i}/…``
``{p}.rvqs.{g}.…`` (grouped)                       ``{p}/rvqs/{g}/…``

The reference repeats a shared codebook under every layer and keeps an unused ``embed_avg``
for a gradient-trained codebook: those duplicates are ignored on load and written as copies
on export.

LFQ also saves its fixed bit mask ``{p}.mask`` (``2 ** arange(codebook_dim - 1, -1, -1)``):
it is checked on load (it must be exactly that) and written on export. Loading is strict and
atomic (:func:`converters.assign.assign_strict`): a state_dict of another configuration is a
:class:`~converters.errors.ConversionError` listing every missing, unexpected and mis-shaped
key, and nothing is assigned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from converters.assign import assign_strict, export_state_dict
from converters.errors import ConversionError, located_error
from converters.state_dicts import check_state_dict, to_numpy
from converters.tables import Table, Transform, linear, tensor


def _dot(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _slash(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _has_bias(layer) -> bool:
    return getattr(layer, "bias", None) is not None


def _projections(module, tp: str, jp: str) -> Table:
    table: Table = {}
    if getattr(module, "project_in", None) is None:
        return table
    if hasattr(module.project_in, "kernel"):
        pin = module.project_in
        table |= linear(_dot(tp, "project_in"), _slash(jp, "project_in"), bias=_has_bias(pin))
    else:  # LFQ's CosineSimLinear: weight [dim_in, dim_out] in both frameworks
        table |= tensor(_dot(tp, "project_in.weight"), _slash(jp, "project_in/weight"))
    bias = _has_bias(module.project_out)
    return table | linear(_dot(tp, "project_out"), _slash(jp, "project_out"), bias=bias)


def _bit_masks(module, tp: str = "") -> dict[str, np.ndarray]:
    """torch key → expected value of every LFQ ``mask`` buffer inside `module`."""
    if hasattr(module, "rvqs"):
        return {
            k: v
            for g, m in enumerate(module.rvqs)
            for k, v in _bit_masks(m, _dot(tp, f"rvqs.{g}")).items()
        }
    if hasattr(module, "layers"):
        return {
            k: v
            for i, m in enumerate(module.layers)
            for k, v in _bit_masks(m, _dot(tp, f"layers.{i}")).items()
        }
    if hasattr(module, "bit_mask"):
        return {_dot(tp, "mask"): np.asarray(module.bit_mask(), np.int64)}
    return {}


def _sim_vq(module, tp: str, jp: str) -> Table:
    transform = module.code_transform
    if not isinstance(transform, nnx.Linear) or transform.bias is not None:
        raise ConversionError(
            "only SimVQ's default code_transform (a bias-free Linear) converts, got "
            f"{type(transform).__name__}"
        )
    return tensor(_dot(tp, "frozen_codebook"), _slash(jp, "frozen_codebook")) | linear(
        _dot(tp, "code_transform"), _slash(jp, "code_transform"), bias=False
    )


def _one_head_to_jax(w: np.ndarray) -> np.ndarray:
    if w.ndim < 1 or w.shape[0] != 1:
        raise ValueError(f"expected a leading axis of 1 (one codebook head), got {w.shape}")
    return w[0]


ONE_HEAD = Transform("one_head", _one_head_to_jax, lambda w: w[None])


def _residual_vq(module, tp: str, jp: str) -> Table:
    """ResidualVQ: projections and each codebook's state (``layers.0`` only when shared)."""
    table = _projections(module, tp, jp)
    for i, layer in enumerate(module.layers):
        t, j = _dot(tp, f"layers.{i}._codebook"), _slash(jp, f"layers/{i}")
        table |= tensor(_dot(t, "embed"), _slash(j, "codebook"), ONE_HEAD)
        table |= tensor(_dot(t, "cluster_size"), _slash(j, "cluster_size"), ONE_HEAD)
        table |= tensor(_dot(t, "initted"), _slash(j, "initialized"))
        if layer.embed_sum is not None:
            table |= tensor(_dot(t, "embed_avg"), _slash(j, "embed_sum"), ONE_HEAD)
    return table


def _copies(module, tp: str = "") -> dict[str, str]:
    """torch key → the torch key it copies, for the reference's duplicated entries: every
    layer of a shared codebook repeats ``layers.0``; a gradient-mode codebook's unused
    ``embed_avg`` repeats its ``embed``."""
    if hasattr(module, "rvqs"):
        return {
            k: v
            for g, m in enumerate(module.rvqs)
            for k, v in _copies(m, _dot(tp, f"rvqs.{g}")).items()
        }
    if not hasattr(module, "codebook_sizes"):
        return {}
    out = {}
    names = ("embed", "cluster_size", "initted", "embed_avg")
    for i in range(module.num_quantizers):
        src = _dot(tp, f"layers.{0 if module.shared_codebook else i}._codebook")
        dst = _dot(tp, f"layers.{i}._codebook")
        for name in names:
            source = (
                f"{src}.embed"
                if name == "embed_avg" and module.layers[0].embed_sum is None
                else f"{src}.{name}"
            )
            if f"{dst}.{name}" != source:
                out[f"{dst}.{name}"] = source
    return out


def quantizer_table(module, torch_prefix: str = "", jax_prefix: str = "") -> Table:
    """The conversion table of any of the ten quantizers (the LFQ bit masks excluded)."""
    tp, jp = torch_prefix, jax_prefix
    if hasattr(module, "frozen_codebook"):
        return _sim_vq(module, tp, jp)
    if hasattr(module, "codebook_sizes"):
        return _residual_vq(module, tp, jp)
    table = _projections(module, tp, jp)
    if hasattr(module, "rvqs"):
        for g, rvq in enumerate(module.rvqs):
            table |= quantizer_table(rvq, _dot(tp, f"rvqs.{g}"), _slash(jp, f"rvqs/{g}"))
    elif hasattr(module, "layers"):
        for i, layer in enumerate(module.layers):
            table |= quantizer_table(layer, _dot(tp, f"layers.{i}"), _slash(jp, f"layers/{i}"))
    elif module.orthogonal_rot is not None:
        table |= tensor(_dot(tp, "orthogonal_rot"), _slash(jp, "orthogonal_rot"))
    return table


def load_vector_quantize_pytorch(
    module, state_dict: Mapping[str, Any], *, where: str = "state_dict"
) -> None:
    """Copy a vector-quantize-pytorch quantizer's ``state_dict()`` into `module` (strict,
    atomic). `module` must be the jaxlatent quantizer built with the same arguments.

    Raises:
      CheckpointError: if `state_dict` is not a mapping of names to dense tensors.
      ConversionError: (prefixed by `where`) on any missing, unexpected or mis-shaped key,
        or an LFQ ``mask`` buffer that is not the bit mask of its codebook size.
    """
    check_state_dict(state_dict, where)
    masks = _bit_masks(module)
    bad = [
        f"{k}: expected {v.tolist()}"
        for k, v in masks.items()
        if k in state_dict
        and (to_numpy(state_dict[k]).shape != v.shape or (to_numpy(state_dict[k]) != v).any())
    ]
    missing = [k for k in masks if k not in state_dict]
    try:
        if bad or missing:
            raise ConversionError(
                f"bit masks do not match {type(module).__name__}", missing=missing, mismatched=bad
            )
        dont_load = set(masks) | set(_copies(module))
        assign_strict(module, state_dict, quantizer_table(module), dont_load=dont_load)
    except ConversionError as e:
        raise located_error(e, where) from None


def export_vector_quantize_pytorch(module) -> dict[str, np.ndarray]:
    """The torch-layout ``state_dict`` (numpy arrays) of a jaxlatent FSQ/LFQ/SimVQ-family
    quantizer, loadable by the vector-quantize-pytorch module built with the same arguments
    (``load_state_dict(..., strict=True)``)."""
    out = export_state_dict(module, quantizer_table(module)) | _bit_masks(module)
    return out | {k: out[v].copy() for k, v in _copies(module).items()}
