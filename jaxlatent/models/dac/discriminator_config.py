"""`DiscriminatorConfig`: the arguments of DAC's GAN discriminator, frozen and validated.

The fields are the keyword arguments of ``dac.model.discriminator.Discriminator``
(descript-audio-codec 1.0.0): MPD periods, MSD rates, MRD FFT sizes, the sample rate and the
MRD frequency bands. :meth:`DiscriminatorConfig.from_kwargs` reads them from a saved file's
``metadata["kwargs"]``; :meth:`DiscriminatorConfig.to_kwargs` writes them back (lists).
Defaults are the reference's defaults, which are also the training recipe's
(``conf/base.yml``): :meth:`DiscriminatorConfig.recipe`.

Source: Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN"
(arXiv:2306.06546), section 3.3; descript-audio-codec 1.0.0 ``dac/model/discriminator.py``.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from jaxlatent._checks import positive_int

__all__ = ["DiscriminatorConfig"]

#: ``dac.model.discriminator.BANDS``: fractions of the STFT bins, one MRD conv stack each.
DEFAULT_BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


def _ints(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence of positive integers, got {value!r}")
    return tuple(positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _bands(value: Any) -> tuple[tuple[float, float], ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) == 0:
        raise ValueError(f"bands must be a non-empty sequence of (low, high) pairs, got {value!r}")
    out = []
    for i, band in enumerate(value):
        if isinstance(band, str | bytes) or not isinstance(band, Sequence) or len(band) != 2:
            raise ValueError(f"bands[{i}] must be a (low, high) pair, got {band!r}")
        out.append((_fraction(f"bands[{i}][0]", band[0]), _fraction(f"bands[{i}][1]", band[1])))
    return tuple(out)


def band_bins(fft_size: int, bands: Sequence[tuple[float, float]]) -> tuple[tuple[int, int], ...]:
    """STFT bin ranges ``[start, stop)`` of the MRD bands for one FFT size, as the reference
    computes them: ``int(fraction * (fft_size // 2 + 1))``.

    Example:
      >>> band_bins(512, DEFAULT_BANDS)
      ((0, 25), (25, 64), (64, 128), (128, 192), (192, 257))
    """
    n_bins = fft_size // 2 + 1
    return tuple((int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands)


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Hyper-parameters of DAC's discriminator (``Discriminator``'s keyword arguments).

    Attributes:
      rates: MSD rates; one waveform discriminator per rate, run on the audio resampled to
        ``sample_rate // rate`` Hz (``()``: no MSD, the recipe).
      periods: MPD periods in samples; one 2-D discriminator per period.
      fft_sizes: MRD STFT window lengths (hop ``fft_size // 4``); one spectrogram
        discriminator per size.
      sample_rate: audio sample rate in Hz.
      bands: MRD frequency bands as fractions ``(low, high)`` of the ``fft_size // 2 + 1`` STFT
        bins; one convolution stack per band.

    Raises:
      ValueError: on non-positive or non-integer sizes, no sub-discriminator at all, an FFT
        size under 4 (hop 0), a rate whose resampled rate ``sample_rate // rate`` is 0, or a
        band outside [0, 1] or empty (no STFT bin) at some FFT size.

    Example:
      >>> config = DiscriminatorConfig.recipe()
      >>> config.n_discriminators, config.periods
      (8, (2, 3, 5, 7, 11))
    """

    rates: tuple[int, ...] = ()
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    fft_sizes: tuple[int, ...] = (2048, 1024, 512)
    sample_rate: int = 44100
    bands: tuple[tuple[float, float], ...] = DEFAULT_BANDS

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        put("rates", _ints("rates", self.rates))
        put("periods", _ints("periods", self.periods))
        put("fft_sizes", _ints("fft_sizes", self.fft_sizes))
        put("sample_rate", positive_int("sample_rate", self.sample_rate))
        put("bands", _bands(self.bands))
        if self.n_discriminators == 0:
            raise ValueError("periods, rates and fft_sizes are all empty: no sub-discriminator")
        for rate in self.rates:
            if self.sample_rate // rate < 1:
                raise ValueError(
                    f"rate {rate} resamples sample_rate {self.sample_rate} to 0 Hz; rates "
                    f"must be at most sample_rate"
                )
        for size in self.fft_sizes:
            if size < 4:
                raise ValueError(f"fft_sizes must be at least 4 (hop size // 4), got {size}")
            for i, (start, stop) in enumerate(band_bins(size, self.bands)):
                if stop <= start:
                    raise ValueError(
                        f"bands[{i}] {self.bands[i]} holds no STFT bin at fft size {size} "
                        f"(bins [{start}, {stop}))"
                    )

    @property
    def n_discriminators(self) -> int:
        """Sub-discriminators: ``len(periods) + len(rates) + len(fft_sizes)``."""
        return len(self.periods) + len(self.rates) + len(self.fft_sizes)

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> DiscriminatorConfig:
        """The config of a saved file's ``metadata["kwargs"]``; missing keys take the defaults.

        Raises:
          ValueError: if `kwargs` is not a mapping, has keys that are not ``Discriminator``
            arguments, or has invalid values.

        Example:
          >>> DiscriminatorConfig.from_kwargs({"rates": [1], "periods": []}).n_discriminators
          4
        """
        if not isinstance(kwargs, Mapping):
            raise ValueError(
                f"Discriminator kwargs must be a mapping of its arguments, got "
                f"{type(kwargs).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in kwargs if k not in known)
        if unknown:
            raise ValueError(
                f"unknown Discriminator kwargs {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**dict(kwargs))

    def to_kwargs(self) -> dict[str, Any]:
        """``metadata["kwargs"]`` as audiotools' ``BaseModel.save`` writes it (lists).

        Example:
          >>> DiscriminatorConfig.recipe().to_kwargs()["bands"][0]
          [0.0, 0.1]
        """
        return {
            "rates": list(self.rates),
            "periods": list(self.periods),
            "fft_sizes": list(self.fft_sizes),
            "sample_rate": self.sample_rate,
            "bands": [list(b) for b in self.bands],
        }

    @classmethod
    def recipe(cls) -> DiscriminatorConfig:
        """The training recipe's discriminator (descript-audio-codec ``conf/base.yml``, all
        final configs): MPD periods 2, 3, 5, 7, 11; no MSD; MRD at 2048, 1024, 512; 44.1 kHz;
        the five default bands. Equal to the reference's defaults."""
        return cls(
            rates=(),
            periods=(2, 3, 5, 7, 11),
            fft_sizes=(2048, 1024, 512),
            sample_rate=44100,
            bands=DEFAULT_BANDS,
        )
