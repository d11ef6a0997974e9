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
    # --- dac ---------------------------------------------------------------------------------
    "dac_snake_f32": Tolerance(
        "Snake activation, float32 CPU",
        1e-6,
        1e-6,
        "same float32 formula; torch's and XLA's vectorised sin differ by an ulp or two "
        "(measured max 5e-7 on |y| up to ~12)",
    ),
    "dac_block_f32": Tolerance(
        "DAC residual unit / encoder block / decoder block / small encoder and decoder, "
        "float32 CPU, weights converted by converters.dac",
        1e-5,
        1e-5,
        "a few weight-normed convolutions and Snakes in float32; only the accumulation order "
        "of XLA's and oneDNN's convolutions differs (as layer_f32; measured max 5e-7)",
    ),
    "dac_codec_f32": Tolerance(
        "full-size DAC encoder z and decoder audio of the released configurations, float32 CPU",
        1e-5,
        1e-5,
        "~20 convolutions of up to 1536 channels (fan-in up to 10k terms) compound the "
        "accumulation-order round-off: measured max 1.1e-6 on z (|z| ~1), 2e-7 on audio; rtol "
        "keeps the check relative for trained weights with larger latents",
    ),
    "dac_grad_f32": Tolerance(
        "gradients of DAC blocks w.r.t. input, alpha, weight_g, weight_v and bias, float32 CPU",
        1e-4,
        1e-5,
        "backward passes of weight norm (through ||v||) and transposed convolutions sum "
        "hundreds of terms in a different order: measured max 2.5e-5 absolute on gradients "
        "up to ~50 in magnitude (under 1e-5 relative beyond atol)",
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
