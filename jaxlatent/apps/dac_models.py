"""The ``--model`` of ``jaxlatent encode`` / ``decode``: a DAC model, or a path to load it from.

A converted directory (``jaxlatent convert dac``) is restored by jaxlatent alone; only a
checkpoint (a ``.pth`` or ``.safetensors`` file, or a transformers ``DacModel`` folder)
imports the converters, to be converted and cached (:mod:`converters.dac_cache`).
"""

from __future__ import annotations

import json
import os

from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

__all__ = ["load_dac_model"]


def load_dac_model(model, precision: PrecisionLike = DEFAULT_PRECISION):
    """`model` as given if it is a model, else loaded from the path it is.

    Args:
      model: a :class:`jaxlatent.models.dac.DAC`, or the path (str or `os.PathLike`) of a
        converted directory, a DAC checkpoint or a transformers ``DacModel`` folder.
      precision: the loaded model's precision (:mod:`jaxlatent.precision`); a given `DAC`
        keeps its own.

    Returns:
      The DAC model.

    Raises:
      ValueError, OSError: for a path that holds no loadable DAC model (as
        :func:`jaxlatent.models.dac.load_converted` / ``converters.dac_cache.load_model``).
    """
    if isinstance(model, str | os.PathLike):
        if os.path.isdir(model) and not _is_transformers_folder(model):
            from jaxlatent.models.dac import load_converted

            return load_converted(model, precision=precision)
        from converters.dac_cache import load_model

        return load_model(model, precision=precision)
    return model


def _is_transformers_folder(path) -> bool:
    """True if `path`'s ``config.json`` is a transformers ``DacConfig`` (``model_type`` "dac")."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("model_type") == "dac"
