"""The README's main job, `jaxlatent demo`, end to end through `jaxlatent.cli.main`, shortened.

The demo runs once per module with the small knobs of `DemoConfig`: the released 16 kHz
geometry (strides, 12 codebooks of 1024) with narrow layers, the first 0.55 s of the bundled
clip and a few VQ-VAE steps on the ``micro`` preset. Everything else is the real main job: the
reference package writes the release-format checkpoint, the production converter converts it,
the CLI's encode/decode code writes the ``.dac`` and WAV files, the parity report runs the
official ``dac.DAC``, and the VQ-VAE trains through `jaxlatent train`'s code. Every artefact
is then checked, the ``.dac`` file also with the official package.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jaxlatent import cli, training
from jaxlatent.apps import demo
from jaxlatent.apps.demo import DemoConfig
from jaxlatent.codec import DACFile
from jaxlatent.models.dac import DACConfig
from tests import reference
from tests.unit.test_train_cli import compilation_cache  # noqa: F401 (autouse fixture)

sf = reference.require("soundfile")

PNG = b"\x89PNG\r\n\x1a\n"
STEPS = 3
# 8800 samples, not a whole number of 320-sample frames: on a whole number the official
# decompress crashes (see tests/parity/test_dac_compress.py), so it could not be compared.
SECONDS = 0.55
SMALL = dataclasses.replace(DACConfig.dac_16khz(), encoder_dim=2, decoder_dim=16, latent_dim=16)
CLIP = "speech_16k_spk1_snt1"


def _small_config(**kwargs) -> demo.DemoConfig:
    """`DemoConfig` with the small knobs (the CLI sets the other fields)."""
    small = {"seconds": SECONDS, "codec": SMALL, "vqvae_preset": "micro", "parallel": "single"}
    return DemoConfig(**{**small, **kwargs})


def _run_cli(argv, capsys):
    """`cli.main(argv)` with the demo's small knobs; returns (exit code, stdout, stderr)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo, "DemoConfig", _small_config)
        code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """(output folder, stdout) of one shortened `jaxlatent demo` run."""
    reference.dac()  # fails (or skips: JAXLATENT_SKIP_PARITY) without the reference
    out = tmp_path_factory.mktemp("demo") / "out"
    buf = io.StringIO()  # capsys is function-scoped: capture by hand
    with contextlib.redirect_stdout(buf), pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo, "DemoConfig", _small_config)
        code = cli.main(["demo", "--out", str(out), "--steps", str(STEPS), "--quiet"])
    assert code == 0
    return out, buf.getvalue()


def test_demo_writes_every_artefact(demo_run):
    out, stdout = demo_run
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "weights_16khz_random.pth",
            "model",
            f"{CLIP}.wav",
            f"{CLIP}.dac",
            f"{CLIP}_decoded.wav",
            "parity.txt",
            "parity.json",
            "spectrograms.png",
            "vqvae",
            "summary.json",
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_weights"] is True
    assert [s["stage"].split(" (")[0] for s in summary["stages"]] == [
        "release-format checkpoint",
        "convert",
        "encode",
        "decode",
        "parity",
        "spectrograms",
        "VQ-VAE training",
    ]
    assert all(s["wall_s"] > 0 and s["cpu_s"] >= 0 for s in summary["stages"])
    for name, entry in summary["files"].items():
        assert (out / name.rstrip("/")).exists() and entry["bytes"] > 0, name
    # printed: the random-weights warning, the parity report, the summary table
    assert "random weights" in stdout and "not a meaningful reconstruction" in stdout
    assert "all codes equal: 100.000 %" in stdout
    assert "jaxlatent demo: done in" in stdout and "s CPU" in stdout
    assert f"{CLIP}_decoded.wav" in stdout


def test_checkpoint_and_converted_model(demo_run):
    from converters.dac import read_checkpoint
    from jaxlatent.models.dac import load_converted

    out, _ = demo_run
    _, config = read_checkpoint(out / "weights_16khz_random.pth")  # release layout + kwargs
    # The reference's save records quantizer_dropout from dac.DAC's signature default (False):
    # the model keeps no attribute of that name. It only matters for training.
    assert config == dataclasses.replace(SMALL, quantizer_dropout=0.0)
    assert load_converted(out / "model").config == config
    meta = json.loads((out / "model" / "config.json").read_text())
    assert meta["source"] == str(out / "weights_16khz_random.pth")


