"""Every parity tolerance of the test suite, with the reason it is what it is.

Parity tests look their tolerance up here by name, so a tolerance cannot be loosened
without this table (and the README table generated from it) saying why.
`python -m tests.tolerances` prints the table as Markdown; `--update-readme` writes it into
README.md, and tests/unit/test_readme.py fails when the two differ.

Discrete outputs (codes, indices, permutations, masks) are never in this table: they must
match exactly.
"""

from __future__ import annotations

import numpy as np

from tests.tolerance_tables import Tolerance
from tests.tolerance_tables.dac import DAC
from tests.tolerance_tables.quantizers import QUANTIZERS
from tests.tolerance_tables.training import TRAINING

__all__ = ["TOLERANCES", "Tolerance", "assert_close", "markdown_table", "readme_with_table"]

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
    **DAC,
    **QUANTIZERS,
    # --- piq ---
    "piq_st_grad": Tolerance(
        "PIQ straight-through gradients (inputs and codebook, both VQEmbedding branches) vs "
        "torch autograd, float32",
        1e-6,
        1e-7,
        "same identity / index_add_ routing of the same cotangents (observed bit-equal); "
        "margin for the summation order of codebook rows selected several times",
    ),
    "piq_model_f32": Tolerance(
        "PIQ Conv2dEncoder_v2 / PSI model outputs (eval and train mode) and training loss vs "
        "SpeechBrain, float32",
        1e-5,
        3e-5,
        "stacks of up to 7 convs and transposed convs (polyphase form, jaxlatent.nn.conv) summed "
        "in a different order by XLA and oneDNN, renormalised by BatchNorm; observed max abs "
        "error 1.7e-5 on outputs of size ~18 (relative < 1e-6 there) and 1.3e-5 on a train-mode "
        "output of 0.075",
    ),
    "piq_grad_f32": Tolerance(
        "PIQ PSI parameter gradients of a training loss (train-mode BatchNorm) vs torch "
        "autograd, float32",
        1e-4,
        1e-6,
        "backward through 5 transposed convs and 6 train-mode BatchNorms, whose gradient "
        "subtracts nearly equal batch sums; observed max abs error 6e-6 (relative 1.5e-5 "
        "beyond atol) on the smallest gradients",
    ),
    "piq_running_stats": Tolerance(
        "PIQ BatchNorm running statistics (and converted-back parameters) after a training "
        "forward vs SpeechBrain",
        1e-6,
        1e-6,
        "0.9 * running + 0.1 * batch statistic of conv outputs that agree to ~1e-6; observed "
        "max abs error 1.2e-7",
    ),
    **TRAINING,
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
    "vq_ema_data_parallel": Tolerance(
        "VectorQuantizer EMA state (codebook, cluster_size, embed_sum) and loss after k-means "
        "init, EMA steps and restarts: pmap / sharded jit / shard_map on 8 CPU devices vs one "
        "device on the global batch",
        1e-5,
        1e-6,
        "per-code sums of the batch are added in another order (8 partial segment sums, then "
        "a psum); measured max 2 ulp (1.5e-5 on sums ~110, 1.4e-6 on codes ~7); counts, codes "
        "and restart vectors are exact",
    ),
    "vq_ema_lucidrains_state": Tolerance(
        "VectorQuantizer EMA codebook, embed_sum and cluster_size after training steps vs "
        "lucidrains' vector-quantize-pytorch VectorQuantize (embed, embed_avg, cluster_size)",
        1e-5,
        1e-6,
        "torch sums codes with a one-hot einsum, XLA with segment_sum, in another order (the lerp "
        "and Laplace smoothing are the same float32 expressions); measured max abs 4.8e-7 on "
        "values up to ~12 (4 seeds x 3 steps, l2 and cosine)",
    ),
    "vq_ema_lucidrains_out": Tolerance(
        "VectorQuantizer quantized output and commitment loss vs lucidrains' VectorQuantize "
        "in training mode",
        1e-6,
        1e-6,
        "the same codebook rows, but torch's straight-through x + (q - x).detach() rounds to "
        "an ulp of abs(x) (measured max 4.8e-7 at abs(x) ~3); the loss mean is reduced in another "
        "order",
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
    "conv_transpose_forms": Tolerance(
        "jaxlatent's polyphase transposed convolution vs its fractionally strided one "
        "(same inputs and kernel), float32 CPU",
        1e-6,
        1e-6,
        "the same products summed in another order by two XLA convolutions (at most k/s * in "
        "terms per output): measured max 9.5e-7 on outputs up to 12 (an ulp)",
    ),
    "conv_gradient_forms": Tolerance(
        "a 1-d convolution's (and a transposed convolution's) gradients as matrix products "
        "(im2col or one product per tap) vs XLA's convolution gradients, float32 CPU",
        1e-5,
        1e-5,
        "the same products summed in another order (at most taps * channels terms per "
        "entry): over 5 seeds of the unit tests measured max 6.7e-6, and at most 2e-6 beyond "
        "1e-5 * |value|, on unit-variance data",
    ),
    "folded_conv_f32": Tolerance(
        "a convolution layer (weight-normalised, transposed) vs its FoldedConv (the kernel "
        "computed once, outside the call), and a DAC vs its fold_convolutions copy, float32 CPU",
        1e-6,
        1e-6,
        "the same kernel formula evaluated in another XLA computation (the norm's sum may "
        "round differently by an ulp) and, for the DAC, the same convolutions: measured max "
        "0 for single layers, 6e-8 on z and 3.6e-7 on audio of a tiny DAC",
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


README_START = "<!-- tolerances:start -->"
README_END = "<!-- tolerances:end -->"


def readme_with_table(readme: str) -> str:
    """`readme` with the text between the tolerance markers replaced by the current table."""
    head, rest = readme.split(README_START)
    _, tail = rest.split(README_END)
    return f"{head}{README_START}\n{markdown_table()}\n{README_END}{tail}"


if __name__ == "__main__":
    import pathlib
    import sys

    if "--update-readme" in sys.argv:
        path = pathlib.Path(__file__).parent.parent / "README.md"
        path.write_text(readme_with_table(path.read_text()))
    else:
        print(markdown_table())
