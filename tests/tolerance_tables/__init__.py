"""The parity tolerances by concept; `tests.tolerances` joins them into one table."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Tolerance:
    compared: str
    rtol: float
    atol: float
    reason: str
