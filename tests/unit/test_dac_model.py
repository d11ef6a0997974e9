"""`jaxlatent.models.dac.DAC` without the reference: shapes, compiled calls, bad input.

The model is built shape-only (`nnx.eval_shape`) and filled with seeded numpy values, which
avoids dozens of eager random-number compilations on a loaded CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent.compilation import compiled
from jaxlatent.models.dac import DAC, DACConfig
from tests import reference

TINY = DACConfig(
    encoder_dim=2,
    encoder_rates=(2, 3),
    latent_dim=6,
    decoder_dim=8,
    decoder_rates=(3, 2),
    n_codebooks=3,
    codebook_size=16,
    codebook_dim=2,
    quantizer_dropout=0.5,
    sample_rate=6000,
)


def random_model(config: DACConfig = TINY, seed: int = 0) -> DAC:
    """A concrete DAC with seeded random parameters (Snake alphas in [0.5, 1.5])."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: DAC(config, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(seed)
    flat = []
    for path, var in nnx.to_flat_state(state):
        shape, dtype = var.get_value().shape, var.get_value().dtype
        if path[-1] == "alpha":
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.standard_normal(shape) * 0.5
        flat.append((path, var.replace(jnp.asarray(value.astype(dtype)))))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


@pytest.fixture(scope="module")
def model():
    return random_model()


def _audio(rng, batch=2, samples=30):
    return (rng.standard_normal((batch, samples, 1)) * 0.3).astype(np.float32)


class _Traced:
    """`fn`, counting its calls: under `compiled` (jit), the number of traces."""

    def __init__(self, fn):
        self.fn, self.count = fn, 0

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self.fn(*args, **kwargs)


def test_shapes_and_consistency(model, rng):
    audio = _audio(rng, samples=25)  # not a multiple of the hop (6): padded to 30
    out = model(audio, n_quantizers=2)
    assert out.z.shape == (2, 5, 6) and out.codes.shape == (2, 2, 5)
    assert out.latents.shape == (2, 5, 4) and out.codes.dtype == jnp.int32
    assert out.commitment_loss.shape == () and out.codebook_loss.shape == ()
    # decoder: 5 frames -> 5*3-1 = 14 -> 28 samples, cropped to the 25 input samples
    assert out.audio.shape == (2, 25, 1)
    padded = model.preprocess(audio, 6000)
    assert padded.shape == (2, 30, 1)
    np.testing.assert_array_equal(padded[:, 25:], 0)
    enc = model.encode(padded, 2)
    np.testing.assert_array_equal(enc.codes, out.codes)
    np.testing.assert_allclose(enc.z, out.z, rtol=1e-6, atol=1e-6)
    decoded = model.decode(enc.z)
    assert decoded.shape == (2, 28, 1)
    np.testing.assert_allclose(decoded[:, :25], out.audio, rtol=1e-6, atol=1e-6)
    # from_codes reproduces z (code vectors through the output projections)
    np.testing.assert_allclose(model.from_codes(enc.codes).z, enc.z, rtol=1e-5, atol=1e-5)
    # uint16 codes (as stored in .dac files) are accepted
    z16 = model.from_codes(np.asarray(enc.codes).astype(np.uint16)).z
    np.testing.assert_array_equal(z16, model.from_codes(enc.codes).z)


def test_compiled_calls_reuse_one_compilation(rng):
    """`compiled` over the plain model: results equal the eager methods', and new data, another
    model of the same configuration or numpy/jax input reuse the compilation."""
    m1, m2 = random_model(seed=1), random_model(seed=2)
    (g1, s1), (g2, s2) = nnx.split(m1), nnx.split(m2)
    a, b = _audio(rng), _audio(rng)
    encode, decode = _Traced(DAC.encode), _Traced(DAC.decode)
    from_codes, forward = _Traced(DAC.from_codes), _Traced(DAC.__call__)
    traced = (encode, decode, from_codes, forward)
    enc = compiled(encode, g1)(s1, a)
    eager = m1.encode(a)
    np.testing.assert_array_equal(enc.codes, eager.codes)
    np.testing.assert_allclose(enc.z, eager.z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        compiled(decode, g1)(s1, enc.z), m1.decode(enc.z), rtol=1e-5, atol=1e-5
    )
    compiled(from_codes, g1)(s1, enc.codes)
    np.testing.assert_allclose(compiled(forward, g1)(s1, a).audio, m1(a).audio, atol=1e-5)
    assert [t.count for t in traced] == [1, 1, 1, 1]
    # new data, another model with the same config, numpy or jax input
    enc2 = compiled(encode, g2)(s2, jnp.asarray(b))
    compiled(decode, g2)(s2, enc2.z)
    compiled(decode, g1)(s1, np.asarray(enc2.z))
    compiled(from_codes, g2)(s2, enc2.codes)
    compiled(forward, g2)(s2, b)
    assert [t.count for t in traced] == [1, 1, 1, 1]
    # a new option or shape traces once, and only once
    compiled(encode, g1, n_quantizers=1)(s1, a)
    compiled(encode, g2, n_quantizers=1)(s2, b)
    compiled(encode, g2)(s2, _audio(rng, samples=36))
    assert encode.count == 3
    with pytest.raises(ValueError, match="hashable"):
        compiled(encode, g1, n_quantizers=[1])


