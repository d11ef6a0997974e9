"""Hugging Face transformers' ``DacModel`` through :mod:`converters.dac_hf`, against itself.

Checkpoints are made by the reference (``DacModel(DacConfig(...)).save_pretrained(dir)``, or
its ``state_dict()`` after ``apply_weight_norm()``), with random weights whose Snake alphas
and biases are moved away from their defaults, then converted and compared on short random
audio: codes exactly; z, latents and the decoded audio within named tolerances.

A tiny configuration (odd strides) covers the folder, the weight-normed state_dicts, the
export back to a folder that ``DacModel.from_pretrained`` loads, the command line and the
places where transformers' model differs from the official one. The four released
configurations: keys and shapes of every one (on torch's meta device, no memory), config
round trip through ``DacConfig``; audio parity of each full-size model is marked slow (~30 s
each, mostly XLA compilation of the 75 M-parameter graph): the numerics of the full-size
jaxlatent model are checked unmarked against the official 16 kHz model
(tests/parity/test_dac_model.py), and the tiny model here checks transformers' mapping.

torch runs single-threaded in this module (as tests/parity/test_dac_model.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from flax import nnx

from converters import checkpoint_files, dac_hf
from converters.dac_formats import checkpoint_format, convert_any
from jaxlatent import cli
from jaxlatent.compilation import compiled
from jaxlatent.models.dac import DAC, DACConfig, load_converted
from tests import reference as ref
from tests.tolerances import TOLERANCES, assert_close

pytestmark = pytest.mark.parity

#: A tiny DacConfig (odd stride 5; hidden_size = 4 * 2**2 = 16).
TINY = {
    "encoder_hidden_size": 4,
    "downsampling_ratios": [2, 5],
    "decoder_hidden_size": 16,
    "n_codebooks": 3,
    "codebook_size": 16,
    "codebook_dim": 4,
    "sampling_rate": 8000,
}
TINY_FRAMES = 9


def _transformers():
    return ref.transformers_dac()  # DacConfig, DacModel, DacVectorQuantize, ...


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_torch():
    torch = ref.torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _hf_model(config_kwargs, seed=0):
    """A transformers DacModel with random weights away from their defaults, eval mode."""
    torch = ref.torch()
    tr = _transformers()
    torch.manual_seed(seed)
    model = tr.DacModel(tr.DacConfig(**config_kwargs)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.copy_(torch.rand(p.shape, generator=gen) * 1.5 + 0.3)
            elif name.endswith("bias"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def _ncl(x):
    return ref.to_torch(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def _nlc(t):
    return np.moveaxis(ref.to_numpy(t), 1, -1)


def _run(method, model, *args, **options):
    graphdef, state = nnx.split(model)
    return compiled(method, graphdef, **options)(state, *args)


def _compare(t_model, model, audio, tol, n_quantizers=None):
    """``DacModel.encode`` + ``decode`` vs ``DAC.encode`` + ``decode`` (no padding on either)."""
    torch = ref.torch()
    with torch.no_grad():
        enc = t_model.encode(_ncl(audio), n_quantizers)
        t_audio = t_model.decode(enc.quantized_representation).audio_values
    out = _run(DAC.encode, model, audio, n_quantizers=n_quantizers)
    np.testing.assert_array_equal(out.codes, ref.to_numpy(enc.audio_codes))
    assert_close(out.z, _nlc(enc.quantized_representation), tol, err_msg="z")
    assert_close(out.latents, _nlc(enc.projected_latents), tol, err_msg="latents")
    decoded = _run(DAC.decode, model, out.z)
    assert_close(decoded[..., 0], ref.to_numpy(t_audio), tol, err_msg="audio")
    # transformers' loss: per item, 0.25 * commitment + 1.0 * codebook (each a batch mean)
    loss = ref.to_numpy(enc.loss)
    assert loss.shape == (audio.shape[0],)
    assert_close(loss, np.full_like(loss, 0.25 * out.commitment_loss + out.codebook_loss), tol)
    return out, decoded


def _audio(rng, hop, frames, batch=2):
    return (rng.standard_normal((batch, frames * hop, 1)) * 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(transformers model, its save_pretrained folder, converted (config, model))."""
    t_model = _hf_model(TINY, seed=1)
    folder = tmp_path_factory.mktemp("dac_hf") / "tiny"
    t_model.save_pretrained(folder)
    return t_model, folder, dac_hf.convert_hf(folder)


