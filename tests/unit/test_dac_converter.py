"""`converters.dac` on bad input: unreadable files, wrong layouts, metadata that disagrees
with the weights. Each error must name the problem; nothing is converted on error."""

from __future__ import annotations

import numpy as np
import pytest

from converters import dac as cdac
from converters import errors
from converters.dac_tables import decoder_table, encoder_table, model_table
from jaxlatent.models.dac import DACConfig
from tests import reference as ref

TINY = {
    "encoder_dim": 2,
    "encoder_rates": [2, 3],
    "latent_dim": 6,
    "decoder_dim": 8,
    "decoder_rates": [3, 2],
    "n_codebooks": 2,
    "codebook_size": 4,
    "codebook_dim": 3,
    "quantizer_dropout": 0.5,
    "sample_rate": 6000,
}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A release-format checkpoint written by the reference (`dac.DAC.save`)."""
    torch = ref.torch()
    torch.manual_seed(0)
    model = ref.dac().DAC(**TINY)
    path = tmp_path_factory.mktemp("dac") / "weights.pth"
    model.save(str(path), package=False)
    return path, model.state_dict()


def _save(obj, path):
    ref.torch().save(obj, str(path))
    return path


def test_reads_release_checkpoint(release):
    path, state_dict = release
    config, loaded = cdac.read_release_checkpoint(path)
    # dac.DAC keeps no quantizer_dropout attribute, so save() writes the default (False).
    assert config == DACConfig.from_kwargs(TINY | {"quantizer_dropout": 0.0})
    assert loaded.keys() == state_dict.keys()


def test_missing_empty_truncated_and_corrupt_files(release, tmp_path):
    path, _ = release
    with pytest.raises(FileNotFoundError, match="not found"):
        cdac.read_release_checkpoint(tmp_path / "absent.pth")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(errors.CheckpointError, match="empty"):
        cdac.read_release_checkpoint(empty)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(errors.CheckpointError, match="truncated or not a torch checkpoint"):
        cdac.read_release_checkpoint(truncated)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    # (random bytes read as a legacy pickle: common reports them as refused unpickling)
    with pytest.raises(errors.CheckpointError, match=r"corrupt\.pth"):
        cdac.read_release_checkpoint(corrupt)


def test_wrong_container(release, tmp_path):
    _, state_dict = release
    with pytest.raises(errors.CheckpointError, match=r"missing \['metadata'\]"):
        cdac.read_release_checkpoint(_save({"state_dict": state_dict}, tmp_path / "a.pth"))
    with pytest.raises(errors.CheckpointError, match="expected a dict"):
        cdac.read_release_checkpoint(_save([1, 2], tmp_path / "b.pth"))
    with pytest.raises(errors.CheckpointError, match="no 'kwargs'"):
        bad = {"state_dict": state_dict, "metadata": {}}
        cdac.read_release_checkpoint(_save(bad, tmp_path / "c.pth"))


def test_invalid_or_unknown_kwargs(release, tmp_path):
    _, state_dict = release
    bad = {"state_dict": state_dict, "metadata": {"kwargs": TINY | {"n_layers": 3}}}
    with pytest.raises(errors.CheckpointError, match=r"unknown DAC kwargs \['n_layers'\]"):
        cdac.read_release_checkpoint(_save(bad, tmp_path / "a.pth"))
    bad = {"state_dict": state_dict, "metadata": {"kwargs": TINY | {"encoder_rates": []}}}
    with pytest.raises(errors.CheckpointError, match="encoder_rates"):
        cdac.read_release_checkpoint(_save(bad, tmp_path / "b.pth"))


def test_metadata_that_disagrees_with_the_weights(release, tmp_path):
    _, state_dict = release
    bad = {"state_dict": state_dict, "metadata": {"kwargs": TINY | {"latent_dim": 8}}}
    with pytest.raises(errors.ConversionError, match="disagree with metadata") as info:
        cdac.read_release_checkpoint(_save(bad, tmp_path / "a.pth"))
    assert any("encoder.block.4.weight_v" in m and "(6, 8, 3)" in m for m in info.value.mismatched)
    bad = {"state_dict": state_dict, "metadata": {"kwargs": TINY | {"n_codebooks": 3}}}
    with pytest.raises(errors.ConversionError) as info:
        cdac.read_release_checkpoint(_save(bad, tmp_path / "b.pth"))
    assert "quantizer.quantizers.2.codebook.weight" in info.value.missing


def test_missing_extra_and_misshaped_keys(release):
    _, state_dict = release
    config = DACConfig.from_kwargs(TINY)
    sd = dict(state_dict)
    del sd["decoder.model.0.bias"]
    sd["decoder.extra.weight"] = sd["decoder.model.0.weight_g"]
    sd["encoder.block.0.weight_v"] = sd["encoder.block.0.weight_v"][:, :, :5]
    with pytest.raises(errors.ConversionError) as info:
        cdac.convert_codec_parts(sd, config)
    err = info.value
    assert err.missing == ["decoder.model.0.bias"]
    assert err.unexpected == ["decoder.extra.weight"]
    assert len(err.mismatched) == 1 and "encoder.block.0.weight_v" in err.mismatched[0]
    # The per-part converters are strict over their own part too.
    with pytest.raises(errors.ConversionError, match=r"decoder\.extra\.weight"):
        cdac.decoder_from_state_dict(sd, config)


def test_weight_norm_styles_are_detected(release):
    _, state_dict = release
    plain = {k: v for k, v in state_dict.items() if "weight_" not in k}
    with pytest.raises(errors.ConversionError, match="not a DAC state_dict"):
        cdac.detect_style(plain)
    mixed = dict(state_dict)
    mixed["decoder.model.0.parametrizations.weight.original0"] = mixed.pop(
        "decoder.model.0.weight_g"
    )
    with pytest.raises(errors.ConversionError, match="mixes"):
        cdac.check_state_dict(mixed, DACConfig.from_kwargs(TINY))


def test_model_table_covers_the_reference_state_dict(release):
    _, state_dict = release
    config = DACConfig.from_kwargs(TINY)
    table = model_table(config, "legacy")
    assert set(table) == set(state_dict)
    assert table["quantizer.quantizers.1.codebook.weight"].jax_path == (
        "quantizer/quantizers/1/codebook"
    )
    assert table["quantizer.quantizers.0.in_proj.weight_g"].jax_path == (
        "quantizer/quantizers/0/in_proj/weight_g"
    )
    assert table["encoder.block.0.weight_g"].jax_path == "encoder/conv1/weight_g"
    assert table["decoder.model.3.alpha"].jax_path == "decoder/snake1/alpha"
    parts = set(encoder_table(config, style="legacy")) | set(decoder_table(config, style="legacy"))
    assert parts == {k for k in state_dict if not k.startswith("quantizer.")}
