"""The one pickled object of an ``np.save``-d object array, read without trusting the bytes.

``np.load(allow_pickle=True)`` of a hostile file runs code, and even a pickle restricted to
numpy's own globals can make numpy allocate whatever a mutated shape or length declares, or
hash a tuple that refers to itself through the memo exponentially often. :func:`read` bounds
both before anything is built:

1. The ``.npy`` header (at most ``MAX_HEADER_SIZE`` bytes, a dict literal) must declare a
   0-d object array.
2. The pickle's opcodes are walked once with :func:`pickletools.genops` (which reads every
   declared length from the bytes present, so a length larger than the rest of the file is
   refused, never allocated); there may be at most ``MAX_OPCODES`` of them, memo indices
   must lie below the opcode count, and tuples, followed through the memo, may hold at most
   ``MAX_TUPLE_NODES`` items in all (hashing or printing them is then cheap).
3. The unpickler resolves only numpy's array, dtype and scalar reconstruction, each through
   a checking stand-in: ``_reconstruct`` only as numpy writes it (an empty ``(0,)`` array), a
   dtype only by one of ``DTYPES``'s names, an array's state only when its shape, dtype and
   data agree byte for byte (``prod(shape) * itemsize == len(data)``), a scalar only from
   exactly ``itemsize`` bytes. ``numpy.ndarray`` itself is a token, never called.

So no allocation exceeds the file's size by more than a fixed amount (the objects of at most
``MAX_OPCODES`` opcodes), and the work is linear in the file's size.
Every refusal is a :class:`NpyPickleError` (a ValueError) whose message names the problem.
"""

from __future__ import annotations

import ast
import io
import math
import pickle
import pickletools
import re
import reprlib
from typing import Any

import numpy as np

__all__ = [
    "DTYPES",
    "MAX_HEADER_SIZE",
    "MAX_OPCODES",
    "MAX_TUPLE_NODES",
    "NpyPickleError",
    "read",
    "short_repr",
]

#: Largest header `numpy.lib.format` reads (its own default): a bigger one is not ours.
MAX_HEADER_SIZE = 10_000
#: Items a tuple may hold, counted through nested tuples and memo references (a ``.dac``
#: file's largest, a dtype's state, holds 8).
MAX_TUPLE_NODES = 1_000
#: Opcodes a pickle may have: a ``.dac`` file has about 150 whatever its length (its arrays'
#: data are one opcode each), so this bounds the objects built to far fewer than its bytes.
MAX_OPCODES = 10_000
#: Most axes an array may declare (numpy's own limit is 64).
MAX_NDIM = 32
#: dtype names a pickled array or scalar may use (``O4`` on 32-bit platforms).
DTYPES = frozenset(
    {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "O4", "O8"}
)

_ARRAY_GLOBALS = {"_reconstruct", "scalar"}
_NUMPY_GLOBALS = {"ndarray", "dtype"}
_MAGIC = b"\x93NUMPY"
_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]{0,99}")
_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")  # numpy 2, numpy 1.x
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GET = {"GET", "BINGET", "LONG_BINGET"}
_TUPLES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


class NpyPickleError(ValueError):
    """The bytes are not a safe, well-formed pickled object array (the message says why)."""


# ---------------------------------------------------------------------------------------------
# Header
# ---------------------------------------------------------------------------------------------


def _payload_start(data: bytes) -> int:
    """Offset of the pickle after a ``.npy`` header (version 1.0 or 2.0) of a 0-d object array.

    The header is parsed here rather than by ``numpy.lib.format``, whose fallback for
    malformed headers tokenizes them as Python 2 source (raising ``tokenize.TokenError`` and
    warning); it is the dict literal numpy writes, read with :func:`ast.literal_eval`.
    """
    if len(data) < 10 or data[:6] != _MAGIC:
        raise NpyPickleError(f"no .npy header (the file starts with {short_repr(data[:8])})")
    version = (data[6], data[7])
    if version == (1, 0):
        start, length = 10, int.from_bytes(data[8:10], "little")
    elif version == (2, 0) and len(data) >= 12:
        start, length = 12, int.from_bytes(data[8:12], "little")
    else:
        raise NpyPickleError(f"unsupported .npy format version {version}")
    if length > MAX_HEADER_SIZE:
        raise NpyPickleError(f"the .npy header declares {length} bytes (at most {MAX_HEADER_SIZE})")
    if len(data) < start + length:
        raise NpyPickleError(f"truncated .npy header ({len(data) - start} of {length} bytes)")
    text = data[start : start + length].decode("latin1")
    try:
        header = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        raise NpyPickleError(f"corrupt .npy header: {type(e).__name__}: {e}") from None
    if not isinstance(header, dict) or header.keys() != {"descr", "fortran_order", "shape"}:
        raise NpyPickleError(f"corrupt .npy header {short_repr(header)}")
    descr, shape, fortran = header["descr"], header["shape"], header["fortran_order"]
    if descr != "|O" or shape != () or type(fortran) is not bool:
        raise NpyPickleError(
            f"it holds an array of {short_repr(descr)} and shape {short_repr(shape)}, not a "
            "pickled object (a 0-d object array, descr '|O', shape ())"
        )
    return start + length


