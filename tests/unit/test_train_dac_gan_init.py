"""`jaxlatent train --model dac`: --init-from starts from the converted weights (or a release
.pth) exactly, --init-discriminator from its file, the non-adversarial objective and the plain
segments stay available and bad input is refused. Nothing is trained: `fit` is stopped at its
start."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxlatent import cli, training
from tests.unit import dac_gan_runs as runs


class _Started(Exception):
    """Raised by the patched `fit` with the state a run would start from."""


@pytest.fixture
def initial_state(monkeypatch):
    """Make `jaxlatent train` stop at `fit`, raising `_Started(state)` (nothing trained)."""

    def fit(trainer, state, data, **kwargs):
        raise _Started(state, data)

    monkeypatch.setattr(training, "fit", fit)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A converted tiny DAC (random weights) and its model."""
    from flax import nnx

    from jaxlatent.apps.registry import get_model
    from jaxlatent.models.dac import DAC, save_converted

    config = get_model("dac", "tiny")[2].dac
    model = DAC(config, rngs=nnx.Rngs(42))
    path = tmp_path_factory.mktemp("converted") / "tiny_dac"
    save_converted(path, config, model, source="test")
    return path, model


def test_init_from_starts_from_the_converted_weights_bit_exactly(
    converted, initial_state, tmp_path
):
    from flax import nnx

    path, model = converted
    argv = ["train", *map(str, runs.COMMON), "--batch-size", "8", "--steps", "1"]
    argv += ["--out", str(tmp_path / "run")]
    with pytest.raises(_Started) as started:
        cli.main([*argv, "--init-from", str(path)])  # preset inferred: tiny
    state = started.value.args[0]
    want = runs.leaves(nnx.state(model, nnx.Param))
    got = runs.leaves(state.g_params)
    assert [p for p, _ in got] == [p for p, _ in want]
    for (name, a), (_, b) in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["preset"] == "tiny" and run["init_from"] == str(path)


def test_reconstruction_objective_stays_available(initial_state, tmp_path):
    argv = ["train", *map(str, runs.COMMON), "--batch-size", "8", "--steps", "1"]
    argv += ["--out", str(tmp_path / "run")]
    with pytest.raises(_Started) as started:
        cli.main([*argv, "--objective", "reconstruction"])
    assert isinstance(started.value.args[0], training.TrainState)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["objective"] == "reconstruction"


