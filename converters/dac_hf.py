"""Hugging Face transformers ``DacModel`` checkpoints <-> jaxlatent ``DAC``.

transformers (>= 5, ``transformers.models.dac``) holds the same DAC as descript-audio-codec
1.0.0 with named submodules instead of ``nn.Sequential`` indices; its module names are the
attribute names of :class:`jaxlatent.models.dac.DAC` (``blocks`` is ``block``), so
:func:`hf_key` maps every jaxlatent parameter path to its key:

=======================================  =========================================
transformers key prefix                  official (``dac.DAC``) key prefix
=======================================  =========================================
``encoder.conv1``                        ``encoder.block.0``
``encoder.block.{i}.res_unit{j}``        ``encoder.block.{i+1}.block.{j-1}``
``  .snake1/.conv1/.snake2/.conv2``      ``  .block.0/.block.1/.block.2/.block.3``
``encoder.block.{i}.snake1`` / ``conv1``  ``encoder.block.{i+1}.block.3`` / ``.block.4``
``encoder.snake1`` / ``encoder.conv2``   ``encoder.block.{n+1}`` / ``{n+2}``
``decoder.conv1``                        ``decoder.model.0``
``decoder.block.{i}.snake1`` / ``conv_t1``  ``decoder.model.{i+1}.block.0`` / ``.block.1``
``decoder.block.{i}.res_unit{j}``        ``decoder.model.{i+1}.block.{j+1}``
``decoder.snake1`` / ``decoder.conv2``   ``decoder.model.{n+1}`` / ``{n+2}``
``quantizer.quantizers.{i}.*``           the same
=======================================  =========================================

A ``save_pretrained`` folder holds ``config.json`` (a ``DacConfig``) and ``model.safetensors``
whose convolutions are plain ``weight`` tensors: ``DacModel`` has no weight norm unless
``apply_weight_norm()`` is called (which gives ``parametrizations.weight.original0/1`` keys;
``weight_g``/``weight_v`` with older torch). All three are read: a fused ``weight`` ``w``
becomes ``weight_v = w``, ``weight_g = ||w||`` (as :func:`converters.dac.normalize_state_dict`).

Where transformers' model differs from the official one (tested in
``tests/parity/test_dac_hf.py``):

* ``DacConfig`` has no ``latent_dim``: ``hidden_size`` (``encoder_hidden_size * 2**len(
  downsampling_ratios)`` unless given) plays its part; the decoder's strides are
  ``upsampling_ratios`` (the reversed ``downsampling_ratios`` unless given); ``codebook_dim``
  is one int for every codebook, and ``codebook_size`` must be a power of 2.
* The codebook search maximises ``2 e.c + ||c||^2`` where the official one maximises
  ``2 e.c - ||c||^2`` (a sign slip in transformers); with l2-normalised codebooks
  ``||c||^2`` is 1 up to rounding, so the codes agree except between codebook rows that
  differ only by their norm.
* ``DacModel.encode`` does not pad the audio to the hop length (``dac.DAC.forward`` does),
  and its VQ losses are per batch item (``[batch]``), not means.

Conversion is strict as for release checkpoints: every key used, every parameter filled,
every shape checked against the configuration, and a ``config.json`` that disagrees with the
weights is refused. Nothing here imports torch or transformers: ``.safetensors`` files are read
and written by :mod:`converters.checkpoint_files` with the ``safetensors`` library.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from converters import assign, checkpoint_files, errors, state_dicts, tables
from converters.dac import infer_config, normalize_state_dict
from converters.dac_tables import expected_torch_shapes, model_table
from converters.errors import CheckpointError, ConversionError
from converters.tables import Table
from jaxlatent.models.dac import DAC, DACConfig
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "check_hf_state_dict",
    "config_from_hf",
    "config_to_hf",
    "convert_hf",
    "expected_hf_shapes",
    "export_hf_folder",
    "hf_key",
    "hf_table",
    "infer_hf_config",
    "is_hf_folder",
    "is_hf_state_dict",
    "model_from_hf_state_dict",
    "read_hf",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

HFStyle = Literal["fused", "legacy", "parametrizations"]

#: ``DacConfig`` fields (transformers 5) and their defaults; ``hidden_size``,
#: ``upsampling_ratios`` and ``hop_length`` are derived from them unless given.
_HF_DEFAULTS: dict[str, Any] = {
    "encoder_hidden_size": 64,
    "downsampling_ratios": [2, 4, 8, 8],
    "decoder_hidden_size": 1536,
    "n_codebooks": 9,
    "codebook_size": 1024,
    "codebook_dim": 8,
    "quantizer_dropout": 0.0,
    "commitment_loss_weight": 0.25,
    "codebook_loss_weight": 1.0,
    "sampling_rate": 16000,
}


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def hf_key(jax_path: str, style: HFStyle = "legacy") -> str | None:
    """The transformers key of a :class:`DAC` parameter path (``None``: not stored).

    ``blocks`` becomes ``block`` and ``codebook`` ``codebook.weight``; a weight-norm pair
    ``weight_g``/``weight_v`` is kept (``"legacy"``), renamed to
    ``parametrizations.weight.original0/1`` (``"parametrizations"``) or fused into one
    ``weight`` (``"fused"``: ``weight_v``'s key, ``weight_g`` has none).

    Example:
      >>> hf_key("encoder/blocks/0/res_unit1/conv1/weight_v", "fused")
      'encoder.block.0.res_unit1.conv1.weight'
      >>> hf_key("quantizer/quantizers/3/codebook")
      'quantizer.quantizers.3.codebook.weight'
    """
    parts = ["block" if p == "blocks" else p for p in jax_path.split("/")]
    last = parts.pop()
    if last == "codebook":
        parts += ["codebook", "weight"]
    elif last in ("weight_g", "weight_v") and style == "fused":
        if last == "weight_g":
            return None
        parts.append("weight")
    elif last in ("weight_g", "weight_v") and style == "parametrizations":
        parts.append(tables.weight_norm_names("parametrizations")[last == "weight_v"])
    else:
        parts.append(last)
    return ".".join(parts)


def hf_table(config: DACConfig, style: Literal["legacy", "parametrizations"] = "legacy") -> Table:
    """Every tensor of a weight-normed ``DacModel`` -> its path in :class:`DAC` (and layout)."""
    return {hf_key(r.jax_path, style): r for r in model_table(config).values()}


def expected_hf_shapes(config: DACConfig, style: HFStyle = "fused") -> dict[str, tuple]:
    """Key -> shape of every tensor in the state_dict of a ``DacModel`` of `config`."""
    shapes = expected_torch_shapes(config, style="legacy")
    out = {}
    for key, rule in model_table(config).items():
        name = hf_key(rule.jax_path, style)
        if name is not None:
            out[name] = shapes[key]
    return out


def is_hf_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """True if the keys are transformers' (``encoder.conv1.*``), not the official package's."""
    return any(str(k).startswith(("encoder.conv1.", "decoder.conv1.")) for k in state_dict)


def _style(state_dict: Mapping[str, Any]) -> HFStyle:
    return normalize_state_dict(state_dict)[1]


def check_hf_state_dict(state_dict: Mapping[str, Any], config: DACConfig) -> HFStyle:
    """Check that `state_dict` is exactly a ``DacModel`` state_dict of `config`.

    Returns:
      Its weight-norm style: ``"fused"`` (plain ``weight``, as ``save_pretrained`` writes),
      ``"parametrizations"`` or ``"legacy"``.

    Raises:
      ConversionError: on mixed styles, or listing every missing, unexpected and mis-shaped
        key (transformers' names).
    """
    style = _style(state_dict)
    expected = expected_hf_shapes(config, style)
    state_dicts.check_keys_and_shapes(
        state_dict, expected, f"a transformers DacModel with {config}"
    )
    return style


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def config_from_hf(hf_config: Mapping[str, Any]) -> DACConfig:
    """The :class:`DACConfig` of a transformers ``DacConfig`` (its ``config.json`` as a dict).

    ``encoder_hidden_size`` -> ``encoder_dim``, ``downsampling_ratios`` -> ``encoder_rates``,
    ``hidden_size`` -> ``latent_dim``, ``decoder_hidden_size`` -> ``decoder_dim``,
    ``upsampling_ratios`` -> ``decoder_rates``, ``sampling_rate`` -> ``sample_rate``;
    ``n_codebooks``, ``codebook_size``, ``codebook_dim`` and ``quantizer_dropout`` keep their
    names. Missing fields take ``DacConfig``'s defaults (and ``hidden_size``,
    ``upsampling_ratios`` their derived values, as ``DacConfig`` does). Other entries
    (``architectures``, ``dtype``, the loss weights, ...) play no part in the weights.

    Raises:
      ValueError: if `hf_config` is not a mapping whose ``model_type`` is ``"dac"``, or a
        value is invalid (including a ``hop_length`` that is not the product of the ratios).

    Example:
      >>> config = config_from_hf({"model_type": "dac", "downsampling_ratios": [2, 4, 5, 8],
      ...                          "n_codebooks": 12, "sampling_rate": 16000})
      >>> config.latent_dim, config.decoder_rates, config.sample_rate
      (1024, (8, 5, 4, 2), 16000)
    """
    if not isinstance(hf_config, Mapping) or hf_config.get("model_type") != "dac":
        got = hf_config.get("model_type") if isinstance(hf_config, Mapping) else hf_config
        raise ValueError(f"not a transformers DacConfig (model_type {got!r}, expected 'dac')")
    c = {**_HF_DEFAULTS, **hf_config}
    ratios = c["downsampling_ratios"]
    if not isinstance(ratios, list | tuple) or not ratios:
        raise ValueError(f"downsampling_ratios must be a non-empty list, got {ratios!r}")
    config = DACConfig(
        encoder_dim=c["encoder_hidden_size"],
        encoder_rates=tuple(ratios),
        latent_dim=c.get("hidden_size", None),
        decoder_dim=c["decoder_hidden_size"],
        decoder_rates=tuple(c.get("upsampling_ratios", ratios[::-1])),
        n_codebooks=c["n_codebooks"],
        codebook_size=c["codebook_size"],
        codebook_dim=c["codebook_dim"],
        quantizer_dropout=c["quantizer_dropout"],
        sample_rate=c["sampling_rate"],
    )
    if "hop_length" in c and c["hop_length"] != config.hop_length:
        raise ValueError(
            f"hop_length {c['hop_length']!r} is not the product of downsampling_ratios "
            f"{list(config.encoder_rates)} ({config.hop_length})"
        )
    return config


def config_to_hf(config: DACConfig) -> dict[str, Any]:
    """The ``config.json`` of a transformers ``DacModel`` with `config`'s architecture.

    Raises:
      ValueError: if transformers cannot express `config`: one ``codebook_dim`` per
        codebook, or a ``codebook_size`` that is not a power of 2 (``DacModel`` refuses it).
    """
    if isinstance(config.codebook_dim, tuple):
        raise ValueError(
            f"transformers' DacConfig has one codebook_dim for every codebook; this model has "
            f"{list(config.codebook_dim)}"
        )
    if 2 ** int(math.log2(config.codebook_size)) != config.codebook_size:
        raise ValueError(
            f"transformers' DacModel needs a power-of-2 codebook_size, got {config.codebook_size}"
        )
    return {
        "architectures": ["DacModel"],
        "model_type": "dac",
        "encoder_hidden_size": config.encoder_dim,
        "downsampling_ratios": list(config.encoder_rates),
        "hidden_size": config.latent_dim,
        "decoder_hidden_size": config.decoder_dim,
        "upsampling_ratios": list(config.decoder_rates),
        "hop_length": config.hop_length,
        "n_codebooks": config.n_codebooks,
        "codebook_size": config.codebook_size,
        "codebook_dim": config.codebook_dim,
        "quantizer_dropout": config.quantizer_dropout,
        "commitment_loss_weight": _HF_DEFAULTS["commitment_loss_weight"],
        "codebook_loss_weight": _HF_DEFAULTS["codebook_loss_weight"],
        "sampling_rate": config.sample_rate,
        "dtype": "float32",
    }


def _weight_shape(state_dict: Mapping[str, Any], prefix: str) -> tuple[int, ...] | None:
    for suffix in ("weight", "weight_v", "parametrizations.weight.original1"):
        if f"{prefix}.{suffix}" in state_dict:
            return tuple(state_dicts.to_numpy(state_dict[f"{prefix}.{suffix}"]).shape)
    return None


def infer_hf_config(state_dict: Mapping[str, Any], *, sample_rate: int | None = None) -> DACConfig:
    """The :class:`DACConfig` whose ``DacModel`` has the shapes of a bare state_dict.

    As :func:`converters.dac.infer_config` (whose rules it applies to the shapes of
    transformers' keys): channels, strides, codebooks from the shapes; the sample rate from
    `sample_rate` or the released variant the architecture is.

    Raises:
      ConversionError: if a key the shapes are read from is missing.
      ValueError: if the sample rate can be neither inferred nor was given.
    """
    release: dict[str, np.ndarray] = {}

    def put(hf_prefix: str, release_key: str, required: bool) -> bool:
        shape = _weight_shape(state_dict, hf_prefix)
        if shape is None:
            if required:
                raise ConversionError(
                    f"cannot infer the DAC configuration: no {hf_prefix}.weight (or weight_v, "
                    f"parametrizations.weight.original1) in the state_dict"
                )
            return False
        release[release_key] = np.broadcast_to(np.float32(0), shape)  # the shape, no memory
        return True

    put("encoder.conv1", "encoder.block.0.weight_v", True)
    n = 0
    while put(f"encoder.block.{n}.conv1", f"encoder.block.{n + 1}.block.4.weight_v", False):
        n += 1
    put("encoder.conv2", f"encoder.block.{n + 2}.weight_v", True)
    put("decoder.conv1", "decoder.model.0.weight_v", True)
    m = 0
    while put(f"decoder.block.{m}.conv_t1", f"decoder.model.{m + 1}.block.1.weight_v", False):
        m += 1
    i = 0
    while f"quantizer.quantizers.{i}.codebook.weight" in state_dict:
        key = f"quantizer.quantizers.{i}.codebook.weight"
        release[key] = np.broadcast_to(np.float32(0), state_dicts.to_numpy(state_dict[key]).shape)
        i += 1
    return infer_config(release, sample_rate=sample_rate)


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def model_from_hf_state_dict(
    state_dict: Mapping[str, Any],
    config: DACConfig,
    *,
    param_dtype=jnp.float32,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> DAC:
    """A :class:`DAC` holding a ``DacModel`` state_dict (fused or weight-normed), strictly.

    Raises:
      ConversionError: on mixed key styles or any missing, unexpected or mis-shaped key.
    """
    check_hf_state_dict(state_dict, config)
    legacy, _ = normalize_state_dict(state_dict)
    module = nnx.eval_shape(
        lambda: DAC(config, param_dtype=param_dtype, precision=precision, rngs=nnx.Rngs(0))
    )
    assign.assign_strict(module, legacy, hf_table(config))
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))


def is_hf_folder(path: str | os.PathLike) -> bool:
    """True if `path` is a folder whose ``config.json`` is a transformers ``DacConfig``."""
    config = Path(path) / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        meta = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("model_type") == "dac"


def _read_hf_config(path: Path) -> tuple[DACConfig, dict[str, Any]]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable JSON: {str(e).splitlines()[0]}") from e
    try:
        return config_from_hf(meta), meta
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid DacConfig: {e}") from e


def read_hf(
    source: str | os.PathLike | Mapping[str, Any],
) -> tuple[dict[str, Any], DACConfig | None, str]:
    """The state_dict, the ``config.json`` config (or None) and a description of a source.

    `source` is a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``), a
    ``.safetensors`` file (with the ``config.json`` next to it if there is one), a torch
    file holding a state_dict (``torch.load(weights_only=True)``), or a state_dict.

    Raises:
      FileNotFoundError: if the source or the folder's weights do not exist.
      CheckpointError: for unreadable files, an invalid ``config.json``, or a state_dict
        that is not a mapping of names to dense real tensors; or a config with more layers
        than the weights have tensors.
    """
    config = None
    if isinstance(source, Mapping):
        where, obj = "state_dict", source
    else:
        path = Path(source)
        where = os.fspath(path)
        if path.is_dir():
            if not is_hf_folder(path):
                raise CheckpointError(f"{path}: no transformers DacConfig ({CONFIG_NAME})")
            weights = path / WEIGHTS_NAME
            if not weights.exists():
                raise FileNotFoundError(f"{path}: no {WEIGHTS_NAME} next to {CONFIG_NAME}")
            config, _ = _read_hf_config(path / CONFIG_NAME)
            obj = checkpoint_files.load_torch_checkpoint(weights)
        else:
            obj = checkpoint_files.load_torch_checkpoint(path)
            if checkpoint_files.is_safetensors(path) and is_hf_folder(path.parent):
                config, _ = _read_hf_config(path.parent / CONFIG_NAME)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # safetensors metadata or a {"state_dict": ...} wrapper
    state_dicts.check_state_dict(obj, where)
    if not obj:
        raise CheckpointError(f"{where}: the state_dict is empty")
    if config is not None:
        counts = {
            "n_codebooks": config.n_codebooks,
            "len(downsampling_ratios)": len(config.encoder_rates),
            "len(upsampling_ratios)": len(config.decoder_rates),
        }
        state_dicts.check_counts_fit(where, obj, counts)
    return dict(obj), config, where


def convert_hf(
    source: str | os.PathLike | Mapping[str, Any],
    config: DACConfig | None = None,
    *,
    sample_rate: int | None = None,
    param_dtype=jnp.float32,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> tuple[DACConfig, DAC]:
    """Convert a transformers ``DacModel`` checkpoint (see :func:`read_hf`) to a :class:`DAC`.

    Args:
      source: a ``save_pretrained`` folder, a ``.safetensors`` or torch file, or a state_dict
        (torch tensors or numpy arrays; fused or weight-normed).
      config: the configuration; default: the folder's ``config.json``, else inferred from
        the shapes (:func:`infer_hf_config`).
      sample_rate: for :func:`infer_hf_config` (a bare state_dict of a non-released model).
      param_dtype: dtype of the JAX parameters.
      precision: precision of the model's convolutions and projections (:mod:`jaxlatent.precision`).

    Returns:
      ``(config, model)``.

    Raises:
      FileNotFoundError, CheckpointError: as :func:`read_hf`.
      ConversionError: if the weights do not fit the configuration (every missing,
        unexpected and mis-shaped key listed, with transformers' names; for a folder, as a
        disagreement with its ``config.json``), or the configuration cannot be inferred.
      ValueError: if `config` disagrees with the folder's ``config.json``.
    """
    state_dict, file_config, where = read_hf(source)
    if config is not None and file_config is not None and config != file_config:
        raise ValueError(f"config {config} disagrees with {where}'s {CONFIG_NAME} {file_config}")
    config = config or file_config
    if config is None:
        try:
            config = infer_hf_config(state_dict, sample_rate=sample_rate)
        except ConversionError as e:
            raise errors.located_error(e, where) from e
        except (ValueError, IndexError) as e:
            raise ConversionError(f"{where}: cannot infer the DAC configuration: {e}") from e
    try:
        model = model_from_hf_state_dict(
            state_dict, config, param_dtype=param_dtype, precision=precision
        )
    except ConversionError as e:
        source_note = None if file_config is None else f"{CONFIG_NAME} {_hf_note(config)}"
        raise errors.located_error(e, where, config_source=source_note) from e
    return config, model


def _hf_note(config: DACConfig) -> str:
    """A short description of `config` in ``DacConfig``'s terms (for messages)."""
    return (
        f"(encoder_hidden_size={config.encoder_dim}, downsampling_ratios="
        f"{list(config.encoder_rates)}, hidden_size={config.latent_dim}, decoder_hidden_size="
        f"{config.decoder_dim}, upsampling_ratios={list(config.decoder_rates)}, n_codebooks="
        f"{config.n_codebooks}, codebook_size={config.codebook_size}, codebook_dim="
        f"{config.codebook_dim})"
    )


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def _fused_state_dict(model: DAC) -> dict[str, np.ndarray]:
    """``DacModel``'s state_dict of `model`: each kernel ``g * v / ||v||`` (float64, rounded)."""
    legacy = assign.export_state_dict(model, hf_table(model.config))
    out: dict[str, np.ndarray] = {}
    for key, value in legacy.items():
        if key.endswith(".weight_g"):
            continue
        if key.endswith(".weight_v"):
            prefix = key[: -len(".weight_v")]
            v = value.astype(np.float64)
            g = legacy[f"{prefix}.weight_g"].astype(np.float64)
            norm = np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
            out[f"{prefix}.weight"] = (g * v / norm).astype(value.dtype)
        else:
            out[key] = np.array(value, copy=True)
    return out


def export_hf_folder(model: DAC, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write `model` as a folder that ``transformers.DacModel.from_pretrained`` loads.

    The folder holds ``config.json`` (:func:`config_to_hf`) and ``model.safetensors`` with
    transformers' keys and plain ``weight`` tensors (weight norm folded in, as in the hub's
    checkpoints: ``g * v / ||v||`` in float64, rounded once). It is written under a temporary
    name and renamed into place.

    Returns:
      The folder.

    Raises:
      FileExistsError: if `directory` exists and not `overwrite`.
      ValueError: if transformers cannot express the model's configuration
        (:func:`config_to_hf`).
    """
    hf_config = config_to_hf(model.config)
    directory = Path(directory).absolute()
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} exists (pass overwrite=True to replace it)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".tmp-{directory.name}-"))
    try:
        (tmp / CONFIG_NAME).write_text(json.dumps(hf_config, indent=2) + "\n")
        checkpoint_files.save_safetensors(_fused_state_dict(model), tmp / WEIGHTS_NAME)
        if directory.exists():
            old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".old-{directory.name}-"))
            os.replace(directory, old / "d")
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory
