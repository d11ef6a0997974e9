"""The whole DAC model through the production converter, against the real `dac.DAC`.

Checkpoints are written by the reference itself (``dac.DAC(**kwargs).save(path,
package=False)``) with random weights whose Snake alphas, weight-norm magnitudes and biases
are moved away from their defaults, then read with :func:`converters.dac.convert_checkpoint`.
Compared on short random audio whose length is not a multiple of the hop: codes exactly;
z, latents, losses and the decoded audio within the named tolerances.

A small custom configuration (odd strides, one codebook dimension per quantizer) covers
everything quickly: the release file, a SpeechBrain state_dict, fused weights, parameter
gradients of the VQ losses, export back to a ``.pth`` that ``dac.DAC.load`` reads (exact
round trip), and the orbax round trip. The four released configurations cover the full-size
shapes and key layout; each costs ~30 s on a loaded 2-core CPU (mostly XLA compilation of
the 75 M-parameter graph), so only the 16 kHz one (odd-stride decoder) runs unmarked.

torch runs single-threaded in this module: on a shared 2-core machine its two spinning
threads make a full-size forward several times slower.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import dac as cdac
from converters.dac_cache import load_model
from converters.dac_tables import model_table
from jaxlatent.compilation import compiled
from jaxlatent.models.dac import DAC, DACConfig, save_converted
from tests import reference as ref
from tests.parity.test_dac_layers import _perturb
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

SMALL = {
    "encoder_dim": 4,
    "encoder_rates": [2, 5],
    "latent_dim": 12,
    "decoder_dim": 16,
    "decoder_rates": [5, 2],
    "n_codebooks": 3,
    "codebook_size": 16,
    "codebook_dim": [4, 2, 4],
    "quantizer_dropout": 0.0,
    "sample_rate": 8000,
}


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_torch():
    torch = ref.torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _reference(kwargs, seed=0, module=None):
    torch = ref.torch()
    torch.manual_seed(seed)
    model = (module or ref.dac().DAC)(**kwargs)
    _perturb(model, seed)
    return model.eval()


def _ncl(x):
    return ref.to_torch(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def _nlc(t):
    return np.moveaxis(ref.to_numpy(t), 1, -1)


def _audio(rng, config, frames, batch=2, short=3):
    """``frames * hop - short`` samples (padded by preprocess), amplitude ~0.3."""
    n = frames * config.hop_length - short
    return (rng.standard_normal((batch, n, 1)) * 0.3).astype(np.float32)


#: The small model's tests share one audio shape and n_quantizers, hence one compilation of
#: the forward pass (compiling dominates their runtime).
SMALL_FRAMES, SMALL_NQ = 9, 2


def _run(method, model, *args, **options):
    """``method(model, *args, **options)`` compiled as the codec compiles the model."""
    graphdef, state = nnx.split(model)
    return compiled(method, graphdef, **options)(state, *args)


def _forward(model, audio, n_quantizers, sample_rate=None):
    return _run(DAC.__call__, model, audio, sample_rate=sample_rate, n_quantizers=n_quantizers)


def _compare_forward(t_model, model, audio, n_quantizers, tol, *, sample_rate=None):
    """Reference forward dict vs `DAC.__call__`; returns the JAX output."""
    torch = ref.torch()
    with torch.no_grad():
        expected = t_model(_ncl(audio), sample_rate, n_quantizers)
    out = _forward(model, audio, n_quantizers, sample_rate)
    np.testing.assert_array_equal(out.codes, ref.to_numpy(expected["codes"]))
    for name in ("z", "latents", "audio"):
        actual, desired = getattr(out, name), _nlc(expected[name])
        assert actual.shape == desired.shape, name
        assert_close(actual, desired, tol, err_msg=name)
    for name in ("commitment_loss", "codebook_loss"):
        desired = ref.to_numpy(expected[f"vq/{name}"])
        assert_close(getattr(out, name), desired, tol, err_msg=name)
    return out


# --------------------------------------------------------------------------------------------
# Small configuration: every feature
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(reference model, its release .pth, converted (config, model))."""
    t_model = _reference(SMALL, seed=1)
    path = tmp_path_factory.mktemp("dac_small") / "weights.pth"
    t_model.save(str(path), package=False)
    return t_model, path, cdac.convert_checkpoint(path)


def test_small_release_checkpoint(small, rng):
    t_model, _, (config, model) = small
    assert config == DACConfig.from_kwargs(SMALL)
    assert model.config == config
    audio = _audio(rng, config, SMALL_FRAMES)
    out = _compare_forward(t_model, model, audio, SMALL_NQ, "dac_model_small_f32", sample_rate=8000)
    assert out.codes.shape == (2, 2, 9) and out.audio.shape == audio.shape
    # from_codes + decode against quantizer.from_codes + decode
    torch = ref.torch()
    codes = rng.integers(0, SMALL["codebook_size"], (2, 3, 6))
    with torch.no_grad():
        t_z, t_zp, _ = t_model.quantizer.from_codes(ref.to_torch(codes))
        t_audio = t_model.decode(t_z)
    decoded = _run(DAC.from_codes, model, codes)
    np.testing.assert_array_equal(decoded.z_p, _nlc(t_zp))
    assert_close(decoded.z, _nlc(t_z), "dac_model_small_f32", err_msg="from_codes")
    audio_j = _run(DAC.decode, model, decoded.z)
    assert_close(audio_j, _nlc(t_audio), "dac_model_small_f32", err_msg="decode")