def test_train_mode(model, rng):
    audio = _audio(rng, batch=4)
    with pytest.raises(ValueError, match="key is required"):
        model.encode(audio, train=True)
    out = model.encode(audio, 1, train=True, key=jax.random.key(0))
    assert out.codes.shape == (4, 3, 5)  # n_quantizers ignored in training, as the reference
    again = model.encode(audio, 1, train=True, key=jax.random.key(0))
    np.testing.assert_array_equal(out.z, again.z)  # deterministic given the key


def test_bad_audio(model, rng):
    audio = _audio(rng)
    with pytest.raises(ValueError, match=r"\[batch, samples, 1\].*\(2, 30\)"):
        model.encode(audio[..., 0])
    with pytest.raises(ValueError, match=r"\[batch, samples, 1\].*\(2, 30, 2\)"):
        model(np.concatenate([audio, audio], -1))
    with pytest.raises(ValueError, match="floating"):
        model.encode((audio * 1000).astype(np.int16))
    with pytest.raises(ValueError, match="empty"):
        model(audio[:, :0])
    for bad in (np.nan, np.inf):
        x = audio.copy()
        x[1, 3, 0] = bad
        with pytest.raises(ValueError, match="audio contains NaN or Inf"):
            model(x)
    with pytest.raises(ValueError, match=r"sample_rate=16000 Hz does not match.*6000"):
        model(audio, 16000)
    with pytest.raises(ValueError, match="sample_rate=44100"):
        model.preprocess(audio, 44100)
    with pytest.raises(ValueError, match=r"z must be \[batch, frames, latent_dim=6\]"):
        model.decode(np.zeros((1, 4, 5), np.float32))
    with pytest.raises(ValueError, match="z contains NaN"):
        model.decode(np.full((1, 4, 6), np.nan, np.float32))


@pytest.mark.parametrize("n", [0, 4, -1, 2.0, True, "2"])
def test_bad_n_quantizers(model, rng, n):
    with pytest.raises(ValueError, match="n_quantizers"):
        model.encode(_audio(rng), n)
    with pytest.raises(ValueError, match="n_quantizers"):
        model(_audio(rng), None, n)


def test_bad_codes(model):
    with pytest.raises(ValueError, match="integer"):
        model.from_codes(np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"1 <= n <= n_codebooks=3.*\(1, 4, 4\)"):
        model.from_codes(np.zeros((1, 4, 4), np.int32))
    with pytest.raises(ValueError, match=r"\[0, codebook_size=16\)"):
        model.from_codes(np.full((1, 2, 4), 16, np.int32))
    with pytest.raises(ValueError, match=r"\[0, codebook_size=16\)"):
        model.from_codes(np.full((1, 2, 4), -1, np.int32))


def test_config_type():
    with pytest.raises(ValueError, match="DACConfig"):
        DAC({"encoder_dim": 2}, rngs=nnx.Rngs(0))


def test_init_weights_as_the_reference(monkeypatch):
    """`DAC.__init__` applies `init_weights` to the whole model (quantizer projections
    included): Conv1d biases zeroed, transposed-convolution biases kept."""
    from jaxlatent.models.dac import init_weights
    from jaxlatent.models.dac import model as model_module

    calls = []
    monkeypatch.setattr(model_module, "init_weights", calls.append)
    built = nnx.eval_shape(lambda: DAC(TINY, rngs=nnx.Rngs(0)))
    assert len(calls) == 1 and type(calls[0]) is DAC
    assert built.encoder.conv1.bias is not None

    model = random_model(seed=4)
    init_weights(model)
    assert float(jnp.abs(model.encoder.conv1.bias[...]).sum()) == 0.0
    assert float(jnp.abs(model.quantizer.quantizers[2].out_proj.bias[...]).sum()) == 0.0
    assert float(jnp.abs(model.decoder.conv2.bias[...]).sum()) == 0.0
    assert float(jnp.abs(model.decoder.blocks[0].conv_t1.bias[...]).sum()) > 0.0


