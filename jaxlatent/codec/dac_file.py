"""`DACFile`: read and write the official ``.dac`` container without executing pickled code.

The official package (descript-audio-codec 1.0.0, ``dac.model.base.DACFile``) stores a
compressed file as ``np.save`` of a Python dict, i.e. a ``.npy`` file holding a 0-d object
array whose payload is a **pickle**::

    {"codes": uint16 [batch * channels, n_q, frames],
     "metadata": {"input_db": float32 [batch], "original_length": int, "sample_rate": int,
                  "chunk_length": int, "channels": int, "padding": bool,
                  "dac_version": "1.0.0"}}

and reads it back with ``np.load(path, allow_pickle=True)[()]``, which runs whatever code a
crafted file asks for (descript-audio-codec issue #53). :meth:`DACFile.load` reads the same
container through :mod:`jaxlatent.codec._npy_pickle`, which rebuilds only numpy arrays,
dtypes and scalars (``numpy._core.multiarray._reconstruct`` / ``numpy.core...`` for numpy
1.x files, ``numpy.ndarray``, ``numpy.dtype``, ``numpy._core.multiarray.scalar``), refuses
any other global before it is imported or called, and bounds its work and memory by the
file's size (a declared shape or length larger than the bytes present is refused, never
allocated); then it checks the structure, dtypes, shapes and metadata keys. Every malformed
file gives a :class:`DACFileError` naming the file and the problem. :meth:`DACFile.save`
writes the same bytes as the official ``DACFile.save`` (via a temporary file and a rename),
so each package reads the other's files.

The codes keep the file's layout ``[batch * channels, n_q, frames]`` (rows are channels, one
mono stream each, batch-major); it is the on-disk format, not a model tensor.
"""

from __future__ import annotations

import dataclasses
import io
import operator
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from jaxlatent.atomic import atomic_write
from jaxlatent.codec import _npy_pickle
from jaxlatent.codec._npy_pickle import short_repr

__all__ = ["SUPPORTED_VERSIONS", "DACFile", "DACFileError", "window_codes"]

#: ``dac_version`` values the official 1.0.0 package accepts (``dac.model.base``).
SUPPORTED_VERSIONS = ("1.0.0",)

#: The metadata keys of the format, exactly (the official loader passes them as keyword
#: arguments to its dataclass, so a file with more or fewer keys does not load there either).
METADATA_KEYS = frozenset(
    {
        "input_db",
        "original_length",
        "sample_rate",
        "chunk_length",
        "channels",
        "padding",
        "dac_version",
    }
)


class DACFileError(ValueError):
    """A ``.dac`` file that cannot be read: truncated, corrupt, unsafe or not in the format."""


def _read_payload(data: bytes, path: str) -> Any:
    """The pickled object of an ``np.save``-d object array, unpickled safely and boundedly."""
    try:
        return _npy_pickle.read(data)
    except _npy_pickle.NpyPickleError as e:
        raise DACFileError(f"{path} is not a .dac file, or a damaged one: {e}") from None


