"""The precision policy (`jaxlatent.precision`) reaches every convolution and matmul.

Each model is lowered (abstract parameters, nothing computed) and the ``precision_config``
of every ``convolution`` / ``dot_general`` of the StableHLO text is read: all carry the
model's setting, except the nearest-code search's distance matmul, which is ``HIGHEST``
whatever the setting. Plus the names, the errors, `set_precision` and the CLI's
``--precision``.
"""

from __future__ import annotations

import collections
import re

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxlatent import cli
from jaxlatent.models.conv_audio import conv_variational_autoencoder
from jaxlatent.models.conv_vqvae import ConvVQVAE
from jaxlatent.models.dac import DAC, Discriminator
from jaxlatent.models.piq import PIQInterpreter
from jaxlatent.models.pytorch_vae import VanillaVAE, VanillaVAEConfig
from jaxlatent.precision import (
    DEFAULT_PRECISION,
    PRECISIONS,
    precision_name,
    resolve_precision,
    set_precision,
)
from jaxlatent.quantizers import FSQ, LFQ, ResidualVQ, SimVQ, VectorQuantizerConfig
from tests.unit.test_dac_compress import TINY
from tests.unit.test_dac_discriminator import SMALL

F32 = jnp.float32
_OP = re.compile(r"stablehlo\.(convolution|dot_general)\b")
_PRECISION = re.compile(r"precision(?:_config)? = \[([^\]]*)\]")


def _ops(fn, *args) -> dict[str, collections.Counter]:
    """``{"convolution": Counter, "dot_general": Counter}`` of the precisions in the lowered
    `fn(*args)` (one entry per op; ``"none"`` for an op without a precision config)."""
    text = jax.jit(fn).lower(*args).as_text()
    found: dict[str, collections.Counter] = {
        "convolution": collections.Counter(),
        "dot_general": collections.Counter(),
    }
    for line in text.splitlines():
        op = _OP.search(line)
        if op is None:
            continue
        config = _PRECISION.search(line)
        if config is None:
            found[op.group(1)]["none"] += 1
            continue
        names = set(re.findall(r"\b(DEFAULT|HIGHEST|HIGH)\b", config.group(1)))
        assert len(names) == 1, line  # both operands at the same precision
        found[op.group(1)][names.pop()] += 1
    return found


def _abstract(build):
    """``(graphdef, state)`` of a module built abstractly (no parameters allocated)."""
    return nnx.split(nnx.eval_shape(build))


def _lower_module(build, call, *shapes):
    """The ops of ``call(module, *inputs)`` for inputs of the given ``(shape, dtype)``."""
    graphdef, state = _abstract(build)
    inputs = [jax.ShapeDtypeStruct(s, d) for s, d in shapes]
    return _ops(lambda st, *xs: call(nnx.merge(graphdef, st), *xs), state, *inputs)


SETTINGS = [
    ("highest", "HIGHEST"),
    ("high", "HIGH"),
    ("default", "DEFAULT"),
    (jax.lax.Precision.DEFAULT, "DEFAULT"),
]


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------


def test_names_resolve_to_jax_precisions():
    assert PRECISIONS == ("highest", "high", "default")
    assert DEFAULT_PRECISION == "highest"
    for name in PRECISIONS:
        assert resolve_precision(name) is getattr(jax.lax.Precision, name.upper())
        assert resolve_precision(name.upper()) is resolve_precision(name)
        assert precision_name(name) == name
    assert resolve_precision(jax.lax.Precision.HIGH) is jax.lax.Precision.HIGH
    assert resolve_precision(None) is None and precision_name(None) == "default"


@pytest.mark.parametrize("bad", ["fast", "float32", "", 1, 2.0])
def test_unknown_precision_is_one_line_value_error(bad):
    with pytest.raises(ValueError) as info:
        resolve_precision(bad)
    message = str(info.value)
    assert message == f"unknown precision {bad!r}; expected one of highest, high, default"
    with pytest.raises(ValueError, match="unknown precision"):
        DAC(TINY, precision=bad, rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------------------------
# the DAC, its discriminator
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "expected"), SETTINGS)
def test_dac_every_conv_at_the_setting_and_the_search_at_highest(setting, expected):
    """Encoder, quantizer projections, decoder (all convolutions) at the setting; the codebook
    search (the only matmul) at HIGHEST."""
    ops = _lower_module(
        lambda: DAC(TINY, precision=setting, rngs=nnx.Rngs(0)),
        lambda m, x: m(x, TINY.sample_rate),
        ((1, 400, 1), F32),
    )
    # encoder and decoder 2 + 2 blocks x (3 residual units x 2 + 1) each, 3 codebooks x 2
    # projections
    assert ops["convolution"] == {expected: 38}, ops
    assert set(ops["dot_general"]) == {"HIGHEST"}, ops