# --------------------------------------------------------------------------------------------
# Tiny configuration
# --------------------------------------------------------------------------------------------


def test_tiny_folder(tiny, rng):
    t_model, folder, (config, model) = tiny
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert config == DACConfig(
        encoder_dim=4, encoder_rates=(2, 5), latent_dim=16, decoder_dim=16,
        decoder_rates=(5, 2), n_codebooks=3, codebook_size=16, codebook_dim=4,
        sample_rate=8000,
    )  # fmt: skip
    assert checkpoint_format(folder) == "transformers"
    audio = _audio(rng, config.hop_length, TINY_FRAMES)
    out, decoded = _compare(t_model, model, audio, "dac_hf_small_f32")
    assert out.codes.shape == (2, 3, TINY_FRAMES)
    assert np.abs(np.asarray(decoded)).max() > 0.05  # not silent: the comparison means something
    # from_codes + decode against quantizer.from_codes + decode
    torch = ref.torch()
    codes = rng.integers(0, TINY["codebook_size"], (2, 3, TINY_FRAMES))
    with torch.no_grad():
        t_z, t_zp, _ = t_model.quantizer.from_codes(ref.to_torch(codes))
        t_audio = t_model.decode(audio_codes=ref.to_torch(codes)).audio_values
    decoded = _run(DAC.from_codes, model, codes)
    np.testing.assert_array_equal(decoded.z_p, _nlc(t_zp))
    assert_close(decoded.z, _nlc(t_z), "dac_hf_small_f32", err_msg="from_codes")
    assert_close(
        _run(DAC.decode, model, decoded.z)[..., 0], ref.to_numpy(t_audio), "dac_hf_small_f32"
    )


@pytest.mark.parametrize("style", ["parametrizations", "legacy"])
def test_tiny_weight_normed_state_dict(tiny, style, rng):
    """``apply_weight_norm()`` state_dicts (torch >= 2.1 parametrizations; weight_g/weight_v of
    older torch), bare: the configuration is inferred (the sample rate given)."""
    t_model, _, (config, _) = tiny
    wn = _hf_model(TINY, seed=1)
    wn.apply_weight_norm()
    state_dict = wn.state_dict()
    assert any(k.endswith("parametrizations.weight.original0") for k in state_dict)
    if style == "legacy":
        state_dict = {
            k.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            ): v
            for k, v in state_dict.items()
        }
    with pytest.raises(ValueError, match="pass sample_rate"):
        dac_hf.convert_hf(state_dict)
    config2, model = dac_hf.convert_hf(state_dict, sample_rate=8000)
    assert config2 == config
    # g and v exactly as stored
    g = model.encoder.blocks[0].conv1.weight_g[...]
    key = "encoder.block.0.conv1." + (
        "weight_g" if style == "legacy" else "parametrizations.weight.original0"
    )
    np.testing.assert_array_equal(np.asarray(g), ref.to_numpy(state_dict[key]).ravel())
    audio = _audio(rng, config.hop_length, TINY_FRAMES)
    _compare(wn, model, audio, "dac_hf_small_f32")
    _compare(t_model, model, audio, "dac_hf_small_f32")


def test_tiny_export_round_trip(tiny, tmp_path, rng):
    """jaxlatent -> folder -> ``DacModel.from_pretrained`` (every key loaded) -> jaxlatent."""
    tr = _transformers()
    t_model, _, (config, model) = tiny
    out = dac_hf.export_hf_folder(model, tmp_path / "exported")
    loaded, info = tr.DacModel.from_pretrained(out, output_loading_info=True)
    assert all(not v for v in info.values()), info
    loaded.eval()
    assert loaded.config.hidden_size == config.latent_dim
    original = t_model.state_dict()
    assert loaded.state_dict().keys() == original.keys()
    for k, v in loaded.state_dict().items():
        # g * v / ||v|| of (v = w, g = ||w||) is w up to one float32 rounding
        assert_close(ref.to_numpy(v), ref.to_numpy(original[k]), "dac_fused_kernel", err_msg=k)
    audio = _audio(rng, config.hop_length, TINY_FRAMES)
    _compare(loaded, model, audio, "dac_hf_small_f32")
    config2, model2 = dac_hf.convert_hf(out)
    assert config2 == config
    _compare(loaded, model2, audio, "dac_hf_small_f32")
    with pytest.raises(FileExistsError):
        dac_hf.export_hf_folder(model, out)


