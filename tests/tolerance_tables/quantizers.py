"""Parity tolerances of the quantizers (generic, FSQ/LFQ/SimVQ families, rotation trick)."""

from __future__ import annotations

from tests.tolerance_tables import Tolerance

QUANTIZERS: dict[str, Tolerance] = {
    # --- quantizers ---
    "vq_rotation_out": Tolerance(
        "VectorQuantizer quantized output with the rotation trick vs vector-quantize-pytorch's "
        "rotate_to(x, q) in training mode, float32",
        1e-6,
        5e-6,
        "jaxlatent returns the code q exactly; torch's rotate_to computes "
        "s (x - 2 (x.w) w + 2 (x.u) q^) in float32, equal to q up to rounding; measured max abs "
        "error 1.7e-6 on values up to ~2.9 (4 seeds x 3 steps)",
    ),
    "vq_rotation_grad": Tolerance(
        "input gradients through the rotation trick vs torch autograd through rotate_to",
        1e-6,
        5e-6,
        "the same detached rotation applied to the cotangent, matrix products in another "
        "order; measured max abs error 1.9e-6 on gradients up to ~4.4 (VectorQuantizer, 4 "
        "seeds x 3 steps) and 2.9e-6 on gradients up to ~9.2 (ResidualVQ / GroupedResidualVQ, "
        "3 seeds x 4 steps)",
    ),
    "simvq_out": Tolerance(
        "SimVQ / ResidualSimVQ quantized outputs vs vector-quantize-pytorch 1.32.0, float32",
        1e-6,
        2e-6,
        "the same codes (indices equal) through the same Linear in another accumulation order; "
        "torch's rotate_to / x + (q - x).detach() round the forward value, jaxlatent returns "
        "the codes; measured max abs error 7.2e-7 on outputs up to ~1.5 (3 seeds, random and "
        "DAC latents, rotation and straight-through, residual with dropout)",
    ),
    "simvq_loss": Tolerance(
        "SimVQ / ResidualSimVQ commitment losses vs vector-quantize-pytorch 1.32.0",
        1e-5,
        1e-6,
        "means of squared differences reduced in another order; measured max rel error "
        "2.6e-7 (abs 2.4e-7 on losses up to ~1.1)",
    ),
    "simvq_grad": Tolerance(
        "SimVQ / ResidualSimVQ gradients of loss + sum(w * quantized) w.r.t. the input and "
        "the code transforms vs torch autograd",
        1e-6,
        2e-6,
        "the rotation and the Linear's weight gradient (a sum over K codes' cotangents) in "
        "another order; measured max abs error 7.2e-7 on gradients up to ~7.1 (3 seeds, "
        "random and DAC latents, rotation and straight-through, residual with dropout)",
    ),
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
    "fsq_out": Tolerance(
        "FSQ / ResidualFSQ / GroupedResidualFSQ quantized outputs (and decoded indices) vs "
        "vector-quantize-pytorch 1.32.0, float32",
        1e-6,
        1e-6,
        "same float32 formulas and evaluation order (indices equal); the projections' matmuls "
        "accumulate in a different order (XLA vs oneDNN); measured max abs error 1.5e-7 on "
        "outputs up to ~1",
    ),
    "rfsq_index_tie": Tolerance(
        "deep ResidualFSQ layers (8 layers) vs vector-quantize-pytorch 1.32.0: where a vector's "
        "indices first differ, the reference's distance to the rounding boundary of each "
        "differing channel, in the units of the soft-clamped input (abs(x) <= 1 + 1/(L-1))",
        0.0,
        5e-7,
        "layer i quantizes residual * L**i, so one ulp of the input (1.2e-7 near 1) is 0.25 of "
        "a level at layer 7 with L = 8: float32 round-off decides near-ties. XLA's tanh (up to "
        "4 ulp from torch's, which is correctly rounded but for 0.03%) in the soft clamp and "
        "XLA's fusion of 2/(L-1) * b - 1 into an FMA each flip such ties (a float32 emulation "
        "in the reference's order with torch's tanh matches it exactly; with XLA's tanh or an "
        "FMA, 75% / 70% at layer 7); measured max 1.7e-7 over the test's 2 configurations "
        "(2.2e-7 over 4 before codes_to_indices summed channels one by one; ~4 ulp "
        "allowed). The reference agrees with its own float64 evaluation on 67% of layer 7",
    ),
    "fsq_grad": Tolerance(
        "FSQ-family gradients of sum(w * quantized) w.r.t. the input and the projection "
        "parameters vs torch autograd, float32",
        1e-5,
        1e-5,
        "the projection-weight gradients sum ~100-300 products over batch x time in another "
        "order; gradients reach ~80, measured max abs error 1.3e-5 (4e-7 of the largest "
        "entry); input gradients differ by an ulp",
    ),
    "projection_grad": Tolerance(
        "Quantizer projections (FSQ, LFQ, ResidualFSQ / LFQ / VQ): derivatives (reverse and "
        "forward mode) through the fast kernel-gradient rule vs JAX's autodiff of the same "
        "nnx.Linear, float32",
        1e-5,
        5e-4,
        "the kernel term is a broadcast product summed over the batch instead of a matmul: the "
        "same float32 products accumulated in another order; measured max abs error 2.4e-4 on "
        "kernel gradients up to ~830 (3e-7 of the largest entry; 165-term sums), 4.8e-6 on "
        "tangents up to ~42; bias and input gradients equal",
    ),
    "lfq_out": Tolerance(
        "LFQ / ResidualLFQ / GroupedResidualLFQ quantized outputs (training and evaluation, "
        "decoded indices) vs vector-quantize-pytorch 1.32.0, float32",
        1e-6,
        1e-6,
        "codes are exactly ±codebook_scale (or their l2-normalised values); the projections' "
        "matmuls accumulate in another order and torch's training output z + (q - z) is an ulp "
        "off the code; measured max abs error 2.4e-7 on outputs up to ~1.6",
    ),
    "lfq_loss": Tolerance(
        "LFQ-family auxiliary losses and their breakdown (per-sample entropy, batch entropy, "
        "commitment), float32",
        2e-6,
        1e-6,
        "softmax over the codes and entropy sums in float32 reduced in another order; measured "
        "max abs error 9.5e-7 on entropies up to ~3.3 (relative 3e-7)",
    ),
    "lfq_grad": Tolerance(
        "LFQ-family gradients of loss + sum(w * quantized) w.r.t. the input and the "
        "projection parameters vs torch autograd, float32",
        1e-5,
        5e-5,
        "projection-weight gradients sum ~100-300 products (straight-through plus the entropy "
        "softmax's) in another order, the kernel terms as broadcast products summed over the "
        "batch (the projections' fast kernel-gradient rule); gradients reach ~60, so an entry "
        "that cancels to ~1 keeps the absolute error of its ~50-sized terms. Measured max abs "
        "error 1.3e-5 on a project_in weight gradient up to ~51 on an AMD EPYC (9.5e-6 with the "
        "matmul kernel gradient), 2.66e-5 on an entry of 0.76 of one up to ~13 on an Intel Xeon "
        "(1.9e-5 beyond the relative part; deterministic on each machine, 21 comparisons)",
    ),
    "scalar_vq_data_parallel": Tolerance(
        "ResidualLFQ / ResidualFSQ global-batch statistics (batch entropy, perplexities) and "
        "pmean-ed per-device losses under pmap / sharded jit / shard_map vs one device",
        1e-6,
        1e-7,
        "the same float32 sums split into per-device partial sums then psum-ed (or reduced by "
        "XLA across shards); measured max abs error 2.4e-7 on entropies up to 2.7",
    ),
}
