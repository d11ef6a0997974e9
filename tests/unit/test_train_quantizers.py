"""`jaxlatent train --quantizer`: every quantizer of the VQ-VAE family trains a few steps on the
bundled speech, with finite changing losses and each codebook's usage and perplexity in
``eval.jsonl``; a model without a quantizer, an unknown quantizer and resuming with another
quantizer are refused; `ConvVQVAE` refuses a latent size without a quantizer factory."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from jaxlatent import cli, training
from jaxlatent.apps.vq_quantizers import QUANTIZERS
from jaxlatent.models import ConvVQVAE

STEPS = 4
RESIDUAL = {"rfsq", "rlfq", "rsimvq", "rvq"}


def _train(out, model, *args):
    argv = ["train", "--model", model, "--steps", str(STEPS), "--batch-size", "4"]
    argv += ["--eval-every", str(STEPS), "--checkpoint-every", str(STEPS), "--parallel", "single"]
    return cli.main([*argv, "--out", str(out), "--quiet", *map(str, args)])


@pytest.mark.parametrize("quantizer", [q for q in QUANTIZERS if q != "vq"])
def test_vq_vae_trains_with_each_quantizer(quantizer, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out, "vq_vae", "--quantizer", quantizer, "--lr", "1e-2") == 0
    records = training.read_jsonl(str(out / "metrics.jsonl"))
    losses = [r["loss"] for r in records]
    assert len(losses) >= 2 and np.isfinite(losses).all()
    assert losses[-1] != losses[0]
    (record,) = training.read_jsonl(str(out / "eval.jsonl"))
    layers = [f"_L{i}" for i in range(2)] if quantizer in RESIDUAL else []
    for name in ("codes_used", "perplexity"):
        for suffix in ["", *layers]:
            assert np.isfinite(record[name + suffix]), (name + suffix, record)
    assert record["codes_used"] >= 1 and record["perplexity"] >= 1
    for suffix in layers:
        assert 1 <= record["codes_used" + suffix] and record["perplexity" + suffix] >= 1
    if quantizer == "fsq":  # resuming needs the same quantizer (the default is vq)
        capsys.readouterr()
        assert _train(out, "vq_vae", "--resume") == 2
        assert "trains with --quantizer 'fsq', not 'vq'" in capsys.readouterr().err


def test_quantizer_of_a_model_without_one_exits_2_before_writing(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out, "sb_vae", "--quantizer", "fsq") == 2
    err = capsys.readouterr().err.strip()
    assert "no quantizer" in err and "\n" not in err
    assert _train(out, "vq_vae", "--quantizer", "nope") == 2
    assert "unknown --quantizer 'nope'" in capsys.readouterr().err
    assert not out.exists()


def test_conv_vqvae_needs_a_quantizer_factory_for_a_latent_size():
    with pytest.raises(ValueError, match="needs a quantizer"):
        ConvVQVAE(4, 8, 2, rngs=nnx.Rngs(0))