# --------------------------------------------------------------------------------------------
# Checkpoints: conversion, orbax directories, cache (torch writes the .pth files)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def release(tmp_path_factory, model):
    """A release-format .pth of `model` (written by the exporter) and its raw contents."""
    torch = reference.torch()
    from converters import dac as cdac

    path = tmp_path_factory.mktemp("dac_ckpt") / "tiny.pth"
    cdac.export_release_checkpoint(model, None, path)
    return path, torch.load(str(path), weights_only=True)


def _save(obj, path):
    import torch

    torch.save(obj, str(path))
    return path


def test_bad_checkpoint_files(release, tmp_path):
    from converters import dac as cdac
    from converters import dac_cache, errors

    path, _ = release
    with pytest.raises(FileNotFoundError, match="not found"):
        cdac.convert_checkpoint(tmp_path / "absent.pth")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 3])
    cache = tmp_path / "cache"
    with pytest.raises(errors.CheckpointError, match="truncated or not a torch checkpoint"):
        dac_cache.load_model(truncated, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())  # no partial cache entry
    with pytest.raises(errors.CheckpointError, match="expected a state_dict"):
        cdac.convert_checkpoint(_save([1, 2, 3], tmp_path / "list.pth"))
    with pytest.raises(errors.CheckpointError, match="not a mapping of names to tensors"):
        cdac.convert_checkpoint(_save({"state_dict": {"a": 1}}, tmp_path / "ints.pth"))
    with pytest.raises(errors.CheckpointError, match="no 'kwargs'"):
        cdac.convert_checkpoint({"state_dict": release[1]["state_dict"], "metadata": {}})


def test_state_dict_of_another_model(release, tmp_path):
    torch = reference.torch()
    from converters import dac as cdac
    from converters import errors

    other = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.Linear(4, 2)).state_dict()
    with pytest.raises(errors.ConversionError, match=r"first keys: \['0.bias'"):
        cdac.convert_checkpoint(_save(other, tmp_path / "other.pth"))
    # with DAC metadata too
    with pytest.raises(errors.ConversionError, match="no DAC convolution weights"):
        cdac.convert_checkpoint({"state_dict": other, "metadata": {"kwargs": TINY.to_kwargs()}})
    # a DAC state_dict with one foreign layer: the foreign keys are listed
    dac_like = dict(torch.load(str(release[0]), weights_only=True)["state_dict"])
    dac_like |= {f"head.{k}": v for k, v in other.items()}
    with pytest.raises(errors.ConversionError, match="disagree with metadata") as info:
        cdac.convert_checkpoint({"state_dict": dac_like, "metadata": {"kwargs": TINY.to_kwargs()}})
    assert info.value.unexpected == ["head.0.bias", "head.0.weight", "head.1.bias", "head.1.weight"]


def test_metadata_that_disagrees_with_the_weights(release):
    from converters import dac as cdac
    from converters import errors

    _, raw = release
    state_dict = raw["state_dict"]
    bad = {"state_dict": state_dict, "metadata": {"kwargs": TINY.to_kwargs() | {"latent_dim": 8}}}
    with pytest.raises(errors.ConversionError, match="disagree with metadata") as info:
        cdac.convert_checkpoint(bad)
    assert any("encoder.block.4.weight_v" in m for m in info.value.mismatched)
    bad["metadata"]["kwargs"] = TINY.to_kwargs() | {"n_codebooks": 4}
    with pytest.raises(errors.ConversionError) as info:
        cdac.convert_checkpoint(bad)
    assert any("quantizer.quantizers.3.codebook.weight" in m for m in info.value.missing)
    with pytest.raises(ValueError, match="disagrees with the checkpoint's metadata"):
        cdac.convert_checkpoint(raw, DACConfig.from_kwargs(TINY.to_kwargs() | {"latent_dim": 8}))
    extra = dict(state_dict) | {"decoder.extra.bias": state_dict["decoder.model.0.bias"]}
    with pytest.raises(errors.ConversionError) as info:
        cdac.convert_checkpoint({"state_dict": extra, "metadata": raw["metadata"]})
    assert info.value.unexpected == ["decoder.extra.bias"]


