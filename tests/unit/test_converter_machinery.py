"""The strict assignment, export and safe loading rules every converter relies on."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from converters import assign, checkpoint_files, errors, tables
from tests import reference


class _Pair(nnx.Module):
    def __init__(self):
        self.a = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
        self.b = nnx.Linear(2, 4, use_bias=False, rngs=nnx.Rngs(0))


TABLE = tables.linear("enc", "a") | tables.linear("dec", "b", bias=False)


def _state_dict():
    rng = np.random.default_rng(0)
    return {
        "enc.weight": rng.standard_normal((2, 3)).astype(np.float32),
        "enc.bias": rng.standard_normal((2,)).astype(np.float32),
        "dec.weight": rng.standard_normal((4, 2)).astype(np.float32),
    }


def test_assign_and_export_round_trip():
    m = _Pair()
    sd = _state_dict()
    assign.assign_strict(m, sd, TABLE)
    np.testing.assert_array_equal(m.a.kernel[...], sd["enc.weight"].T)
    out = assign.export_state_dict(m, TABLE)
    assert out.keys() == sd.keys()
    for k in sd:
        np.testing.assert_array_equal(out[k], sd[k])


def test_every_problem_is_reported_and_nothing_assigned():
    m = _Pair()
    before = np.asarray(m.a.kernel[...]).copy()
    sd = _state_dict()
    sd["extra.weight"] = np.zeros(3, np.float32)
    del sd["enc.bias"]
    sd["dec.weight"] = np.zeros((4, 3), np.float32)
    sd["enc.weight"] = sd["enc.weight"] * 0 + 7
    with pytest.raises(errors.ConversionError) as info:
        assign.assign_strict(m, sd, TABLE)
    err = info.value
    assert err.unexpected == ["extra.weight"]
    assert any("enc.bias" in s for s in err.missing)
    assert len(err.mismatched) == 1 and "dec.weight" in err.mismatched[0]
    assert "(4, 3)" in str(err) and "(2, 4)" in str(err)
    np.testing.assert_array_equal(m.a.kernel[...], before)  # atomic: nothing assigned


def test_unfilled_module_variable_is_an_error():
    m = _Pair()
    table = tables.linear("enc", "a")
    sd = {k: v for k, v in _state_dict().items() if k.startswith("enc")}
    with pytest.raises(errors.ConversionError, match="b/kernel"):
        assign.assign_strict(m, sd, table)


def test_dont_load_allow_list():
    m = _Pair()
    sd = _state_dict() | {"ignored.thing": np.zeros(1, np.float32)}
    assign.assign_strict(m, sd, TABLE, dont_load=["ignored.thing"])


def test_duplicate_target_in_table_is_rejected():
    table = tables.tensor("x", "a/bias") | tables.tensor("y", "a/bias")
    with pytest.raises(ValueError, match="both"):
        assign.assign_strict(_Pair(), {}, table)


def test_weight_norm_style_detection():
    assert tables.detect_weight_norm_style({"l.weight_g": 0, "l.weight_v": 0}) == "legacy"
    assert tables.detect_weight_norm_style({"l.weight": 0}) is None
    with pytest.raises(errors.ConversionError, match="mixes"):
        tables.detect_weight_norm_style({"a.weight_g": 0, "b.parametrizations.weight.original0": 0})
    with pytest.raises(ValueError, match="unknown weight-norm style"):
        tables.weight_norm_names("new")


def test_load_rejects_missing_empty_truncated_and_pickled_code(tmp_path):
    torch = reference.torch()
    with pytest.raises(FileNotFoundError):
        checkpoint_files.load_torch_checkpoint(tmp_path / "nope.pth")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(errors.CheckpointError, match="empty"):
        checkpoint_files.load_torch_checkpoint(empty)
    good = tmp_path / "good.pth"
    checkpoint_files.save_torch_checkpoint({"state_dict": _state_dict(), "meta": {"n": 1}}, good)
    loaded = checkpoint_files.load_torch_checkpoint(good)
    np.testing.assert_array_equal(loaded["state_dict"]["enc.bias"], _state_dict()["enc.bias"])
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(errors.CheckpointError, match="truncated"):
        checkpoint_files.load_torch_checkpoint(truncated)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(errors.CheckpointError, match=r"refusing.*GLOBAL print"):
        checkpoint_files.load_torch_checkpoint(evil)
    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(errors.CheckpointError, match="corrupt or not a torch checkpoint"):
        checkpoint_files.load_torch_checkpoint(noise)