# ---------------------------------------------------------------------------------------------
# Opcode walk
# ---------------------------------------------------------------------------------------------


class _Mark:
    pass


_MARK = _Mark()


def _check_global(module: str, name: str) -> None:
    if not (
        (module in _MULTIARRAY and name in _ARRAY_GLOBALS)
        or (module == "numpy" and name in _NUMPY_GLOBALS)
    ):
        raise NpyPickleError(
            f"the pickle refers to {module[:100]}.{name[:100]}, which is none of numpy's array, "
            "dtype and scalar reconstructors; refusing to load it (unpickling it could run code)"
        )


def _refuse_opcode_at(payload: bytes, pos: int) -> None:
    """Refuse the opcode at `pos` before :func:`pickletools.genops` decodes its argument
    (decoding the escapes of a mutated text argument warns instead of failing)."""
    code = payload[pos : pos + 1]
    if code in (b"S", b"i", b"P"):  # STRING, INST, PERSID: protocol 0, which numpy never writes
        raise NpyPickleError(f"opcode {code!r} at byte {pos}, which numpy never writes")
    if code == b"c":  # GLOBAL (protocols 0-3): two lines, a module and a name
        lines = payload[pos + 1 : pos + 1 + 2 * 101].split(b"\n", 2)
        if len(lines) < 3 or not all(_IDENTIFIER.fullmatch(line) for line in lines[:2]):
            raise NpyPickleError(f"corrupt pickle: a malformed GLOBAL at byte {pos}")
        _check_global(lines[0].decode(), lines[1].decode())


