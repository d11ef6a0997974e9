"""`jaxlatent.codec.DACFile`: round trip, atomic write, safe loading, bad files."""

from __future__ import annotations

import io
import os
import pathlib

import numpy as np
import pytest

from jaxlatent.codec import DACFile, DACFileError


def _file(rng, rows=2, n_q=3, frames=7, channels=2, **kw) -> DACFile:
    args = {
        "codes": rng.integers(0, 1024, (rows, n_q, frames)).astype(np.uint16),
        "chunk_length": frames,
        "original_length": 3000,
        "input_db": np.array([-23.5], np.float32),
        "channels": channels,
        "sample_rate": 48000,
        "padding": True,
    }
    args.update(kw)
    return DACFile(**args)


def _metadata(**kw):
    meta = {
        "input_db": np.array([-20.0], np.float32),
        "original_length": 100,
        "sample_rate": 16000,
        "chunk_length": 4,
        "channels": 1,
        "padding": False,
        "dac_version": "1.0.0",
    }
    meta.update(kw)
    return meta


def _npy(obj) -> bytes:
    buf = io.BytesIO()
    np.save(buf, obj, allow_pickle=True)
    return buf.getvalue()


def test_round_trip(tmp_path, rng):
    f = _file(rng)
    path = f.save(tmp_path / "a.dac")
    g = DACFile.load(path)
    np.testing.assert_array_equal(g.codes, f.codes)
    assert g.codes.dtype == np.uint16
    assert (g.chunk_length, g.original_length, g.channels, g.sample_rate, g.padding) == (
        7,
        3000,
        2,
        48000,
        True,
    )
    np.testing.assert_array_equal(g.input_db, np.array([-23.5], np.float32))
    assert g.dac_version == "1.0.0"
    assert os.listdir(tmp_path) == ["a.dac"]  # no temporary file left behind


