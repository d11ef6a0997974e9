"""Checkpoint files, read safely and written atomically: torch ``.pth`` and ``.safetensors``.

torch is imported only inside :func:`load_torch_checkpoint` and :func:`save_torch_checkpoint`,
and only for ``.pth``-like files: ``.safetensors`` files are read and written with the
``safetensors`` library into and from numpy arrays (:func:`load_safetensors`,
:func:`save_safetensors`), never unpickling anything.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from converters.errors import CheckpointError
from converters.state_dicts import to_numpy
from jaxlatent.atomic import atomic_write

# --------------------------------------------------------------------------------------------
# torch files
# --------------------------------------------------------------------------------------------


#: The tensors a checkpoint may hold, in bytes per byte of its file: views of one storage
#: (tied weights) count each time, so a little more than 1; a broadcast view (stride 0) that
#: would expand a few stored bytes into gigabytes when copied is refused.
MAX_TENSOR_BYTES_PER_FILE_BYTE = 4


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _check_archive(path: str, size: int) -> None:
    """``torch.save``'s zip format, every member stored uncompressed within the file's size.

    torch reads a compressed member into a buffer of its declared size (a zip bomb), and the
    format before torch 1.6 (not a zip) allocates every storage's declared size before reading
    it, so neither is read.
    """
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            starts_as_zip = f.read(4) == b"PK\x03\x04"
        raise CheckpointError(
            f"{path} is {'truncated' if starts_as_zip else 'corrupt'} or not a torch "
            "checkpoint: not a whole zip archive (torch.save's format since torch 1.6; the "
            "older format is not read, because it allocates the sizes it declares before "
            "reading them)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (
        zipfile.BadZipFile,
        OSError,
        ValueError,
        EOFError,
        OverflowError,
        NotImplementedError,
    ) as e:
        raise CheckpointError(f"{path} is corrupt: {_first_line(e)}") from e
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED or member.file_size != member.compress_size:
            raise CheckpointError(
                f"{path}: archive member {member.filename[:200]!r} is compressed, which "
                "torch.save never does (refusing to inflate it)"
            )
    if sum(m.file_size for m in members) > size:
        raise CheckpointError(f"{path}: the archive's members declare more bytes than the file has")


def _check_tensors(obj: Any, path: str, size: int) -> None:
    """Every tensor in `obj` dense and on the CPU, all of them together not much larger than
    the file (walked without recursion; shared and cyclic references are visited once)."""
    import torch

    budget = MAX_TENSOR_BYTES_PER_FILE_BYTE * size
    total, seen, todo = 0, set(), [obj]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, torch.Tensor):
            if x.layout != torch.strided or x.is_quantized or x.device.type != "cpu":
                raise CheckpointError(
                    f"{path}: holds a {x.layout} {x.dtype} tensor on {x.device} "
                    f"(quantized={x.is_quantized}); only dense CPU tensors are read"
                )
            total += x.numel() * x.element_size()
            if total > budget:
                raise CheckpointError(
                    f"{path}: its tensors hold more than {budget} bytes, more than its "
                    f"{size} bytes can store (a broadcast or overlapping view?)"
                )
        elif isinstance(x, Mapping):
            todo.extend(x.keys())
            todo.extend(x.values())
        elif isinstance(x, list | tuple | set | frozenset):
            todo.extend(x)


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Load a torch checkpoint (``.pth``/``.pt``/``.ckpt``) safely on CPU, in bounded memory.

    Uses ``torch.load(map_location="cpu", weights_only=True)``: tensors, containers and plain
    Python values load; arbitrary pickled objects are refused. Before loading, the file must
    be ``torch.save``'s zip archive (torch >= 1.6) with uncompressed members; after loading,
    every tensor must be dense, and all tensors together at most
    ``MAX_TENSOR_BYTES_PER_FILE_BYTE`` times the file's size.

    A ``.safetensors`` file is read by :func:`load_safetensors` instead (no torch): its
    tensors, or ``{"state_dict": tensors, "metadata": {...}}`` when its header holds metadata
    besides ``format``.

    Raises:
      FileNotFoundError: if `path` does not exist.
      CheckpointError: if the file is empty, truncated, corrupt, not a torch checkpoint (or
        one in the format before torch 1.6), needs unpickling of arbitrary objects, or holds
        sparse, quantized or broadcast tensors; the message names the file and the problem.
    """
    path = os.fspath(path)
    if is_safetensors(path):
        tensors, metadata = load_safetensors(path)
        return {"state_dict": tensors, "metadata": metadata} if metadata else tensors
    import torch

    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"checkpoint is empty: {path}")
    _check_archive(path, size)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        message = str(e)
        if "Unsupported global" in message:  # a pickled object that is not data
            detail = next(line for line in message.splitlines() if "Unsupported global" in line)
            raise CheckpointError(
                f"{path}: refusing to unpickle objects other than tensors and plain containers "
                f"(weights_only=True): {detail.strip()}"
            ) from e
        raise CheckpointError(
            f"{path} is corrupt or not a torch checkpoint: {_first_line(e)}"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, OSError) as e:
        raise CheckpointError(
            f"{path} is truncated or not a torch checkpoint: {_first_line(e)}"
        ) from e
    except Exception as e:
        # torch's weights-only unpickler, on hostile bytes, fails inside its own parsing with
        # whatever that raises (IndexError on its stack, TypeError or AssertionError from its
        # rebuild functions, ...); only torch.load runs in this try, and the cause is chained.
        raise CheckpointError(f"{path} is corrupt: {_first_line(e)}") from e
    _check_tensors(obj, path, size)
    return obj


