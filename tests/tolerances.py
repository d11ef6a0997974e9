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
    # --- autoencoders ------------------------------------------------------------------------
    "ae_model_f32": Tolerance(
        "SpeechBrain VAE / NormalizingAutoencoder / GlobalNorm / Conv1d outputs (3-4 "
        "Linear + SpeechBrain Conv1d layers), float32 CPU",
        2e-6,
        2e-6,
        "same float32 maths; XLA and oneDNN accumulate matmuls/convolutions in different "
        "orders, compounded over the layers and GlobalNorm's division by the std: measured "
        "max abs error 5e-7 on unit-variance inputs",
    ),
    "ae_global_norm_stats": Tolerance(
        "GlobalNorm running_mean / running_std after several updates",
        1e-6,
        1e-7,
        "scalar sums over all elements reduced in a different order: measured 3e-7 relative "
        "(2e-8 abs); the element count `weight` and `step_count` are compared exactly",
    ),
    "ae_loss_f32": Tolerance(
        "VariationalAutoencoderLoss / AutoencoderLoss values (all reductions) and their "
        "gradients w.r.t. rec, mean, log_var",
        1e-6,
        1e-6,
        "same elementwise float32 formulas; only the summation order of the reductions "
        "differs (a few ulp)",
    ),
    # --- converters / layers -----------------------------------------------------------------
    "layer_f32": Tolerance(
        "one torch layer vs its jaxlatent target (conv, transposed conv, weight norm, "
        "BatchNorm, LayerNorm, Linear), float32 CPU",
        1e-5,
        1e-5,
        "same float32 maths, different accumulation order inside XLA's and oneDNN's convolution "
        "kernels: measured max error ~3e-6 on unit-variance inputs",
    ),
    "batchnorm_stats": Tolerance(
        "BatchNorm running mean/var after two training steps",
        1e-6,
        1e-6,
        "batch mean/variance reduced in a different order (float32 round-off only)",
    ),
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
