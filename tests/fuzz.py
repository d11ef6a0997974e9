"""Seeded mutators for the fuzz tests of the file readers (``.dac`` files, torch checkpoints).

Each mutator takes a `random.Random` and bytes and returns mutated bytes: byte flips,
truncations, insertions and deletions anywhere, and opcode-level edits of a pickle (an
argument replaced by an extreme int, another string or a wrongly sized byte string; an
opcode deleted, doubled, or preceded by one that numpy and torch never write).
"""

from __future__ import annotations

import pickletools
import random
import struct

#: Ints a mutated pickle argument takes: sizes, shapes, memo indices at their limits.
EXTREME_INTS = (0, 1, -1, 2, 255, 65535, 2**31 - 1, -(2**31), 2**32, 2**40, 2**63 - 1, 2**64)
#: Strings a mutated pickle argument takes: dtype names, byte orders, globals, keys.
STRINGS = (
    *("V99999999999", "u2", "f4", "O8", "O", "i8", "c16", "U99999999", "S0", "V8", "(5)u2"),
    *("<", ">", "|", "=", "x", ""),
    *("posix", "system", "builtins", "eval", "numpy", "ndarray", "dtype", "scalar"),
    *("_reconstruct", "numpy._core.multiarray", "torch", "_rebuild_tensor_v2", "storage"),
    *("codes", "metadata", "input_db", "channels", "state_dict", "kwargs", "n_codebooks"),
)
#: Opcodes inserted before another: stack and memo operations, globals, oversized lengths.
OPCODES = (
    *(b"0", b"2", b"(", b"1", b")", b"]", b"}", b"t", b"\x85", b"R", b"b", b"s", b"u", b"a"),
    *(b"N", b"\x88", b"h\xff", b"j\xff\xff\xff\x7f", b"r\xff\xff\xff\x7f", b"\x94", b"\x93"),
    *(b"cbuiltins\neval\n", b"cposix\nsystem\n", b"cnumpy\nndarray\n", b"P0\n", b"Q"),
    b"\x8e" + struct.pack("<Q", 2**40),  # BINBYTES8 longer than any file
    b"B\xff\xff\xff\x7f",  # BINBYTES of 2 GiB
    b"\x95" + struct.pack("<Q", 2**60),  # FRAME of 2**60 bytes
    *(b"\x82\x01", b"\x81", b"\x92", b"I99999999999999999999\n", b"L" + b"9" * 5000 + b"L\n"),
)


def flip(rng: random.Random, data: bytes) -> bytes:
    """1-8 bytes set to 0, 0xff, 0x7f, 0x80, a random value or one bit flipped."""
    if not data:
        return b"\x00"
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] = rng.choice(
            (0, 0xFF, 0x7F, 0x80, rng.randrange(256), out[i] ^ 1 << rng.randrange(8))
        )
    return bytes(out)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))] if data else data


def insert(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.randbytes(rng.randint(1, 16)) + data[i:]


def delete(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + data[i + rng.randint(1, 16) :]


BYTE_MUTATORS = {"flip": flip, "truncate": truncate, "insert": insert, "delete": delete}


def encode_int(value: int) -> bytes:
    """The shortest pickle opcode pushing `value`."""
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    n = (value.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + value.to_bytes(n, "little", signed=True)


def encode_str(value: str) -> bytes:
    raw = value.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def mutate_pickle(rng: random.Random, data: bytes) -> bytes:
    """One opcode of the pickle `data` replaced, deleted, doubled or preceded by another."""
    try:
        ops = list(pickletools.genops(data))
    except ValueError:
        return flip(rng, data)
    if not ops:
        return flip(rng, data)
    ends = [pos for _, _, pos in ops[1:]] + [len(data)]
    k = rng.randrange(len(ops))
    (op, arg, start), end = ops[k], ends[k]
    choice = rng.randrange(6)
    if choice == 0 and type(arg) is int and op.name not in ("PROTO", "FRAME"):
        new = encode_int(rng.choice((*EXTREME_INTS, arg + rng.randint(-3, 3), arg * 1000)))
    elif choice == 1 and isinstance(arg, str):
        new = encode_str(rng.choice(STRINGS))
    elif choice == 2 and isinstance(arg, bytes):
        n = rng.choice((0, max(0, len(arg) - 2), min(255, len(arg) + 2)))
        new = b"C" + bytes([n]) + (arg + b"\x00\x00")[:n]
    elif choice == 3:
        new = b""
    elif choice == 4:
        new = data[start:end] * 2
    else:
        new = rng.choice(OPCODES) + data[start:end]
    return data[:start] + new + data[end:]