@pytest.mark.parametrize(("setting", "expected"), SETTINGS[::2])
def test_dac_decoder_gradient_convs_at_the_setting(setting, expected):
    """The transposed convolutions' hand-written backward (custom_vjp) and the few-row
    convolutions' matrix-product gradients (4 frames here) keep the setting."""
    graphdef, state = _abstract(lambda: DAC(TINY, precision=setting, rngs=nnx.Rngs(0)))
    z = jax.ShapeDtypeStruct((1, 4, TINY.latent_dim), F32)

    def loss(st, z):
        return jnp.sum(nnx.merge(graphdef, st).decode(z))

    ops = _ops(jax.grad(loss, argnums=(0, 1)), state, z)
    assert set(ops["convolution"]) == {expected} and set(ops["dot_general"]) == {expected}, ops


def test_discriminator_every_conv_at_the_setting():
    """MPD (its (k, 1) convolutions computed as matmuls), MSD (its resampling convolution
    included) and MRD."""
    for setting, expected in SETTINGS[::2]:
        ops = _lower_module(
            lambda s=setting: Discriminator(SMALL, precision=s, rngs=nnx.Rngs(0)),
            lambda d, x: d(x).feature_maps,
            ((1, 800, 1), F32),
        )
        # MSD (one rate): its resampling convolution, six convolutions and the post one; MRD
        # (one FFT size, two bands): five convolutions per band and the post one
        assert ops["convolution"] == {expected: 8 + 11}, ops
        # each MPD: five (5, 1) convolutions and the (3, 1) post convolution, one matmul each
        assert ops["dot_general"] == {expected: 6 * len(SMALL.periods)}, ops


def test_set_precision_changes_a_built_model():
    model = nnx.eval_shape(lambda: DAC(TINY, rngs=nnx.Rngs(0)))
    assert model.precision is jax.lax.Precision.HIGHEST
    set_precision(model, "default")
    assert model.precision is jax.lax.Precision.DEFAULT
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((1, 400, 1), F32)
    ops = _ops(lambda st, x: nnx.merge(graphdef, st)(x, TINY.sample_rate), state, x)
    assert set(ops["convolution"]) == {"DEFAULT"} and set(ops["dot_general"]) == {"HIGHEST"}
    with pytest.raises(ValueError, match="unknown precision 'x'"):
        set_precision(model, "x")
    assert model.precision is jax.lax.Precision.DEFAULT  # unchanged


# --------------------------------------------------------------------------------------------
# quantizers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "expected"), SETTINGS[::2])
def test_scalar_quantizers_projections_and_rotation_at_the_setting(setting, expected):
    """FSQ and LFQ: projections in and out and the orthogonal rotation (there and back)
    at the setting; LFQ's entropy loss distances at HIGHEST."""
    kw = {"orthogonal_rotation": True, "precision": setting}
    x = ((2, 3, 6), F32)
    fsq = _lower_module(
        lambda: FSQ(levels=[5, 5], dim=6, rngs=nnx.Rngs(0), **kw), lambda q, x: q(x).quantized, x
    )
    assert fsq["dot_general"] == {expected: 4} and not fsq["convolution"], fsq
    lfq = _lower_module(
        lambda: LFQ(dim=6, codebook_size=4, cosine_sim_project_in=True, rngs=nnx.Rngs(0), **kw),
        lambda q, x: q(x, train=True),
        x,
    )
    # cosine-sim projection in, rotation there and back, projection out; entropy distances
    counts = collections.Counter({expected: 4}) + collections.Counter({"HIGHEST": 1})
    assert lfq["dot_general"] == counts, lfq


@pytest.mark.parametrize(("setting", "expected"), [("default", "DEFAULT"), ("high", "HIGH")])
def test_vector_quantizers_projections_at_the_setting_search_at_highest(setting, expected):
    rvq = _lower_module(
        lambda: ResidualVQ(
            dim=6,
            num_quantizers=2,
            codebook_size=8,
            codebook_dim=3,
            precision=setting,
            rngs=nnx.Rngs(0),
        ),
        lambda q, x: q(x).quantized,
        ((2, 5, 6), F32),
    )
    # projections in and out at the setting, the layers' searches at HIGHEST
    assert rvq["dot_general"][expected] == 2 and rvq["dot_general"]["HIGHEST"] >= 1, rvq
    assert set(rvq["dot_general"]) == {expected, "HIGHEST"}, rvq
    sim = _lower_module(
        lambda: SimVQ(dim=4, codebook_size=8, precision=setting, rngs=nnx.Rngs(0)),
        lambda q, x: q(x).quantized,
        ((2, 5, 4), F32),
    )
    # the code transform (frozen codebook @ W) at the setting, the search at HIGHEST
    assert sim["dot_general"][expected] >= 1 and sim["dot_general"]["HIGHEST"] >= 1, sim
    assert set(sim["dot_general"]) == {expected, "HIGHEST"}, sim


