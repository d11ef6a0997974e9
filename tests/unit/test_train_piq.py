"""`jaxlatent train --model piq`: SpeechBrain's PIQ (a classifier and its class-partitioned VQ
interpreter) trains on the bundled speech with speakers as classes, its codes stay in the
partition of the class it is conditioned on, and audio without classes is refused."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import training
from jaxlatent.apps import audio_data, registry, runs
from jaxlatent.apps.registry_piq import PIQPreset
from jaxlatent.apps.train_data import load_train_data
from jaxlatent.models.piq import PIQInterpreter
from jaxlatent.quantizers.piq_partition import class_of_code
from tests.tolerances import TOLERANCES
from tests.unit.test_train_audio import STEPS, _check_outputs, _train, _write_wav
from tests.unit.test_train_cli import _snapshot

SPEC, _, TINY = registry.get_model("piq", "tiny")
EVAL_KEYS = {"step", "reconstruction_mse", "accuracy", "codes_in_class_partition", "codes_used"}


@pytest.fixture(scope="module")
def single_run(compilation_cache, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("piq") / "single"
    assert _train(out, "piq", "--parallel", "single") == 0
    return out


def test_piq_trains_and_writes_outputs(single_run):
    records = _check_outputs(single_run, "piq", has_samples=False)  # + the loss decreases
    keys = {"classifier_ce", "accuracy", "rec_loss", "vq_loss", "commitment_loss", "codes_used"}
    assert keys <= set(records[0])
    for key in ("rec_loss", "vq_loss", "commitment_loss"):  # each PIQ loss is learnt
        assert np.mean([r[key] for r in records[-3:]]) < np.mean([r[key] for r in records[:3]])
    run = json.loads((single_run / "run.json").read_text())
    assert run["classes"] == ["spk1", "spk2"] and run["preset_settings"]["K"] == TINY.K
    evals = training.read_jsonl(str(single_run / "eval.jsonl"))
    assert [e["step"] for e in evals] == [STEPS] and set(evals[0]) == EVAL_KEYS
    assert evals[0]["codes_in_class_partition"] == 1.0
    assert 0 <= evals[0]["accuracy"] <= 1 and 1 <= evals[0]["codes_used"] <= TINY.K
    assert 0 < evals[0]["reconstruction_mse"] < 10


def _restore(out: pathlib.Path) -> nnx.Module:
    tx = training.make_optimizer("adam", TINY.learning_rate)
    template = runs.initial_state(SPEC, TINY, 2, tx, 0)
    with training.Checkpointer(out / "checkpoints", keep=None) as ckpt:
        state, _ = ckpt.restore(template, STEPS)
    model = state.merge()
    model.eval()
    return model


@nnx.jit
def _codes(model, x, forced):
    """Codes of the model's own conditioning (its predictions), and with every example
    conditioned on class `forced` instead (the PSI's search with the codebook's settings)."""
    out = model(x)
    hcat, _ = model.classifier(x)
    psi = model.psi(hcat, jnp.full(x.shape[:1], forced))
    cb = model.psi.codebook
    settings = dict(
        num_classes=cb.numclasses,
        activate_class_partitioning=cb.activate_class_partitioning,
        shared_keys=cb.shared_keys,
        train=False,
    )
    forced_indices = cb(psi.hcat, jnp.full(x.shape[:1], forced), **settings)
    # the codes the PSI decoded are the rows of these indices
    decoded = jnp.all(out.z_q_x == cb.embedding[...][out.indices])
    return out.predicted, out.indices, forced_indices, decoded


def test_piq_codes_lie_in_the_partition_of_their_class(single_run):
    """From the restored model, on every segment of the data: each example's codes belong to
    the class it is conditioned on (its prediction), and to any class it is forced to."""
    model = _restore(single_run)
    x = load_train_data(SPEC, TINY, None).arrays["x"]
    owner = class_of_code(TINY.K, 2, TINY.shared_keys)
    np.testing.assert_array_equal(np.bincount(owner), [TINY.K // 2] * 2)  # two disjoint halves
    for forced in (0, 1):
        predicted, indices, forced_indices, decoded = jax.device_get(_codes(model, x, forced))
        assert indices.shape == (len(x), 1, 4) and decoded
        np.testing.assert_array_equal(
            owner[indices], np.broadcast_to(predicted[:, None, None], indices.shape)
        )
        assert (owner[forced_indices] == forced).all()
        if (predicted == forced).any():  # the same search as the model's own
            same = predicted == forced
            np.testing.assert_array_equal(forced_indices[same], indices[same])


def _state(out: pathlib.Path, step: int) -> dict:
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore((out / "checkpoints" / str(step) / "state").resolve())


def _assert_close(a, b, tol) -> None:
    flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
    flat_b = jax.tree.leaves(b)
    assert len(flat_a) == len(flat_b) > 0
    for (path, x), y in zip(flat_a, flat_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(y, x, tol.rtol, tol.atol, err_msg=jax.tree_util.keystr(path))
        else:
            np.testing.assert_array_equal(y, x, err_msg=jax.tree_util.keystr(path))


#: Conv biases that feed a train-mode BatchNorm, which subtracts them again with the batch
#: mean: their true gradient is exactly zero, and their Adam moments are rounding noise
#: (measured at most 1.1e-6 of the largest first moment) whose sign depends on the order of
#: the reductions, so they carry nothing to compare.
ZERO_GRADIENT = {
    *(f"classifier/embedding/conv{i}/bias" for i in (1, 2, 3, 4)),
    *(f"classifier/embedding/resblock/conv{i}/bias" for i in (1, 2)),
    *(f"psi/adapter/conv{i}/bias" for i in (1, 2)),
}


def _params(tree) -> dict[str, np.ndarray]:
    """The arrays of a parameter-shaped tree by parameter name (``"psi/adapter/conv1/bias"``)."""
    return {
        "/".join(str(k.key) for k in path if str(k.key) != "value"): np.asarray(x)
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _assert_moments_close(a, b) -> None:
    """Adam's moments of two runs: zero-gradient parameters (`ZERO_GRADIENT`) must be noise-
    sized in both and are not compared; every other moment is compared after dividing both
    runs' moment trees (``mu``, ``nu``) by the largest magnitude of the first run's."""
    tol = TOLERANCES["train_piq_parallel_moments"]
    for moment in ("mu", "nu"):
        x, y = _params(a[0][moment]), _params(b[0][moment])
        assert set(x) == set(y) and ZERO_GRADIENT < set(x)
        scale = max(np.abs(v).max() for v in x.values())
        assert scale > 0
        for name in sorted(x):
            if name in ZERO_GRADIENT:
                if moment == "mu":  # the premise: no signal (nu is its square, ~1e-12)
                    noise = max(np.abs(x[name]).max(), np.abs(y[name]).max()) / scale
                    assert noise < 1e-4, f"{name}: first moment {noise:.1e} of the largest"
                continue
            np.testing.assert_allclose(
                y[name] / scale, x[name] / scale, tol.rtol, tol.atol, err_msg=f"{moment} {name}"
            )


def test_moment_comparison_skips_only_noise():
    """`_assert_moments_close` on made-up moments: noise of either sign on the zero-gradient
    biases passes, a difference in a signal-carrying moment or signal on a zero-gradient bias
    fails."""

    def opt_state(values: dict[str, float]) -> list:
        tree: dict = {}
        for name, v in values.items():
            node = tree
            for part in name.split("/"):
                node = node.setdefault(part, {})
            node["value"] = np.full(3, v, np.float32)
        return [{"count": np.int32(1), "mu": tree, "nu": jax.tree.map(np.square, tree)}]

    single = {**dict.fromkeys(ZERO_GRADIENT, -6e-8), "psi/down/kernel": 0.067}
    shard_map = {**dict.fromkeys(ZERO_GRADIENT, 7e-8), "psi/down/kernel": 0.067 * (1 + 1e-6)}
    _assert_moments_close(opt_state(single), opt_state(shard_map))
    with pytest.raises(AssertionError, match="mu psi/down/kernel"):
        _assert_moments_close(opt_state(single), opt_state({**shard_map, "psi/down/kernel": 0.068}))
    bias = "classifier/embedding/conv1/bias"
    with pytest.raises(AssertionError, match=f"{bias}: first moment"):
        _assert_moments_close(opt_state(single), opt_state({**shard_map, bias: 1e-3}))


def test_piq_shard_map_step_equals_single_device(single_run, tmp_path):
    """One Adam step from the same state on the same global batch: under shard_map (8
    devices, BatchNorm statistics synchronised through ``axis_name``, mean losses) the
    gradients (Adam's moments ``0.1 g`` and ``0.001 g**2``), the BatchNorm running statistics,
    the logged losses and the eval metrics equal one device's. Only quantities that carry
    signal are compared: the conv biases that feed a BatchNorm have an exactly zero gradient
    (`ZERO_GRADIENT`), so their moments are rounding noise, checked to be noise-sized only;
    the moments are compared relative to the largest moment. Parameters are not compared:
    the first Adam step moves each by about ``lr * sign(g)``, and the noise sets that sign for
    the zero-gradient biases (longer runs drift apart for that reason, and through ReLU kinks
    and near-tied codes)."""
    runs = {}
    for mode in ("single", "shard_map"):  # single: compiled programs from the cache
        runs[mode] = tmp_path / mode
        assert _train(runs[mode], "piq", "--parallel", mode, steps=1) == 0
    assert json.loads((runs["shard_map"] / "run.json").read_text())["trainer"] == (
        "ShardMapDataParallel"
    )
    a, b = _state(runs["single"], 1), _state(runs["shard_map"], 1)
    bn = a["model_state"]["classifier"]["embedding"]["bn1"]  # BatchNorm statistics: state
    assert set(bn) == {"mean", "var", "num_batches_tracked"}
    assert set(a["params"]["classifier"]["embedding"]["bn1"]) == {"scale", "bias"}
    assert int(bn["num_batches_tracked"]["value"]) == 1
    tol = TOLERANCES["train_piq_parallel"]
    _assert_close(a["model_state"], b["model_state"], tol)
    _assert_moments_close(a["opt_state"], b["opt_state"])
    np.testing.assert_array_equal(a["opt_state"][0]["count"], b["opt_state"][0]["count"])
    assert (
        np.abs(np.asarray(a["opt_state"][0]["mu"]["psi"]["codebook"]["embedding"]["value"])).max()
        > 0
    )
    for name in ("metrics.jsonl", "eval.jsonl"):
        rec_a, rec_b = (training.read_jsonl(str(runs[m] / name)) for m in runs)
        # codes_used of a train step is a per-device count (averaged over the devices)
        skip = {"time", "examples_per_sec"} | ({"codes_used"} if name[0] == "m" else set())
        keys = set(rec_a[0]) - skip
        assert len(rec_a) == len(rec_b) == 1 and set(rec_b[0]) == set(rec_a[0])
        _assert_close({k: rec_a[0][k] for k in keys}, {k: rec_b[0][k] for k in keys}, tol)


# --- data ---------------------------------------------------------------------------------


def test_bundled_speech_is_labelled_by_speaker():
    data = load_train_data(SPEC, TINY, None)
    assert data.class_names == ("spk1", "spk2") and data.source == "speech"
    labels = data.arrays["labels"]
    assert labels.shape == (data.examples, 2) and labels.dtype == np.float32
    np.testing.assert_array_equal(labels.sum(1), 1.0)
    audio = audio_data.load_audio("speech", TINY)
    speakers = [audio.names[c].split("_")[2] for c in audio.clip]  # speech_16k_spk1_snt1.wav
    assert [data.class_names[i] for i in labels.argmax(1)] == speakers
    assert set(speakers) == {"spk1", "spk2"} and (audio.length == 1).all()
    # models without classes get the same segments and no labels
    plain = load_train_data(
        registry.MODELS["sb_vae"], registry.MODELS["sb_vae"].presets["tiny"], None
    )
    assert set(plain.arrays) == {"x", "length"} and plain.class_names == ()


def test_folder_classes_are_first_level_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    noise = lambda n: (0.1 * rng.standard_normal((n, 1))).astype(np.float32)  # noqa: E731
    # one whole segment is 32 frames of 128 samples (+ the 256-sample window): 0.3 s
    _write_wav(tmp_path / "b_dog" / "x.wav", noise(4800), 16000)
    _write_wav(tmp_path / "a_cat" / "one.wav", noise(9600), 16000)  # 2 segments
    _write_wav(tmp_path / "a_cat" / "deeper" / "two.flac", noise(4800), 16000)
    data = load_train_data(SPEC, TINY, str(tmp_path))
    assert data.class_names == ("a_cat", "b_dog")
    np.testing.assert_array_equal(data.arrays["labels"].argmax(1), [0, 0, 0, 1])


@pytest.fixture(scope="module")
def bad_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    long = np.full((4800, 1), 0.1, np.float32)
    _write_wav(root / "top" / "a.wav", long, 16000)
    _write_wav(root / "top" / "cls" / "b.wav", long, 16000)
    _write_wav(root / "one" / "cls" / "a.wav", long, 16000)
    _write_wav(root / "one" / "cls" / "b.wav", long, 16000)
    _write_wav(root / "short" / "x" / "a.wav", long, 16000)
    _write_wav(root / "short" / "y" / "a.wav", long[:2000], 16000)
    return root


BAD = {
    "files at the top": ("top", "has 1 audio file(s) directly in it (a.wav)"),
    "one class": ("one", "has 1 class (cls); at least 2 are needed"),
    "class shorter than a segment": ("short", "class(es) y of data"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_audio_without_classes_is_refused(case, bad_folders, tmp_path, capsys):
    folder, message = BAD[case]
    before = _snapshot(bad_folders)
    out = tmp_path / "out"
    assert _train(out, "piq", "--data", bad_folders / folder, "--parallel", "single") == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxlatent train: error: model 'piq' is conditioned on classes but ")
    assert message in err and err.count("\n") == 1
    assert not out.exists() and _snapshot(bad_folders) == before


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match=r"segment = 48: the PSI decoder gives 33"):
        PIQPreset(segment=48)
    with pytest.raises(
        ValueError, match=r"bins \(n_fft // 2 \+ 1\) = 81: the PSI decoder gives 65"
    ):
        PIQPreset(n_fft=160)  # 81 bins
    with pytest.raises(ValueError, match="gives codes to 4 of the 5 classes"):
        PIQInterpreter(32, 4, 5, rngs=nnx.Rngs(0))