def _as_int(path: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise DACFileError(f"{path}: metadata {name!r} must be an integer, got {short_repr(value)}")
    value = operator.index(value)
    if value < minimum:
        raise DACFileError(f"{path}: metadata {name!r} must be >= {minimum}, got {value}")
    return value


def _as_input_db(path: str, value: Any, batch: int) -> np.ndarray:
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.floating | np.integer | np.ndarray
    ):
        raise DACFileError(
            f"{path}: metadata 'input_db' must be a float array, got {short_repr(value)}"
        )
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise DACFileError(f"{path}: metadata 'input_db' has dtype {arr.dtype}, expected float32")
    arr = arr.reshape(-1)
    if (
        arr.shape[0] not in (1, batch)
        or not np.isfinite(arr).all()
        or (np.abs(arr) > np.finfo(np.float32).max).any()  # (inf as float32)
    ):
        raise DACFileError(
            f"{path}: metadata 'input_db' must hold {batch} finite loudness value(s), got "
            f"{short_repr(np.asarray(value))}"
        )
    return arr.astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class DACFile:
    """Codes and metadata of one compressed recording (the official ``.dac`` format 1.0.0).

    Attributes:
      codes: ``uint16 [batch * channels, n_q, frames]``: one row of codes per mono channel
        (the official ``compress`` codes every channel separately), all chunks concatenated
        along frames.
      chunk_length: code frames per chunk (``frames`` when not chunked).
      original_length: samples per channel of the input, at `sample_rate`.
      input_db: ``float32 [batch]`` integrated loudness (LUFS) of the input at the model rate.
      channels: channels of the input.
      sample_rate: sample rate of the input in Hz (not the model's).
      padding: ``True`` for unchunked codes (convolutions padded), ``False`` for chunked ones.
      dac_version: format version, ``"1.0.0"``.

    Raises:
      DACFileError: (a ValueError) at construction if a field has the wrong type, shape or
        range (codes outside ``[0, 65535]``, rows not a multiple of `channels`, ...).

    Source: descript-audio-codec 1.0.0 ``dac.model.base.DACFile``.

    Example:
      >>> f = DACFile(np.zeros((2, 3, 4), np.uint16), chunk_length=4, original_length=2048,
      ...             input_db=np.array([-20.0], np.float32), channels=2, sample_rate=44100,
      ...             padding=True)
      >>> g = DACFile.from_bytes(f.to_bytes())  # f.save(path) / DACFile.load(path) on disk
      >>> g.codes.shape, g.channels, g.input_db
      ((2, 3, 4), 2, array([-20.], dtype=float32))
    """

    codes: np.ndarray
    chunk_length: int
    original_length: int
    input_db: np.ndarray
    channels: int
    sample_rate: int
    padding: bool
    dac_version: str = SUPPORTED_VERSIONS[-1]

    def __post_init__(self):
        self._validate("DACFile")

    def _validate(self, where: str) -> None:
        put = object.__setattr__
        codes = self.codes
        if not isinstance(codes, np.ndarray):
            codes = np.asarray(codes)
        if not np.issubdtype(codes.dtype, np.integer) or codes.ndim != 3:
            raise DACFileError(
                f"{where}: codes must be an integer array [batch * channels, n_q, frames], "
                f"got {codes.dtype} {codes.shape}"
            )
        if codes.shape[0] < 1 or codes.shape[1] < 1 or codes.shape[2] < 1:
            raise DACFileError(f"{where}: codes must not be empty, got shape {codes.shape}")
        if codes.dtype != np.uint16 and (codes.min() < 0 or codes.max() > 65535):
            raise DACFileError(f"{where}: codes must lie in [0, 65535] to be stored as uint16")
        put(self, "codes", codes.astype(np.uint16, copy=False))
        channels = _as_int(where, "channels", self.channels, 1)
        if codes.shape[0] % channels:
            raise DACFileError(
                f"{where}: codes have {codes.shape[0]} rows, not a multiple of channels={channels}"
            )
        put(self, "channels", channels)
        put(self, "chunk_length", _as_int(where, "chunk_length", self.chunk_length, 1))
        put(self, "original_length", _as_int(where, "original_length", self.original_length, 1))
        put(self, "sample_rate", _as_int(where, "sample_rate", self.sample_rate, 1))
        if not isinstance(self.padding, bool | np.bool_):
            raise DACFileError(
                f"{where}: metadata 'padding' must be a bool, got {short_repr(self.padding)}"
            )
        put(self, "padding", bool(self.padding))
        if self.dac_version not in SUPPORTED_VERSIONS:
            raise DACFileError(
                f"{where}: dac_version {short_repr(self.dac_version)} is not supported (supported: "
                f"{list(SUPPORTED_VERSIONS)})"
            )
        put(self, "input_db", _as_input_db(where, self.input_db, codes.shape[0] // channels))

    # ------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The file's bytes, exactly as the official ``DACFile.save`` writes them."""
        artifacts = {
            "codes": self.codes.astype(np.uint16),
            "metadata": {
                "input_db": self.input_db.astype(np.float32),
                "original_length": self.original_length,
                "sample_rate": self.sample_rate,
                "chunk_length": self.chunk_length,
                "channels": self.channels,
                "padding": self.padding,
                "dac_version": self.dac_version,
            },
        }
        buf = io.BytesIO()
        np.save(buf, artifacts, allow_pickle=True)
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> str:
        """Write the file atomically (a temporary file in the same folder, then a rename).

        Unlike the official ``save``, the path is used as given (no suffix is forced).

        Returns:
          The path written, as a string.
        """
        return str(atomic_write(path, self.to_bytes(), ".dac"))

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "<bytes>") -> DACFile:
        """Parse a ``.dac`` file's bytes (see :meth:`load`); `name` labels error messages."""
        payload = _read_payload(data, name)
        if not isinstance(payload, dict) or set(payload) != {"codes", "metadata"}:
            keys = short_repr(list(payload)) if isinstance(payload, dict) else type(payload)
            raise DACFileError(
                f"{name} is not a .dac file: expected a dict with keys ['codes', 'metadata'], "
                f"got {keys}"
            )
        metadata = payload["metadata"]
        if not isinstance(metadata, dict):
            raise DACFileError(f"{name}: 'metadata' must be a dict, got {type(metadata)}")
        if set(metadata) != METADATA_KEYS:
            raise DACFileError(
                f"{name}: metadata keys {short_repr(list(metadata))} differ from the format's "
                f"{sorted(METADATA_KEYS)}"
            )
        if not isinstance(metadata["dac_version"], str):
            raise DACFileError(f"{name}: 'dac_version' must be a string")
        codes = payload["codes"]
        if not isinstance(codes, np.ndarray):
            raise DACFileError(f"{name}: 'codes' must be an array, got {type(codes)}")
        out = object.__new__(cls)
        for field, value in [("codes", codes.view(np.ndarray)), *metadata.items()]:
            object.__setattr__(out, field, value)
        out._validate(name)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> DACFile:
        """Read a ``.dac`` file written by the official package or by :meth:`save`.

        No pickled code runs: only numpy arrays, dtypes and scalars and plain containers are
        rebuilt; any other global in the pickle is refused before it is imported.

        Raises:
          DACFileError: (a ValueError) if the file is truncated or corrupt, is not a ``.dac``
            file, refers to anything but numpy arrays/dtypes/scalars, has other metadata keys
            or an unsupported ``dac_version``, or its values have the wrong types or shapes.
          FileNotFoundError: if `path` does not exist.
        """
        path = os.fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        return cls.from_bytes(data, name=path)


def window_codes(
    codes: Iterable[np.ndarray], n_windows: int, frames: int | None = None
) -> tuple[np.ndarray, int]:
    """Every window's int codes ``[rows, n_q, window_frames]``, in order, in one ``uint16``
    array ``[rows, n_q, frames]`` (the layout of :attr:`DACFile.codes`).

    Every window must have the first one's shape; each is written into the output as it
    comes, so the host holds the output and one window, never an int32 copy of all the codes.

    Args:
      codes: the windows' codes (any int dtype whose values fit in ``uint16``).
      n_windows: how many windows `codes` must yield.
      frames: frames of the output; default ``n_windows * window_frames``. When smaller, the
        frames past it (the last window's padding past the signal's end) are dropped.

    Returns:
      ``(codes, window_frames)``: the ``uint16`` array and the frames of one window.

    Raises:
      ValueError: if `codes` does not yield `n_windows` windows of one shape, or `frames`
        does not end inside the last window.
    """
    out, n, width = None, 0, 0
    for c in codes:
        if out is None:
            width = c.shape[-1]
            total = n_windows * width if frames is None else frames
            if not (n_windows - 1) * width < total <= n_windows * width:
                raise ValueError(
                    f"{total} frames do not end in the last of {n_windows} windows of {width}"
                )
            out = np.empty((*c.shape[:-1], total), np.uint16)
        if n == n_windows or c.shape != (*out.shape[:-1], width):
            raise ValueError(
                f"window {n} has codes of shape {c.shape}; expected {n_windows} windows of "
                f"{(*out.shape[:-1], width)}"
            )
        stop = min((n + 1) * width, out.shape[-1])
        out[..., n * width : stop] = c[..., : stop - n * width]
        n += 1
    if n != n_windows:
        raise ValueError(f"got codes of {n} windows; expected {n_windows}")
    return out, width
