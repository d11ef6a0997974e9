"""Audio files <-> ``.dac`` files with a DAC model, file by file (the demo's round trip).

``jaxlatent encode`` / ``decode`` run the batched, resumable folder versions of these
(:mod:`jaxlatent.apps.batch_coding`); the files are the same.

:func:`encode_files` reads every input with :func:`jaxlatent.datasets.read_audio`, codes it
with :func:`jaxlatent.codec.compress` (the official ``compress`` algorithm; with ``exact``,
:func:`jaxlatent.codec.compress_exact`: the whole-signal codes, in windows) and writes one
``.dac`` file per input; :func:`decode_files` is the inverse with
:func:`jaxlatent.codec.decompress_exact` (:func:`jaxlatent.codec.decompress` for chunked and
short files; long unchunked ones in windows), writing 16-bit PCM WAV files. Folders are walked and
their layout is kept under the output folder (:func:`jaxlatent.codec.files.find_inputs`);
every output is written atomically.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

__all__ = ["CodingResult", "decode_files", "encode_files"]


class CodingResult(NamedTuple):
    """What :func:`encode_files` / :func:`decode_files` did.

    Attributes:
      inputs: the files read, in order.
      outputs: the files written, in input order.
      audio_seconds: seconds of audio read (encode) or written (decode).
      seconds: wall time of the coding (after the model is loaded).
    """

    inputs: tuple[Path, ...]
    outputs: tuple[Path, ...]
    audio_seconds: float
    seconds: float


def _model(model, precision: PrecisionLike = DEFAULT_PRECISION):
    """A DAC model as given, or loaded from a converted directory or a checkpoint path.

    A converted directory is restored by jaxlatent alone; only a checkpoint (a ``.pth`` or
    ``.safetensors`` file, or a transformers ``DacModel`` folder) imports the converters to be
    converted and cached. A loaded model gets `precision` (:mod:`jaxlatent.precision`); a
    given `DAC` keeps its own.
    """
    if isinstance(model, str | os.PathLike):
        if os.path.isdir(model) and not _is_transformers_folder(model):
            from jaxlatent.models.dac import load_converted

            return load_converted(model, precision=precision)
        from converters.dac_cache import load_model

        return load_model(model, precision=precision)
    return model


def _is_transformers_folder(path) -> bool:
    """True if `path`'s ``config.json`` is a transformers ``DacConfig`` (``model_type`` "dac")."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("model_type") == "dac"


def _bar(items, enabled: bool, desc: str):
    if not enabled or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="file")


def encode_files(
    model,
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    win_duration: float = 5.0,
    n_quantizers: int | None = None,
    exact: bool = False,
    progress: bool = True,
) -> CodingResult:
    """Code audio files (or every audio file under folders) into ``.dac`` files.

    Args:
      model: a :class:`jaxlatent.models.dac.DAC`, or the path of a converted directory
        (:func:`jaxlatent.models.dac.load_converted`) or a DAC checkpoint
        (:func:`converters.dac_cache.load_model`), loaded after the inputs are checked.
      inputs: audio files or folders (suffixes :data:`jaxlatent.codec.files.AUDIO_SUFFIXES`).
      output: output folder; ``INPUT.wav`` becomes ``output/INPUT.dac``.
      win_duration: compress window in seconds (5.0 as the official ``dac encode``).
      n_quantizers: codebooks to use (default all).
      exact: code with :func:`jaxlatent.codec.compress_exact` (windows of `win_duration`,
        the codes of the whole signal, an unchunked file) instead of the official algorithm.
      progress: progress bars (per file, or per chunk for a single file).

    Returns:
      A :class:`CodingResult`.

    Raises:
      ValueError: for a bad `n_quantizers` / `win_duration`, no inputs, unreadable audio.
      FileNotFoundError: for a missing input.
    """
    from jaxlatent.codec import compress, compress_exact, files
    from jaxlatent.datasets import read_audio

    if n_quantizers is not None and n_quantizers < 1:
        raise ValueError(f"--n-quantizers must be at least 1, got {n_quantizers}")
    if not win_duration > 0:
        raise ValueError(f"--win-duration must be positive, got {win_duration}")
    found = files.find_inputs(inputs, files.AUDIO_SUFFIXES)
    model = _model(model)  # after the cheap checks: bad input fails before a conversion
    start, seconds, written = time.perf_counter(), 0.0, []
    for path, rel in _bar(found, progress, "encode"):
        clip = read_audio(path)
        dac_file = (compress_exact if exact else compress)(
            model,
            clip.audio,
            clip.sample_rate,
            win_duration=win_duration,
            n_quantizers=n_quantizers,
            verbose=progress and len(found) == 1,
        )
        written.append(Path(dac_file.save(files.output_path(output, rel, ".dac"))))
        seconds += clip.audio.shape[0] / clip.sample_rate
    read = tuple(path for path, _ in found)
    return CodingResult(read, tuple(written), seconds, time.perf_counter() - start)


def decode_files(
    model,
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    suffix: str = "",
    progress: bool = True,
) -> CodingResult:
    """Decode ``.dac`` files (or every ``.dac`` under folders) into WAV files.

    Args:
      model: the DAC model the files were coded with (or its path, as in
        :func:`encode_files`).
      inputs: ``.dac`` files or folders.
      output: output folder; ``NAME.dac`` becomes ``output/NAME{suffix}.wav`` (a file of
        several batch items: ``NAME{suffix}-{i}.wav``).
      suffix: appended to every output name (``""``: ``jaxlatent decode``).
      progress: progress bars.

    Returns:
      A :class:`CodingResult`.

    Raises:
      ValueError: for an unreadable ``.dac`` file or one the model cannot decode.
      FileNotFoundError: for a missing input.
    """
    from jaxlatent.codec import DACFile, decompress_exact, files

    found = files.find_inputs(inputs, (".dac",))
    model = _model(model)
    start, seconds, written = time.perf_counter(), 0.0, []
    for path, rel in _bar(found, progress, "decode"):
        dac_file = DACFile.load(path)
        audio = decompress_exact(model, dac_file, verbose=progress and len(found) == 1)
        for i, item in enumerate(audio):  # one file per batch item (one for our own files)
            item_suffix = suffix if audio.shape[0] == 1 else f"{suffix}-{i}"
            name = rel.with_name(rel.stem + item_suffix + rel.suffix)  # .dac: replaced below
            target = files.output_path(output, name, ".wav")
            written.append(Path(files.write_audio(target, item, dac_file.sample_rate)))
            seconds += item.shape[0] / dac_file.sample_rate
    read = tuple(path for path, _ in found)
    return CodingResult(read, tuple(written), seconds, time.perf_counter() - start)