def test_mixed_key_styles_and_config_inference(release):
    from converters import dac as cdac
    from converters import errors

    _, raw = release
    sd = dict(raw["state_dict"])
    g = sd.pop("encoder.block.0.weight_g")
    v = sd.pop("encoder.block.0.weight_v")
    sd["encoder.block.0.parametrizations.weight.original0"] = g
    sd["encoder.block.0.parametrizations.weight.original1"] = v
    with pytest.raises(errors.ConversionError, match="mixes weight-norm key styles"):
        cdac.convert_checkpoint(sd, TINY)
    # a bare state_dict of a non-released architecture needs a sample rate
    with pytest.raises(ValueError, match="pass sample_rate= or config="):
        cdac.convert_checkpoint(raw["state_dict"])
    inferred = cdac.infer_config(raw["state_dict"], sample_rate=6000)
    assert inferred == DACConfig.from_kwargs(TINY.to_kwargs() | {"quantizer_dropout": 0.0})


def test_load_converted_while_reading(model, tmp_path):
    """`while_reading` gets the abstract model while the parameters are read; its errors
    propagate as they are; a directory whose parameters do not fit fails before it runs."""
    from jaxlatent.models.dac import ConvertedModelError, load_converted, save_converted

    path = save_converted(tmp_path / "m", model.config, model)
    seen = []
    loaded = load_converted(path, while_reading=lambda a: seen.append(nnx.state(a)))
    (abstract,) = seen
    want = jax.tree.leaves(nnx.state(model))
    assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(abstract))
    assert [x.shape for x in jax.tree.leaves(abstract)] == [x.shape for x in want]
    for a, b in zip(want, jax.tree.leaves(nnx.state(loaded)), strict=True):
        np.testing.assert_array_equal(a, b)

    def broken(abstract):
        raise RuntimeError("compilation failed")

    with pytest.raises(RuntimeError, match="compilation failed"):
        load_converted(path, while_reading=broken)
    meta = (path / "config.json").read_text()
    (path / "config.json").write_text(meta.replace('"latent_dim": 6', '"latent_dim": 8'))
    with pytest.raises(ConvertedModelError, match="mis-shaped"):
        load_converted(path, while_reading=broken)


def test_converted_directory_and_cache(release, model, tmp_path, monkeypatch, rng):
    import orbax.checkpoint as ocp

    from converters import dac_cache
    from jaxlatent.models.dac import ConvertedModelError, load_converted, save_converted

    path, _ = release
    cache = tmp_path / "cache"
    first = dac_cache.load_model(path, cache_dir=cache)
    (entry,) = cache.iterdir()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]

    def no_conversion(*args, **kwargs):
        raise AssertionError("the cached conversion should have been used")

    monkeypatch.setattr(dac_cache, "convert_any", no_conversion)
    second = dac_cache.load_model(path, cache_dir=cache)
    audio = _audio(rng)
    np.testing.assert_array_equal(first(audio).audio, second(audio).audio)
    np.testing.assert_array_equal(model(audio).audio, second(audio).audio)
    monkeypatch.undo()

    # a broken cache entry is replaced by a fresh conversion
    (entry / "config.json").write_text("{not json")
    third = dac_cache.load_model(path, cache_dir=cache)
    np.testing.assert_array_equal(third(audio).audio, first(audio).audio)
    assert load_converted(entry).config == TINY.__class__.from_kwargs(
        TINY.to_kwargs() | {"quantizer_dropout": 0.5}
    )

    # bad directories
    with pytest.raises(FileNotFoundError):
        dac_cache.load_model(tmp_path / "absent")
    with pytest.raises(ConvertedModelError, match="not a converted DAC model"):
        load_converted(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_converted(entry, model.config, model)
    bad = tmp_path / "bad"
    save_converted(bad, model.config, model)
    meta = (bad / "config.json").read_text()
    (bad / "config.json").write_text(meta.replace('"latent_dim": 6', '"latent_dim": 8'))
    with pytest.raises(ConvertedModelError, match="cannot restore the parameters"):
        load_converted(bad)
    (bad / "config.json").write_text(meta.replace('"version": 1', '"version": 9'))
    with pytest.raises(ConvertedModelError, match="version 9 is not supported"):
        load_converted(bad)

    # a failed save leaves neither the target nor a temporary directory
    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    target = tmp_path / "partial" / "converted"
    monkeypatch.setattr(ocp.StandardCheckpointer, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_converted(target, model.config, model)
    assert list((tmp_path / "partial").iterdir()) == []


def test_export_checks_the_config(model, tmp_path):
    from converters import dac as cdac

    other = DACConfig.from_kwargs(TINY.to_kwargs() | {"sample_rate": 8000})
    with pytest.raises(ValueError, match="differs from the model's"):
        cdac.export_release_checkpoint(model, other, tmp_path / "x.pth")
    assert not (tmp_path / "x.pth").exists()