def test_small_speechbrain_state_dict(rng):
    """A SpeechBrain DAC state_dict (parametrizations keys, no metadata: config inferred)."""
    sb = ref.sb_dac()
    t_model = _reference(SMALL, seed=2, module=sb.DAC)
    with pytest.raises(ValueError, match="pass sample_rate"):
        cdac.convert_checkpoint(t_model.state_dict())
    config, model = cdac.convert_checkpoint(t_model.state_dict(), sample_rate=8000)
    assert config == DACConfig.from_kwargs(SMALL)
    # (SpeechBrain's forward returns only (codes, z): compare with encode + decode + crop)
    audio = _audio(rng, config, SMALL_FRAMES)
    out = _forward(model, audio, SMALL_NQ)
    torch = ref.torch()
    with torch.no_grad():
        pad = SMALL_FRAMES * config.hop_length - audio.shape[1]
        padded = torch.nn.functional.pad(_ncl(audio), (0, pad))
        t_z, t_codes, t_latents, t_cl, t_cb = t_model.encode(padded, SMALL_NQ)
        t_audio = t_model.decode(t_z)[..., : audio.shape[1]]
    np.testing.assert_array_equal(out.codes, ref.to_numpy(t_codes))
    tol = "dac_model_small_f32"
    assert_close(out.z, _nlc(t_z), tol, err_msg="z")
    assert_close(out.latents, _nlc(t_latents), tol, err_msg="latents")
    assert_close(out.audio, _nlc(t_audio), tol, err_msg="audio")
    assert_close(out.commitment_loss, ref.to_numpy(t_cl), tol, err_msg="commitment")
    assert_close(out.codebook_loss, ref.to_numpy(t_cb), tol, err_msg="codebook")
    exported = cdac.export_state_dict(model, style="parametrizations")
    assert exported.keys() == t_model.state_dict().keys()
    for k, v in t_model.state_dict().items():
        np.testing.assert_array_equal(exported[k], ref.to_numpy(v), err_msg=k)


def test_small_fused_weights(small, tmp_path, rng):
    """Weight norm folded into plain ``weight`` tensors (torch ``remove_weight_norm``)."""
    torch = ref.torch()
    t_model, _, (config, wn_model) = small
    fused = ref.dac().DAC(**SMALL).eval()
    fused.load_state_dict(t_model.state_dict())
    for module in fused.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
    state_dict = fused.state_dict()
    assert not any(k.endswith("weight_g") for k in state_dict)
    path = tmp_path / "fused.pth"
    torch.save({"state_dict": state_dict, "metadata": {"kwargs": dict(SMALL)}}, str(path))
    assert cdac.read_release_checkpoint(path)[0] == config
    config2, model = cdac.convert_checkpoint(path)
    assert config2 == config
    # the recomputed kernel g * v / ||v|| is the fused weight up to one float32 rounding
    kernel = model.decoder.blocks[0].conv_t1.effective_kernel()
    w = state_dict["decoder.model.1.block.1.weight"]
    assert_close(kernel, np.transpose(ref.to_numpy(w), (2, 0, 1)), "dac_fused_kernel")
    audio = _audio(rng, config, SMALL_FRAMES)
    out = _compare_forward(fused, model, audio, SMALL_NQ, "dac_model_small_f32")
    # and the same outputs as the weight-normed conversion, up to that rounding
    out_wn = _forward(wn_model, audio, SMALL_NQ)
    np.testing.assert_array_equal(out.codes, out_wn.codes)
    assert_close(out.audio, out_wn.audio, "dac_fused_kernel", err_msg="audio vs weight norm")
    # (export writes the weight-normed form again)
    assert "encoder.block.0.weight_g" in cdac.export_state_dict(model)


def test_small_vq_loss_gradients(small, rng):
    """d(commitment + codebook + sum(w * z)) / d(every encoder and quantizer parameter).

    The ``w * z`` term reaches the output projections (through the straight-through
    estimator); decoder gradients are covered block by block in test_dac_layers.py.
    """
    t_model, _, (config, model) = small
    audio = _audio(rng, config, frames=6, batch=3, short=0)
    w = rng.standard_normal((3, 6, config.latent_dim)).astype(np.float32)

    t_model.zero_grad()
    t_z, _, _, t_cl, t_cb = t_model.encode(_ncl(audio))
    (t_cl + t_cb + (t_z * _ncl(w)).sum()).backward()

    def objective(m, audio, w):
        out = m.encode(audio)
        return out.commitment_loss + out.codebook_loss + jnp.sum(out.z * w)

    grads = nnx.jit(nnx.grad(objective))(model, jnp.asarray(audio), jnp.asarray(w))
    flat = {"/".join(map(str, p)): v.get_value() for p, v in nnx.to_flat_state(grads)}
    table = model_table(config)
    checked = 0
    for name, param in t_model.named_parameters():
        rule = table[name]
        got = rule.transform.to_torch(np.asarray(flat[rule.jax_path]))
        if name.startswith("decoder."):
            assert param.grad is None and not got.any(), name
            continue
        assert_close(got, ref.to_numpy(param.grad), "dac_model_grad_f32", err_msg=name)
        checked += 1
    assert checked == sum(not k.startswith("decoder.") for k in table)
    assert np.abs(flat["quantizer/quantizers/2/codebook"]).max() > 0  # the losses reach it


