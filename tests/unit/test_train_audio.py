"""`jaxlatent train` for the audio models: each trains and writes its outputs, the EMA VQ-VAE
and the normalizing autoencoder (GlobalNorm statistics) give the same result under shard_map
as on one device, and bad audio data is refused."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from jaxlatent import cli, training
from jaxlatent.apps import audio_data, registry
from jaxlatent.apps.train_data import load_train_data
from tests.tolerances import TOLERANCES
from tests.unit.test_train_cli import PNG, _snapshot

DAC_EVAL = {"mel_distance", "stft_distance", "si_sdr", "waveform_l1", "codes_used", "perplexity"}
DAC_EVAL |= {f"{m}_q{i}" for m in ("codes_used", "perplexity") for i in range(3)}
STEPS = 20  # logged every 2 steps, checkpoints at 10, 15, 20 (compiling dominates, not steps)


def _train(out, model, *args, steps=STEPS, batch=8):
    argv = ["train", "--model", model, "--steps", str(steps), "--batch-size", str(batch)]
    return cli.main([*argv, "--out", str(out), "--quiet", *map(str, args)])


def _check_outputs(out: pathlib.Path, model: str, has_samples: bool) -> list[dict]:
    names = ["checkpoints", "eval.jsonl", "metrics.jsonl", "pictures", "run.json"]
    names = ["audio", *names] if model == "dac" else names  # decoded wavs of waveform models
    assert sorted(p.name for p in out.iterdir()) == [*names, "summary.json", "tensorboard"]
    pictures = sorted(p.name for p in (out / "pictures").iterdir())
    expected = [f"step_{STEPS:06d}_reconstructions.png"]
    expected += [f"step_{STEPS:06d}_samples.png"] if has_samples else []
    assert pictures == expected
    for name in pictures:
        assert (out / "pictures" / name).read_bytes()[:8] == PNG
    records = training.read_jsonl(str(out / "metrics.jsonl"))
    assert [r["step"] for r in records] == list(range(2, STEPS + 1, 2))
    losses = [r["loss"] for r in records]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # batches differ: compare means
    assert training.Checkpointer(out / "checkpoints").all_steps() == [10, 15, 20]
    run = json.loads((out / "run.json").read_text())
    assert run["model"] == model and run["data_kind"] == "audio" and run["data"] == "speech"
    assert run["preset"] == "tiny" and run["data_info"]["files"] == 4
    assert run["samples"].startswith("none:") != has_samples
    assert not list(out.rglob(".tmp-*"))
    return records


@pytest.mark.parametrize(
    "model, has_samples, eval_keys",
    [
        ("sb_vae", True, {"reconstruction_mse"}),
        ("sb_autoencoder", False, {"reconstruction_mse"}),
        ("sb_normalizing_ae", False, {"reconstruction_mse"}),
        ("vq_vae", False, {"reconstruction_mse", "codes_used", "perplexity"}),
        ("dac", False, {"reconstruction_mse", *DAC_EVAL}),
    ],
)
def test_audio_model_trains_and_writes_outputs(model, has_samples, eval_keys, tmp_path, capsys):
    out = tmp_path / "run"
    # dac: its non-adversarial objective (the recipe is tests/unit/test_train_dac_gan.py's)
    extra = ("--objective", "reconstruction") if model == "dac" else ()
    assert _train(out, model, "--parallel", "single", *extra) == 0
    records = _check_outputs(out, model, has_samples)
    evals = training.read_jsonl(str(out / "eval.jsonl"))
    assert [e["step"] for e in evals] == [STEPS] and set(evals[0]) == {"step", *eval_keys}
    assert 0 < evals[0]["reconstruction_mse"] < 10
    if model == "dac":
        spec = registry.MODELS["dac"].presets["tiny"].dac
        assert 1 <= evals[0]["codes_used"] <= spec.codebook_size
        assert {"waveform_l1", "stft_l1", "commitment_loss", "codebook_loss"} <= set(records[0])
    if model == "vq_vae":  # the codebook is a parameter trained by the codebook loss
        import jax

        state = _state(out)
        assert "codebook_loss" in records[0] and "codebook" in state["params"]["quantizer"]
        assert not {"codebook", "embed_sum"} & set(state["model_state"]["quantizer"])
        moments = [
            np.abs(np.asarray(leaf)).max()
            for path, leaf in jax.tree_util.tree_flatten_with_path(state["opt_state"])[0]
            if "quantizer" in jax.tree_util.keystr(path)
        ]
        assert moments and max(moments) > 0  # Adam moments of the codebook: it got gradients
    if model == "sb_normalizing_ae":  # the GlobalNorm's running statistics are logged
        assert records[-1]["latent_running_std"] > 0 and "latent_running_mean" in records[-1]
    line = capsys.readouterr().out
    assert f"{model} (tiny) on speech: steps 0→{STEPS}" in line


def _state(out: pathlib.Path) -> dict:
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(
        (out / "checkpoints" / str(STEPS) / "state").resolve()
    )


def _scale(x: np.ndarray) -> float:
    """The largest magnitude of `x` (1 for an all-zero array)."""
    return float(np.max(np.abs(x))) or 1.0


def _assert_same_state(a: dict, b: dict, tolerance: str, *, scaled: bool = False) -> None:
    """Floating leaves of two restored states within the named tolerance, others equal.

    With `scaled`, each pair of floating leaves is divided by the largest magnitude of `a`'s
    leaf first (round-off of reductions is relative to the size of the summed terms, not to
    each element: cancelling gradient components would fail an element-wise rtol).
    """
    import jax

    tol = TOLERANCES[tolerance]
    flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
    flat_b = jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b)
    for (path, x), y in zip(flat_a, flat_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        name = jax.tree_util.keystr(path)
        if np.issubdtype(x.dtype, np.floating):
            s = _scale(x) if scaled else 1.0
            np.testing.assert_allclose(y / s, x / s, tol.rtol, tol.atol, err_msg=name)
        else:
            np.testing.assert_array_equal(y, x, err_msg=name)


def test_sb_normalizing_ae_shard_map_equals_single_device(tmp_path):
    """Same global batches and key: the GlobalNorm statistics of shard_map (psum over the
    devices, set through the norm's ``axis_name``) and the parameters trained through them
    equal the single-device ones; the evaluations (frozen norm) leave the state alone."""
    import jax

    single, mapped = tmp_path / "single", tmp_path / "shard_map"
    assert _train(single, "sb_normalizing_ae", "--parallel", "single") == 0
    assert _train(mapped, "sb_normalizing_ae", "--parallel", "shard_map") == 0
    assert json.loads((mapped / "run.json").read_text())["trainer"] == "ShardMapDataParallel"

    a, b = _state(single), _state(mapped)
    # the GlobalNorm statistics are model state, never an optimizer parameter
    norm = a["model_state"]["norm"]
    assert set(norm) == {"running_mean", "running_std", "weight", "step_count"}
    assert "norm" not in a["params"] and "norm" not in str(jax.tree.structure(a["opt_state"]))
    # one update per train step: the pre-training compile and the eval at step 20 add none
    assert int(norm["step_count"]["value"]) == STEPS
    # exactly the unpadded latent elements of the 20 training batches entered the statistics
    spec = registry.MODELS["sb_normalizing_ae"]
    preset = spec.presets["tiny"]
    data = load_train_data(spec, preset, None)
    it = training.ArrayDataIterator(data.arrays, 8, seed=0)  # the run's batches (seed 0)
    lengths = np.concatenate([next(it)["length"] for _ in range(STEPS)])
    frames = np.ceil(lengths * preset.segment - 1e-6)  # GlobalNorm's mask rule
    assert float(norm["weight"]["value"]) == frames.sum() * preset.latent
    assert (lengths < 1).any() and float(norm["running_std"]["value"]) > 0
    _assert_same_state(a, b, "train_nae_parallel", scaled=True)
    tol = TOLERANCES["train_nae_parallel"]
    rec_a = training.read_jsonl(str(single / "metrics.jsonl"))
    rec_b = training.read_jsonl(str(mapped / "metrics.jsonl"))
    evals = [training.read_jsonl(str(o / "eval.jsonl"))[0] for o in (single, mapped)]
    keys = set(rec_a[0]) - {"step", "examples_per_sec", "time"}
    pairs = {key: ([r[key] for r in rec_a], [r[key] for r in rec_b]) for key in keys}
    pairs["eval reconstruction_mse"] = tuple([e["reconstruction_mse"]] for e in evals)
    for key, (x, y) in pairs.items():  # loss, grad_norm, the running statistics
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_allclose(y / _scale(x), x / _scale(x), tol.rtol, tol.atol, err_msg=key)


def test_sb_normalizing_ae_evaluates_with_the_training_statistics():
    """Eval loss and reconstructions normalise with the running statistics as they are
    (SpeechBrain would first merge the eval batch's); a training call merges them."""
    import jax
    from flax import nnx

    from jaxlatent.masking import clean_padding

    spec = registry.MODELS["sb_normalizing_ae"]
    preset = spec.presets["tiny"]
    model = spec.build(preset, 0, nnx.Rngs(0))
    norm = model.norm
    norm.running_mean[...], norm.running_std[...], norm.weight[...] = 0.3, 2.0, 100.0
    x = np.random.default_rng(0).standard_normal((2, preset.segment, preset.bins), np.float32)
    batch = {"x": x, "length": np.array([1.0, 0.5], np.float32)}
    stats = lambda: [float(v[...]) for v in (norm.running_mean, norm.running_std, norm.weight)]  # noqa: E731

    rec = spec.reconstruct(model, batch, jax.random.key(0))
    latent = clean_padding((model.encoder(x) - 0.3) / 2.0, batch["length"])
    expected = clean_padding(model.decoder(latent), batch["length"])
    np.testing.assert_allclose(rec, expected, rtol=1e-6, atol=1e-6)
    loss_fn = spec.loss_fn(preset)
    _, aux = loss_fn(model, batch, key=jax.random.key(0), train=False)
    mean = float(np.float32(0.3))
    assert stats() == [mean, 2.0, 100.0] and not norm.frozen
    assert float(aux["latent_running_mean"]) == mean and float(aux["latent_running_std"]) == 2.0
    _, aux = loss_fn(model, batch, key=jax.random.key(0), train=True)
    assert stats()[2] == 100.0 + (32 + 16) * preset.latent and stats()[:2] != [mean, 2.0]


def test_vq_vae_ema_shard_map_equals_single_device(tmp_path):
    """Same global batches and key: the EMA codebook statistics of shard_map (psum over the
    devices, set through the model's ``axis_name``) equal the single-device ones."""
    import jax

    single, mapped = tmp_path / "single", tmp_path / "shard_map"
    assert _train(single, "vq_vae_ema", "--parallel", "single") == 0
    _check_outputs(single, "vq_vae_ema", has_samples=False)
    assert _train(mapped, "vq_vae_ema", "--parallel", "shard_map") == 0
    assert json.loads((mapped / "run.json").read_text())["trainer"] == "ShardMapDataParallel"

    a, b = _state(single), _state(mapped)
    # the EMA codebook is model state, never an optimizer parameter
    assert set(a["model_state"]["quantizer"]) == {
        "codebook", "embed_sum", "cluster_size", "initialized"
    }  # fmt: skip
    assert "quantizer" not in a["params"] and "quantizer" not in str(
        jax.tree.structure(a["opt_state"])
    )
    assert bool(a["model_state"]["quantizer"]["initialized"]["value"])  # k-means init ran
    _assert_same_state(a, b, "train_vq_ema_parallel")
    tol = TOLERANCES["train_vq_ema_parallel"]
    rec_a = training.read_jsonl(str(single / "metrics.jsonl"))
    rec_b = training.read_jsonl(str(mapped / "metrics.jsonl"))
    assert [r["codes_used"] for r in rec_a] == [r["codes_used"] for r in rec_b]
    np.testing.assert_allclose(
        [r["loss"] for r in rec_b], [r["loss"] for r in rec_a], tol.rtol, tol.atol
    )
    evals = [training.read_jsonl(str(o / "eval.jsonl"))[0] for o in (single, mapped)]
    assert evals[0]["codes_used"] == evals[1]["codes_used"] >= 8


# --- data ---------------------------------------------------------------------------------


def _write_wav(path: pathlib.Path, audio: np.ndarray, rate: int) -> pathlib.Path:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio, rate)
    return path


def test_audio_folder_is_mixed_down_and_resampled(tmp_path):
    t = np.arange(22050) / 22050
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo = np.stack([tone, -tone + 0.2], axis=1)  # mono mixdown: 0.1 everywhere
    _write_wav(tmp_path / "a.wav", stereo, 22050)
    _write_wav(tmp_path / "sub" / "b.flac", tone[:11025, None], 22050)
    (tmp_path / "notes.txt").write_text("ignored")
    dac = registry.MODELS["dac"].presets["tiny"]
    data = audio_data.load_audio(str(tmp_path), dac)
    # 1 s and 0.5 s at 16 kHz: 7 + 3 whole 2048-sample segments
    assert data.info["files"] == 2 and data.info["seconds"] == pytest.approx(1.5, abs=1e-3)
    assert data.x.shape == (10, 2048, 1) and (data.length == 1).all()
    np.testing.assert_allclose(data.x[:7], 0.1, atol=2e-3)  # the mixdown, resampled
    assert np.abs(data.x[7:]).max() == pytest.approx(0.5, abs=0.01)  # the tone
    spec = audio_data.load_audio(str(tmp_path), registry.MODELS["sb_vae"].presets["tiny"])
    assert spec.x.shape[1:] == (32, 129) and (spec.length < 1).sum() == 2  # padded tails kept
    assert abs(float(spec.x[spec.length == 1].mean())) < 0.2  # standardised


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no audio here")
    (root / "broken").mkdir()
    (root / "broken" / "x.wav").write_bytes(b"RIFF not really a wav file")
    (root / "images").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / "a.png")
    _write_wav(root / "audio" / "a.wav", np.zeros((4000, 1), np.float32), 16000)
    _write_wav(root / "short" / "a.wav", np.full((1000, 1), 0.1, np.float32), 16000)
    return root


