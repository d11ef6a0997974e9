"""`converters.dac.load_discriminator` / `export_discriminator` without the reference: round
trips, both weight-norm key styles, bad state_dicts and metadata (the reference's own files:
tests/parity/test_dac_discriminator.py)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from converters.dac import load_discriminator
from converters.dac_discriminator import discriminator_state_dict
from converters.errors import CheckpointError, ConversionError
from jaxlatent.models.dac import DiscriminatorConfig
from tests.unit.test_dac_discriminator import random_discriminator

#: Two MRD bands and one MPD: 14 weight-normed convolutions.
CONFIG = DiscriminatorConfig(periods=(2,), fft_sizes=(64,), bands=((0.0, 0.5), (0.5, 1.0)))


@pytest.fixture(scope="module")
def model():
    return random_discriminator(CONFIG, seed=3)


@pytest.fixture()
def state_dict(model):
    return discriminator_state_dict(model)


def _same(a, b):
    for x, y in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_from_save_layout(model, state_dict):
    assert "discriminators.0.convs.4.0.weight_g" in state_dict
    assert state_dict["discriminators.1.band_convs.1.0.0.weight_v"].shape == (32, 2, 3, 9)
    config, back = load_discriminator(
        {"state_dict": state_dict, "metadata": {"kwargs": CONFIG.to_kwargs()}}
    )
    assert config == CONFIG
    _same(model, back)


def test_parametrizations_keys(model, state_dict):
    renamed = {
        k.replace("weight_g", "parametrizations.weight.original0").replace(
            "weight_v", "parametrizations.weight.original1"
        ): v
        for k, v in state_dict.items()
    }
    _, back = load_discriminator(renamed, CONFIG)
    _same(model, back)


@pytest.mark.parametrize(
    "edit, listed",
    [
        (lambda sd: sd.pop("discriminators.1.conv_post.bias"), "missing"),
        (lambda sd: sd.update({"discriminators.1.extra": np.zeros(1)}), "unexpected"),
        (
            lambda sd: sd.update(
                {"discriminators.0.convs.2.0.weight_v": np.zeros((512, 128, 3, 1), np.float32)}
            ),
            "mis-shaped",
        ),
    ],
)
def test_bad_state_dict_names_the_key(state_dict, edit, listed):
    edit(state_dict)
    with pytest.raises(ConversionError, match=r"^checkpoint: checkpoint does not match") as e:
        load_discriminator(state_dict, CONFIG)
    message = str(e.value)
    assert listed in message
    key = next(k for k in ("conv_post.bias", "extra", "convs.2.0.weight_v") if k in message)
    assert f"discriminators.{0 if 'convs.2' in key else 1}.{key}" in message


def test_metadata_config_is_checked(state_dict):
    # metadata naming another configuration: the weights disagree with it, key by key
    other = DiscriminatorConfig(periods=(2, 3), fft_sizes=(64,), bands=CONFIG.bands)
    with pytest.raises(ConversionError, match="the weights disagree with metadata") as e:
        load_discriminator({"state_dict": state_dict, "metadata": {"kwargs": other.to_kwargs()}})
    assert "discriminators.1.convs.0.0.weight_g" in str(e.value)
    # an explicit config overrides the metadata (the reference's save() writes its defaults)
    config, _ = load_discriminator(
        {"state_dict": state_dict, "metadata": {"kwargs": other.to_kwargs()}}, CONFIG
    )
    assert config == CONFIG


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({}, "metadata has no 'kwargs'"),
        ({"kwargs": {"periods": [0]}}, "invalid metadata\\['kwargs'\\]: periods\\[0\\]"),
        ({"kwargs": {"hop_factor": 1}}, "unknown Discriminator kwargs"),
        ({"kwargs": {"periods": list(range(2, 200))}}, "sub-discriminators=201 exceed"),
    ],
)
def test_bad_metadata(state_dict, metadata, message):
    with pytest.raises(CheckpointError, match=message):
        load_discriminator({"state_dict": state_dict, "metadata": metadata})


def test_not_a_state_dict():
    with pytest.raises(CheckpointError, match="is a str, not a dense"):
        load_discriminator({"discriminators.0.conv_post.bias": "x"})
    with pytest.raises(CheckpointError, match="the state_dict is empty"):
        load_discriminator({})
