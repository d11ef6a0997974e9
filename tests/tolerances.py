"""Every parity tolerance of the test suite, with the reason it is what it is.

Parity tests look their tolerance up here by name, so a tolerance cannot be loosened
without this table (and the README table generated from it) saying why.
`python -m tests.tolerances` prints the table as Markdown.

Discrete outputs (codes, indices, permutations, masks) are never in this table: they must
match exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Tolerance:
    compared: str
    rtol: float
    atol: float
    reason: str


TOLERANCES: dict[str, Tolerance] = {
    # --- core: masks and reductions ---------------------------------------------------------
    "elementwise_f32": Tolerance(
        "elementwise float32 losses (mse, l1, margins, ...)",
        1e-6,
        1e-6,
        "same float32 formula in both frameworks; only summation order of reductions differs "
        "(a few ulp)",
    ),
    # --- losses ------------------------------------------------------------------------------
    "core_f32": Tolerance(
        "masked float32 losses and their reductions (mse, l1, nll, kldiv, classification error, "
        "reduce_loss, compute_masked_loss)",
        2e-6,
        1e-6,
        "same float32 formulas; only the summation order of 'mean'/'batchmean'/'batch' sums "
        "differs (XLA vs torch's vectorised sums)",
    ),
    "core_bce_f32": Tolerance(
        "bce_loss on logits",
        1e-5,
        1e-6,
        "same formula (1 - t) x - w log_sigmoid(x), but XLA's exp/log1p in log_sigmoid differ "
        "from torch's by a few ulp",
    ),
    "core_exp_f32": Tolerance(
        "distance_diff_loss values and gradients",
        1e-5,
        1e-6,
        "exp(beta |i - y|) - 1 loses relative precision near y; XLA's and torch's exp differ "
        "by an ulp",
    ),
    "core_grad_f32": Tolerance(
        "gradients w.r.t. predictions (mse, l1, nll, bce, kldiv, compute_masked_loss)",
        1e-5,
        1e-7,
        "JAX autodiff vs torch autograd: same derivative, evaluated in a different order (bce: "
        "torch's sigmoid(x) - t vs d/dx log_sigmoid, a cancellation of ~1 ulp of 1)",
    ),
    # --- autoencoders ------------------------------------------------------------------------
    # --- converters / layers -----------------------------------------------------------------
}


def assert_close(actual, desired, name: str, *, err_msg: str = "") -> None:
    """`np.testing.assert_allclose` with the named tolerance from :data:`TOLERANCES`."""
    tol = TOLERANCES[name]
    np.testing.assert_allclose(
        np.asarray(actual),
        np.asarray(desired),
        rtol=tol.rtol,
        atol=tol.atol,
        err_msg=f"[{name}] {err_msg}",
    )


def markdown_table() -> str:
    rows = ["| name | compared | rtol | atol | reason |", "|---|---|---|---|---|"]
    for name, t in TOLERANCES.items():
        rows.append(f"| `{name}` | {t.compared} | {t.rtol:g} | {t.atol:g} | {t.reason} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
