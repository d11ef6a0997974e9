""".dac files are interchangeable with the official `dac.DACFile` (descript-audio-codec 1.0.0)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxlatent.codec import DACFile
from tests import reference

pytestmark = pytest.mark.parity


def _official():
    reference.dac()
    from dac.model.base import DACFile as OfficialDACFile

    return OfficialDACFile


@pytest.mark.parametrize(("rows", "channels", "padding"), [(1, 1, True), (2, 2, False)])
def test_official_file_loads_here(tmp_path, rng, rows, channels, padding):
    torch = reference.torch()
    codes = rng.integers(0, 1024, (rows, 4, 9))
    official = _official()(
        codes=torch.from_numpy(codes),
        chunk_length=3 if not padding else 9,
        original_length=12345,
        input_db=torch.tensor([-17.25]),
        channels=channels,
        sample_rate=24000,
        padding=padding,
        dac_version="1.0.0",
    )
    path = official.save(tmp_path / "official")  # the official save appends ".dac"
    f = DACFile.load(path)
    np.testing.assert_array_equal(f.codes, codes.astype(np.uint16))
    assert f.codes.dtype == np.uint16
    assert (f.chunk_length, f.original_length, f.channels, f.sample_rate, f.padding) == (
        official.chunk_length,
        12345,
        channels,
        24000,
        padding,
    )
    np.testing.assert_array_equal(f.input_db, np.array([-17.25], np.float32))
    # Same bytes when written back here.
    assert f.to_bytes() == path.read_bytes()


def test_file_written_here_loads_in_official(tmp_path, rng):
    codes = rng.integers(0, 1024, (2, 5, 6)).astype(np.uint16)
    f = DACFile(
        codes=codes,
        chunk_length=3,
        original_length=777,
        input_db=np.array([-30.5], np.float32),
        channels=2,
        sample_rate=16000,
        padding=False,
    )
    path = f.save(tmp_path / "ours.dac")
    g = _official().load(path)
    np.testing.assert_array_equal(reference.to_numpy(g.codes), codes.astype(np.int64))
    assert (g.chunk_length, g.original_length, g.channels, g.sample_rate, g.padding) == (
        3,
        777,
        2,
        16000,
        False,
    )
    assert g.dac_version == "1.0.0"
    np.testing.assert_array_equal(np.asarray(g.input_db), np.array([-30.5], np.float32))
