"""`converters.torchaudio_stub`: the one stand-in torchaudio (installed by tests/conftest.py)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from converters import torchaudio_stub
from tests import reference


@pytest.fixture
def stub(monkeypatch):
    """A freshly installed stub (the suite's torchaudio is restored afterwards)."""
    for name in ("torchaudio", "torchaudio.functional"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    if importlib.util.find_spec("torchaudio") is not None:
        pytest.skip("a real torchaudio is installed: the stub is not used")
    torchaudio_stub.install_torchaudio_stub("9.9.9")
    return sys.modules["torchaudio"]


def test_the_stub_is_a_findable_package(stub):
    assert stub.__version__ == "9.9.9"
    assert importlib.util.find_spec("torchaudio") is stub.__spec__  # no "__spec__ is None"
    assert importlib.util.find_spec("torchaudio.functional").name == "torchaudio.functional"
    import torchaudio.functional

    assert torchaudio.functional is stub.functional


def test_any_other_attribute_raises(stub):
    with pytest.raises(AttributeError, match="stub torchaudio has no attribute 'load'"):
        stub.load  # noqa: B018
    with pytest.raises(AttributeError, match="'resample'"):
        stub.functional.resample  # noqa: B018
    assert not hasattr(stub, "list_audio_backends")


def test_installing_twice_keeps_the_first(stub):
    torchaudio_stub.install_torchaudio_stub("1.0.0")
    assert sys.modules["torchaudio"] is stub and stub.__version__ == "9.9.9"


def test_default_version_is_torch_s():
    torch = reference.torch()
    assert torchaudio_stub._torch_version() == torch.__version__.split("+")[0]


def test_lfilter_is_scipy_s_in_float64(rng):
    torch = reference.torch()
    import scipy.signal

    x = rng.uniform(-0.5, 0.5, size=(2, 3, 50)).astype(np.float32)
    b, a = np.array([0.2, 0.3, 0.1]), np.array([1.0, -0.4, 0.05])
    y = torchaudio_stub.lfilter(torch.from_numpy(x), torch.tensor(a), torch.tensor(b))
    assert y.dtype == torch.float32
    want = scipy.signal.lfilter(b, a, x.astype(np.float64), axis=-1).astype(np.float32)
    np.testing.assert_array_equal(y.numpy(), np.clip(want, -1, 1))
    # one filter per channel (second-to-last axis)
    x2 = np.ascontiguousarray(x[:, :2])
    bs, as_ = np.stack([b, b[::-1]]), np.stack([a, a])
    y = torchaudio_stub.lfilter(
        torch.from_numpy(x2), torch.tensor(as_), torch.tensor(bs), clamp=False
    )
    assert y.shape == x2.shape
    for i in range(2):
        want = scipy.signal.lfilter(bs[i], as_[i], x2[:, i].astype(np.float64), axis=-1)
        np.testing.assert_array_equal(y.numpy()[:, i], want.astype(np.float32))
