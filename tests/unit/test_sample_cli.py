"""`jaxlatent sample` / `jaxlatent generate` on trained micro runs: outputs, restore, bad input."""

from __future__ import annotations

import functools
import pathlib
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

from jaxlatent import cli, training
from jaxlatent.apps import image_data, registry
from jaxlatent.apps.runs import initial_state

PNG = b"\x89PNG\r\n\x1a\n"
MODELS = ("vanilla_vae", "conditional_vae", "vqvae")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, pathlib.Path]:
    """One micro run of each model: 2 steps, checkpoints at steps 1 and 2."""
    root = tmp_path_factory.mktemp("runs")
    for model in MODELS:
        argv = ["train", "--model", model, "--preset", "micro", "--steps", "2"]
        argv += ["--batch-size", "8", "--out", str(root / model), "--quiet"]
        assert cli.main([*argv, "--parallel", "single", "--checkpoint-every", "1"]) == 0
    return {m: root / m for m in MODELS}


@functools.cache
def _states(run: pathlib.Path, model: str):
    """(untrained initial state, step-1 state, step-2 state) of a run, restored here
    independently of the app."""
    spec, _, preset = registry.get_model(model, "micro")
    tx = training.make_optimizer("adam", preset.learning_rate)
    fresh = initial_state(spec, preset, 10, tx, 0)  # what `train` started from
    with training.Checkpointer(run / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [1, 2]
        return fresh, ckpt.restore(fresh, 1)[0], ckpt.restore(fresh, 2)[0]


@functools.cache
def _own(model: str, graphdef, method: str, num: int = 0):
    """A jitted call of the model's own sample (VQ-VAE: random codes, decoded) or generate,
    in eval mode (the calls' default ``train=False``), on the arrays of a state."""

    def call(params, model_state, key, labels, x):
        m = nnx.merge(graphdef, params, model_state)
        if method == "generate":
            kwargs = {} if labels is None else {"labels": labels}
            return m.generate(x, rngs=nnx.Rngs(key), **kwargs)
        if model == "vqvae":
            side = m.img_size // m.downsampling
            codes = jax.random.randint(key, (num, side, side), 0, m.num_embeddings)
            return m.decode_indices(codes)
        kwargs = {} if labels is None else {"labels": labels}
        return m.sample(num, rngs=nnx.Rngs(key), **kwargs)

    return jax.jit(call)


def _own_sample(state, model: str, num: int, seed: int, labels=None) -> np.ndarray:
    fn = _own(model, state.graphdef, "sample", num)
    return np.asarray(fn(state.params, state.model_state, jax.random.key(seed), labels, None))


def _own_generate(state, model: str, x: np.ndarray, seed: int, labels=None) -> np.ndarray:
    fn = _own(model, state.graphdef, "generate")
    return np.asarray(fn(state.params, state.model_state, jax.random.key(seed), labels, x))


def _main(*argv) -> int:
    return cli.main([str(a) for a in argv])


@pytest.mark.parametrize("model", MODELS)
def test_sample_is_the_restored_models_own_sample(model, runs, tmp_path, capsys):
    run = runs[model]
    png, npy = tmp_path / "s.png", tmp_path / "s.npy"
    assert _main("sample", "--run", run, "--num-samples", 20, "--seed", 3, "--output", png,
                 "--output", npy) == 0  # fmt: skip
    assert f"sampled 20 image(s) from {run} (step 2, seed 3)" in capsys.readouterr().out
    assert png.read_bytes()[:8] == PNG
    images = np.load(npy)
    assert images.shape == (20, 8, 8, 1) and images.dtype == np.float32
    assert np.isfinite(images).all() and 0 <= images.min() and images.max() <= 1

    fresh, restored1, restored = _states(run, model)
    pairs = zip(jax.tree.leaves(fresh.params), jax.tree.leaves(restored.params), strict=True)
    changed = [not np.array_equal(a, b) for a, b in pairs]
    assert sum(changed) > len(changed) // 2  # two Adam steps moved the parameters
    labels = None
    if model == "conditional_vae":  # the classes in turn
        labels = np.eye(10, dtype=np.float32)[np.arange(20) % 10]
    own = _own_sample(restored, model, 20, 3, labels)
    np.testing.assert_allclose(images, own, rtol=0, atol=1e-6)
    untrained = _own_sample(fresh, model, 20, 3, labels)
    assert np.abs(images - untrained).max() > 1e-4  # the trained parameters were loaded

    # the seed decides the samples; --step picks the checkpoint
    again, other, step1 = (tmp_path / f"{n}.npy" for n in ("again", "other", "step1"))
    assert _main("sample", "--run", run, "--num-samples", 20, "--seed", 3, "--output", again) == 0
    np.testing.assert_array_equal(np.load(again), images)
    assert _main("sample", "--run", run, "--num-samples", 20, "--seed", 4, "--output", other) == 0
    assert np.abs(np.load(other) - images).max() > 1e-3
    assert _main("sample", "--run", run, "--num-samples", 20, "--seed", 3, "--step", 1,
                 "--output", step1) == 0  # fmt: skip
    np.testing.assert_allclose(np.load(step1), _own_sample(restored1, model, 20, 3, labels),
                               rtol=0, atol=1e-6)  # fmt: skip
    assert np.abs(np.load(step1) - images).max() > 1e-6
    assert not list(tmp_path.glob(".tmp-*"))


def test_conditional_sample_labels_are_cycled(runs, tmp_path):
    npy = tmp_path / "s.npy"
    argv = ["sample", "--run", runs["conditional_vae"], "--num-samples", 20, "--seed", 1]
    assert _main(*argv, "--labels", "7,2", "--output", npy) == 0
    _, _, restored = _states(runs["conditional_vae"], "conditional_vae")
    labels = np.eye(10, dtype=np.float32)[[7, 2] * 10]
    own = _own_sample(restored, "conditional_vae", 20, 1, labels)
    np.testing.assert_allclose(np.load(npy), own, rtol=0, atol=1e-6)


def _digits_labels(inputs: np.ndarray) -> np.ndarray:
    """One-hot labels of digits images, found by looking each image up in the data set."""
    digits = image_data.load_images("digits", 8, 1)
    flat = digits.images.reshape(len(digits.images), -1)
    labels = []
    for x in inputs.reshape(len(inputs), -1):
        hits = np.flatnonzero((flat == x).all(axis=1))
        assert len(hits) and (digits.labels[hits] == digits.labels[hits[0]]).all()
        labels.append(digits.labels[hits[0]])
    return np.stack(labels)


@pytest.mark.parametrize("model", MODELS)
def test_generate_reconstructs_with_the_restored_model(model, runs, tmp_path, capsys):
    run = runs[model]
    png, npy = tmp_path / "g.png", tmp_path / "g.npy"
    assert _main("generate", "--run", run, "--num", 18, "--seed", 5, "--output", npy,
                 "--output", png) == 0  # fmt: skip
    out = np.load(npy)
    assert out.shape == (2, 18, 8, 8, 1) and out.dtype == np.float32
    assert np.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    assert png.read_bytes()[:8] == PNG
    inputs, recons = out
    mse = float(np.mean(np.square(recons - inputs)))
    assert f"reconstruction MSE {mse:.4g}" in capsys.readouterr().out
    assert len({x.tobytes() for x in inputs}) > 10  # distinct images of the data set

    _, _, restored = _states(run, model)
    labels = _digits_labels(inputs) if model == "conditional_vae" else None
    own = _own_generate(restored, model, inputs, 5, labels)
    np.testing.assert_allclose(recons, own, rtol=0, atol=1e-6)

    again = tmp_path / "again.npy"
    assert _main("generate", "--run", run, "--num", 18, "--seed", 5, "--output", again) == 0
    np.testing.assert_array_equal(np.load(again), out)


def _image_folder(root: pathlib.Path, classes: dict[str, int]) -> pathlib.Path:
    """Digits as 8-bit PNGs in one subfolder per class name (`classes`: name -> count)."""
    from PIL import Image

    digits = image_data.load_images("digits", 8, 1)
    digit = digits.labels.argmax(axis=1)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        pick = np.flatnonzero(digit == int(name) if name.isdigit() else digit >= 0)[:count]
        for i, j in enumerate(pick):
            pixels = np.round(digits.images[j, ..., 0] * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


def test_generate_on_a_folder_maps_its_classes_to_the_runs(runs, tmp_path):
    """A folder with classes 3 and 5 only: the ConditionalVAE gets the run's labels 3 and 5."""
    folder = _image_folder(tmp_path / "data", {"3": 10, "5": 8})
    npy = tmp_path / "g.npy"
    argv = ["generate", "--run", runs["conditional_vae"], "--data", folder, "--num", 18]
    assert _main(*argv, "--seed", 2, "--output", npy) == 0
    inputs, recons = np.load(npy)
    data = image_data.load_images(str(folder), 8, 1)
    np.testing.assert_array_equal(inputs, data.images)  # all 18, in folder order
    labels = np.eye(10, dtype=np.float32)[[3] * 10 + [5] * 8]
    _, _, restored = _states(runs["conditional_vae"], "conditional_vae")
    own = _own_generate(restored, "conditional_vae", inputs, 2, labels)
    np.testing.assert_allclose(recons, own, rtol=0, atol=1e-6)


def test_default_output_goes_to_the_run_pictures(runs, capsys, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(runs["vanilla_vae"], run)
    assert _main("sample", "--run", run, "--num-samples", 3) == 0
    assert _main("generate", "--run", run, "--num", 3, "--data", "digits") == 0
    for name in ("sample_step000002_seed0.png", "generate_step000002_seed0.png"):
        assert (run / "pictures" / name).read_bytes()[:8] == PNG
    capsys.readouterr()
    assert _main("sample", "--run", run, "--num-samples", 3) == 2  # exists: not replaced
    assert "pass --overwrite" in capsys.readouterr().err
    assert _main("sample", "--run", run, "--num-samples", 3, "--overwrite") == 0


def _snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


BAD = {
    "missing run": (["sample", "--run", "{tmp}/nope"], "run folder '{tmp}/nope' does not exist"),
    "empty run": (["generate", "--run", "{empty}"], "holds no `jaxlatent train` run"),
    "no checkpoints": (["sample", "--run", "{nockpt}"], "has no finalized checkpoint yet"),
    "unknown step": (["sample", "--run", "{vanilla_vae}", "--step", "7"],
                     "has no checkpoint of step 7 (it has: 1, 2)"),
    "labels width": (["sample", "--run", "{conditional_vae}", "--num-samples", "2", "--labels",
                      "1,2,3"], "--labels gives 3 labels for 2 samples"),
    "labels value": (["sample", "--run", "{conditional_vae}", "--labels", "1,11"],
                     "--labels 11: not a class of the run; its classes are: 0, 1, 2"),
    "labels empty": (["sample", "--run", "{conditional_vae}", "--labels", "1,,2"],
                     "--labels must be a comma-separated list of class names"),
    "labels unconditional": (["sample", "--run", "{vqvae}", "--labels", "1"],
                             "model 'vqvae' is not conditioned on classes"),
    "num samples": (["sample", "--run", "{vanilla_vae}", "--num-samples", "0"],
                    "--num-samples must be at least 1, got 0"),
    "num": (["generate", "--run", "{vanilla_vae}", "--num", "-1"], "--num must be at least 1"),
    "num too large": (["generate", "--run", "{vqvae}", "--num", "5000"],
                      "--num 5000 exceeds the 1797 images of digits"),
    "suffix": (["sample", "--run", "{vanilla_vae}", "--output", "{tmp}/out.jpg"],
               "must end in .png (a picture grid) or .npy"),
    "suffix generate": (["generate", "--run", "{vanilla_vae}", "--output", "{tmp}/out"],
                        "must end in .png (a picture grid) or .npy"),
    "output exists": (["sample", "--run", "{vanilla_vae}", "--output", "{tmp}/a.npy",
                       "--output", "{existing}"], "exists; pass --overwrite to replace it"),
    "output exists generate": (["generate", "--run", "{vqvae}", "--output", "{existing}"],
                               "exists; pass --overwrite to replace it"),
    "foreign classes": (["generate", "--run", "{conditional_vae}", "--data", "{cats}"],
                        "has classes the run was not trained on (cats)"),
    "missing data": (["generate", "--run", "{vqvae}", "--data", "{tmp}/nope"],
                     "is neither 'digits' nor a folder"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_without_output(case, runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    nockpt = tmp_path / "nockpt"
    nockpt.mkdir()
    shutil.copy(runs["vanilla_vae"] / "run.json", nockpt / "run.json")
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"keep me")
    cats = _image_folder(tmp_path / "pets", {"cats": 2})
    names = {"tmp": tmp_path, "empty": tmp_path / "empty", "nockpt": nockpt,
             "existing": existing, "cats": cats, **runs}  # fmt: skip
    args, message = BAD[case]
    argv = [a.format(**names) for a in args]
    before = {m: _snapshot(r) for m, r in runs.items()}
    before_tmp = _snapshot(tmp_path)
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"jaxlatent {argv[0]}: error:") and err.count("\n") == 1
    assert message.format(**names) in err
    assert {m: _snapshot(r) for m, r in runs.items()} == before  # no default output either
    assert _snapshot(tmp_path) == before_tmp
    assert existing.read_bytes() == b"keep me"
