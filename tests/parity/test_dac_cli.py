"""`jaxlatent parity dac` runs the official dac.DAC and jaxlatent on the same audio."""

from __future__ import annotations

import re

import jax
import pytest

from jaxlatent import cli
from tests import reference
from tests.tolerances import TOLERANCES
from tests.unit.test_dac_compress import TINY

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    dac, torch = reference.dac(), reference.torch()
    torch.manual_seed(0)
    model = dac.DAC(**TINY.to_kwargs())
    with torch.no_grad():  # trained-like: non-zero biases (see test_dac_compress.py)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.add_(torch.randn(p.shape) * 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    model.save(str(path), package=False)
    return str(path)


def test_parity_report(checkpoint, capsys):
    assert cli.main(["parity", "dac", "--model", checkpoint, "--seconds", "0.5"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^(encoder|quantizer \d+|z|decoder) +(\S+) +(\S+) *(.*)$", out, re.M)
    assert [r[0] for r in rows] == [
        "encoder",
        "quantizer 0",
        "quantizer 1",
        "quantizer 2",
        "z",
        "decoder",
    ]
    atol = TOLERANCES["dac_model_small_f32"].atol
    rtol = TOLERANCES["dac_model_small_f32"].rtol
    for stage, max_abs, max_rel, codes in rows:
        assert float(max_abs) <= atol or float(max_rel) <= rtol, (stage, max_abs, max_rel)
        if stage.startswith("quantizer"):
            assert codes.strip() == "100.00 %"
    assert "all codes equal: 100.000 %" in out
    assert re.search(r"^torch\s+\d+\.\d+s\s+\d+\.\d+s", out, re.M)
    assert re.search(r"^jaxlatent\s+\d+\.\d+s\s+\d+\.\d+s\s+\(jit; compile", out, re.M)
    backend = jax.default_backend()
    assert f"precision: jaxlatent highest ({backend}); torch float32 (CPU)" in out


def test_parity_report_takes_the_already_converted_model(checkpoint):
    """`model=` (what the demo passes) gives the report of converting here, stage by stage,
    and a model built with another precision is refused."""
    from converters.dac import convert_checkpoint
    from converters.dac_parity import parity_report

    _, model = convert_checkpoint(checkpoint)
    given = parity_report(checkpoint, seconds=0.5, model=model)
    converted = parity_report(checkpoint, seconds=0.5)
    assert given.stages == converted.stages and given.code_agreement == 1.0
    _, default_model = convert_checkpoint(checkpoint, precision="default")
    with pytest.raises(ValueError, match="built with precision"):
        parity_report(checkpoint, seconds=0.5, model=default_model)


def test_parity_bad_input(checkpoint, tmp_path, capsys):
    assert cli.main(["parity", "dac", "--model", checkpoint, "--audio", "/nope.wav"]) == 2
    assert "not a readable audio file" in capsys.readouterr().err
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    assert cli.main(["parity", "dac", "--model", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxlatent parity: error:") and err.count("\n") == 1
