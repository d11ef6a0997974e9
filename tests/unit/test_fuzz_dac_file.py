"""Hostile ``.dac`` files: `DACFile.from_bytes` parses them or raises its own `DACFileError`.

Seeded mutations (about 3000) of files written here, of the official layout as numpy 1.x
writes it (protocol 3, ``numpy.core.multiarray``) and of a version 2.0 header: byte flips,
truncations, insertions and deletions, ``.npy`` header edits (shape, descr, fortran_order,
broken literals), opcode edits of the pickle and planted pickles. Every outcome must be a
`DACFile` or a `DACFileError` naming the file, and reading must allocate at most a fixed
amount beyond the file (tracemalloc's peak: numpy and the unpickler allocate through it).
The seeds are fixed, so a failure reproduces.
"""

from __future__ import annotations

import io
import pickle
import random
import struct
import tracemalloc

import numpy as np
import pytest

from jaxlatent.codec import DACFile, DACFileError, _npy_pickle
from tests import fuzz

NAME = "fuzzed.dac"
#: Bytes a read may allocate beyond the file's own size (a legitimate read peaks at ~20 KiB;
#: the opcode limit caps the objects a hostile pickle can make at well under this).
ALLOCATION_SLACK = 2 * 2**20
MUTATIONS_PER_KIND = 400


