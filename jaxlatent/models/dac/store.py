"""A converted DAC model on disk: an orbax checkpoint directory plus a config JSON.

Layout of a converted directory::

    DIR/config.json   {"format": "jaxlatent.dac", "version": 1, "kwargs": {...dac.DAC kwargs},
                       "param_dtype": "float32", "source": "..."}
    DIR/state/        orbax StandardCheckpointer checkpoint of the parameters (a pure dict)

:func:`save_converted` writes the whole directory under a temporary name and renames it into
place, so a reader never sees half a conversion; :func:`load_converted` restores it, checking
every stored array's path, shape and dtype against the model of the config first.

Needs no torch: torch checkpoints are converted by :mod:`converters.dac`, and
:func:`converters.dac_cache.load_model` converts a ``.pth`` once and caches it in this format.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent.models.dac.config import DACConfig
from jaxlatent.models.dac.model import DAC
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "STATE_NAME",
    "ConvertedModelError",
    "is_converted_dir",
    "load_converted",
    "save_converted",
]

FORMAT = "jaxlatent.dac"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
STATE_NAME = "state"


class ConvertedModelError(ValueError):
    """A converted DAC directory cannot be read: not one, an invalid or unsupported config
    JSON, or parameters missing, corrupt or not matching the config."""


def _ocp():
    import orbax.checkpoint as ocp  # imported lazily: it is slow to import

    return ocp


def is_converted_dir(path: str | os.PathLike) -> bool:
    """True if `path` is a directory holding a converted model's config JSON."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_NAME))


