"""The README's main job, `jaxlatent demo`, end to end through `jaxlatent.cli.main`, shortened.

The demo runs once per module with the small knobs of `DemoConfig`: the released 16 kHz
geometry (strides, 12 codebooks of 1024) with narrow layers, the first 0.55 s of the bundled
clips, 0.2 s streamed and a few VQ-VAE steps on the ``micro`` preset. Everything else is the
real main job: the reference package writes the release-format checkpoint, the production
converter converts it, the folder commands' code (``encode --exact``, ``decode``) codes the
bundled clips as one folder, the exact codes are checked against whole-signal coding, one clip
is streamed push by push, the parity report runs the official ``dac.DAC``, and the VQ-VAE
trains through `jaxlatent train`'s code. Every artefact is then checked, the ``.dac`` file also
with the official package.
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
from jaxlatent.apps import demo, demo_engine
from jaxlatent.apps.demo import DemoConfig
from jaxlatent.codec import DACFile
from jaxlatent.models.dac import DACConfig
from tests import reference

sf = reference.require("soundfile")

PNG = b"\x89PNG\r\n\x1a\n"
STEPS = 3
# 8800 samples, not a whole number of 320-sample frames: on a whole number the official
# decompress crashes (see tests/parity/test_dac_compress.py), so it could not be compared.
SECONDS = 0.55
SMALL = dataclasses.replace(DACConfig.dac_16khz(), encoder_dim=2, decoder_dim=16, latent_dim=16)
CLIP = "speech_16k_spk1_snt1"
CLIPS = sorted(p.stem for p in demo_engine.bundled_clips())
STREAM_SECONDS = 0.2


def _small_config(**kwargs) -> demo.DemoConfig:
    """`DemoConfig` with the small knobs (the CLI sets the other fields)."""
    small = {"seconds": SECONDS, "codec": SMALL, "vqvae_preset": "micro", "parallel": "single"}
    small["stream_seconds"] = STREAM_SECONDS
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
            "clips",
            "codes",
            "decoded",
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
        "encode folder",
        "check exact codes",
        "decode folder",
        "streaming",
        "parity",
        "spectrograms",
        "VQ-VAE training",
    ]
    assert all(s["wall_s"] > 0 and s["cpu_s"] >= 0 for s in summary["stages"])
    for name, entry in summary["files"].items():
        assert (out / name.rstrip("/")).exists() and entry["bytes"] > 0, name
    # printed: the random-weights warning, the engine's numbers, the parity report, the table
    assert "random weights" in stdout and "not a meaningful reconstruction" in stdout
    assert f"folder coding: {len(CLIPS)} clips" in stdout
    assert "exact codes = whole-signal DAC.encode codes" in stdout
    assert f"streaming {CLIP}.wav" in stdout and "codes = exact codes" in stdout
    assert "all codes equal: 100.000 %" in stdout
    assert "jaxlatent demo: done in" in stdout and "s CPU" in stdout
    assert "decoded/" in stdout


def test_folder_coding_summary(demo_run):
    """Every bundled clip coded as one folder (exact codes, checked) and decoded as one."""
    out, _ = demo_run
    coding = json.loads((out / "summary.json").read_text())["coding"]
    assert coding["clips"] == [f"{c}.wav" for c in CLIPS]
    assert coding["exact_agreement"] == {f"{c}.wav": 1.0 for c in CLIPS}
    frames = -(-int(SECONDS * 16000) // SMALL.hop_length)
    assert coding["exact_codes_compared"] == len(CLIPS) * SMALL.n_codebooks * frames
    assert coding["audio_seconds"] == pytest.approx(len(CLIPS) * SECONDS)
    assert coding["encode_audio_seconds_per_second"] > 0
    assert coding["decode_audio_seconds_per_second"] > 0
    for folder, command in (("codes", "encode"), ("decoded", "decode")):
        run = json.loads((out / folder / "summary.json").read_text())
        assert run["command"] == command and run["skipped"] == []
        assert sorted(pathlib.Path(f).stem for f in run["files"]) == CLIPS
    assert json.loads((out / "codes" / "summary.json").read_text())["exact"] is True


def test_streaming_report(demo_run):
    out, _ = demo_run
    stream = json.loads((out / "summary.json").read_text())["streaming"]
    n = int(STREAM_SECONDS * 16000)
    assert stream["clip"] == f"{CLIP}.wav" and stream["seconds"] == n / 16000
    assert stream["pushes"] == -(-n // 320) and stream["push_ms"] == 20.0
    # frames final before a flush: those whose receptive field (2493 samples) has arrived
    assert stream["frames"] == (n - 2493) // 320
    assert 0 < stream["latency_median_ms"] <= stream["latency_p95_ms"]
    assert stream["realtime_factor"] > 0 and stream["warmup_s"] > 0
    assert stream["encoder_lookahead_ms"] == pytest.approx(1000 * 2493 / 16000)
    assert stream["decoder_lookahead_ms"] == pytest.approx(200.0)


def test_differing_codes_stop_the_demo(demo_run, tmp_path, monkeypatch):
    """The exact check and the stream raise (naming the clip) when a code differs."""
    from jaxlatent.models.dac import load_converted

    out, _ = demo_run
    model = load_converted(out / "model")
    wav, dac_path = out / "clips" / f"{CLIP}.wav", out / "codes" / f"{CLIP}.dac"
    whole = demo_engine.whole_signal_codes

    def one_off(model, path):
        codes = np.array(whole(model, path))
        codes[0, 0, 0] = (codes[0, 0, 0] + 1) % SMALL.codebook_size
        return codes

    monkeypatch.setattr(demo_engine, "whole_signal_codes", one_off)
    with pytest.raises(RuntimeError, match=rf"differ .*{CLIP}.wav: 99\.\d+%"):
        demo_engine.check_exact(model, [(wav, dac_path)])
    f = DACFile.load(dac_path)
    codes = np.array(f.codes)
    codes[0, 0, 0] = (codes[0, 0, 0] + 1) % SMALL.codebook_size
    dataclasses.replace(f, codes=codes).save(tmp_path / "other.dac")
    with pytest.raises(RuntimeError, match=r"streamed codes .* differ from the exact codes"):
        demo_engine.stream_clip(model, wav, tmp_path / "other.dac", seconds=STREAM_SECONDS)


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
    data = pathlib.Path(demo.__file__).parent.parent / "data"
    for clip in CLIPS:
        original = sf.read(data / f"{clip}.wav")[0]
        wav, rate = sf.read(out / "clips" / f"{clip}.wav")
        np.testing.assert_array_equal(wav, original[: int(SECONDS * 16000)])  # bit-exact copy
        decoded = sf.info(out / "decoded" / f"{clip}.wav")
        assert (decoded.samplerate, decoded.channels, decoded.frames) == (rate, 1, len(wav))

        f = DACFile.load(out / "codes" / f"{clip}.dac")  # exact: one unchunked file
        frames = -(-len(wav) // SMALL.hop_length)
        assert f.codes.shape == (1, SMALL.n_codebooks, frames) and f.codes.dtype == np.uint16
        assert (f.sample_rate, f.original_length, f.channels) == (16000, len(wav), 1)
        assert (f.padding, f.chunk_length) == (True, frames)
    assert (out / "spectrograms.png").read_bytes()[:8] == PNG


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
    ours = DACFile.load(out / "codes" / f"{CLIP}.dac")
    official = dac.DACFile.load(out / "codes" / f"{CLIP}.dac")
    np.testing.assert_array_equal(reference.to_numpy(official.codes), ours.codes)
    for name in ("chunk_length", "original_length", "channels", "sample_rate", "padding"):
        assert getattr(official, name) == getattr(ours, name), name

    tmodel = dac.DAC.load(str(out / "weights_16khz_random.pth")).eval()
    signal = tmodel.decompress(official)
    audio = reference.to_numpy(signal.audio_data)[0].T  # [time, channels]
    sf.write(tmp_path / "official.wav", audio, signal.sample_rate, subtype="PCM_16")
    theirs = sf.read(tmp_path / "official.wav", dtype="int16")[0]
    mine = sf.read(out / "decoded" / f"{CLIP}.wav", dtype="int16")[0]
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
    rewritten = ["model/config.json", f"codes/{CLIP}.dac", f"decoded/{CLIP}.wav"]
    for name in [*rewritten, "spectrograms.png"]:
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
    """The CLI's defaults: the 16 kHz release architecture, the tiny VQ-VAE, 300 steps, every
    bundled clip cut to one length (one compiled whole-signal encoder serves them all)."""
    cfg = DemoConfig()
    assert cfg.codec == DACConfig.dac_16khz()
    durations = [sf.info(str(p)).duration for p in demo_engine.bundled_clips()]
    assert 1.5 < cfg.seconds < min(durations), durations
    assert (cfg.out, cfg.steps, cfg.vqvae_preset, cfg.checkpoint) == ("out/demo", 300, "tiny", None)
    args = cli.build_parser().parse_args(["demo"])
    assert (args.out, args.steps, args.checkpoint, args.overwrite) == ("out/demo", 300, None, False)


def test_importing_the_demo_does_not_import_torch():
    code = (
        "import sys, jaxlatent, jaxlatent.cli, jaxlatent.apps.demo, jaxlatent.apps.codec_demo, "
        "jaxlatent.apps.demo_engine, "
        "jaxlatent.apps.dac_models, jaxlatent.apps.batch_coding; jaxlatent.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'dac', 'converters') if m in sys.modules))"
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
