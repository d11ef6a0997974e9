"""`jaxlatent.atomic.atomic_write`: bytes, text or a writer function; never a partial file."""

from __future__ import annotations

import os

import pytest

from jaxlatent.atomic import atomic_write


def test_writes_bytes_text_and_writer_output(tmp_path):
    assert atomic_write(tmp_path / "a.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write(tmp_path / "sub" / "b.txt", "héllo").read_text("utf-8") == "héllo"
    suffixes = []

    def writer(tmp):
        suffixes.append(os.path.splitext(tmp)[1])
        with open(tmp, "w") as f:
            f.write("x")

    assert atomic_write(tmp_path / "c.wav", writer).read_text() == "x"
    assert suffixes == [".wav"]  # writers that pick the format from the name see the target's
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "c.wav", "sub"]


def test_a_failed_write_leaves_the_target_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(TypeError):
        atomic_write(target, object())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")

    def failing(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
