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
    "seq_ctc": Tolerance(
        "ctc_loss / ctc_loss_kd values and gradients vs PyTorch's CPU CTC (float32)",
        1e-5,
        2e-6,
        "same float32 log-space recursions as PyTorch's kernel; the per-class alpha*beta "
        "log-sum is summed in a different order and exp/log differ by an ulp between "
        "XLA and libm, so gradients differ by a few 1e-7",
    ),
    "seq_transducer": Tolerance(
        "transducer_loss value and gradient vs SpeechBrain's Numba kernel (CUDA simulator)",
        1e-5,
        2e-6,
        "the simulator runs the kernel in Python with float64 intermediates stored to "
        "float32 buffers; JAX computes in float32 along anti-diagonals (same recursion)",
    ),
    "seq_transducer_oracle": Tolerance(
        "transducer_loss (float32) vs a float64 brute-force sum over all alignments and "
        "float64 central finite differences of it",
        1e-5,
        1e-6,
        "float32 rounding of ~T+U log-space additions against a float64 oracle; central "
        "differences with h=1e-6 in float64 are accurate to ~1e-9",
    ),
    "seq_kd": Tolerance(
        "ce_kd / nll_loss_kd values and gradients (float32)",
        1e-6,
        1e-6,
        "same float32 products; only the summation order of the reductions differs",
    ),
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
    # --- pytorch-vae ---
    "pvae_activations": Tolerance(
        "PyTorch-VAE encode/decode/forward outputs, z and vq latents (eval and train mode) vs "
        "the recorded torch outputs, both divided by the reference's max abs value",
        0.0,
        2e-5,
        "same float32 maths; XLA and oneDNN sum conv/matmul products in different orders "
        "(measured <= 4e-6 of the max on the tiny and default bundles, train-mode "
        "reconstructions worst; the recording itself changes by 4.7e-6 of the max between 1 "
        "and 2 torch threads)",
    ),
    "pvae_loss": Tolerance(
        "PyTorch-VAE loss dict values (loss, Reconstruction_Loss, KLD, MMD, VQ_Loss, capacity "
        "C) vs the recorded torch values",
        2e-5,
        1e-8,
        "sums over 49152 pixels or the latent in a different order, on inputs that already "
        "differ by a few ulp; MMD and VQ_Loss are small differences of such values "
        "(measured <= 4.6e-6 relative, the WAE-IMQ train MMD worst)",
    ),
    "pvae_bn_stats": Tolerance(
        "BatchNorm running_mean/running_var after one train-mode forward, divided by the "
        "reference's max abs value",
        0.0,
        2e-6,
        "batch moments of activations that differ by a few ulp, reduced in a different "
        "order (measured <= 2e-7 of the max)",
    ),
    "pvae_grad": Tolerance(
        "PyTorch-VAE parameter gradients of the train loss, divided by the reference's max "
        "abs value",
        0.0,
        2e-5,
        "backward convolutions and BatchNorm batch-statistic gradients accumulated in a "
        "different order (measured <= 4.6e-6 of the max, first-conv weights worst)",
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
