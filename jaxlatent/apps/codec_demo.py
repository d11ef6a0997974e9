"""Pieces of the DAC codec round trip that `jaxlatent demo` runs (see `jaxlatent.apps.demo`).

* :func:`require_reference`: the official ``dac`` package and torch, or a clear error;
* :func:`make_release_checkpoint`: a DAC checkpoint in the release format, written by the
  reference code itself (``dac.DAC(**kwargs).save(path, package=False)``) with random
  weights from a fixed torch seed: what stands in for the released weights offline;
* :func:`copy_clip`: a bundled speech clip (optionally cut) copied sample-exactly;
* :func:`save_spectrograms`: a PNG of the input's and the decoded audio's spectrograms;
* :func:`save_parity`: a :class:`converters.dac_parity.ParityReport` as text and JSON.

torch and ``dac`` are imported only inside these functions (``import jaxlatent`` stays
torch-free).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

from jaxlatent.atomic import atomic_write
from jaxlatent.models.dac import DACConfig

__all__ = [
    "bundled_clip",
    "copy_clip",
    "make_release_checkpoint",
    "require_reference",
    "save_parity",
    "save_spectrograms",
]

_NEEDS = (
    "jaxlatent demo needs the torch extra and descript-audio-codec; run .ci/setup "
    "(or, in the clone, pip install '.[torch]' descript-audio-codec)"
)


def require_reference():
    """The official ``dac`` package (descript-audio-codec 1.0.0) and torch.

    A minimal torchaudio stub is installed when torchaudio is missing, as
    ``jaxlatent parity dac`` does (nothing here calls it).

    Raises:
      ImportError: naming what to install, if either is missing.
    """
    try:
        from converters.dac_parity import _import_dac

        dac = _import_dac()
        import torch
    except ImportError as e:
        raise ImportError(_NEEDS) from e
    return dac, torch


def bundled_clip(name: str) -> Path:
    """The path of a bundled audio file (``jaxlatent/data/NAME``).

    Raises:
      ValueError: if there is no such file (the bundled clips are listed).
    """
    folder = importlib.resources.files("jaxlatent") / "data"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".wav"))
    if name not in names:
        raise ValueError(f"no bundled clip {name!r}; choose one of: {', '.join(names)}")
    return Path(os.fspath(folder / name))


def make_release_checkpoint(path: str | os.PathLike, config: DACConfig, seed: int) -> Path:
    """Write a randomly initialised ``dac.DAC`` in the release checkpoint format.

    The reference package builds the model (``dac.DAC(**config.to_kwargs())``, its own
    initialisation: truncated-normal weights, zero biases) under ``torch.manual_seed(seed)``
    and saves it with ``save(path, package=False)``: ``{"state_dict", "metadata":
    {"kwargs"}}``, the layout of the released ``weights_*.pth`` files. The weights are
    random: audio coded with them is not a meaningful reconstruction. Written atomically.

    Args:
      path: the ``.pth`` file to write.
      config: the architecture (e.g. :meth:`DACConfig.dac_16khz`).
      seed: torch seed of the initialisation (the global torch RNG is left as it was).

    Returns:
      `path` as a `Path`.

    Raises:
      ImportError: without torch / descript-audio-codec.
    """
    dac, torch = require_reference()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the reference's own weight_norm
        torch.manual_seed(seed)
        model = dac.DAC(**config.to_kwargs())
    return atomic_write(path, lambda tmp: model.save(tmp, package=False), ".pth")


def copy_clip(src: str | os.PathLike, dst: str | os.PathLike, seconds: float | None) -> Path:
    """Copy an audio file to a WAV file, cut to its first `seconds` (``None``: whole).

    16-bit PCM input is copied as integers (bit-exact); other input as float samples.
    Written atomically.

    Raises:
      ValueError: if `src` is not readable audio or `seconds` is not positive.
    """
    import soundfile as sf

    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    try:
        info = sf.info(os.fspath(src))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ValueError(f"{src}: not a readable audio file ({e})") from e
    frames = info.frames if seconds is None else min(info.frames, int(seconds * info.samplerate))
    pcm16 = info.subtype == "PCM_16"
    audio, rate = sf.read(
        os.fspath(src), frames=frames, dtype="int16" if pcm16 else "float32", always_2d=True
    )
    subtype = "PCM_16" if pcm16 else "FLOAT"
    return atomic_write(
        dst, lambda tmp: sf.write(tmp, audio, rate, subtype=subtype, format="WAV"), ".wav"
    )


def _log_spectrogram(audio: np.ndarray, rate: int) -> tuple[np.ndarray, float, float]:
    """``20 log10 |STFT|`` in dB ``[freq, frames]`` (32 ms Hann windows, 10 ms hop), with the
    frame step in seconds and the top frequency in Hz."""
    import scipy.signal

    n_fft = int(2 ** np.ceil(np.log2(0.032 * rate)))
    hop = max(1, round(0.01 * rate))
    _, _, z = scipy.signal.stft(audio, fs=rate, nperseg=n_fft, noverlap=n_fft - hop)
    return 20 * np.log10(np.abs(z) + 1e-6), hop / rate, rate / 2


def save_spectrograms(
    path: str | os.PathLike,
    original: str | os.PathLike,
    decoded: str | os.PathLike,
    *,
    note: str = "",
) -> Path:
    """A PNG comparing the spectrograms of two audio files (first channel), atomically.

    Both panels share the dB colour scale (the input's 80 dB range).

    Args:
      path: the PNG to write.
      original: the input audio file.
      decoded: the decoded audio file.
      note: a line added to the title (e.g. that the weights are random).

    Returns:
      `path` as a `Path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxlatent.datasets import read_audio

    panels = []
    for title, file in (("input", original), ("decoded (.dac round trip)", decoded)):
        clip = read_audio(file)
        spec, step, top = _log_spectrogram(clip.audio[:, 0], clip.sample_rate)
        panels.append((f"{title}: {Path(file).name}", spec, step, top))
    vmax = float(panels[0][1].max())
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True, squeeze=False)
    for ax, (title, spec, step, top) in zip(axes[:, 0], panels, strict=True):
        extent = (0.0, spec.shape[1] * step, 0.0, top / 1000)
        image = ax.imshow(
            spec, origin="lower", aspect="auto", cmap="magma", extent=extent,
            vmin=vmax - 80, vmax=vmax,
        )  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("kHz")
        fig.colorbar(image, ax=ax, label="dB")
    axes[-1, 0].set_xlabel("seconds")
    if note:
        fig.suptitle(note, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()), ".png")


def save_parity(report, text_path: str | os.PathLike, json_path: str | os.PathLike) -> None:
    """Write a :class:`converters.dac_parity.ParityReport` as its printed table and as JSON
    (every field, plus the JAX backend), atomically."""
    import jax

    data = dataclasses.asdict(report)
    data["jax_backend"] = jax.default_backend()
    text = report.format() + "\n"
    atomic_write(text_path, lambda tmp: Path(tmp).write_text(text), ".txt")
    payload = json.dumps(data, indent=2) + "\n"
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(payload), ".json")
