"""The errors of jaxlatent's converters: a state_dict that does not fit, a file that cannot be read.

:class:`ConversionError` lists every missing, unexpected and mis-shaped key at once;
:func:`located_error` prefixes one with the file or object it came from; :class:`CheckpointError`
is a file that is missing, truncated, corrupt or unsafe.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConversionError(ValueError):
    """A state_dict does not fit the target model (lists every problem at once)."""

    def __init__(
        self,
        message: str,
        *,
        missing: Iterable[str] = (),
        unexpected: Iterable[str] = (),
        mismatched: Iterable[str] = (),
    ):
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted(mismatched)
        parts = [message]
        for title, items in (
            ("missing (needed, not in the checkpoint)", self.missing),
            ("unexpected (in the checkpoint, not used)", self.unexpected),
            ("mis-shaped", self.mismatched),
        ):
            if items:
                parts.append(f"{title}: {len(items)}\n  " + "\n  ".join(items))
        super().__init__("\n".join(parts))


def located_error(
    error: ConversionError, where: str, *, config_source: str | None = None
) -> ConversionError:
    """`error` with its message prefixed by `where` (the file or object that was read).

    When `config_source` says where the configuration came from (e.g. ``"metadata['kwargs']
    {...}"`` of the file itself) and `error` lists keys, the message says instead that the
    weights disagree with it, and the missing, unexpected and mis-shaped keys are kept.

    Example:
      >>> e = ConversionError("bad", missing=["a.weight"])
      >>> str(located_error(e, "x.pth")).splitlines()[0]
      'x.pth: bad'
      >>> located_error(e, "x.pth", config_source="metadata['kwargs']").args[0].splitlines()[0]
      "x.pth: the weights disagree with metadata['kwargs']"
    """
    if config_source is None or not (error.missing or error.unexpected or error.mismatched):
        return ConversionError(f"{where}: {error}")
    return ConversionError(
        f"{where}: the weights disagree with {config_source}",
        missing=error.missing,
        unexpected=error.unexpected,
        mismatched=error.mismatched,
    )


class CheckpointError(ValueError):
    """A checkpoint file cannot be read (missing, truncated, corrupt, or unsafe)."""
