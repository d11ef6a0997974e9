"""`jaxlatent train`: every registered family trains and writes its outputs, resume, bad input."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from jaxlatent import cli, training
from jaxlatent.apps import image_data, registry

PNG = b"\x89PNG\r\n\x1a\n"


def _train(out, *args, model="vanilla_vae", steps=2, batch=8):
    argv = ["train", "--model", model, "--preset", "micro", "--steps", str(steps)]
    argv += ["--batch-size", str(batch), "--out", str(out), "--quiet", *map(str, args)]
    return cli.main(argv)


def _snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def _families():
    """vanilla_vae in the quick set; the other families (~20 s of compilation each) are slow.
    Image models only (audio models: test_train_audio.py)."""
    for name in registry.models_of_kind("image"):
        marks = () if name == "vanilla_vae" else (pytest.mark.slow,)
        yield pytest.param(name, marks=marks)


@pytest.mark.parametrize("model", list(_families()))
def test_each_model_trains_and_writes_outputs(model, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(out, "--parallel", "single", model=model) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "eval.jsonl",
        "metrics.jsonl",
        "pictures",
        "run.json",
        "summary.json",
        "tensorboard",
    ]
    for kind in ("reconstructions", "samples"):
        assert (out / "pictures" / f"step_000002_{kind}.png").read_bytes()[:8] == PNG
    records = training.read_jsonl(str(out / "metrics.jsonl"))
    assert [r["step"] for r in records] == [1, 2] and np.isfinite(records[-1]["loss"])
    assert training.Checkpointer(out / "checkpoints").all_steps() == [1, 2]
    run = json.loads((out / "run.json").read_text())
    assert run["model"] == model and run["preset"] == "micro" and run["examples"] == 1797
    evals = training.read_jsonl(str(out / "eval.jsonl"))
    assert [e["step"] for e in evals] == [2] and 0 <= evals[0]["reconstruction_mse"] < 1
    assert not list(out.rglob(".tmp-*"))  # atomic writes leave no temporaries
    line = capsys.readouterr().out
    assert f"{model} (micro) on digits: steps 0→2" in line and "eval reconstruction MSE" in line


def test_resume_continues_and_eval_every(tmp_path):
    out = tmp_path / "run"
    assert _train(out, "--parallel", "single", "--eval-every", 1) == 0
    assert sorted(os.listdir(out / "pictures")) == [
        "step_000001_reconstructions.png",
        "step_000001_samples.png",
        "step_000002_reconstructions.png",
        "step_000002_samples.png",
    ]
    with open(out / "eval.jsonl", "a") as f:  # as if an interrupted run had got further
        f.write(json.dumps({"step": 3, "reconstruction_mse": 0.5}) + "\n")
    assert _train(out, "--parallel", "single", "--resume", steps=4) == 0
    evals = training.read_jsonl(str(out / "eval.jsonl"))
    assert [e["step"] for e in evals] == [1, 2, 4]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["start_step"] == 2 and summary["final_step"] == 4
    assert [r["step"] for r in training.read_jsonl(str(out / "metrics.jsonl"))] == [1, 2, 3, 4]
    assert (out / "pictures" / "step_000004_samples.png").exists()
    # --overwrite starts again from step 0 and removes the old pictures
    assert _train(out, "--parallel", "single", "--overwrite", steps=1) == 0
    assert sorted(os.listdir(out / "pictures")) == [
        "step_000001_reconstructions.png",
        "step_000001_samples.png",
    ]
    assert json.loads((out / "summary.json").read_text())["start_step"] == 0


@pytest.fixture(scope="module")
def previous_run(tmp_path_factory):
    """A finished vanilla_vae micro run (1 step) that bad inputs must leave untouched."""
    out = tmp_path_factory.mktemp("prev") / "run"
    assert _train(out, "--parallel", "single", steps=1) == 0
    return out


def _folder(root: pathlib.Path, name: str, shape: tuple[int, ...]) -> pathlib.Path:
    from PIL import Image

    folder = root / name
    folder.mkdir()
    Image.fromarray(np.zeros(shape, np.uint8)).save(folder / "a.png")
    return folder


BAD = {
    "unknown model": (["--model", "nope"], "unknown model 'nope'; choose one of: beta_vae"),
    "unknown preset": (["--preset", "huge"], "unknown preset 'huge' for model 'vanilla_vae'"),
    "empty folder": (["--data", "{empty}"], "has no usable image files"),
    "wrong channels": (["--data", "{rgb}"], "has 3 channels (RGB) but the model takes 1"),
    "unlabelled folder": (
        ["--model", "conditional_vae", "--data", "{gray}"],
        "model 'conditional_vae' is conditioned on classes but",
    ),
    "batch vs devices": (["--batch-size", "12"], "not divisible by the 8 devices"),
    "batch vs data": (["--batch-size", "4000", "--parallel", "single"], "batch_size must be in"),
    "out exists": (["--out", "{prev}"], "exists and is not empty; pass --resume"),
    "resume and overwrite": (["--resume", "--overwrite"], "at most one of --resume and"),
    "other model": (
        ["--out", "{prev}", "--resume", "--model", "wae_mmd"],
        "trains model 'vanilla_vae' (preset 'micro'), not 'wae_mmd'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_before_writing(case, tmp_path, previous_run, capsys):
    args, message = BAD[case]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    names = {
        "empty": empty,
        "rgb": _folder(tmp_path, "rgb", (8, 8, 3)),
        "gray": _folder(tmp_path, "gray", (8, 8)),
        "prev": previous_run,
    }
    args = [a.format(**names) for a in args]
    out = tmp_path / "fresh"
    before = _snapshot(previous_run)
    argv = ["train", "--model", "vanilla_vae", "--preset", "micro", "--steps", "2"]
    argv += ["--batch-size", "8", "--out", str(out), "--quiet"]
    capsys.readouterr()
    assert cli.main(argv + args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("jaxlatent train: error:")
    assert not out.exists()
    assert _snapshot(previous_run) == before


def test_checkpoint_of_another_model_is_refused(tmp_path, previous_run, capsys):
    """Without run.json the checkpoint signature still tells the models apart."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(previous_run, out)
    (out / "run.json").unlink()
    before = _snapshot(out)
    assert _train(out, "--parallel", "single", "--resume", model="wae_mmd") == 2
    assert "checkpoint in" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_image_folder_classes_and_gray_to_rgb(tmp_path):
    from PIL import Image

    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full((5, 7), 255, np.uint8)).save(tmp_path / cls / "x.png")
    data = image_data.load_images(str(tmp_path), 8, 3)
    assert data.images.shape == (2, 8, 8, 3) and data.class_names == ("cats", "dogs")
    np.testing.assert_allclose(data.images, 1.0)
    np.testing.assert_array_equal(data.labels, np.eye(2))
    digits = image_data.load_images("digits", 16, 3)
    assert digits.images.shape == (1797, 16, 16, 3) and digits.images.dtype == np.float32
    assert 0.0 <= digits.images.min() and digits.images.max() <= 1.0
    np.testing.assert_array_equal(digits.images[..., 0], digits.images[..., 2])
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"bad\.png cannot be read"):
        image_data.load_images(str(tmp_path), 8, 3)