def test_audio_files(demo_run):
    out, _ = demo_run
    original = sf.read(pathlib.Path(demo.__file__).parent.parent / "data" / f"{CLIP}.wav")[0]
    wav, rate = sf.read(out / f"{CLIP}.wav")
    np.testing.assert_array_equal(wav, original[: int(SECONDS * 16000)])  # bit-exact copy
    decoded = sf.info(out / f"{CLIP}_decoded.wav")
    assert (decoded.samplerate, decoded.channels, decoded.frames) == (rate, 1, len(wav))
    assert (out / "spectrograms.png").read_bytes()[:8] == PNG

    f = DACFile.load(out / f"{CLIP}.dac")
    frames = -(-len(wav) // SMALL.hop_length)
    assert f.codes.shape == (1, SMALL.n_codebooks, frames) and f.codes.dtype == np.uint16
    assert (f.sample_rate, f.original_length, f.channels, f.padding) == (16000, len(wav), 1, True)


def test_parity_report_shows_equal_codes(demo_run):
    out, _ = demo_run
    report = json.loads((out / "parity.json").read_text())
    names = [s["stage"] for s in report["stages"]]
    assert names == ["encoder", *(f"quantizer {i}" for i in range(12)), "z", "decoder"]
    assert report["code_agreement"] == 1.0
    assert all(s["code_agreement"] == 1.0 for s in report["stages"][1:13])
    assert all(np.isfinite(s["max_abs"]) for s in report["stages"])
    assert report["seconds"] == pytest.approx(-(-8800 // 320) * 320 / 16000)  # padded to hops
    assert "all codes equal: 100.000 %" in (out / "parity.txt").read_text()


@pytest.mark.parity
def test_official_package_reads_and_decodes_the_dac_file(demo_run, tmp_path):
    """The official `dac.DACFile.load` reads the demo's `.dac` file (same codes and metadata),
    and the official model loaded from the demo's checkpoint (`dac.DAC.load`) decodes it to
    the demo's decoded WAV. Both sides are compared as 16-bit PCM: their float outputs agree
    within `dacio_decoded_audio` (atol 1e-5, under one 16-bit step of 3.05e-5), so a sample
    can round to a neighbouring integer at most."""
    from tests.tolerances import TOLERANCES

    assert TOLERANCES["dacio_decoded_audio"].atol < 1 / 32768
    dac = reference.dac()
    out, _ = demo_run
    ours = DACFile.load(out / f"{CLIP}.dac")
    official = dac.DACFile.load(out / f"{CLIP}.dac")
    np.testing.assert_array_equal(reference.to_numpy(official.codes), ours.codes)
    for name in ("chunk_length", "original_length", "channels", "sample_rate", "padding"):
        assert getattr(official, name) == getattr(ours, name), name

    tmodel = dac.DAC.load(str(out / "weights_16khz_random.pth")).eval()
    signal = tmodel.decompress(official)
    audio = reference.to_numpy(signal.audio_data)[0].T  # [time, channels]
    sf.write(tmp_path / "official.wav", audio, signal.sample_rate, subtype="PCM_16")
    theirs = sf.read(tmp_path / "official.wav", dtype="int16")[0]
    mine = sf.read(out / f"{CLIP}_decoded.wav", dtype="int16")[0]
    assert theirs.shape == mine.shape
    assert np.abs(theirs.astype(np.int32) - mine).max() <= 1


def test_vqvae_run(demo_run):
    out, stdout = demo_run
    run = out / "vqvae"
    assert json.loads((run / "run.json").read_text())["model"] == "vqvae"
    assert training.Checkpointer(run / "checkpoints").all_steps()[-1] == STEPS
    records = training.read_jsonl(str(run / "metrics.jsonl"))
    assert records[-1]["step"] == STEPS and np.isfinite(records[-1]["loss"])
    pictures = sorted(p.name for p in (run / "pictures").iterdir())
    assert f"step_{STEPS:06d}_reconstructions.png" in pictures
    assert all((run / "pictures" / p).read_bytes()[:8] == PNG for p in pictures)
    assert "vqvae (micro) on digits" in stdout


def _snapshot(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def test_refuses_a_previous_demo_without_overwrite(demo_run, capsys):
    out, _ = demo_run
    before = _snapshot(out)
    code, stdout, err = _run_cli(["demo", "--out", str(out), "--quiet"], capsys)
    assert code == 2 and stdout == ""
    assert "exists and is not empty; pass --overwrite" in err and len(err.splitlines()) == 1
    assert _snapshot(out) == before


def test_overwrite_with_a_given_checkpoint(demo_run, tmp_path, capsys):
    """`--overwrite` replaces a previous demo; `--checkpoint` skips the random checkpoint and
    converts the given one (here the first run's, standing in for the released weights)."""
    first, _ = demo_run
    out = tmp_path / "out"
    shutil.copytree(first, out)
    ckpt = first / "weights_16khz_random.pth"
    before = _snapshot(out)
    argv = ["demo", "--out", str(out), "--steps", "2", "--checkpoint", str(ckpt), "--overwrite"]
    code, stdout, _ = _run_cli([*argv, "--quiet"], capsys)
    assert code == 0
    assert (
        "not a meaningful reconstruction" not in stdout and "all codes equal: 100.000 %" in stdout
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_weights"] is False and summary["checkpoint"] == str(ckpt)
    assert "weights_16khz_random.pth" not in summary["files"]
    assert summary["stages"][0]["stage"].startswith("convert")
    after = _snapshot(out)
    for name in ("model/config.json", f"{CLIP}.dac", f"{CLIP}_decoded.wav", "spectrograms.png"):
        assert after[name][1] > before[name][1], name  # rewritten
    assert after["weights_16khz_random.pth"] == before["weights_16khz_random.pth"]  # untouched
    assert training.Checkpointer(out / "vqvae" / "checkpoints").all_steps()[-1] == 2
    records = training.read_jsonl(str(out / "vqvae" / "metrics.jsonl"))
    assert [r["step"] for r in records][-1] == 2


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing checkpoint", "checkpoint not found"),
        ("checkpoint folder", "--checkpoint must be a DAC .pth file"),
        ("corrupt checkpoint", "weights_16khz.pth"),
        ("steps", "--steps must be positive"),
        ("out is a file", "exists and is not a folder"),
        ("no dac", "needs the torch extra and descript-audio-codec; run .ci/setup"),
    ],
)
def test_bad_input_exits_2_before_writing(case, message, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    argv = ["demo", "--out", str(out), "--quiet"]
    ckpt = tmp_path / "weights_16khz.pth"
    if case == "missing checkpoint":
        argv += ["--checkpoint", str(ckpt)]
    elif case == "checkpoint folder":
        ckpt.mkdir()
        argv += ["--checkpoint", str(ckpt)]
    elif case == "corrupt checkpoint":
        ckpt.write_bytes(b"not a torch checkpoint")
        argv += ["--checkpoint", str(ckpt)]
    elif case == "steps":
        argv += ["--steps", "0"]
    elif case == "out is a file":
        out.write_text("not a folder")
    else:
        monkeypatch.setitem(sys.modules, "dac", None)  # `import dac` raises ImportError
    code, stdout, err = _run_cli(argv, capsys)
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    # only a corrupt checkpoint gets as far as the conversion (in memory, before any write)
    assert stdout == ("[1] convert (jaxlatent convert dac) ...\n" if "corrupt" in case else "")
    inputs = {"out is a file": ["out"], "checkpoint folder": [ckpt.name]}
    inputs["corrupt checkpoint"] = [ckpt.name]
    assert sorted(os.listdir(tmp_path)) == inputs.get(case, [])  # nothing else written


def test_default_settings_are_the_main_job():
    """The CLI's defaults: the 16 kHz release architecture, the tiny VQ-VAE, 300 steps."""
    cfg = DemoConfig()
    assert cfg.codec == DACConfig.dac_16khz() and cfg.seconds is None
    assert (cfg.out, cfg.steps, cfg.vqvae_preset, cfg.checkpoint) == ("out/demo", 300, "tiny", None)
    args = cli.build_parser().parse_args(["demo"])
    assert (args.out, args.steps, args.checkpoint, args.overwrite) == ("out/demo", 300, None, False)


def test_importing_the_demo_does_not_import_torch():
    code = (
        "import sys, jaxlatent, jaxlatent.cli, jaxlatent.apps.demo, jaxlatent.apps.codec_demo, "
        "jaxlatent.apps.codec_files; jaxlatent.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'dac', 'converters') if m in sys.modules))"
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
