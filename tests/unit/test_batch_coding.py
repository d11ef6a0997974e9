"""`jaxlatent encode` on folders: batched codes equal `compress`'s on 1 and 8 devices and in 2
processes; resume, overwrite, skipped inputs, summary.json (tiny model, short clips)."""

from __future__ import annotations

import io
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxlatent import cli
from jaxlatent.codec import DACFile, compress, compress_exact, decompress
from jaxlatent.codec.batch import BatchDecoder, BatchEncoder
from jaxlatent.codec.compression import prepare
from tests import reference
from tests.unit.test_dac_compress import TINY, tiny_dac

sf = reference.require("soundfile")

ROOT = pathlib.Path(__file__).resolve().parents[2]
WIN = 0.1  # seconds: 800-sample windows at the tiny model's 8 kHz

# (name, frames, rate, channels): chunked and unchunked, three rates, stereo; the two short
# clips have the same padded length (700 samples at 8 kHz), so they share a batch.
CLIPS = [
    ("a.wav", 2400, 8000, 1),
    ("sub/b.flac", 4410, 11025, 2),
    ("c.wav", 1400, 16000, 1),
    ("sub/deeper/d.wav", 700, 8000, 1),
    ("e.wav", 1900, 8000, 1),
]


@pytest.fixture(scope="module")
def model():
    return tiny_dac()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model):
    from jaxlatent.models.dac import save_converted

    path = tmp_path_factory.mktemp("model") / "tiny"
    save_converted(path, TINY, model)
    return str(path)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The input folder and ``{relative name: (audio, rate)}``."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    audio = {}
    for name, frames, rate, channels in CLIPS:
        x = (rng.standard_normal((frames, channels)) * 0.1).astype(np.float32)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, x, rate, subtype="FLOAT" if name.endswith(".wav") else "PCM_24")
        audio[name] = sf.read(root / name, dtype="float32", always_2d=True)
    return root, audio


@pytest.fixture(scope="module")
def alone(model, clips):
    """Each clip's file from `compress`, coded alone (the official algorithm)."""
    return {
        name: compress(model, x, rate, win_duration=WIN).to_bytes()
        for name, (x, rate) in clips[1].items()
    }


@pytest.mark.parametrize(("batch_size", "n_devices"), [(8, 8), (3, 1)], ids=["8dev", "odd"])
def test_batched_codes_equal_compress_alone(model, clips, alone, batch_size, n_devices):
    encoder = BatchEncoder(model, batch_size, devices=jax.local_devices()[:n_devices])
    inputs = (
        (name, prepare(model, x, rate, win_duration=WIN)) for name, (x, rate) in clips[1].items()
    )
    got = {name: f.to_bytes() for name, f in encoder.encode(inputs)}
    assert got.keys() == alone.keys()
    for name in alone:
        assert got[name] == alone[name], name
    rows = 3 + 2 * 6 + 1 + 1 + 3  # windows x channels of CLIPS
    assert encoder.batches < rows  # windows of several files shared calls


def test_batched_decoding_equals_decompress(model, alone):
    files = {name: DACFile.from_bytes(data) for name, data in alone.items()}
    decoder = BatchDecoder(model, 8)
    got = dict(decoder.decode(files.items()))
    assert got.keys() == files.keys()
    for name in ("sub/b.flac", "c.wav"):  # chunked stereo, unchunked (fewer compilations)
        np.testing.assert_array_equal(got[name], decompress(model, files[name]), err_msg=name)
    assert decoder.batches < 3 + 2 * 6 + 1 + 1 + 3


#: Exact windows of 26 frames (260 samples at 8 kHz); extra inputs shorter than one window:
#: 23 frames (the whole window), 15 and 12 frames (a 16-frame window of their own, shared).
EXACT_WIN = 0.032
SHORT = {"short23": 230, "short15": 150, "short12": 113}


@pytest.fixture(scope="module")
def exact_inputs(clips):
    """``{name: (audio, rate)}``: CLIPS (70 to 320 frames, stereo, three rates) and SHORT."""
    rng = np.random.default_rng(1)
    short = {
        n: ((rng.standard_normal((k, 1)) * 0.1).astype(np.float32), 8000) for n, k in SHORT.items()
    }
    return {**clips[1], **short}