def _dac(rows=2, n_q=3, frames=5, channels=2, padding=True, seed=0) -> DACFile:
    rng = np.random.default_rng(seed)
    return DACFile(
        codes=rng.integers(0, 1024, (rows, n_q, frames)).astype(np.uint16),
        chunk_length=frames,
        original_length=1234,
        input_db=np.full(rows // channels, -17.25, np.float32),
        channels=channels,
        sample_rate=24000,
        padding=padding,
    )


def _artifacts(f: DACFile, **metadata) -> np.ndarray:
    """The 0-d object array that ``np.save`` writes for `f` (metadata values overridable)."""
    obj = np.empty((), object)
    obj[()] = {
        "codes": f.codes,
        "metadata": {
            "input_db": f.input_db,
            "original_length": f.original_length,
            "sample_rate": f.sample_rate,
            "chunk_length": f.chunk_length,
            "channels": f.channels,
            "padding": f.padding,
            "dac_version": f.dac_version,
        }
        | metadata,
    }
    return obj


def _numpy1_file() -> bytes:
    """What numpy 1.x's ``np.save`` writes: protocol 3, ``numpy.core.multiarray``, scalars."""
    f = _dac(rows=1, channels=1, padding=False, seed=1)
    obj = _artifacts(f, original_length=np.int64(1234), chunk_length=np.int32(5))
    obj[()]["metadata"]["padding"] = np.bool_(False)
    payload = pickle.dumps(obj, protocol=3).replace(b"numpy._core.", b"numpy.core.")
    header = f.to_bytes()
    return header[: header.index(b"\n") + 1] + payload


def _version2_file() -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(
        buf, _artifacts(_dac(rows=4, channels=2, seed=2)), version=(2, 0), allow_pickle=True
    )
    return buf.getvalue()


SEEDS = [
    _dac().to_bytes(),
    _dac(rows=1, channels=1, padding=False).to_bytes(),
    _numpy1_file(),
    _version2_file(),
]


def _split(data: bytes) -> tuple[bytes, bytes, bytes]:
    start = 12 if data[6] == 2 else 10
    length = int.from_bytes(data[8:start], "little")
    return data[:start], data[start : start + length], data[start + length :]


HEADERS = [
    "{'descr': '|O', 'fortran_order': False, 'shape': (10000000000,), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (-1,), }",
    "{'descr': '<u2', 'fortran_order': False, 'shape': (2**62,), }",
    "{'descr': 'V99999999999999999999', 'fortran_order': False, 'shape': (), }",
    "{'descr': [('a', '<f4', (100000, 100000))], 'fortran_order': False, 'shape': (), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (" + "9" * 5000 + ",), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': " + "(" * 300 + ")" * 300 + ", }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (), '",  # an unterminated string
    "{'descr': '|O', 'fortran_order': False, 'shape': (), '''",
    "{'descr': '|O', 'fortran_order': False, 'shape': ((), }",  # an unclosed bracket
    "{'descr': '|O', 'fortran_order': 1, 'shape': (), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (), 'x': 1}",
    "{'descr': '|O', 'fortran_order': False, 'shape': (1L,), }",  # Python 2
    "[1, 2]",
    "\\",
]


def mutate_header(rng: random.Random, data: bytes) -> bytes:
    """The header dict's text replaced, cut, or one character or field changed; its length
    field fixed (as numpy pads) or left stale."""
    prefix, header, payload = _split(data)
    text = header.decode("latin1").rstrip()
    kind = rng.randrange(4)
    if kind == 0:
        text = rng.choice(HEADERS)
    elif kind == 1:
        i = rng.randrange(len(text))
        text = text[:i] + rng.choice("()[]{}'\",:\\#0123456789LuOV<>| \n") + text[i + 1 :]
    elif kind == 2:
        text = text[: rng.randrange(len(text))]
    else:
        shape = rng.choice(["(1,)", "(0,)", "(2, 3)", "(2**40,)", "(-5,)", "(99999999999, 9)"])
        descr = rng.choice(["'|O'", "'<u2'", "'|V8'", "'<U100000000'", "'>f8'"])
        text = text.replace("()", shape).replace("'|O'", descr)
    raw = text.encode("latin1", "replace")
    if rng.random() < 0.7:  # a consistent length field, padded as numpy pads
        raw += b" " * (-(len(raw) + len(prefix) + 1) % 64) + b"\n"
        size = len(raw)
    else:
        size = len(header)
    width = len(prefix) - 8
    return prefix[:8] + size.to_bytes(width, "little") + raw + payload


def mutate_payload(rng: random.Random, data: bytes) -> bytes:
    prefix, header, payload = _split(data)
    return prefix + header + fuzz.mutate_pickle(rng, payload)


_R = b"cnumpy.core.multiarray\n_reconstruct\n"
_ARRAY = _R + b"cnumpy\nndarray\nK\x00\x85C\x01b\x87R(K\x01"


def _dtype(name: bytes, order: bytes = b"<") -> bytes:
    body = b"cnumpy\ndtype\n\x8c" + bytes([len(name)]) + name + b"\x89\x88\x87R"
    return body + b"(K\x03\x8c\x01" + order + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"


#: Hand-made pickles (after a valid header), each with the reason it must be refused.
PLANTED = {
    "os.system": b"\x80\x04cposix\nsystem\n\x8c\x04echo\x85R.",
    "builtins.eval": b"\x80\x04cbuiltins\neval\n\x8c\x011\x85R.",
    "ndarray called with a 1e9 shape": b"\x80\x04cnumpy\nndarray\n"
    + fuzz.encode_int(10**9)
    + b"\x85\x8c\x02f8\x86R.",
    "_reconstruct with a 1e9 shape": b"\x80\x04"
    + _R
    + b"cnumpy\nndarray\n"
    + fuzz.encode_int(10**9)
    + b"\x85C\x01b\x87R.",
    "a dtype of 1e11 bytes": b"\x80\x04cnumpy\ndtype\n\x8c\x0cV99999999999\x89\x88\x87R.",
    "dtype without copy, then set to big-endian": b"\x80\x04cnumpy\ndtype\n\x8c\x02u2\x89\x89\x87R"
    b"(K\x03\x8c\x01>NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb.",
    "scalar from too few bytes": b"\x80\x04cnumpy.core.multiarray\nscalar\n"
    + _dtype(b"f8")
    + b"C\x01a\x86R.",
    "BINBYTES8 of 1 TiB": b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc.",
    "BINUNICODE of 2 GiB": b"\x80\x04X" + struct.pack("<I", 2**31 - 1) + b"abc.",
    "memo index 2**31": b"\x80\x04)r\xff\xff\xff\x7f.",
    "FRAME of 2**60 bytes": b"\x80\x04\x95" + struct.pack("<Q", 2**60) + b"N.",
    "100000 MARKs": b"\x80\x04" + b"(" * 100000 + b".",
    "50000 nested lists": b"\x80\x04" + b"]" * 50000 + b"a" * 49999 + b".",
    "a tuple of 2**100 items through the memo": b"\x80\x04)\x94"
    + b"".join(b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86\x94" for i in range(100))
    + b"}h\x64Ns.",
    "object array of 1e10 items from an empty list": b"\x80\x04"
    + _ARRAY
    + fuzz.encode_int(10**10)
    + b"\x85"
    + _dtype(b"O8", b"|")
    + b"\x89]tb.",
    "uint16 array of 1e6 items from 4 bytes": b"\x80\x04"
    + _ARRAY
    + fuzz.encode_int(10**6)
    + b"\x85"
    + _dtype(b"u2")
    + b"\x89C\x04abcdtb.",
    "_reconstruct of a dtype": b"\x80\x04" + _R + b"cnumpy\ndtype\nK\x00\x85C\x01b\x87R.",
    "persistent id": b"\x80\x04P0\n.",
    "extension code": b"\x80\x04\x82\x01.",
    "NEWOBJ of ndarray": b"\x80\x04cnumpy\nndarray\n)\x81.",
    "5000-digit LONG": b"\x80\x04L" + b"9" * 5000 + b"L\n.",
    "out-of-band buffer": b"\x80\x05\x97.",
}


@pytest.fixture
def traced():
    """Start tracemalloc; yields a function reading `data` and returning (outcome, peak)."""
    tracemalloc.start()

    def read(data: bytes):
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        try:
            DACFile.from_bytes(data, name=NAME)
            outcome = "parsed"
        except DACFileError as e:
            message = str(e)
            assert NAME in message and len(message) < 2000, message
            outcome = "refused"
        return outcome, tracemalloc.get_traced_memory()[1] - before

    try:
        yield read
    finally:
        tracemalloc.stop()


def test_seeds_parse(traced):
    for data in SEEDS:
        assert traced(data)[0] == "parsed"
    f = DACFile.from_bytes(SEEDS[2])  # numpy 1.x layout: scalars became ints and a bool
    assert (f.original_length, f.chunk_length, f.padding) == (1234, 5, False)


MUTATORS = {**fuzz.BYTE_MUTATORS, "header": mutate_header, "pickle": mutate_payload}


@pytest.mark.parametrize("kind", MUTATORS)
def test_mutated_files_parse_or_raise_dacfileerror(kind, traced):
    rng = random.Random(f"dac-{kind}")
    outcomes = {"parsed": 0, "refused": 0}
    for i in range(MUTATIONS_PER_KIND):
        data = MUTATORS[kind](rng, SEEDS[i % len(SEEDS)])
        if rng.random() < 0.2:  # a second mutation of any kind on top
            data = rng.choice(list(MUTATORS.values()))(rng, data) if len(data) > 12 else data
        outcome, peak = traced(data)
        outcomes[outcome] += 1
        assert peak <= len(data) + ALLOCATION_SLACK, (kind, i, peak, len(data))
    assert outcomes["refused"] > 0, outcomes
    if kind == "pickle":  # edits of the codes' or metadata's values keep a valid file
        assert outcomes["parsed"] > 0, outcomes


@pytest.mark.parametrize("name", PLANTED)
def test_planted_pickles_are_refused_in_bounded_memory(name, traced):
    prefix, header, _ = _split(SEEDS[0])
    data = prefix + header + PLANTED[name]
    outcome, peak = traced(data)
    assert outcome == "refused", name
    assert peak <= len(data) + ALLOCATION_SLACK, (name, peak)


def test_planted_pickles_mutated(traced):
    prefix, header, _ = _split(SEEDS[0])
    rng = random.Random("dac-planted")
    payloads = list(PLANTED.values())
    for i in range(300):
        data = prefix + header + fuzz.mutate_pickle(rng, payloads[i % len(payloads)])
        _, peak = traced(data)
        assert peak <= len(data) + ALLOCATION_SLACK, (i, peak)


def test_declared_sizes_beyond_the_bytes_present_are_refused():
    """The checks that bound memory, each named by its message."""
    prefix, header, _ = _split(SEEDS[0])
    cases = {
        "object array of 1e10 items from an empty list": "needs a list of 10000000000 items",
        "uint16 array of 1e6 items from 4 bytes": "needs 2000000 bytes, got 4",
        "_reconstruct with a 1e9 shape": "not how numpy pickles an array",
        "ndarray called with a 1e9 shape": "calls numpy.ndarray directly",
        "BINBYTES8 of 1 TiB": "expected 1099511627776 bytes",
        "memo index 2**31": "memo index 2147483647 out of range",
        "a tuple of 2**100 items through the memo": f"more than {_npy_pickle.MAX_TUPLE_NODES}",
        "100000 MARKs": f"more than {_npy_pickle.MAX_OPCODES} opcodes",
        "a dtype of 1e11 bytes": "is not one of",
    }
    for name, message in cases.items():
        with pytest.raises(DACFileError, match=message):
            DACFile.from_bytes(prefix + header + PLANTED[name])


def test_planted_dtype_does_not_change_numpy():
    """A pickle that sets a dtype's state must not reach numpy's shared dtype instances."""
    prefix, header, _ = _split(SEEDS[0])
    with pytest.raises(DACFileError):
        DACFile.from_bytes(prefix + header + PLANTED["dtype without copy, then set to big-endian"])
    assert np.dtype("u2").byteorder in ("=", "<")
    assert np.dtype("u2") == np.dtype(np.uint16)