def _check_opcodes(payload: bytes) -> None:
    """Walk the opcodes, tracking only how many items each stack entry holds (tuples)."""
    stack: list[Any] = []  # int (tuple items, 1 for anything else) or _MARK
    memo: dict[int, int] = {}

    def pop(n: int = 1) -> list[int]:
        if len(stack) < n or any(s is _MARK for s in stack[len(stack) - n :]):
            raise NpyPickleError("corrupt pickle: stack underflow")
        items = stack[len(stack) - n :]
        del stack[len(stack) - n :]
        return items

    def pop_to_mark() -> list[int]:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1 :]
                del stack[i:]
                return items
        raise NpyPickleError("corrupt pickle: no MARK before an opcode that needs one")

    buf = io.BytesIO(payload)
    try:
        _refuse_opcode_at(payload, 0)
        for count, (op, arg, _) in enumerate(pickletools.genops(buf)):
            if count >= MAX_OPCODES:
                raise NpyPickleError(f"the pickle has more than {MAX_OPCODES} opcodes")
            name = op.name
            if name in _MEMO_PUT or name == "MEMOIZE":
                index = len(memo) if name == "MEMOIZE" else arg
                if not 0 <= index <= count:
                    raise NpyPickleError(f"corrupt pickle: memo index {index} out of range")
                if not stack or stack[-1] is _MARK:
                    raise NpyPickleError("corrupt pickle: nothing to memoize")
                memo[index] = stack[-1]
            elif name in _MEMO_GET:
                if arg not in memo:
                    raise NpyPickleError(f"corrupt pickle: memo index {arg} was never stored")
                stack.append(memo[arg])
            elif name == "DUP":
                stack.extend(pop() * 2)
            elif name == "POP" and stack and stack[-1] is _MARK:
                stack.pop()  # (as pickle does: POP on a mark removes the mark)
            elif name == "MARK":
                stack.append(_MARK)
            elif name in _TUPLES or name == "TUPLE":
                items = pop_to_mark() if name == "TUPLE" else pop(_TUPLES[name])
                nodes = 1 + sum(items)
                if nodes > MAX_TUPLE_NODES:
                    raise NpyPickleError(
                        f"corrupt pickle: a tuple of more than {MAX_TUPLE_NODES} items "
                        "(counted through nested tuples)"
                    )
                stack.append(nodes)
            else:
                before = op.stack_before
                if pickletools.markobject in before:
                    pop_to_mark()
                    pop(before.index(pickletools.markobject))
                else:
                    pop(len(before))
                stack.extend([1] * len(op.stack_after))
            _refuse_opcode_at(payload, buf.tell())  # before genops decodes its argument
    except (ValueError, OverflowError, UnicodeDecodeError) as e:
        if isinstance(e, NpyPickleError):
            raise
        raise NpyPickleError(f"truncated or corrupt pickle: {type(e).__name__}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Checking stand-ins for numpy's reconstruction functions
# ---------------------------------------------------------------------------------------------


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` as ``_reconstruct``'s first argument; never called."""

    def __call__(self, *args, **kwargs):
        raise NpyPickleError("the pickle calls numpy.ndarray directly, which numpy never writes")


_NDARRAY = _NdarrayToken()


class _DType:
    """``numpy.dtype(name, align, copy)`` whose ``__setstate__`` is checked, then resolved."""

    def __init__(self, name: Any = None, align: Any = False, copy: Any = True):
        if not isinstance(name, str) or name not in DTYPES:
            raise NpyPickleError(f"dtype {short_repr(name)} is not one of {sorted(DTYPES)}")
        self.dtype = np.dtype(name)

    def __setstate__(self, state: Any) -> None:
        if (
            not isinstance(state, tuple)
            or len(state) != 8
            or state[0] != 3
            or state[1] not in ("<", ">", "|", "=")
            or state[2:5] != (None, None, None)
            or state[5:7] != (-1, -1)
            or type(state[7]) is not int
        ):
            raise NpyPickleError(f"invalid state of dtype {self.dtype}: {short_repr(state)}")
        if state[1] in "<>" and self.dtype.itemsize > 1 and self.dtype.kind != "O":
            self.dtype = self.dtype.newbyteorder(state[1])


def _dtype_of(value: Any) -> np.dtype:
    if not isinstance(value, _DType):
        raise NpyPickleError(f"expected a pickled numpy dtype, got {short_repr(value)}")
    return value.dtype


class _Array(np.ndarray):
    """An ndarray whose ``__setstate__`` checks shape * itemsize against the data present."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise NpyPickleError(f"invalid array state {short_repr(state)}")
        _, shape, dtype, fortran, data = state
        dtype = _dtype_of(dtype)
        if (
            not isinstance(shape, tuple)
            or len(shape) > MAX_NDIM
            or any(type(d) is not int or d < 0 for d in shape)
            or type(fortran) is not bool
        ):
            raise NpyPickleError(
                f"invalid array shape {short_repr(shape)} or order {short_repr(fortran)}"
            )
        size = math.prod(shape)
        if dtype.kind == "O":
            if type(data) is not list or len(data) != size:
                raise NpyPickleError(
                    f"an object array of shape {shape} needs a list of {size} items, got "
                    f"{short_repr(data)}"
                )
        elif type(data) is not bytes or len(data) != size * dtype.itemsize:
            got = len(data) if type(data) is bytes else type(data).__name__
            raise NpyPickleError(
                f"a {dtype} array of shape {shape} needs {size * dtype.itemsize} bytes, got {got}"
            )
        super().__setstate__((1, shape, dtype, fortran, data))


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> _Array:
    if subtype is not _NDARRAY or shape != (0,) or dtype not in (b"b", "b"):
        raise NpyPickleError(
            f"_reconstruct({short_repr(subtype)}, {short_repr(shape)}, {short_repr(dtype)}) is "
            "not how numpy pickles an array"
        )
    return np.ndarray.__new__(_Array, (0,), np.int8)


def _scalar(dtype: Any, data: Any = None) -> np.generic:
    dtype = _dtype_of(dtype)
    if dtype.kind == "O" or type(data) is not bytes or len(data) != dtype.itemsize:
        raise NpyPickleError(f"invalid numpy scalar of dtype {dtype}: {short_repr(data)}")
    return np.frombuffer(data, dtype)[0]


_STAND_INS = {"_reconstruct": _reconstruct, "scalar": _scalar, "ndarray": _NDARRAY, "dtype": _DType}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        _check_global(module, name)
        return _STAND_INS[name]

    def persistent_load(self, pid):
        raise NpyPickleError("the pickle uses persistent ids, which numpy never writes")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def short_repr(value: Any) -> str:
    """A repr of at most ~200 characters, safe on deep or self-referencing values."""
    return _REPR.repr(value)


# ---------------------------------------------------------------------------------------------


def read(data: bytes) -> Any:
    """The object pickled in the 0-d object array that `data` (a ``.npy`` file) holds.

    Only numpy arrays (plain ndarrays), dtypes, numpy scalars and plain Python values and
    containers are rebuilt; arrays inside the object are ``_Array``s (ndarray subclasses):
    view them as ``np.ndarray`` before use. Work and memory are linear in ``len(data)``.

    Raises:
      NpyPickleError: (a ValueError) if the header, the pickle or anything it rebuilds is
        malformed, truncated, refers to any other global, or declares more data than present.
    """
    payload = data[_payload_start(data) :]
    _check_opcodes(payload)
    buf = io.BytesIO(payload)
    try:
        obj = _Unpickler(buf).load()
    except NpyPickleError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,  # a stand-in called with the wrong arguments, an unhashable key, ...
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
    ) as e:
        raise NpyPickleError(f"truncated or corrupt pickle: {type(e).__name__}: {e}") from None
    if buf.read(1):
        raise NpyPickleError("unexpected bytes after the pickled data")
    if not isinstance(obj, np.ndarray) or obj.shape != () or obj.dtype != np.dtype(object):
        raise NpyPickleError("the payload is not a 0-d object array")
    return obj.view(np.ndarray)[()]