@pytest.fixture(scope="module")
def exact_alone(model, exact_inputs):
    """Each input's `compress_exact` file, coded alone."""
    return {
        name: compress_exact(model, x, rate, win_duration=EXACT_WIN).to_bytes()
        for name, (x, rate) in exact_inputs.items()
    }


@pytest.mark.parametrize(("batch_size", "n_devices"), [(8, 8), (3, 1)], ids=["8dev", "odd"])
def test_batched_exact_codes_equal_alone_and_whole_signal(
    model, exact_inputs, exact_alone, batch_size, n_devices, monkeypatch
):
    """Exact windows of many inputs (mixed lengths, shorter than a window included) in shared
    batches: every file's bytes equal `compress_exact` alone and the engine with that input
    alone (whose codes are the whole signal's: the next test); one compilation per window
    size."""
    from jaxlatent.models.dac import windowed
    from tests.unit.test_dac_model import _Traced

    traced = _Traced(windowed.encode_window)
    monkeypatch.setattr(windowed, "encode_window", traced)
    devices = jax.local_devices()[:n_devices]
    encoder = BatchEncoder(model, batch_size, devices=devices)

    def prepared(names):
        for name in names:
            x, rate = exact_inputs[name]
            yield name, prepare(model, x, rate, win_duration=None)

    got = {
        name: f.to_bytes() for name, f in encoder.encode_exact(prepared(exact_inputs), EXACT_WIN)
    }
    assert got.keys() == exact_alone.keys()
    for name, data in exact_alone.items():
        assert got[name] == data, name
    # rows (windows x channels): 10 + 2 * 13 + 3 + 3 + 8 + 1 of 26 frames, 2 of 16 frames
    # (short15, short12), in full batches but the last of each window size
    assert encoder.batches == -(-51 // batch_size) + -(-2 // batch_size)
    # one compilation per window size (26 and 16 frames): batches of 8 rows on 8 devices;
    # on one, 17 full batches of 3 rows of 26 frames and one of 2 rows of 16 frames
    assert traced.count == 2
    for name in ("short15", "sub/b.flac"):  # the engine with one input: the same bytes
        alone = BatchEncoder(model, batch_size, devices=devices)
        ((_, f),) = alone.encode_exact(prepared([name]), EXACT_WIN)
        assert f.to_bytes() == exact_alone[name], name


def test_exact_alone_is_whole_signal(model, exact_inputs, exact_alone):
    """The reference of the batched exact codes: `DAC.encode` of each whole signal (many
    windows; stereo resampled; one whole window; a 16-frame window; one compilation each)."""
    from tests.unit.test_dac_exact import _normalised, assert_codes_exact

    for name in ("a.wav", "sub/b.flac", "short23", "short12"):
        x, rate = exact_inputs[name]
        data = exact_alone[name]
        whole = compress(model, x, rate, win_duration=None)  # DAC.encode, one pass
        f = DACFile.from_bytes(data)
        assert f.padding and f.chunk_length == f.codes.shape[-1] == whole.codes.shape[-1]
        assert_codes_exact(model, _normalised(model, x, rate), f.codes, whole.codes)


def test_encode_exact_bad_input(model):
    encoder = BatchEncoder(model, 1, devices=jax.local_devices()[:1])
    chunked = prepare(model, np.zeros(2400, np.float32), 8000, win_duration=WIN)
    with pytest.raises(ValueError, match="prepared unchunked"):
        list(encoder.encode_exact([("a", chunked)], EXACT_WIN))
    with pytest.raises(ValueError, match="win_duration"):
        encoder.encode_exact([], 0.0)  # at the call, before any input is taken
    assert encoder.batches == 0


def test_folder_exact_equals_compress_exact(tmp_path, model_dir, clips, exact_alone):
    from jaxlatent.apps.batch_coding import encode_folder

    out = tmp_path / "exact"
    summary = encode_folder(
        model_dir, [clips[0]], out, batch_size=8, win_duration=EXACT_WIN, exact=True, progress=False
    )
    assert len(summary.coded) == len(CLIPS)
    for name in clips[1]:
        assert (out / pathlib.Path(name).with_suffix(".dac")).read_bytes() == exact_alone[name]
    assert json.loads((out / "summary.json").read_text())["exact"] is True


def _encode(argv, capsys, command="encode"):
    code = cli.main([command, *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _outputs(root):
    return sorted(str(p.relative_to(root)) for p in pathlib.Path(root).rglob("*") if p.is_file())


def _mtimes(root):
    return {p: os.stat(root / p).st_mtime_ns for p in _outputs(root)}


def test_folder_resume_overwrite_skip_and_summary(tmp_path, model_dir, clips, alone, capsys):
    folder, _ = clips
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.wav").write_bytes(b"RIFF not really audio")
    out = tmp_path / "out"
    args = [folder, bad, "--model", model_dir, "--output", out, "--win-duration", WIN]
    args += ["--batch-size", 8]

    code, stdout, stderr = _encode(args, capsys)  # not --quiet: no bar off a terminal
    assert code == 1, stdout + stderr
    assert "skipped" in stderr and "corrupt.wav" in stderr and "not a readable" in stderr
    assert "it/s" not in stderr and "file/s" not in stderr
    expected = sorted(str(pathlib.Path(n).with_suffix(".dac")) for n in alone)
    assert _outputs(out) == sorted([*expected, "summary.json"])
    for name, data in alone.items():  # the tree is mirrored; codes as `compress` alone
        assert (out / pathlib.Path(name).with_suffix(".dac")).read_bytes() == data
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["files"]) == len(CLIPS) and summary["already_done"] == 0
    assert [s["file"] for s in summary["skipped"]] == [str(bad / "corrupt.wav")]
    assert "not a readable audio file" in summary["skipped"][0]["reason"]
    seconds = sum(frames / rate for _, frames, rate, _ in CLIPS)
    assert summary["audio_hours"] == pytest.approx(seconds / 3600)
    assert summary["audio_seconds_per_second"] > 0 and summary["devices"] == 8

    # rerun without the bad input: nothing recoded; a removed output is coded again
    (bad / "corrupt.wav").unlink()
    before = _mtimes(out)
    (out / "c.dac").unlink()
    code, stdout, _ = _encode([*args, "--quiet"], capsys)
    assert code == 0 and "encoded 1 file(s) (4 already done)" in stdout
    after = _mtimes(out)
    assert {p: t for p, t in after.items() if p not in ("c.dac", "summary.json")} == {
        p: t for p, t in before.items() if p not in ("c.dac", "summary.json")
    }
    assert (out / "c.dac").read_bytes() == alone["c.wav"]

    # decode the folder, a corrupt .dac skipped; a rerun decodes nothing
    (out / "sub" / "corrupt.dac").write_bytes(b"\x93NUMPY garbage")
    wav = tmp_path / "wav"
    dargs = [out, "--model", model_dir, "--output", wav, "--batch-size", 8, "--quiet"]
    code, stdout, stderr = _encode(dargs, capsys, "decode")
    assert code == 1 and "decoded 5 file(s) (0 already done, 1 skipped" in stdout
    assert "corrupt.dac" in stderr
    assert _outputs(wav) == sorted([*(n.replace(".dac", ".wav") for n in expected), "summary.json"])
    summary = json.loads((wav / "summary.json").read_text())
    assert summary["command"] == "decode" and len(summary["skipped"]) == 1
    assert summary["audio_hours"] == pytest.approx(seconds / 3600)
    info = sf.info(wav / "sub" / "b.wav")
    assert (info.samplerate, info.channels, info.frames) == (11025, 2, 4410)
    (out / "sub" / "corrupt.dac").unlink()
    code, stdout, _ = _encode(dargs, capsys, "decode")
    assert code == 0 and "decoded 0 file(s) (5 already done)" in stdout

    # --overwrite codes everything again (same codes)
    code, stdout, _ = _encode([*args, "--quiet", "--overwrite"], capsys)
    assert code == 0 and f"encoded {len(CLIPS)} file(s) (0 already done)" in stdout
    assert all(after[p] != t for p, t in _mtimes(out).items())
    for name, data in alone.items():
        assert (out / pathlib.Path(name).with_suffix(".dac")).read_bytes() == data


def test_killed_run_resumes_without_recoding(tmp_path, model_dir, clips, monkeypatch, capsys):
    folder, _ = clips
    out = tmp_path / "out"
    args = [folder, "--model", model_dir, "--output", out, "--win-duration", WIN, "--quiet"]
    args += ["--batch-size", 8]
    save, saved = DACFile.save, []

    def killed_on_third(self, path):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(path)
        return save(self, path)

    monkeypatch.setattr(DACFile, "save", killed_on_third)
    with pytest.raises(KeyboardInterrupt):
        _encode(args, capsys)
    monkeypatch.setattr(DACFile, "save", save)
    assert len(_outputs(out)) == 2  # the finished files, no partial file, no summary
    before = _mtimes(out)
    code, stdout, _ = _encode(args, capsys)
    assert code == 0 and f"encoded {len(CLIPS) - 2} file(s) (2 already done)" in stdout
    assert {p: _mtimes(out)[p] for p in before} == before


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(cmd, tmp_path, timeout: float):
    """Run `cmd` as 2 local processes of one job (2 CPU devices each); returns their
    ``(exit status, output)``, killing both if they have not ended within `timeout` s."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    env["JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{_free_port()}"
    env["JAX_NUM_PROCESSES"] = "2"
    procs, logs = [], []
    for i in range(2):
        logs.append(tmp_path / f"p{i}.log")
        with open(logs[-1], "w") as log:
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env={**env, "JAX_PROCESS_ID": str(i)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        codes = []
        for proc, log in zip(procs, logs, strict=True):
            try:
                codes.append(proc.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"hung: {log.read_text()[-3000:]}") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [(code, log.read_text()) for code, log in zip(codes, logs, strict=True)]


@pytest.mark.slow
def test_two_processes_code_as_one(tmp_path, model_dir, clips, alone):
    """2 local processes x 2 CPU devices, each a deterministic share of the files of an @list
    (the chunked clips: one window shape)."""
    folder, _ = clips
    names = ["a.wav", "sub/b.flac", "e.wav"]
    listing = folder / "list.txt"  # relative paths: relative to the list's folder
    listing.write_text("".join(f"{n}\n" for n in names))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "jaxlatent", "encode", f"@{listing}", "--model", model_dir]
    cmd += ["--output", str(out), "--win-duration", str(WIN), "--batch-size", "4"]
    results = _two_processes(cmd, tmp_path, timeout=240)
    for code, log in results:
        assert code == 0, log[-3000:]
    # the listed files were inside the list's folder's tree: the tree is mirrored
    assert _outputs(out) == ["a.dac", "e.dac", "sub/b.dac", "summary.json"]
    for name in names:
        assert (out / pathlib.Path(name).with_suffix(".dac")).read_bytes() == alone[name], name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 4
    assert summary["files_per_process"] == [2, 1]  # files 0, 2 and file 1
    assert sorted(summary["files"]) == sorted(str(folder / n) for n in names)
    for _, log in results:
        assert "encoded 3 file(s)" in log


def test_two_processes_fail_fast_stop_together(tmp_path, model_dir):
    """--fail-fast with a bad input (readable header, NaN samples) in process 1's share:
    process 0 would otherwise wait for it forever in the summary's all-gather. Both stop at
    their next file with exit status 2 and one error line naming the file."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.wav", "c.wav", "d.wav"):
        sf.write(folder / name, (rng.standard_normal(800) * 0.1).astype(np.float32), 8000)
    bad = np.zeros(800, np.float32)
    bad[100] = np.nan
    sf.write(folder / "b.wav", bad, 8000, subtype="FLOAT")  # process 1's first file
    cmd = [sys.executable, "-m", "jaxlatent", "encode", str(folder), "--model", model_dir]
    cmd += ["--output", str(tmp_path / "out"), "--win-duration", str(WIN), "--batch-size", "2"]
    results = _two_processes([*cmd, "--fail-fast", "--quiet"], tmp_path, timeout=120)
    for i, (code, log) in enumerate(results):
        errors = [line for line in log.splitlines() if "error:" in line]
        assert code == 2 and len(errors) == 1, (i, log[-3000:])
        assert "b.wav" in errors[0] and "NaN" in errors[0], errors
    assert "process 1 stopped" in results[0][1]
    assert not (tmp_path / "out" / "summary.json").exists()


def test_progress_bar_on_a_terminal(tmp_path, model_dir, clips, monkeypatch):
    """Files, audio hours and hours per second, on a terminal (off one: see above)."""
    from jaxlatent.apps.batch_coding import encode_folder

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    folder, _ = clips
    inputs = [folder / "a.wav", folder / "e.wav"]
    out = tmp_path / "out"
    result = encode_folder(model_dir, inputs, out, batch_size=8, win_duration=WIN, progress=True)
    assert len(result.coded) == 2
    text = terminal.getvalue()
    assert "encode" in text and "2/2" in text and " h audio, " in text and " h/s" in text
