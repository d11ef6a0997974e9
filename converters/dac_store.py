"""Converted DAC models on disk: an orbax checkpoint directory plus a config JSON.

Layout of a converted directory::

    DIR/config.json   {"format": "jaxlatent.dac", "version": 1, "kwargs": {...dac.DAC kwargs},
                       "param_dtype": "float32", "source": "..."}
    DIR/state/        orbax StandardCheckpointer checkpoint of the parameters (a pure dict)

:func:`save_converted` writes the whole directory under a temporary name and renames it into
place, so a reader never sees half a conversion. :func:`load_model` opens either a converted
directory or a torch checkpoint (``.pth``/``.pt``/``.ckpt``), converting the latter on the fly
and caching the conversion (keyed by the file's SHA-256) in a user cache directory
(``$JAXLATENT_CACHE_DIR``, else ``$XDG_CACHE_HOME/jaxlatent``, else ``~/.cache/jaxlatent``;
subdirectory ``dac``) or an explicit `cache_dir`.

Reading a converted directory needs no torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from converters.common import CheckpointError
from jaxlatent.models.dac import DAC, DACConfig

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "STATE_NAME",
    "default_cache_dir",
    "is_converted_dir",
    "load_converted",
    "load_model",
    "save_converted",
]

FORMAT = "jaxlatent.dac"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
STATE_NAME = "state"


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


def load_converted(directory: str | os.PathLike, *, precision: jax.lax.PrecisionLike = None) -> DAC:
    """Load a directory written by :func:`save_converted`.

    Raises:
      FileNotFoundError: if `directory` does not exist.
      CheckpointError: if it is not a converted DAC directory, its config JSON is invalid,
        or the orbax checkpoint is missing, corrupt or does not match the config.
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"converted model not found: {directory}")
    if not is_converted_dir(directory):
        raise CheckpointError(f"{directory} is not a converted DAC model (no {CONFIG_NAME})")
    try:
        meta = json.loads((directory / CONFIG_NAME).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{directory / CONFIG_NAME}: unreadable config JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{directory / CONFIG_NAME}: not a {FORMAT!r} config")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory / CONFIG_NAME}: format version {meta.get('version')!r} is not "
            f"supported (expected {FORMAT_VERSION})"
        )
    try:
        config = DACConfig.from_kwargs(meta.get("kwargs"))
        param_dtype = jnp.dtype(meta.get("param_dtype", "float32"))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{directory / CONFIG_NAME}: invalid config: {e}") from e
    abstract = nnx.eval_shape(
        lambda: DAC(config, param_dtype=param_dtype, precision=precision, rngs=nnx.Rngs(0))
    )
    graphdef, state = nnx.split(abstract)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
        nnx.to_pure_dict(state),
    )
    state_dir = directory / STATE_NAME
    if not state_dir.is_dir():
        raise CheckpointError(f"{directory}: the parameters ({STATE_NAME}/) are missing")
    ocp = _ocp()
    what = f"{state_dir}: cannot restore the parameters of a DAC with {config.to_kwargs()}"
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            # shapes are checked first: a failed restore leaves orbax's reads dangling
            _check_stored_shapes(checkpointer.metadata(state_dir.absolute()), target, what)
            restored = checkpointer.restore(state_dir.absolute(), target)
    except CheckpointError:
        raise
    except Exception as e:  # orbax raises many types (ValueError, KeyError, OSError, ...)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{what}: {first}") from e
    nnx.replace_by_pure_dict(state, restored)
    return nnx.merge(graphdef, state)


def _flat_shapes(tree) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): (
            tuple(leaf.shape),
            str(jnp.dtype(leaf.dtype)),
        )
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _check_stored_shapes(metadata, target, what: str) -> None:
    """Raise CheckpointError unless the stored arrays have exactly the target's paths/shapes."""
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
        raise CheckpointError("\n".join(lines))


def default_cache_dir() -> Path:
    """Where :func:`load_model` caches conversions of torch checkpoints."""
    root = os.environ.get("JAXLATENT_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "jaxlatent")
    return Path(root) / "dac"


def _sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    cache: bool = True,
    sample_rate: int | None = None,
    precision: jax.lax.PrecisionLike = None,
) -> DAC:
    """A :class:`DAC` from a converted directory or a torch checkpoint file.

    A torch checkpoint is converted with :func:`converters.dac.convert_checkpoint` and, when
    `cache`, saved to ``cache_dir / f"{stem}-{sha256[:16]}"`` (default
    :func:`default_cache_dir`) so the next call loads the conversion instead; the cache entry
    is written atomically (concurrent callers each convert, the first rename wins).

    Args:
      path: a converted directory or a ``.pth``/``.pt``/``.ckpt`` file.
      cache_dir: explicit cache location.
      cache: set False to convert without reading or writing the cache.
      sample_rate: for bare state_dicts of non-released architectures (see
        :func:`converters.dac.infer_config`).
      precision: `jax.lax` precision of the model's convolutions.

    Returns:
      The model (its configuration is ``model.config``).

    Raises:
      FileNotFoundError: if `path` does not exist.
      CheckpointError, ConversionError: as :func:`load_converted` /
        :func:`converters.dac.convert_checkpoint`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.is_dir():
        return load_converted(path, precision=precision)
    from converters.dac import convert_checkpoint

    entry = None
    if cache:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        entry = root / f"{path.stem}-{_sha256(path)[:16]}"
        if is_converted_dir(entry):
            with contextlib.suppress(CheckpointError):
                return load_converted(entry, precision=precision)
    config, model = convert_checkpoint(path, sample_rate=sample_rate, precision=precision)
    if entry is not None:
        # a broken entry (e.g. from another jaxlatent version) is replaced
        with contextlib.suppress(FileExistsError):
            save_converted(
                entry, config, model, overwrite=entry.exists(), source=str(path.absolute())
            )
    return model