def save_torch_checkpoint(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` `obj` (numpy arrays become tensors) atomically to `path`.

    A ``.safetensors`` path is written by :func:`save_safetensors` instead: `obj` is then a
    state_dict, or ``{"state_dict": ..., "metadata": {...}}``.

    Raises:
      ValueError: for a ``.safetensors`` path, if `obj` is not of those forms.
    """
    if is_safetensors(path):
        if isinstance(obj, Mapping) and "state_dict" in obj:
            unknown = sorted(set(obj) - {"state_dict", "metadata"})
            if unknown:
                raise ValueError(
                    f"a .safetensors file holds a state_dict and metadata, not {unknown}"
                )
            save_safetensors(obj["state_dict"], path, metadata=obj.get("metadata"))
        else:
            save_safetensors(obj, path)
        return
    import torch

    def convert(x):
        if isinstance(x, np.ndarray):
            return torch.from_numpy(np.asarray(x, order="C"))  # (keeps 0-d arrays 0-d)
        if isinstance(x, Mapping):
            return {k: convert(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return type(x)(convert(v) for v in x)
        return x

    buffer = io.BytesIO()
    torch.save(convert(obj), buffer)
    atomic_write(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------

#: The ``format`` entry of a ``.safetensors`` header that transformers writes and checks.
SAFETENSORS_FORMAT = "pt"


def is_safetensors(path: str | os.PathLike) -> bool:
    """True if `path` names a ``.safetensors`` file (by its suffix)."""
    return os.fspath(path).lower().endswith(".safetensors")


def _read_safetensors(path: str | os.PathLike, read: Callable[[Any], Any]) -> Any:
    """``read(f)`` of the file opened by ``safetensors.safe_open`` (numpy), errors named."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint is empty: {path}")
    try:
        with safe_open(path, framework="np") as f:
            return read(f)
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{path} is corrupt or not a safetensors file: {_first_line(e)}"
        ) from e
    except SafetensorError as e:
        raise CheckpointError(f"{path} is truncated or corrupt: {_first_line(e)}") from e


def safetensors_keys(path: str | os.PathLike) -> list[str]:
    """The tensor names of a ``.safetensors`` file (read from its header only).

    Raises:
      FileNotFoundError, CheckpointError: as :func:`load_safetensors`.
    """
    return _read_safetensors(path, lambda f: list(f.keys()))


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors and metadata of a ``.safetensors`` file, as numpy arrays (no torch).

    The ``safetensors`` library checks the header against the file's size before reading a
    tensor; no code is unpickled. float16 and bfloat16 tensors become float32. Metadata
    values that are JSON (as :func:`save_safetensors` writes them) are decoded; the
    ``format`` entry (``"pt"`` for files written by torch or transformers) is dropped.

    Returns:
      ``(tensors, metadata)``.

    Raises:
      FileNotFoundError: if `path` does not exist.
      CheckpointError: if the file is empty, truncated or corrupt (the message names the file
        and the library's first line).
    """
    raw_meta, tensors = _read_safetensors(
        path, lambda f: (f.metadata() or {}, {key: f.get_tensor(key) for key in f.keys()})
    )
    for key, value in tensors.items():
        if value.dtype == np.float16 or value.dtype.kind == "V":  # bfloat16, float8 (ml_dtypes)
            tensors[key] = value.astype(np.float32)
    metadata: dict[str, Any] = {}
    for key, value in raw_meta.items():
        if key == "format":
            continue
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value
    return tensors, metadata


def save_safetensors(
    state_dict: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write `state_dict` (numpy arrays or torch tensors) as a ``.safetensors`` file, atomically.

    The header's ``format`` is ``"pt"`` (what ``transformers`` expects); every `metadata` value
    is stored as JSON (:func:`load_safetensors` decodes it).

    Raises:
      ValueError: if a key is not a string or `metadata` has a ``format`` entry.
    """
    from safetensors.numpy import save

    bad = [k for k in state_dict if not isinstance(k, str)]
    if bad:
        raise ValueError(f"safetensors keys must be strings, got {bad[:5]}")
    header = {"format": SAFETENSORS_FORMAT}
    for key, value in (metadata or {}).items():
        if key == "format":
            raise ValueError("metadata key 'format' is reserved (the safetensors header's format)")
        header[str(key)] = json.dumps(value)
    # (np.asarray, not np.ascontiguousarray: that makes 0-d arrays 1-d)
    arrays = {k: np.asarray(to_numpy(v), order="C") for k, v in state_dict.items()}
    atomic_write(path, save(arrays, metadata=header))
