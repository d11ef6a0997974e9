"""A DAC model from a converted directory or a torch checkpoint, converting ``.pth`` files once.

:func:`load_model` opens either a converted directory (:mod:`jaxlatent.models.dac.store`) or a
torch checkpoint (``.pth``/``.pt``/``.ckpt``), converting the latter with
:func:`converters.dac.convert_checkpoint` and caching the conversion (keyed by the file's
SHA-256) in a user cache directory (``$JAXLATENT_CACHE_DIR``, else
``$XDG_CACHE_HOME/jaxlatent``, else ``~/.cache/jaxlatent``; subdirectory ``dac``) or an
explicit `cache_dir`.

A converted directory alone needs neither torch nor this module: use
:func:`jaxlatent.models.dac.load_converted`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from converters.dac_formats import convert_any
from converters.dac_hf import CONFIG_NAME, WEIGHTS_NAME, is_hf_folder
from jaxlatent._cache_root import cache_root
from jaxlatent.models.dac import (
    DAC,
    ConvertedModelError,
    is_converted_dir,
    load_converted,
    save_converted,
)
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

__all__ = ["default_cache_dir", "load_model"]


def default_cache_dir() -> Path:
    """Where :func:`load_model` caches conversions of torch checkpoints."""
    return cache_root() / "dac"


def _sha256(*paths: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_model(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    cache: bool = True,
    sample_rate: int | None = None,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> DAC:
    """A :class:`DAC` from a converted directory, a checkpoint file or a transformers folder.

    A checkpoint is converted with :func:`converters.dac_formats.convert_any` and, when
    `cache`, saved to ``cache_dir / f"{stem}-{sha256[:16]}"`` (default
    :func:`default_cache_dir`) so the next call loads the conversion instead; the cache entry
    is written atomically (concurrent callers each convert, the first rename wins).

    Args:
      path: a converted directory, a ``.pth``/``.pt``/``.ckpt``/``.safetensors`` file, or a
        transformers ``DacModel.save_pretrained`` folder.
      cache_dir: explicit cache location.
      cache: set False to convert without reading or writing the cache.
      sample_rate: for bare state_dicts of non-released architectures (see
        :func:`converters.dac.infer_config`).
      precision: precision of the model's convolutions and projections (:mod:`jaxlatent.precision`).

    Returns:
      The model (its configuration is ``model.config``).

    Raises:
      FileNotFoundError: if `path` does not exist.
      jaxlatent.models.dac.ConvertedModelError: for a directory, as :func:`load_converted`.
      converters.errors.CheckpointError, converters.errors.ConversionError: for a
        checkpoint, as :func:`converters.dac_formats.convert_any`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    hf_folder = path.is_dir() and is_hf_folder(path)
    if path.is_dir() and not hf_folder:
        return load_converted(path, precision=precision)
    entry = None
    if cache:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        hashed = (path / CONFIG_NAME, path / WEIGHTS_NAME) if hf_folder else (path,)
        if hf_folder and not hashed[1].is_file():
            raise FileNotFoundError(f"{path}: no {WEIGHTS_NAME} next to {CONFIG_NAME}")
        entry = root / f"{path.stem if not hf_folder else path.name}-{_sha256(*hashed)[:16]}"
        if is_converted_dir(entry):
            with contextlib.suppress(ConvertedModelError):
                return load_converted(entry, precision=precision)
    config, model = convert_any(path, sample_rate=sample_rate, precision=precision)
    if entry is not None:
        # a broken entry (e.g. from another jaxlatent version) is replaced
        with contextlib.suppress(FileExistsError):
            save_converted(
                entry, config, model, overwrite=entry.exists(), source=str(path.absolute())
            )
    return model