def test_small_export_round_trip(small, tmp_path, rng):
    """export -> dac.DAC.load gives the reference model back exactly (same outputs)."""
    torch = ref.torch()
    t_model, path, (config, model) = small
    out_path = tmp_path / "exported.pth"
    cdac.export_release_checkpoint(model, config, out_path)
    raw = torch.load(str(out_path), weights_only=True)
    original = torch.load(str(path), weights_only=True)
    assert raw["metadata"]["kwargs"] == original["metadata"]["kwargs"]
    assert list(raw["metadata"]["kwargs"]) == list(original["metadata"]["kwargs"])
    assert raw["state_dict"].keys() == original["state_dict"].keys()
    for k, v in original["state_dict"].items():
        assert torch.equal(raw["state_dict"][k], v), k
    loaded = ref.dac().DAC.load(str(out_path)).eval()
    audio = _ncl(_audio(rng, config, frames=7))
    with torch.no_grad():
        a, b = loaded(audio), t_model(audio)
    for k in b:
        assert torch.equal(a[k], b[k]), k
    # converting the export again gives the same parameters bit for bit
    _, again = cdac.convert_checkpoint(out_path)
    for (p1, v1), (p2, v2) in zip(
        nnx.to_flat_state(nnx.state(model)), nnx.to_flat_state(nnx.state(again)), strict=True
    ):
        assert p1 == p2
        np.testing.assert_array_equal(v1.get_value(), v2.get_value(), err_msg=str(p1))


def test_small_orbax_round_trip(small, tmp_path, rng):
    """save_converted -> load_converted / load_model: same parameters, same outputs exactly."""
    _, path, (config, model) = small
    directory = save_converted(tmp_path / "converted", config, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted"]  # no temporary left
    loaded = load_model(directory)
    assert loaded.config == config
    for (p1, v1), (p2, v2) in zip(
        nnx.to_flat_state(nnx.state(model)), nnx.to_flat_state(nnx.state(loaded)), strict=True
    ):
        assert p1 == p2
        np.testing.assert_array_equal(v1.get_value(), v2.get_value(), err_msg=str(p1))
    audio = _audio(rng, config, SMALL_FRAMES)
    a, b = _forward(model, audio, SMALL_NQ), _forward(loaded, audio, SMALL_NQ)
    for name, x, y in zip(a._fields, a, b, strict=True):
        np.testing.assert_array_equal(x, y, err_msg=name)
    # a .pth converted on the fly and cached
    cached = load_model(path, cache_dir=tmp_path / "cache")
    (entry,) = (tmp_path / "cache").iterdir()
    assert entry.name.startswith("weights-") and (entry / "config.json").is_file()
    np.testing.assert_array_equal(_forward(cached, audio, SMALL_NQ).audio, a.audio)


# --------------------------------------------------------------------------------------------
# Released configurations (full size)
# --------------------------------------------------------------------------------------------

PRESETS = [
    pytest.param("16khz", id="16khz"),
    pytest.param("44khz_8kbps", id="44khz_8kbps", marks=pytest.mark.slow),
    pytest.param("44khz_16kbps", id="44khz_16kbps", marks=pytest.mark.slow),
    pytest.param("24khz", id="24khz", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("preset", PRESETS)
def test_released_variant(preset, tmp_path, rng):
    config = DACConfig.preset(preset)
    t_model = _reference(config.to_kwargs(), seed=3)
    path = tmp_path / "weights.pth"
    t_model.save(str(path), package=False)
    converted_config, model = cdac.convert_checkpoint(path)
    # dac.DAC keeps no quantizer_dropout attribute: save() writes the default (False)
    assert converted_config == DACConfig.from_kwargs(
        config.to_kwargs() | {"quantizer_dropout": 0.0}
    )
    audio = _audio(rng, config, frames=3, batch=1, short=5)
    n_q = config.n_codebooks // 2
    out = _compare_forward(t_model, model, audio, n_q, "dac_model_full_f32")
    assert out.codes.shape == (1, n_q, 3)
    # the decoded audio is not silent (the comparison is meaningful)
    assert np.abs(np.asarray(out.audio)).max() > 0.05
    # export reproduces every tensor of the release file exactly
    exported = cdac.export_state_dict(model)
    state_dict = t_model.state_dict()
    assert exported.keys() == state_dict.keys()
    for k, v in state_dict.items():
        np.testing.assert_array_equal(exported[k], ref.to_numpy(v), err_msg=k)