BAD = {
    "empty folder": ("sb_vae", "{empty}", "has no usable audio files (looked for .wav"),
    "unreadable file": ("sb_vae", "{broken}", "x.wav: not a readable audio file"),
    "images for audio": ("sb_vae", "{images}", "model 'sb_vae' takes audio but data folder"),
    "audio for images": ("vanilla_vae", "{audio}", "holds 1 audio file(s) and no image files"),
    "digits for audio": (
        "dac",
        "digits",
        "model 'dac' takes audio but --data digits is the bundled image data",
    ),
    "speech for images": ("vqvae", "speech", "model 'vqvae' takes images but --data speech"),
    "shorter than a segment": ("vq_vae_ema", "{short}", "has no audio as long as one segment"),
    "not a folder": ("sb_vae", "{empty}/nope", "is neither 'speech' nor a folder"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_audio_data_exits_2_before_writing(case, folders, tmp_path, capsys):
    model, data, message = BAD[case]
    data = data.format(**{p.name: p for p in folders.iterdir()})
    out = tmp_path / "out"
    before = _snapshot(folders)
    assert _train(out, model, "--data", data, "--preset", "tiny", "--parallel", "single") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("jaxlatent train: error:")
    assert not out.exists() and _snapshot(folders) == before


def test_default_data_follows_the_data_kind():
    from jaxlatent.apps.spec import DATA_KINDS

    kinds = {spec.data_kind for spec in registry.MODELS.values()}
    assert kinds == set(DATA_KINDS) == {"image", "audio"}
    assert registry.models_of_kind("audio") == [
        "dac", "piq", "sb_autoencoder", "sb_normalizing_ae", "sb_vae", "vq_vae",
        "vq_vae_ema",
    ]  # fmt: skip


def test_stft_loss_frames_match_numpy_and_differentiate_at_silence():
    import jax
    import jax.numpy as jnp

    from jaxlatent.losses import multiscale_stft_l1, unpadded_stft_magnitude

    x = np.random.default_rng(0).standard_normal((2, 300)).astype(np.float32)
    hop, frames = 16, 1 + (300 - 64) // 16
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(64) / 64)
    framed = np.stack([x[:, f * hop : f * hop + 64] for f in range(frames)], axis=1)
    expected = np.abs(np.fft.rfft(framed * window, axis=-1))
    # one compilation, not one per op
    magnitude = jax.jit(unpadded_stft_magnitude, static_argnums=1)
    np.testing.assert_allclose(magnitude(jnp.asarray(x), 64), expected, atol=2e-5)
    silence = jnp.zeros((2, 300))
    grad = jax.jit(jax.grad(lambda y: multiscale_stft_l1(y, silence, (64, 256))))(silence)
    assert np.isfinite(np.asarray(grad)).all()
    with pytest.raises(ValueError, match="multiple of 4 and at most the signal's 300"):
        unpadded_stft_magnitude(silence, 512)
