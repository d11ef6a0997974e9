"""`DACConfig`: the constructor arguments of the Descript Audio Codec, frozen and validated.

The fields are the keyword arguments of the official ``dac.DAC.__init__`` (descript-audio-codec
1.0.0), which the release checkpoints store as ``metadata["kwargs"]`` (audiotools
``BaseModel.save``). :meth:`DACConfig.from_kwargs` reads that dict; :meth:`DACConfig.to_kwargs`
writes it back in the same form (lists, ints). Defaults are the defaults of ``dac.DAC``.

Source: Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN"
(arXiv:2306.06546); descript-audio-codec 1.0.0 ``dac/model/dac.py`` and ``conf/final/*.yml``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from jaxlatent._checks import positive_int

__all__ = ["DACConfig"]


def _positive_ints(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a non-empty sequence of positive integers, got {value!r}")
    if len(value) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of positive integers, got []")
    return tuple(positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))


@dataclasses.dataclass(frozen=True)
class DACConfig:
    """Hyper-parameters of a DAC model (``dac.DAC``'s keyword arguments).

    Attributes:
      encoder_dim: channels of the encoder's first convolution (doubled by every block).
      encoder_rates: encoder downsampling strides; their product is the hop length.
      latent_dim: channels of the continuous latent ``z``; ``None`` (the reference default)
        becomes ``encoder_dim * 2**len(encoder_rates)``.
      decoder_dim: channels of the decoder's first convolution (halved by every block).
      decoder_rates: decoder upsampling strides.
      n_codebooks: number of residual quantizers.
      codebook_size: entries per codebook.
      codebook_dim: dimension of the factorised codes; an int (all quantizers) or one entry
        per codebook.
      quantizer_dropout: fraction of the batch trained with a random number of quantizers
        (the reference's ``bool`` is accepted: ``False`` = 0.0, ``True`` = 1.0).
      sample_rate: audio sample rate in Hz.

    Raises:
      ValueError: on non-positive or non-integer sizes, empty rate lists, a decoder that
        would run out of channels, a `codebook_dim` list of the wrong length, or a dropout
        outside [0, 1] (checked at construction).

    Example:
      >>> config = DACConfig.dac_16khz()
      >>> config.hop_length, config.latent_dim, config.n_codebooks
      (320, 1024, 12)
      >>> DACConfig(encoder_dim=4, encoder_rates=[2, 4]).latent_dim
      16
    """

    encoder_dim: int = 64
    encoder_rates: tuple[int, ...] = (2, 4, 8, 8)
    latent_dim: int | None = None
    decoder_dim: int = 1536
    decoder_rates: tuple[int, ...] = (8, 8, 4, 2)
    n_codebooks: int = 9
    codebook_size: int = 1024
    codebook_dim: int | tuple[int, ...] = 8
    quantizer_dropout: float = 0.0
    sample_rate: int = 44100

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("encoder_dim", positive_int("encoder_dim", self.encoder_dim))
        put("encoder_rates", _positive_ints("encoder_rates", self.encoder_rates))
        if self.latent_dim is None:
            put("latent_dim", self.encoder_dim * 2 ** len(self.encoder_rates))
        else:
            put("latent_dim", positive_int("latent_dim", self.latent_dim))
        put("decoder_dim", positive_int("decoder_dim", self.decoder_dim))
        put("decoder_rates", _positive_ints("decoder_rates", self.decoder_rates))
        if self.decoder_dim // 2 ** len(self.decoder_rates) < 1:
            raise ValueError(
                f"decoder_dim={self.decoder_dim} is halved by each of the "
                f"{len(self.decoder_rates)} decoder_rates {self.decoder_rates} and would reach "
                f"0 channels; it must be at least {2 ** len(self.decoder_rates)}"
            )
        put("n_codebooks", positive_int("n_codebooks", self.n_codebooks))
        put("codebook_size", positive_int("codebook_size", self.codebook_size))
        if isinstance(self.codebook_dim, Sequence) and not isinstance(self.codebook_dim, str):
            dims = _positive_ints("codebook_dim", self.codebook_dim)
            if len(dims) != self.n_codebooks:
                raise ValueError(
                    f"codebook_dim has {len(dims)} entries {dims} but n_codebooks is "
                    f"{self.n_codebooks}"
                )
            put("codebook_dim", dims)
        else:
            put("codebook_dim", positive_int("codebook_dim", self.codebook_dim))
        dropout = self.quantizer_dropout
        if isinstance(dropout, bool):
            dropout = float(dropout)
        if not isinstance(dropout, int | float) or not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"quantizer_dropout must be a number in [0, 1], got {dropout!r}")
        put("quantizer_dropout", float(dropout))
        put("sample_rate", positive_int("sample_rate", self.sample_rate))

    # ----------------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        """Samples per code frame: the product of `encoder_rates`."""
        return math.prod(self.encoder_rates)

    @property
    def codebook_dims(self) -> tuple[int, ...]:
        """`codebook_dim` as one entry per codebook."""
        if isinstance(self.codebook_dim, tuple):
            return self.codebook_dim
        return (self.codebook_dim,) * self.n_codebooks

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> DACConfig:
        """The config stored in a release checkpoint's ``metadata["kwargs"]``.

        Missing keys take ``dac.DAC``'s defaults (as ``dac.DAC.load`` does).

        Raises:
          ValueError: if `kwargs` is not a mapping, has keys that are not ``dac.DAC``
            arguments (all of them are named), or has invalid values.

        Example:
          >>> config = DACConfig.from_kwargs({"encoder_rates": [2, 4, 5, 8], "sample_rate": 16000})
          >>> config.hop_length
          320
        """
        if not isinstance(kwargs, Mapping):
            raise ValueError(
                f"DAC kwargs must be a mapping of dac.DAC arguments, got {type(kwargs).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in kwargs if k not in known)
        if unknown:
            raise ValueError(f"unknown DAC kwargs {unknown}; expected a subset of {sorted(known)}")
        return cls(**dict(kwargs))

    def to_kwargs(self) -> dict[str, Any]:
        """``metadata["kwargs"]`` as the official package writes it (lists for sequences).

        Example:
          >>> DACConfig.dac_24khz().to_kwargs()["decoder_rates"]
          [8, 5, 4, 2]
        """
        out = dataclasses.asdict(self)
        for name, value in out.items():
            if isinstance(value, tuple):
                out[name] = list(value)
        return out

    # ----------------------------------------------------------------------------------------
    # Released variants (descript-audio-codec conf/final/*.yml; the quantizer dropout of 0.5 is
    # what the training configs set and the release metadata stores).
    @classmethod
    def dac_44khz_8kbps(cls) -> DACConfig:
        """44.1 kHz, 9 codebooks (7.75 kbps), release tag 0.0.1."""
        return cls(
            encoder_dim=64,
            encoder_rates=(2, 4, 8, 8),
            latent_dim=1024,
            decoder_dim=1536,
            decoder_rates=(8, 8, 4, 2),
            n_codebooks=9,
            codebook_size=1024,
            codebook_dim=8,
            quantizer_dropout=0.5,
            sample_rate=44100,
        )

    @classmethod
    def dac_44khz_16kbps(cls) -> DACConfig:
        """44.1 kHz, latent_dim 128, 18 codebooks (15.5 kbps), release tag 1.0.0."""
        return dataclasses.replace(cls.dac_44khz_8kbps(), latent_dim=128, n_codebooks=18)

    @classmethod
    def dac_24khz(cls) -> DACConfig:
        """24 kHz, 32 codebooks (24 kbps), release tag 0.0.4."""
        return cls(
            encoder_dim=64,
            encoder_rates=(2, 4, 5, 8),
            latent_dim=1024,
            decoder_dim=1536,
            decoder_rates=(8, 5, 4, 2),
            n_codebooks=32,
            codebook_size=1024,
            codebook_dim=8,
            quantizer_dropout=0.5,
            sample_rate=24000,
        )

    @classmethod
    def dac_16khz(cls) -> DACConfig:
        """16 kHz, 12 codebooks (6 kbps), release tag 0.0.5."""
        return dataclasses.replace(cls.dac_24khz(), n_codebooks=12, sample_rate=16000)

    @classmethod
    def preset(cls, name: str) -> DACConfig:
        """A released variant by name: ``44khz_8kbps``, ``44khz_16kbps``, ``24khz``, ``16khz``.

        Raises:
          ValueError: for an unknown name (the known ones are listed).

        Example:
          >>> DACConfig.preset("44khz_16kbps").latent_dim
          128
        """
        presets = {
            "44khz_8kbps": cls.dac_44khz_8kbps,
            "44khz_16kbps": cls.dac_44khz_16kbps,
            "24khz": cls.dac_24khz,
            "16khz": cls.dac_16khz,
        }
        if name not in presets:
            raise ValueError(f"unknown DAC preset {name!r}; expected one of {sorted(presets)}")
        return presets[name]()
