"""converters.dac_hf without transformers nor torch: folders written by `export_hf_folder`
read back, and every kind of bad input refused with one line naming the problem.

(Parity with transformers' own ``DacModel`` is tests/parity/test_dac_hf.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from converters import assign, checkpoint_files, dac_hf
from converters.dac import convert_checkpoint, export_release_checkpoint, export_state_dict
from converters.dac_formats import checkpoint_format, convert_any
from converters.errors import CheckpointError, ConversionError
from jaxlatent import cli
from jaxlatent.models.dac import DACConfig
from tests import reference
from tests.tolerances import assert_close
from tests.unit.test_dac_compress import TINY, tiny_dac
from tests.unit.test_dac_model import random_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, its transformers folder)."""
    model = tiny_dac(seed=4)
    folder = dac_hf.export_hf_folder(model, tmp_path_factory.mktemp("hf") / "tiny")
    return model, folder


def _copy(folder, tmp_path, *, config=None, tensors=None):
    """A copy of `folder` with its config.json and/or tensors replaced."""
    out = tmp_path / "copy"
    out.mkdir()
    meta = json.loads((folder / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(config(meta) if config else meta))
    sd, _ = checkpoint_files.load_safetensors(folder / "model.safetensors")
    checkpoint_files.save_safetensors(tensors(sd) if tensors else sd, out / "model.safetensors")
    return out


def _cli_error(capsys, src, tmp_path):
    out = tmp_path / "converted"
    code = cli.main(["convert", "dac", str(src), str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert not out.exists()
    return err


def test_folder_round_trip(exported):
    model, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta["model_type"] == "dac" and meta["hidden_size"] == TINY.latent_dim == 6
    tensors, metadata = checkpoint_files.load_safetensors(folder / "model.safetensors")
    assert metadata == {}
    assert tensors.keys() == dac_hf.expected_hf_shapes(TINY).keys()
    assert "encoder.block.1.res_unit3.conv2.weight" in tensors  # fused: no weight_g
    assert checkpoint_format(folder) == "transformers"
    config, converted = convert_any(folder)
    assert config == TINY
    # v = w, g = ||w||: the recomputed kernels are the model's up to one float32 rounding
    for conv in ("conv1", "conv2"):
        a = getattr(converted.encoder, conv).effective_kernel()
        b = getattr(model.encoder, conv).effective_kernel()
        assert_close(a, b, "dac_fused_kernel", err_msg=conv)
    np.testing.assert_array_equal(
        np.asarray(converted.quantizer.quantizers[2].codebook[...]),
        np.asarray(model.quantizer.quantizers[2].codebook[...]),
    )


def test_state_dict_styles(exported):
    """The same weights as a bare state_dict: fused, legacy and parametrizations keys."""
    model, folder = exported
    tensors, _ = checkpoint_files.load_safetensors(folder / "model.safetensors")
    legacy = assign.export_state_dict(model, dac_hf.hf_table(TINY))
    param = assign.export_state_dict(model, dac_hf.hf_table(TINY, "parametrizations"))
    assert any(k.endswith("parametrizations.weight.original1") for k in param)
    for sd in (legacy, param):
        config, converted = dac_hf.convert_hf(sd, TINY)
        assert config == TINY
        exact = assign.export_state_dict(converted, dac_hf.hf_table(TINY))
        for k, v in legacy.items():
            np.testing.assert_array_equal(exact[k], v, err_msg=k)
    assert dac_hf.convert_hf(tensors, sample_rate=8000)[0] == TINY
    with pytest.raises(ConversionError, match="pass sample_rate"):
        dac_hf.convert_hf(tensors)
    assert checkpoint_format(tensors) == "transformers"
    assert checkpoint_format(export_state_dict(model)) == "release"


def test_safetensors_release_checkpoint(tmp_path):
    """A release checkpoint as .safetensors: the kwargs in the header, an exact round trip."""
    model = tiny_dac(seed=5)
    path = tmp_path / "release.safetensors"
    export_release_checkpoint(model, None, path)
    tensors, metadata = checkpoint_files.load_safetensors(path)
    assert tensors.keys() == export_state_dict(model).keys()
    assert metadata == {"kwargs": TINY.to_kwargs()}
    assert checkpoint_format(path) == "release"
    config, converted = convert_checkpoint(path)
    assert config == TINY
    a, b = export_state_dict(converted), export_state_dict(model)
    for k in b:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_unknown_key(exported, tmp_path, capsys):
    _, folder = exported
    bad = _copy(folder, tmp_path, tensors=lambda sd: sd | {"encoder.extra.weight": np.ones(3)})
    with pytest.raises(ConversionError) as e:
        dac_hf.convert_hf(bad)
    assert e.value.unexpected == ["encoder.extra.weight"]
    err = _cli_error(capsys, bad, tmp_path)
    assert "disagree with config.json" in err and "encoder.extra.weight" in err


def test_wrong_shape(exported, tmp_path, capsys):
    _, folder = exported
    key = "decoder.block.0.conv_t1.weight"

    def wrong(sd):
        return sd | {key: np.zeros((1, *sd[key].shape[1:]), np.float32)}

    bad = _copy(folder, tmp_path, tensors=wrong)
    err = _cli_error(capsys, bad, tmp_path)
    assert f"{key}: (1, 4, 10), expected (8, 4, 10)" in err


def test_missing_key(exported, tmp_path, capsys):
    _, folder = exported
    key = "quantizer.quantizers.1.codebook.weight"
    bad = _copy(folder, tmp_path, tensors=lambda sd: {k: v for k, v in sd.items() if k != key})
    assert key in _cli_error(capsys, bad, tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_codebooks": 2}, "quantizer.quantizers.2."),
        (
            {"encoder_hidden_size": 3},
            "mis-shaped 46: encoder.block.0.conv1.bias: (4,), expected (6,)",
        ),
        ({"n_codebooks": 10**6}, "n_codebooks=1000000 exceed"),
        ({"hop_length": 11}, "hop_length 11 is not the product"),
        ({"codebook_dim": "two"}, "invalid DacConfig"),
    ],
)
def test_config_json_disagrees(exported, tmp_path, capsys, change, message):
    _, folder = exported
    bad = _copy(folder, tmp_path, config=lambda meta: meta | change)
    assert message in _cli_error(capsys, bad, tmp_path)


def test_bad_files(exported, tmp_path, capsys):
    _, folder = exported
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes((folder / "model.safetensors").read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint_files.load_safetensors(truncated)
    assert "truncated or corrupt" in _cli_error(capsys, truncated, tmp_path)
    empty = tmp_path / "e.safetensors"
    empty.write_bytes(b"")
    assert "empty" in _cli_error(capsys, empty, tmp_path)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((folder / "config.json").read_text())
    assert "no model.safetensors" in _cli_error(capsys, no_weights, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    assert "not a transformers DacModel folder" in _cli_error(capsys, other, tmp_path)


def test_mixed_styles(exported):
    model, _ = exported
    sd = assign.export_state_dict(model, dac_hf.hf_table(TINY))
    sd["encoder.conv1.weight"] = sd.pop("encoder.conv1.weight_v")
    del sd["encoder.conv1.weight_g"]
    with pytest.raises(ConversionError, match="mixes weight-norm key styles"):
        dac_hf.convert_hf(sd, TINY)


def test_export_refuses_what_transformers_cannot_hold(tmp_path):
    per_codebook = DACConfig.from_kwargs(TINY.to_kwargs() | {"codebook_dim": [2, 2, 1]})
    with pytest.raises(ValueError, match="one codebook_dim for every codebook"):
        dac_hf.export_hf_folder(random_model(per_codebook, 0), tmp_path / "a")
    odd = DACConfig.from_kwargs(TINY.to_kwargs() | {"codebook_size": 12})
    with pytest.raises(ValueError, match="power-of-2 codebook_size"):
        dac_hf.export_hf_folder(random_model(odd, 0), tmp_path / "b")
    assert not list(tmp_path.iterdir())


def test_encode_with_a_folder(exported, tmp_path, monkeypatch):
    """``encode --model FOLDER`` converts the folder once; then `load_model` finds it cached."""
    from converters.dac_cache import load_model

    _, folder = exported
    monkeypatch.setenv("JAXLATENT_CACHE_DIR", str(tmp_path / "cache"))
    wav = tmp_path / "a.wav"
    audio = (np.random.default_rng(0).standard_normal(1000) * 0.1).astype(np.float32)
    reference.require("soundfile").write(wav, audio, TINY.sample_rate)
    argv = ["--model", str(folder), "--quiet", "--output"]
    assert cli.main(["encode", str(wav), *argv, str(tmp_path / "codes")]) == 0
    assert (tmp_path / "codes" / "a.dac").is_file()
    (entry,) = (tmp_path / "cache" / "dac").iterdir()  # converted once
    assert entry.name.startswith("tiny-")
    modified = entry.stat().st_mtime_ns
    assert load_model(folder).config == TINY
    assert entry.stat().st_mtime_ns == modified  # read from the cache, not written again


def test_reading_needs_no_torch(exported):
    """A transformers folder converts in a process where torch cannot be imported."""
    _, folder = exported
    code = f"""
import sys
sys.modules["torch"] = None
from converters.dac_formats import convert_any
config, model = convert_any({str(folder)!r})
assert config.latent_dim == 6 and "transformers" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
