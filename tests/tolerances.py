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
    # --- quantizers ---
    "vq_ste_grad": Tolerance(
        "gradients of a nonlinear loss through the straight-through estimator vs torch "
        "autograd through z + (q - z).detach()",
        1e-6,
        1e-6,
        "identical gradient rule; the forward value differs (jaxlatent returns the code q "
        "bit-exactly, torch's z + (q - z) rounds to an ulp of |z|, ~2e-7 at |z| ~ 2), and that "
        "absolute error enters the derivative 2 w st of the test loss",
    ),
    "vq_dac_z": Tolerance(
        "DAC (R)VQ quantized output z / z_q, from_codes and from_latents vs dac.nn.quantize "
        "and SpeechBrain discrete.dac, float32 CPU",
        1e-5,
        2e-6,
        "weight-normed 1x1 convolutions summed over quantizers, accumulated in a different "
        "order by XLA and oneDNN, and torch's straight-through value z_e + (z_q - z_e) is an "
        "ulp off the code; measured max abs error 1e-6 on values up to ~5",
    ),
    "vq_dac_latents": Tolerance(
        "DAC (R)VQ projected latents z_e of every quantizer",
        1e-5,
        2e-6,
        "in_proj of residuals that carry the previous quantizers' float32 round-off; measured "
        "max abs error 1.2e-6",
    ),
    "vq_dac_loss": Tolerance(
        "DAC (R)VQ commitment and codebook losses (per item and batch-summed)",
        2e-6,
        1e-7,
        "means of squared differences over time x codebook_dim reduced in a different order; "
        "measured max relative error 2.2e-7",
    ),
    "vq_dac_grad": Tolerance(
        "gradients of commitment + codebook + sum(w * z) w.r.t. every RVQ parameter "
        "(weight_g, weight_v, bias, codebook) vs torch autograd",
        1e-5,
        5e-5,
        "each gradient sums ~100 float32 products over batch x time in another order; "
        "gradients reach ~50, the measured error is <= 1.2e-6 of a gradient's largest entry "
        "(needs atol 1.1e-5 at rtol 1e-5 over 5 seeds)",
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