def test_export_hidden_size_and_upsampling_ratios(tmp_path):
    """A latent_dim other than encoder_dim * 2**n and decoder rates other than the reversed
    encoder rates: config.json's hidden_size and upsampling_ratios, which DacConfig keeps."""
    from tests.unit.test_dac_model import random_model

    tr = _transformers()
    config = DACConfig(
        encoder_dim=2, encoder_rates=(2, 5), latent_dim=6, decoder_dim=8, decoder_rates=(4, 2),
        n_codebooks=3, codebook_size=16, codebook_dim=2, sample_rate=8000,
    )  # fmt: skip
    model = random_model(config, 0)
    out = dac_hf.export_hf_folder(model, tmp_path / "exported")
    loaded, info = tr.DacModel.from_pretrained(out, output_loading_info=True)
    assert all(not v for v in info.values()), info
    assert (loaded.config.hidden_size, loaded.config.upsampling_ratios) == (6, [4, 2])
    written, _ = checkpoint_files.load_safetensors(out / "model.safetensors")
    for k, v in loaded.state_dict().items():
        np.testing.assert_array_equal(ref.to_numpy(v), written[k], err_msg=k)


def test_tiny_cli(tiny, tmp_path, capsys):
    """``convert dac`` recognises a folder and a bare .safetensors by itself."""
    _, folder, (config, model) = tiny
    out = tmp_path / "converted"
    assert cli.main(["convert", "dac", str(folder), str(out)]) == 0
    restored = load_converted(out)
    assert restored.config == config
    np.testing.assert_array_equal(
        np.asarray(restored.quantizer.quantizers[1].codebook[...]),
        np.asarray(model.quantizer.quantizers[1].codebook[...]),
    )
    # a .safetensors without its config.json: inferred (a non-released model: refused)
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes((folder / "model.safetensors").read_bytes())
    assert checkpoint_format(bare) == "transformers"
    code = cli.main(["convert", "dac", str(bare), str(tmp_path / "bare")])
    err = capsys.readouterr().err
    assert code == 2 and "pass sample_rate" in err and err.count("\n") == 1
    assert not (tmp_path / "bare").exists()


def test_tiny_parity_cli(tiny, capsys):
    """``parity dac --model FOLDER`` compares with transformers' DacModel (encode and decode
    with such a folder: tests/unit/test_dac_hf.py)."""
    import re

    folder = tiny[1]
    assert cli.main(["parity", "dac", "--model", str(folder), "--seconds", "0.5"]) == 0
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
    tol = TOLERANCES["dac_hf_small_f32"]
    for stage, max_abs, max_rel, _ in rows:
        assert float(max_abs) <= tol.atol or float(max_rel) <= tol.rtol, (stage, max_abs)
    assert "all codes equal: 100.000 %" in out


# --------------------------------------------------------------------------------------------
# Where transformers' DacModel differs from the official dac.DAC
# --------------------------------------------------------------------------------------------


def test_codebook_search_sign_differs_from_official():
    """transformers maximises ``2 e.c + ||c||^2``, the official code ``2 e.c - ||c||^2``.

    Two codebook rows of one direction (norms 1.04 and 2.12) normalise to vectors an ulp
    apart whose squared norms differ by rounding; for a latent close to that direction the
    distances are tiny, so the sign of ``||c||^2`` decides: transformers picks row 1, the
    official search (and jaxlatent's) row 0. (Found by a random search; with random
    codebooks the codes agree, as the tests above show.)
    """
    torch = ref.torch()
    tr = _transformers()
    from converters.dac_quantizer import load_vector_quantize
    from jaxlatent.quantizers.dac import VectorQuantize

    kwargs = {"encoder_hidden_size": 1, "downsampling_ratios": [2], "codebook_size": 2}
    hf_vq = tr.DacVectorQuantize(tr.DacConfig(**kwargs, codebook_dim=4)).eval()
    official = ref.dac_quantize().VectorQuantize(2, 2, 4).eval()
    codebook = torch.tensor(
        [
            [-0.6117225289344788, -0.4226931631565094, -0.519536018371582, -0.35820040106773376],
            [-1.2420107126235962, -0.8582149744033813, -1.054839849472046, -0.727272093296051],
        ]
    )
    latent = [-0.6112051010131836, -0.42428940534591675, -0.5189948678016663, -0.35666143894195557]
    with torch.no_grad():
        hf_vq.codebook.weight.copy_(codebook)
        official.codebook.weight.copy_(codebook)
        _, hf_codes = hf_vq.decode_latents(torch.tensor(latent)[None, :, None])
        _, official_codes = official.decode_latents(torch.tensor(latent)[None, :, None])
    assert (int(hf_codes), int(official_codes)) == (1, 0)
    jax_vq = VectorQuantize(2, 2, 4, rngs=nnx.Rngs(0))
    load_vector_quantize(jax_vq, official.state_dict())
    _, codes = jax_vq.decode_latents(np.asarray([[latent]], np.float32))
    assert np.asarray(codes).tolist() == [[0]]


