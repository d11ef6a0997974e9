"""``jaxlatent train --model dac --init-from CHECKPOINT``: fine-tune released or converted
weights.

`load_generator` reads a converted directory (`jaxlatent.models.dac.load_converted`, no
torch) or a release ``.pth`` (`converters.dac.convert_checkpoint`: needs torch; nothing is
cached, so a run writes nothing outside its folder); `choose_preset` picks the run's preset
from the model's configuration — the one named by ``--preset`` (which must match), or the
one preset whose codec configuration equals it. The weights are used exactly as loaded.

``--init-discriminator FILE`` (`load_discriminator`): no discriminator weights were ever
released (descript-audio-codec issue #26), so by default the discriminator starts fresh; a
file written by the reference's ``Discriminator.save`` (or
`converters.dac_discriminator.export_discriminator`) is converted with
`converters.dac_discriminator.load_discriminator` (needs torch), and its configuration must
be the run's.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from flax import nnx


def load_generator(path: str) -> nnx.Module:
    """The `jaxlatent.models.dac.DAC` stored at `path` (converted directory or ``.pth``).

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: if it is not a DAC checkpoint (one line naming the file and the problem).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"--init-from {path!r} does not exist")
    if os.path.isdir(path):
        from jaxlatent.models.dac import load_converted

        return load_converted(path)
    from converters.dac import convert_checkpoint

    return convert_checkpoint(path)[1]


def _differences(a: Any, b: Any) -> str:
    fields = [
        f"{f.name} {getattr(a, f.name)!r} vs {getattr(b, f.name)!r}"
        for f in dataclasses.fields(a)
        if getattr(a, f.name) != getattr(b, f.name)
    ]
    return ", ".join(fields)


def choose_preset(path: str, config: Any, presets: dict[str, Any], preset: str | None) -> str:
    """The name of the preset whose ``dac`` configuration is `config`.

    Args:
      path: the checkpoint (for messages).
      config: the loaded model's `DACConfig`.
      presets: the model's presets (name -> `AudioPreset`).
      preset: ``--preset`` (None: inferred).

    Raises:
      ValueError: if the named preset's sample rate or architecture differs from the
        checkpoint's, or (inferring) no preset has its configuration.
    """
    if preset is not None:
        want = presets[preset].dac
        if want.sample_rate != config.sample_rate:
            raise ValueError(
                f"--init-from {path!r} is a {config.sample_rate} Hz model but preset "
                f"{preset!r} trains at {want.sample_rate} Hz"
            )
        if want != config:
            raise ValueError(
                f"--init-from {path!r} does not fit preset {preset!r}: {_differences(config, want)}"
            )
        return preset
    found = [name for name, p in presets.items() if p.dac == config]
    if not found:
        raise ValueError(
            f"--init-from {path!r} ({config.sample_rate} Hz, {config.n_codebooks} codebooks) "
            f"matches no dac preset ({', '.join(presets)}); name one with --preset"
        )
    return found[0]


def load_discriminator(path: str, config: Any) -> nnx.Module:
    """The discriminator stored at `path`, which must have the run's configuration `config`.

    Raises:
      FileNotFoundError: if `path` does not exist.
      ValueError: if it is not a discriminator checkpoint, or its configuration (its
        ``metadata["kwargs"]``; the recipe's without metadata) differs from `config`.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"--init-discriminator {path!r} does not exist")
    from converters.dac_discriminator import load_discriminator as convert

    found, model = convert(path)
    if found != config:
        raise ValueError(
            f"--init-discriminator {path!r} does not fit this run's discriminator: "
            f"{_differences(found, config)}"
        )
    return model
