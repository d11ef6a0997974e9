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
    "misc_si_snr_db": Tolerance(
        "SI-SNR / SNR in dB (cal_si_snr, cal_snr, their PIT losses) on noisy estimates",
        1e-5,
        1e-5,
        "sums over time are added in a different order by XLA and ATen (error grows like "
        "sqrt(T) ulp), and XLA's log10 differs from ATen's by an ulp",
    ),
    "misc_grad_si_snr": Tolerance(
        "jax.grad vs torch autograd of cal_si_snr (gradients of size ~1e-2)",
        1e-5,
        1e-6,
        "backward sums over time in a different order; entries near zero (cancellation in "
        "the quotient rule) differ by ~1e-7 absolute",
    ),
    "misc_grad_aam": Tolerance(
        "jax.grad vs torch autograd of AdditiveAngularMargin (scale 30)",
        1e-6,
        1e-5,
        "derivative of sqrt(1 - cos²) has a 1/sin factor (up to ~2e3 near cos = ±1) "
        "evaluated by differently ordered float32 ops; ~1 ulp of values up to 1e4",
    ),
    "misc_contrastive": Tolerance(
        "ContrastiveLoss summed cross-entropy (150 rows, temperature 0.1)",
        2e-6,
        1e-5,
        "a sum of time·batch cross-entropies added in a different order; the vector norms "
        "inside the cosine are also summed in a different order",
    ),
    "misc_laplacian": Tolerance(
        "Laplacian valid convolution (k = 3, 5) of N(0, 1) images",
        1e-5,
        5e-5,
        "k² products summed in a different order by XLA's convolution and ATen's conv2d; "
        "outputs reach ~100, so the absolute error of a few ulp reaches ~2e-5",
    ),
    "misc_laplacian_variance": Tolerance(
        "LaplacianVarianceLoss (unbiased variance of ~1e3 Laplacian values)",
        5e-6,
        1e-6,
        "two-pass masked variance in JAX vs Welford in ATen, over values of size ~10-100",
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