def test_encode_does_not_pad(tiny, rng):
    """``DacModel.forward`` encodes the audio unpadded (``dac.DAC.forward`` pads to the hop):
    its codes are ``DAC.encode``'s of the unpadded audio, one frame fewer than ``DAC.__call__``
    (which encodes ``DAC.preprocess``'s padded audio)."""
    torch = ref.torch()
    t_model, _, (config, model) = tiny
    audio = _audio(rng, config.hop_length, TINY_FRAMES)[:, :-3]
    with torch.no_grad():
        t_out = t_model(_ncl(audio))
    unpadded = _run(DAC.encode, model, audio)
    np.testing.assert_array_equal(unpadded.codes, ref.to_numpy(t_out.audio_codes))
    assert unpadded.codes.shape[-1] == TINY_FRAMES - 1
    assert model.preprocess(audio).shape[1] == TINY_FRAMES * config.hop_length


# --------------------------------------------------------------------------------------------
# Released configurations
# --------------------------------------------------------------------------------------------

PRESETS = ["16khz", "24khz", "44khz_8kbps", "44khz_16kbps"]


def _released_hf_kwargs(preset):
    hf = dac_hf.config_to_hf(DACConfig.preset(preset))
    return {k: v for k, v in hf.items() if k not in ("architectures", "model_type", "dtype")}


@pytest.mark.parametrize("preset", PRESETS)
def test_released_keys_and_config(preset):
    """Every key and shape of ``DacModel`` (built on torch's meta device) and the config."""
    torch = ref.torch()
    tr = _transformers()
    config = DACConfig.preset(preset)
    hf_config = tr.DacConfig(**_released_hf_kwargs(preset))
    with torch.device("meta"):
        t_model = tr.DacModel(hf_config)
    shapes = {k: tuple(v.shape) for k, v in t_model.state_dict().items()}
    assert dac_hf.expected_hf_shapes(config) == shapes
    assert dac_hf.config_from_hf(hf_config.to_dict()) == config
    with torch.device("meta"):
        t_model.apply_weight_norm()
    shapes = {k: tuple(v.shape) for k, v in t_model.state_dict().items()}
    assert dac_hf.expected_hf_shapes(config, "parametrizations") == shapes


@pytest.mark.parametrize(
    "preset",
    [
        pytest.param("16khz", id="16khz", marks=pytest.mark.slow),
        pytest.param("24khz", id="24khz", marks=pytest.mark.slow),
        pytest.param("44khz_8kbps", id="44khz_8kbps", marks=pytest.mark.slow),
        pytest.param("44khz_16kbps", id="44khz_16kbps", marks=pytest.mark.slow),
    ],
)
def test_released_variant(preset, tmp_path, rng):
    t_model = _hf_model(_released_hf_kwargs(preset), seed=3)
    t_model.save_pretrained(tmp_path / "hf")
    config, model = convert_any(tmp_path / "hf")
    assert config == DACConfig.preset(preset)
    audio = _audio(rng, config.hop_length, frames=3, batch=1)
    n_q = config.n_codebooks // 2
    out, decoded = _compare(t_model, model, audio, "dac_hf_full_f32", n_quantizers=n_q)
    assert out.codes.shape == (1, n_q, 3)
    assert np.abs(np.asarray(decoded)).max() > 0.05


def test_config_json_is_transformers(tiny):
    _, folder, (config, _) = tiny
    meta = json.loads((folder / "config.json").read_text())
    assert dac_hf.config_from_hf(meta) == config
    assert dac_hf.config_from_hf(dac_hf.config_to_hf(config)) == config
