"""The Python K-weighting loop of `jaxlatent.codec.loudness` (short signals) gives scipy's
``lfilter`` bit for bit, and the meter uses it within its per-process budget (parity of the
meter with audiotools: tests/parity/test_dac_dsp.py)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import scipy.signal

from jaxlatent.codec import loudness as mod


@pytest.mark.parametrize("rate", [16000, 44100])
def test_biquad_python_equals_lfilter_bitwise(rng, rate):
    x = rng.standard_normal((3, 5000)) * np.array([[1e-4], [0.3], [2.0]])
    x[1, 100:200] = 0.0  # a silent stretch
    for b, a in mod.k_weighting(rate):
        zi = rng.standard_normal((3, 2)) * 0.01
        y, zf = mod._biquad_python(b, a, x, zi)
        want, want_zf = scipy.signal.lfilter(b, a, x, axis=1, zi=zi)
        assert y.dtype == np.float64 and y.shape == x.shape
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(zf, want_zf)
    # an a[0] other than 1 is divided out as scipy does
    b, a = np.array([0.5, 0.25, 0.125]), np.array([2.0, -0.5, 0.25])
    np.testing.assert_array_equal(
        mod._biquad_python(b, a, x, np.zeros((3, 2)))[0],
        scipy.signal.lfilter(b, a, x, axis=1, zi=np.zeros((3, 2)))[0],
    )
    with pytest.raises(ValueError, match="3 coefficients"):
        mod._biquad_python(b[:2], a, x, np.zeros((3, 2)))


def test_meter_paths_agree_and_the_python_loop_has_a_budget(rng, monkeypatch):
    x = rng.standard_normal((1, 30011, 2)).astype(np.float32) * 0.1
    n = 2 * 30011
    # scipy.signal is imported here (this module): the loop only runs when it is not
    monkeypatch.setattr(mod, "sys", types.SimpleNamespace(modules={}))
    monkeypatch.setattr(mod, "_PYTHON_FILTER_SAMPLES", 2 * n)
    monkeypatch.setattr(mod, "_python_filtered", 0)
    assert mod.StreamingMeter(2, 30011, 16000, channels=2)._lfilter is mod._biquad_python
    python = mod.integrated_loudness(x, 16000)  # the budget's second signal
    assert mod._python_filtered == 2 * n
    assert mod.StreamingMeter(2, 30011, 16000, channels=2)._lfilter is mod._biquad_scipy
    monkeypatch.setattr(mod, "_BLOCK", 4099)  # state carried across blocks in both
    np.testing.assert_array_equal(mod.integrated_loudness(x, 16000), python)
    monkeypatch.setattr(mod, "_python_filtered", 0)
    monkeypatch.setattr(mod, "sys", sys)
    assert mod.StreamingMeter(2, 30011, 16000, channels=2)._lfilter is mod._biquad_scipy