def test_save_is_atomic(tmp_path, rng, monkeypatch):
    """A failure while writing leaves neither a partial file nor a temporary one."""
    target = tmp_path / "b.dac"
    _file(rng).save(target)
    before = target.read_bytes()
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # usual permissions

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)  # fails after the bytes went to the temporary file
    with pytest.raises(OSError, match="disk full"):
        _file(rng, frames=9).save(target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["b.dac"]
    with pytest.raises(OSError, match="disk full"):
        _file(rng).save(tmp_path / "new.dac")
    assert os.listdir(tmp_path) == ["b.dac"]


def test_numpy_scalars_in_metadata_load(rng):
    """Writers that store numpy ints / a numpy float scalar are read (numpy's `scalar`)."""
    data = _npy(
        {
            "codes": rng.integers(0, 10, (1, 2, 4)).astype(np.uint16),
            "metadata": _metadata(
                original_length=np.int64(100),
                sample_rate=np.int32(16000),
                input_db=np.float32(-19.5),
                padding=np.bool_(True),
            ),
        }
    )
    f = DACFile.from_bytes(data)
    assert f.original_length == 100 and isinstance(f.original_length, int)
    assert f.padding is True
    np.testing.assert_array_equal(f.input_db, np.array([-19.5], np.float32))


class _Payload:
    """Unpickling this creates `path` (a harmless stand-in for arbitrary code)."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


@pytest.mark.parametrize("where", ["codes", "metadata", "input_db", "top"])
def test_planted_reduce_payload_is_refused_without_running(tmp_path, where):
    marker = tmp_path / f"pwned-{where}"
    payload = _Payload(marker)
    artifacts = {"codes": np.zeros((1, 1, 1), np.uint16), "metadata": _metadata()}
    if where == "codes":
        artifacts["codes"] = payload
    elif where == "metadata":
        artifacts["metadata"] = payload
    elif where == "input_db":
        artifacts["metadata"]["input_db"] = payload
    else:
        artifacts = payload
    path = tmp_path / "evil.dac"
    path.write_bytes(_npy(artifacts))

    with pytest.raises(DACFileError, match=r"pathlib.*refusing to load"):
        DACFile.load(path)
    assert not marker.exists()
    # The payload is real: numpy's pickle loading (what the official DACFile.load does) runs it.
    np.load(path, allow_pickle=True)
    assert marker.exists()


def test_other_globals_are_refused(tmp_path):
    """Also callables that need no arguments from us (builtins.eval via GLOBAL + REDUCE)."""
    header = _npy(np.array(None, dtype=object)).split(b"\n", 1)[0] + b"\n"
    for module, name in [("builtins", "eval"), ("os", "system"), ("numpy", "load")]:
        body = f"c{module}\n{name}\n(S'1+1'\ntR.".encode()
        with pytest.raises(DACFileError, match=f"{module}.{name}"):
            DACFile.from_bytes(header + body)


def test_truncated_files_give_clear_errors(tmp_path, rng):
    data = _file(rng).to_bytes()
    for cut in [0, 5, 40, len(data) // 2, len(data) - 1]:
        path = tmp_path / f"cut{cut}.dac"
        path.write_bytes(data[:cut])
        with pytest.raises(DACFileError, match=str(path)):
            DACFile.load(path)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40), "not a .dac file"),
        (_npy(np.zeros((2, 3), np.uint16)), "not a .dac file"),
        (_npy({"codes": np.zeros((1, 1, 1), np.uint16)}), "expected a dict with keys"),
        (_npy(np.array("x", dtype=object)), "expected a dict"),
        (
            _npy({"codes": np.zeros((1, 1, 1), np.uint16), "metadata": _metadata(extra=1)}),
            "metadata keys",
        ),
        (
            _npy({"codes": np.zeros((1, 1, 1), np.uint16), "metadata": _metadata(dac_version="2")}),
            "not supported",
        ),
        (
            _npy({"codes": np.zeros((1, 1), np.uint16), "metadata": _metadata()}),
            "codes must be",
        ),
        (
            _npy({"codes": np.zeros((1, 1, 1), np.float32), "metadata": _metadata()}),
            "codes must be",
        ),
        (
            _npy({"codes": np.zeros((3, 1, 2), np.uint16), "metadata": _metadata(channels=2)}),
            "not a multiple of channels",
        ),
        (
            _npy({"codes": np.zeros((1, 1, 2), np.uint16), "metadata": _metadata(padding=1)}),
            "'padding' must be a bool",
        ),
        (
            _npy({"codes": np.zeros((1, 1, 2), np.uint16), "metadata": _metadata(channels="1")}),
            "'channels' must be an integer",
        ),
        (
            _npy({"codes": np.zeros((1, 1, 2), np.uint16), "metadata": _metadata(chunk_length=0)}),
            "'chunk_length' must be >= 1",
        ),
        (
            _npy(
                {
                    "codes": np.zeros((1, 1, 2), np.uint16),
                    "metadata": _metadata(input_db=np.array([np.nan], np.float32)),
                }
            ),
            "input_db",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_files(data, match):
    with pytest.raises(DACFileError, match=match):
        DACFile.from_bytes(data)


def test_corrupt_pickle_opcode(rng):
    data = bytearray(_file(rng).to_bytes())
    start = data.index(b"\n") + 1
    data[start + 2 : start + 12] = b"\xff" * 10  # garbage right after the pickle's PROTO
    with pytest.raises(DACFileError, match="truncated or corrupt"):
        DACFile.from_bytes(bytes(data))


def test_constructor_validation(rng):
    with pytest.raises(DACFileError, match=r"\[0, 65535\]"):
        _file(rng, codes=np.full((2, 1, 1), 70000))
    with pytest.raises(DACFileError, match="not supported"):
        _file(rng, dac_version="0.9")
    with pytest.raises(FileNotFoundError):
        DACFile.load("/nonexistent/x.dac")
    assert issubclass(DACFileError, ValueError)


def test_window_codes_fill_one_array_and_drop_the_padding():
    from jaxlatent.codec.dac_file import window_codes

    windows = [np.full((2, 3, 4), k, np.int32) for k in range(3)]
    out, width = window_codes(iter(windows), 3)
    assert out.dtype == np.uint16 and width == 4
    np.testing.assert_array_equal(out, np.concatenate(windows, axis=-1))
    out, _ = window_codes(iter(windows), 3, frames=9)  # the last window's 3 padded frames go
    np.testing.assert_array_equal(out, np.concatenate(windows, axis=-1)[..., :9])
    for frames in (8, 13):  # ends in the second window / past the last one
        with pytest.raises(ValueError, match=f"{frames} frames do not end in the last of 3"):
            window_codes(windows, 3, frames=frames)
    with pytest.raises(ValueError, match="codes of 0 windows; expected 1"):
        window_codes([], 1)
    with pytest.raises(ValueError, match=r"window 1 has codes of shape \(2, 2, 4\)"):
        window_codes([windows[0], windows[1][:, :2]], 2)