def save_converted(
    directory: str | os.PathLike,
    config: DACConfig,
    model: DAC,
    *,
    overwrite: bool = False,
    source: str | None = None,
) -> Path:
    """Save a converted model to `directory` (config JSON + orbax checkpoint), atomically.

    Args:
      directory: the target; it must not exist unless `overwrite`.
      config: the model's configuration (must equal ``model.config``).
      model: the model.
      overwrite: replace an existing directory (after the new one is complete).
      source: a note on where the weights came from (stored in the JSON).

    Returns:
      The directory as a `Path`.

    Raises:
      FileExistsError: if `directory` exists and not `overwrite`.
      ValueError: if `config` differs from ``model.config``.
    """
    if config != model.config:
        raise ValueError(f"config {config} differs from the model's {model.config}")
    directory = Path(directory).absolute()
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} exists (pass overwrite=True to replace it)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    state = nnx.to_pure_dict(nnx.state(model))
    dtypes = {str(x.dtype) for x in jax.tree.leaves(state)}
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kwargs": config.to_kwargs(),
        "param_dtype": dtypes.pop() if len(dtypes) == 1 else sorted(dtypes),
        "source": source,
    }
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".tmp-{directory.name}-"))
    try:
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        ocp = _ocp()
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(tmp / STATE_NAME, state)
        if directory.exists():  # overwrite: swap, then remove the old one
            old = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".old-{directory.name}-"))
            os.replace(directory, old / "d")
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(tmp, directory)
            except OSError as e:  # another writer finished first (non-empty target)
                if directory.exists():
                    raise FileExistsError(f"{directory} was created concurrently") from e
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_converted(
    directory: str | os.PathLike,
    *,
    precision: PrecisionLike = DEFAULT_PRECISION,
    while_reading: Callable[[DAC], object] | None = None,
) -> DAC:
    """Load a directory written by :func:`save_converted`.

    The model's structure is built (`nnx.eval_shape`) and checked against the stored arrays'
    paths, shapes and dtypes; then the arrays are read, in a background thread while
    `while_reading` runs.

    Args:
      directory: the converted directory.
      precision: precision of the model's convolutions and projections (:mod:`jaxlatent.precision`).
      while_reading: called in this thread with the abstract model (same structure, its
        parameters `jax.ShapeDtypeStruct`) while the parameters are still being read, for
        work that needs only the structure (``model.config``, shapes), e.g. reading and
        preparing the first input or compiling the model's functions; its errors propagate
        unchanged, once the reading has finished.

    Raises:
      FileNotFoundError: if `directory` does not exist.
      ConvertedModelError: if it is not a converted DAC directory, its config JSON is invalid,
        or the orbax checkpoint is missing, corrupt or does not match the config.
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"converted model not found: {directory}")
    if not is_converted_dir(directory):
        raise ConvertedModelError(f"{directory} is not a converted DAC model (no {CONFIG_NAME})")
    try:
        meta = json.loads((directory / CONFIG_NAME).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertedModelError(f"{directory / CONFIG_NAME}: unreadable config JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConvertedModelError(f"{directory / CONFIG_NAME}: not a {FORMAT!r} config")
    if meta.get("version") != FORMAT_VERSION:
        raise ConvertedModelError(
            f"{directory / CONFIG_NAME}: format version {meta.get('version')!r} is not "
            f"supported (expected {FORMAT_VERSION})"
        )
    try:
        config = DACConfig.from_kwargs(meta.get("kwargs"))
        param_dtype = jnp.dtype(meta.get("param_dtype", "float32"))
    except (ValueError, TypeError) as e:
        raise ConvertedModelError(f"{directory / CONFIG_NAME}: invalid config: {e}") from e
    abstract = nnx.eval_shape(
        lambda: DAC(config, param_dtype=param_dtype, precision=precision, rngs=nnx.Rngs(0))
    )
    graphdef, state = nnx.split(abstract)
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
        nnx.to_pure_dict(state),
    )
    state_dir = directory / STATE_NAME
    if not state_dir.is_dir():
        raise ConvertedModelError(f"{directory}: the parameters ({STATE_NAME}/) are missing")
    ocp = _ocp()
    what = f"{state_dir}: cannot restore the parameters of a DAC with {config.to_kwargs()}"
    with ocp.StandardCheckpointer() as checkpointer, ThreadPoolExecutor(1) as pool:
        with _restore_errors(what):
            # shapes are checked first: a failed restore leaves orbax's reads dangling, and
            # nothing is read that does not fit the model
            _check_stored_shapes(checkpointer.metadata(state_dir.absolute()), target, what)
        reading = pool.submit(checkpointer.restore, state_dir.absolute(), target)
        if while_reading is not None:
            while_reading(abstract)  # meanwhile, orbax reads (mostly without the GIL)
        with _restore_errors(what):
            restored = reading.result()
    nnx.replace_by_pure_dict(state, restored)
    return nnx.merge(graphdef, state)


@contextlib.contextmanager
def _restore_errors(what: str):
    """Re-raise orbax's errors (many types: ValueError, KeyError, OSError, ...) as one
    ConvertedModelError line."""
    try:
        yield
    except ConvertedModelError:
        raise
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConvertedModelError(f"{what}: {first}") from e


def _flat_shapes(tree) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): (
            tuple(leaf.shape),
            str(jnp.dtype(leaf.dtype)),
        )
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _check_stored_shapes(metadata, target, what: str) -> None:
    """Raise ConvertedModelError unless the stored arrays have exactly the target's paths/shapes."""
    stored = _flat_shapes(getattr(metadata, "item_metadata", metadata))
    wanted = _flat_shapes(target)
    missing = sorted(set(wanted) - set(stored))
    unexpected = sorted(set(stored) - set(wanted))
    mismatched = sorted(
        f"{k}: stored {stored[k][0]} {stored[k][1]}, expected {wanted[k][0]} {wanted[k][1]}"
        for k in set(stored) & set(wanted)
        if stored[k] != wanted[k]
    )
    if missing or unexpected or mismatched:
        lines = [what]
        for title, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", mismatched),
        ):
            if items:
                lines.append(f"{title}: {len(items)}\n  " + "\n  ".join(items[:20]))
        raise ConvertedModelError("\n".join(lines))
