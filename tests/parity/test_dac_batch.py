"""Batched folder coding (`jaxlatent.codec.batch`) against the official ``compress``: windows
of several real clips share model calls over 8 devices, and every file's codes still equal the
official package's, clip by clip (models as in test_dac_compress: written by the reference in
the release format, read through the production converter)."""

from __future__ import annotations

import pytest

from jaxlatent.codec.batch import BatchEncoder
from jaxlatent.codec.compression import prepare
from tests.parity.test_dac_compress import _check_same_file, _models, _official_compress
from tests.real_audio import read_clip

pytestmark = pytest.mark.parity

# 48 kHz stereo (2 windows x 2 channels) and 24 kHz mono (3 windows): the 7 rows share one
# batch, completed with a zero row. (Unchunked inputs, batched decoding and batch-size
# invariance: tests/unit/test_batch_coding.py, against `compress` / `decompress`.)
CLIPS = [("music_48k_stereo.wav", 1.2), ("music_24k.wav", 1.3)]


@pytest.fixture(scope="module")
def tmp_models(tmp_path_factory):
    return str(tmp_path_factory.mktemp("dac_models"))


def test_batched_codes_equal_official(tmp_models):
    tmodel, model = _models("44khz_8kbps", True, tmp_models)
    clips = {name: read_clip(name, seconds) for name, seconds in CLIPS}
    encoder = BatchEncoder(model, 8)
    inputs = ((name, prepare(model, x, sr, win_duration=1.0)) for name, (x, sr) in clips.items())
    ours = dict(encoder.encode(inputs))
    assert ours.keys() == clips.keys()
    assert encoder.batches == 1
    for name, (x, sr) in clips.items():
        _check_same_file(ours[name], _official_compress(tmodel, x, sr, win_duration=1.0), name)
