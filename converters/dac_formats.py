"""Which kind of DAC checkpoint a source is, and its conversion: one entry point for all.

Two families of checkpoints hold a DAC (each in any weight-norm key style):

* ``"release"``: the official package's keys (``encoder.block.0``, ``decoder.model.0``, ...):
  release ``.pth`` files, SpeechBrain state_dicts, :mod:`converters.dac`;
* ``"transformers"``: Hugging Face transformers' ``DacModel`` keys (``encoder.conv1``,
  ``decoder.conv1``, ...): ``save_pretrained`` folders, their ``.safetensors`` files or bare
  state_dicts, :mod:`converters.dac_hf`.

:func:`checkpoint_format` tells them apart by the folder's ``config.json`` or the keys;
:func:`convert_any` converts either. The command line (``convert dac``, ``encode``/``decode``/
``parity dac --model``) and :func:`converters.dac_cache.load_model` go through it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import jax.numpy as jnp

from converters import checkpoint_files
from converters.dac import convert_checkpoint
from converters.dac_hf import convert_hf, is_hf_folder, is_hf_state_dict
from converters.errors import CheckpointError
from jaxlatent.models.dac import DAC, DACConfig
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

__all__ = ["CheckpointFormat", "checkpoint_format", "convert_any"]

CheckpointFormat = Literal["release", "transformers"]


def checkpoint_format(source: str | os.PathLike | Mapping[str, Any]) -> CheckpointFormat:
    """``"transformers"`` for a ``DacModel`` folder, file or state_dict, else ``"release"``.

    A folder is a transformers one when its ``config.json`` has ``model_type`` ``"dac"``; a
    file or state_dict when its keys are transformers' (``encoder.conv1.*``). A ``.pth`` is
    loaded (``weights_only``) to see its keys; a ``.safetensors`` file's header is read.

    Raises:
      FileNotFoundError: if a path does not exist.
      CheckpointError: for a folder that is not a transformers ``DacModel`` folder, or an
        unreadable file.
    """
    if isinstance(source, Mapping):
        obj: Any = source
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if path.is_dir():
            if is_hf_folder(path):
                return "transformers"
            raise CheckpointError(
                f"{path} is a folder but not a transformers DacModel folder (config.json with "
                "model_type 'dac'); give a checkpoint file"
            )
        if checkpoint_files.is_safetensors(path):
            obj = dict.fromkeys(checkpoint_files.safetensors_keys(path))
        else:
            obj = checkpoint_files.load_torch_checkpoint(path)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    return "transformers" if isinstance(obj, Mapping) and is_hf_state_dict(obj) else "release"


def convert_any(
    source: str | os.PathLike | Mapping[str, Any],
    *,
    sample_rate: int | None = None,
    param_dtype=jnp.float32,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> tuple[DACConfig, DAC]:
    """Convert a DAC checkpoint of either family (:func:`checkpoint_format`) to a model.

    Release-family sources go to :func:`converters.dac.convert_checkpoint`, transformers ones
    to :func:`converters.dac_hf.convert_hf` (same arguments, same errors).

    Returns:
      ``(config, model)``.
    """
    kw = {"sample_rate": sample_rate, "param_dtype": param_dtype, "precision": precision}
    if checkpoint_format(source) == "transformers":
        return convert_hf(source, **kw)
    return convert_checkpoint(source, **kw)