def test_recipe_trains_on_the_recipe_data_pipeline_unless_no_recipe_data(
    initial_state, tmp_path, capsys
):
    """The default data of --objective recipe is `jaxlatent.apps.dac_data`'s pipeline (run.json
    says which); --no-recipe-data gives the plain segments; a run is resumed only with the
    pipeline it started with."""
    from jaxlatent.apps.dac_data import DACDataIterator

    argv = ["train", *map(str, runs.COMMON), "--batch-size", "8", "--steps", "1"]
    for flag, kind, pipeline in [
        ((), DACDataIterator, "dac_recipe"),
        (("--no-recipe-data",), training.ArrayDataIterator, "segments"),
    ]:
        out = tmp_path / pipeline
        with pytest.raises(_Started) as started:
            cli.main([*argv, "--out", str(out), *flag])
        data = started.value.args[1]
        assert isinstance(data, kind)
        batch = next(data)
        assert batch["x"].shape == (8, 2048, 1) and batch["x"].dtype == np.float32
        run = json.loads((out / "run.json").read_text())
        assert run["data_pipeline"] == pipeline
        assert run["data_info"]["files"] == 4
    with pytest.raises(_Started):  # the same pipeline resumes
        cli.main([*argv, "--out", str(tmp_path / "segments"), "--resume", "--no-recipe-data"])
    capsys.readouterr()
    assert cli.main([*argv, "--out", str(tmp_path / "segments"), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "trains on the 'segments' data pipeline, not 'dac_recipe'" in err, err
    assert "--no-recipe-data" in err and len(err.splitlines()) == 1


def _other_rate(tmp_path):
    from flax import nnx

    from jaxlatent.apps.registry import get_model
    from jaxlatent.models.dac import DAC, save_converted

    config = get_model("dac", "tiny")[2].dac
    import dataclasses

    config = dataclasses.replace(config, sample_rate=24000)
    path = tmp_path / "dac24k"
    save_converted(path, config, DAC(config, rngs=nnx.Rngs(0)), source="test")
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("silent_folder", "has no audio as long as one segment"),  # plain segments only
        ("no_recipe_data", "--no-recipe-data needs --objective recipe"),
        ("rate", "is a 24000 Hz model but preset 'tiny' trains at 16000 Hz"),
        ("missing", "--init-from"),
        ("objective", "unknown --objective 'gan' for model 'dac'; choose one of: recipe, recon"),
        ("vae_objective", "unknown --objective 'recipe' for model 'sb_vae'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, message, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--steps", "1", "--out", str(out)]
    model = "dac"
    if case == "silent_folder":
        folder = tmp_path / "short"
        folder.mkdir()
        from jaxlatent.codec.files import write_audio

        write_audio(folder / "a.wav", np.zeros((100, 1), np.float32), 16000)  # < one segment
        args += ["--data", str(folder), "--no-recipe-data"]  # (the recipe's data pads it)
    elif case == "no_recipe_data":
        args += ["--objective", "reconstruction", "--no-recipe-data"]
    elif case == "rate":
        args += ["--init-from", str(_other_rate(tmp_path)), "--preset", "tiny"]
    elif case == "missing":
        args += ["--init-from", str(tmp_path / "nothing.pth")]
    elif case == "objective":
        args += ["--objective", "gan"]
    elif case == "vae_objective":
        model = "sb_vae"
        args += ["--objective", "recipe"]
    argv = ["train", "--model", model, "--batch-size", "8", "--quiet", *args]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_init_from_a_release_pth_fine_tunes_its_converted_weights(initial_state, tmp_path):
    """A checkpoint written by the reference (`dac.DAC.save`) is converted (torch) and used
    exactly; its preset is inferred from its metadata."""
    from flax import nnx

    from converters.dac import convert_checkpoint
    from jaxlatent.apps.registry import get_model
    from tests import reference as ref

    ref.torch().manual_seed(0)
    kwargs = get_model("dac", "tiny")[2].dac.to_kwargs()
    pth = tmp_path / "weights.pth"
    ref.dac().DAC(**kwargs).save(str(pth), package=False)
    argv = ["train", *map(str, runs.COMMON), "--batch-size", "8", "--steps", "1"]
    argv += ["--out", str(tmp_path / "run")]
    with pytest.raises(_Started) as started:
        cli.main([*argv, "--init-from", str(pth)])
    want = runs.leaves(nnx.state(convert_checkpoint(pth)[1], nnx.Param))
    got = runs.leaves(started.value.args[0].g_params)
    assert [p for p, _ in got] == [p for p, _ in want]
    for (name, a), (_, b) in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


# --- --init-discriminator --------------------------------------------------------------------


def _discriminator_file(tmp_path, config, seed=7):
    from flax import nnx

    from converters.dac_discriminator import export_discriminator
    from jaxlatent.models.dac import Discriminator

    model = Discriminator(config, rngs=nnx.Rngs(seed))
    path = tmp_path / "discriminator.pth"
    export_discriminator(model, path)
    return path, model


def test_init_discriminator_starts_from_the_file_bit_exactly(initial_state, tmp_path):
    from flax import nnx

    from jaxlatent.apps.registry_audio import TINY_DISCRIMINATOR

    path, model = _discriminator_file(tmp_path, TINY_DISCRIMINATOR)
    argv = ["train", *map(str, runs.COMMON), "--batch-size", "8", "--steps", "1"]
    argv += ["--out", str(tmp_path / "run"), "--init-discriminator", str(path)]
    with pytest.raises(_Started) as started:
        cli.main(argv)
    want = runs.leaves(nnx.state(model, nnx.Param))
    got = runs.leaves(started.value.args[0].d_params)
    assert [p for p, _ in got] == [p for p, _ in want]
    for (name, a), (_, b) in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_discriminator_file_of_another_config_exits_2(tmp_path, capsys):
    import dataclasses

    from jaxlatent.apps.registry_audio import TINY_DISCRIMINATOR

    other = dataclasses.replace(TINY_DISCRIMINATOR, fft_sizes=(64,))
    path, _ = _discriminator_file(tmp_path, other)
    out = tmp_path / "run"
    argv = ["train", *map(str, runs.COMMON), "--batch-size", "8", "--steps", "1", "--out", str(out)]
    assert cli.main([*argv, "--init-discriminator", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "does not fit this run's discriminator: fft_sizes (64,) vs (128,)" in err, err
    assert not out.exists()