# --------------------------------------------------------------------------------------------
# autoencoders
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "expected"), SETTINGS[::2])
def test_autoencoders_every_op_at_the_setting(setting, expected):
    vae = _lower_module(
        lambda: conv_variational_autoencoder(6, 8, 2, precision=setting, rngs=nnx.Rngs(0)),
        lambda m, x: m.decode(m.encode(x)),
        ((2, 10, 6), F32),
    )
    assert vae["convolution"] == {expected: 5} and not vae["dot_general"], vae
    cfg = VectorQuantizerConfig.vqvae(codebook_size=8, dim=2)
    vq = _lower_module(
        lambda: ConvVQVAE(6, 8, cfg, precision=setting, rngs=nnx.Rngs(0)),
        lambda m, x: m(x).rec,
        ((2, 10, 6), F32),
    )
    assert vq["convolution"] == {expected: 5} and set(vq["dot_general"]) == {"HIGHEST"}, vq
    image = VanillaVAEConfig(in_channels=3, latent_dim=4, hidden_dims=(4, 8), img_size=8)
    img = _lower_module(
        lambda: VanillaVAE(image, precision=setting, rngs=nnx.Rngs(0)),
        lambda m, x: (lambda e: (e, m.decode(e[0])))(m.encode(x)),
        ((2, 8, 8, 3), F32),
    )
    # convs: 2 down, 1 up, final up + conv; Linear: mu, log_var, decoder_input
    assert img["convolution"] == {expected: 5} and img["dot_general"] == {expected: 3}, img


def test_piq_interpreter_every_op_at_the_setting_search_at_highest():
    """Classifier (convolutions, linear head) and PSI (adapter, down/up, decoder) at the
    setting; the class-partitioned code search at HIGHEST."""
    ops = _lower_module(
        lambda: PIQInterpreter(8, 8, 2, precision="default", rngs=nnx.Rngs(0)),
        lambda m, x: m(x, train=True),
        ((1, 32, 33), F32),
    )
    assert set(ops["convolution"]) == {"DEFAULT"} and ops["convolution"]["DEFAULT"] > 10, ops
    assert ops["dot_general"]["DEFAULT"] == 1 and ops["dot_general"]["HIGHEST"] >= 1, ops
    assert set(ops["dot_general"]) == {"DEFAULT", "HIGHEST"}, ops


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["encode", "decode", "parity", "train"])
def test_cli_unknown_precision_exits_2_one_line_nothing_written(command, tmp_path, capsys):
    out = tmp_path / "out"
    argv = {
        "encode": ["encode", str(tmp_path), "--model", "m", "--output", str(out)],
        "decode": ["decode", str(tmp_path), "--model", "m", "--output", str(out)],
        "parity": ["parity", "dac", "--model", "m.pth"],
        "train": [
            "train",
            "--model",
            "vae",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--out",
            f"{out}",
        ],
    }[command]
    assert cli.main([*argv, "--precision", "fastest", "--no-compile-cache"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"jaxlatent {command}: error: unknown precision 'fastest'; expected one of highest, "
        "high, default\n"
    )
    assert not out.exists()


def test_cli_precision_reaches_the_loaded_model(tmp_path, capsys, monkeypatch):
    """``jaxlatent encode --precision default`` loads the model at that precision (the
    default: highest)."""
    import jaxlatent.apps.batch_coding as batch_coding
    import jaxlatent.apps.dac_models as dac_models

    seen = []

    def fake_model(model, precision=DEFAULT_PRECISION):
        seen.append(precision)
        raise ValueError("stop here")

    monkeypatch.setattr(dac_models, "load_dac_model", fake_model)
    (tmp_path / "a.wav").write_bytes(b"")  # found, never read: the model loads first
    base = ["encode", str(tmp_path / "a.wav"), "--model", "m", "--no-compile-cache"]
    for extra, expected in [([], "highest"), (["--precision", "default"], "default")]:
        out = tmp_path / f"out-{expected}"
        assert cli.main([*base, "--output", str(out), *extra]) == 2
        assert "stop here" in capsys.readouterr().err
    assert seen == ["highest", "default"]
    assert batch_coding.encode_folder.__kwdefaults__["precision"] == DEFAULT_PRECISION


def test_train_builds_the_models_at_the_precision():
    """`jaxlatent train --precision` reaches every layer of the registered model (the state
    `initial_state` builds, which `fit` trains)."""
    import optax

    from jaxlatent.apps.registry import get_model
    from jaxlatent.apps.runs import initial_state

    spec, _, preset = get_model("vanilla_vae", "micro")
    state = initial_state(spec, preset, 10, optax.sgd(0.1), 0, precision="default")
    model = nnx.merge(state.graphdef, state.params, state.model_state)
    layers = [n for _, n in nnx.iter_graph(model) if hasattr(n, "precision")]
    assert len(layers) >= 5
    assert all(n.precision is jax.lax.Precision.DEFAULT for n in layers)


def test_parity_report_names_torchs_precision():
    """CPU: float32; CUDA: the two TF32 flags as they are set (no GPU needed to read them)."""
    from tests import reference

    torch = reference.torch()
    from converters.dac_parity import torch_precision

    assert torch_precision(torch.device("cpu")) == "float32 (CPU)"
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
        assert torch_precision(torch.device("cuda")) == (
            "cuda: matmul allow_tf32=False, cudnn allow_tf32=True"
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
