"""Every parity tolerance of the test suite, with the reason it is what it is.

Parity tests look their tolerance up here by name, so a tolerance cannot be loosened
without this table (and the README table generated from it) saying why.
`python -m tests.tolerances` prints the table as Markdown; `--update-readme` writes it into
README.md, and tests/unit/test_readme.py fails when the two differ.

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
    # --- dac training losses (jaxlatent.losses.dac) -----------------------------------------
    "dac_loss_stft_magnitude": Tolerance(
        "jaxlatent.losses.dac.stft_magnitude vs audiotools AudioSignal.stft().abs() on real "
        "clips (magnitudes up to ~130), float32",
        1e-4,
        3e-5,
        "same framing and window; XLA's and pocketfft's float32 FFTs round differently, an "
        "error that scales with the frame's energy (~1e-7 of the largest bin), so tiny bins "
        "need the absolute part",
    ),
    "dac_loss_l1": Tolerance(
        "L1Loss value (mean / sum of |x - y|) vs dac.nn.loss.L1Loss, float32",
        1e-6,
        1e-7,
        "same float32 differences; only the summation order of the reduction differs",
    ),
    "dac_loss_l1_grad": Tolerance(
        "L1Loss gradient w.r.t. the estimate (sign(x - y) / n), float32",
        1e-6,
        1e-9,
        "sign times a constant: equal up to the rounding of 1 / n",
    ),
    "dac_loss_sisdr": Tolerance(
        "SISDRLoss value in dB vs dac.nn.loss.SISDRLoss, float32",
        1e-5,
        1e-6,
        "sums of squares over ~10^4 samples are added in a different order by XLA and ATen "
        "(~sqrt(T) ulp), amplified by the ratio and log10 (measured 2e-6 relative)",
    ),
    "dac_loss_sisdr_grad": Tolerance(
        "SISDRLoss gradient w.r.t. the estimates (entries up to ~0.1), float32",
        1e-5,
        1e-7,
        "the same reductions in the backward pass; measured 4e-8 absolute",
    ),
    "dac_loss_stft_value": Tolerance(
        "MultiScaleSTFTLoss and MelSpectrogramLoss values vs dac.nn.loss, float32",
        1e-6,
        1e-6,
        "means of ~10^5 log-magnitude differences; FFT rounding and summation order differ "
        "(measured 1e-7 relative)",
    ),
    "dac_loss_stft_grad": Tolerance(
        "MultiScaleSTFTLoss gradient w.r.t. the estimate (entries up to ~0.8), float32",
        1e-3,
        1e-4,
        "d log10(|X|^2) / dx = 2 / (|X| ln 10) dX/dx: low-magnitude bins magnify the float32 "
        "FFT rounding of |X| (relative error up to ~1e-3 there); measured 5e-5 of the largest "
        "entry",
    ),
    "dac_loss_mel_grad": Tolerance(
        "MelSpectrogramLoss gradient w.r.t. a noisy estimate (clip + 0.01 noise: every mel "
        "band well above clamp_eps), float32",
        1e-5,
        1e-6,
        "mel bands sum many bins, so FFT rounding averages out; measured 1e-7 absolute at "
        "entries up to ~0.09",
    ),
    "dac_loss_mel_grad_near_clamp": Tolerance(
        "MelSpectrogramLoss gradient w.r.t. a low-passed estimate (entries up to ~10), whose "
        "high mel bands in the clips' silences are within a few times clamp_eps, float32",
        1e-3,
        5e-3,
        "d log10(m) / dm = 1 / (m ln 10) reaches ~4e4 at m ~ 1e-5, where float32 FFT rounding "
        "(~1e-7 of the frame's energy) is ~1e-3 of m; measured 2e-3 absolute (2e-4 of the "
        "largest entry), while a framing, window or filterbank error changes entries by O(1)",
    ),
    "dac_loss_gan": Tolerance(
        "GANLoss discriminator / generator / feature-matching values with a small stand-in "
        "conv discriminator (the same weights in both), float32",
        1e-5,
        1e-6,
        "convolutions and means accumulate in a different order in XLA and ATen",
    ),
    "dac_loss_gan_grad": Tolerance(
        "GANLoss gradients w.r.t. the stand-in discriminator's weights and the audio, float32",
        1e-4,
        1e-5,
        "weight gradients sum over batch x time (~4000 terms) in a different order",
    ),
    "dac_discriminator_maps": Tolerance(
        "every feature map of every sub-discriminator of dac.model.discriminator.Discriminator "
        "(weights converted by converters.dac.load_discriminator), divided by the map's "
        "largest entry, float32 CPU, real clips at 44.1 kHz",
        0.0,
        1e-4,
        "up to six convolutions of up to 5120 terms (MPD, MSD) or an FFT and five convolutions "
        "(MRD) accumulated in a different order by XLA and ATen (whose order also varies with "
        "its threads); measured 4.8e-6 to 3.1e-5 of the map's largest entry (MRD 2048, one "
        "entry), while a framing, band or padding error is O(1)",
    ),
    "dac_discriminator_gan": Tolerance(
        "GANLoss discriminator / adversarial / feature-matching values on the real "
        "discriminator (converted weights), float32",
        1e-5,
        1e-6,
        "means of the maps above; measured 2.4e-7 absolute at values ~3",
    ),
    "dac_discriminator_param_grad": Tolerance(
        "GANLoss gradients w.r.t. every discriminator parameter (weight_g, weight_v, bias), "
        "divided by the tensor's largest entry, float32",
        0.0,
        5e-3,
        "LeakyReLU's kink and the feature-matching L1's sign make the gradient discontinuous: "
        "pre-activations (and map differences) within rounding of 0 take either side in the "
        "two frameworks. The reference is as sensitive to itself: scaling its input by 1 + 3e-7 "
        "moves its G-loss gradient of MPD conv 3 by 3.0e-3 of the largest entry. Measured "
        "against it: 2.7e-3 (that layer's bias, 0.1 s clips), 5.6e-5 on 0.2 s clips",
    ),
    "dac_discriminator_audio_grad": Tolerance(
        "GANLoss gradients w.r.t. the input audio (D loss: real; G loss: fake), divided by "
        "the largest entry, float32",
        0.0,
        5e-4,
        "backward through the whole discriminator, STFT and preprocessing, with the kinks of "
        "param_grad's reason (2% of the entries differ by 1e-5 to 3e-5 in one passage) and the "
        "peak normalisation's gradient summed into the peak sample; measured 8.6e-5 (that "
        "sample) and 1.2e-7 for the G loss",
    ),
    # --- dac ---------------------------------------------------------------------------------
    "dac_snake_f32": Tolerance(
        "Snake activation, float32 CPU",
        1e-6,
        1e-6,
        "same float32 formula; torch's SLEEF sine and jaxlatent's Cephes-polynomial sin**2 "
        "(jaxlatent.models.dac.sin_squared, within 1.5e-7 of exact) differ by an ulp or two of "
        "the output: measured max 9.5e-7 on outputs up to ~15 (abs(alpha * x) up to ~80)",
    ),
    "dac_sin_squared": Tolerance(
        "jaxlatent.models.dac.sin_squared (float32) vs sin(y)**2 in float64, abs(y) < 8192",
        0.0,
        1.5e-7,
        "Cephes single-precision sine/cosine polynomials after an exact 3-part reduction by "
        "pi/2, squared: measured max 1.4e-7 absolute (XLA's jnp.sin(y)**2: 9e-8)",
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
    "dac_model_small_f32": Tolerance(
        "small DAC model (odd strides): z, latents, losses and decoded audio of forward, "
        "encode, from_codes and decode vs dac.DAC / SpeechBrain DAC, float32 CPU",
        1e-5,
        1e-6,
        "same float32 layers as dac_block_f32 plus the quantizer's 1x1 projections; codes "
        "are equal, so only accumulation order differs: measured max 3.6e-7 (from_codes z up to "
        "2.5), 1.3e-7 on audio",
    ),
    "dac_model_full_f32": Tolerance(
        "released DAC configurations (full size): z, latents, losses and decoded audio of "
        "forward vs dac.DAC, float32 CPU",
        1e-5,
        1e-5,
        "as dac_codec_f32 (fan-in up to 10k terms per output) through the encoder, quantizer "
        "and decoder: measured max 2.4e-6 on latents (|x| <= 3.3), 1.4e-6 on z (<= 9), 2.8e-7 on "
        "audio and 4.8e-7 on losses (~7) over the four variants",
    ),
    "dac_model_grad_f32": Tolerance(
        "gradients of commitment + codebook loss + sum(w * z) w.r.t. every encoder and "
        "quantizer parameter of a small DAC model vs torch autograd",
        1e-4,
        1e-5,
        "backward through weight norm, Snake and the quantizers' straight-through path, summed "
        "in another order: measured max 2.4e-6 absolute on gradients up to ~21",
    ),
    "dac_hf_small_f32": Tolerance(
        "tiny transformers DacModel (odd strides) converted by converters.dac_hf: z, latents, "
        "losses and decoded audio of encode, decode and from_codes, float32 CPU",
        1e-5,
        1e-6,
        "same float32 layers as dac_model_small_f32 (only the accumulation order differs, codes "
        "equal): measured max 2.2e-8 on z (|z| <= 0.2), latents and audio (<= 0.1), 4.7e-10 on "
        "the losses",
    ),
    "dac_hf_full_f32": Tolerance(
        "released configurations as transformers DacModel (full size, fused weights): z, "
        "latents, losses and decoded audio, float32 CPU",
        1e-5,
        1e-5,
        "as dac_model_full_f32 (fan-in up to 10k terms, accumulation order only; codes equal): "
        "measured max 2.4e-6 on latents (|x| <= 0.95), 1.2e-7 on z (<= 0.69), 9.7e-8 on audio "
        "(<= 0.11) and 9.5e-7 on the losses (<= 1.75) over the four variants",
    ),
    "dac_fused_kernel": Tolerance(
        "DAC converted from fused weights: recomputed kernel g * v / ||v|| vs the fused "
        "weight, and outputs vs the weight-normed conversion",
        1e-6,
        2e-7,
        "weight_g = ||w|| is rounded once to float32, so g * v / ||v|| is w up to an ulp "
        "(measured max 3e-8 on weights up to 0.16); through the network that gives a few ulp "
        "(measured max 1.2e-7 on audio up to 0.38)",
    ),
    # dac-io: resampling, loudness, compress / decompress (jaxlatent.codec)
    "dacio_resample": Tolerance(
        "jaxlatent.codec.resample vs julius.resample_frac (the official compress), float32 "
        "audio in [-1, 1]",
        0.0,
        2e-6,
        "same float32 sinc kernels and products; only the summation order of the 200-tap "
        "dot products differs (measured max 6e-7 on the real clips)",
    ),
    "dacio_loudness_db": Tolerance(
        "integrated loudness (LUFS) vs audiotools Meter (CPU IIR path) and the normalised "
        "audio's gain",
        0.0,
        2e-5,
        "same filters and gating; block energies are summed in float64 here and in float32 by "
        "torch, so the float32 result differs by at most an ulp (measured max 1.9e-6 dB)",
    ),
    "dacio_decoded_audio": Tolerance(
        "decompress output (decoded, loudness-restored, resampled audio in [-1, 1]) vs the "
        "official decompress of the same codes, float32 CPU",
        0.0,
        1e-5,
        "same codes; the decoder's float32 convolutions sum in a different order (as "
        "dac_codec_f32), then the same gain and resampling filter: measured max 6e-7 "
        "(narrow 44.1 kHz, stereo, chunked), 6.8e-7 (full-size 44.1 kHz) and 3.4e-7 "
        "(full-size 16 kHz)",
    ),
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
    "fsq_grad": Tolerance(
        "FSQ-family gradients of sum(w * quantized) w.r.t. the input and the projection "
        "parameters vs torch autograd, float32",
        1e-5,
        1e-5,
        "the projection-weight gradients sum ~100-300 products over batch x time in another "
        "order; gradients reach ~80, measured max abs error 1.3e-5 (4e-7 of the largest "
        "entry); input gradients differ by an ulp",
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
        1e-5,
        "projection-weight gradients sum ~100-300 products (straight-through plus the entropy "
        "softmax's) in another order; gradients reach ~60, measured max abs error 9.5e-6 (8e-7 "
        "of the largest entry)",
    ),
    "scalar_vq_data_parallel": Tolerance(
        "ResidualLFQ / ResidualFSQ global-batch statistics (batch entropy, perplexities) and "
        "pmean-ed per-device losses under pmap / sharded jit / shard_map vs one device",
        1e-6,
        1e-7,
        "the same float32 sums split into per-device partial sums then psum-ed (or reduced by "
        "XLA across shards); measured max abs error 2.4e-7 on entropies up to 2.7",
    ),
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
    # --- training ----------------------------------------------------------------------------
    "train_data_parallel": Tolerance(
        "parameters and BatchNorm statistics after 3 SGD steps: 8-device pmap, sharded jit and "
        "shard_map vs one device on the same global batch (float32 CPU)",
        1e-5,
        1e-6,
        "the per-device partial sums plus all-reduce add the batch terms in another order than "
        "one device; measured max difference 1.2e-7 (SGD: no Adam sign amplification)",
    ),
    "train_gan_step": Tolerance(
        "GANObjective's step (generator forward once, pulled back with jax.vjp) vs the recipe "
        "written with jax.grad (generator forward recomputed), tiny convs, SGD, float32 CPU",
        1e-6,
        1e-7,
        "the same operations, fused differently by XLA: measured max difference 4.8e-7 (on the "
        "loss, ~5; parameters closer)",
    ),
    "train_gan_parallel": Tolerance(
        "GANObjective after 3 SGD steps (discriminator and generator parameters, logged "
        "metrics): 8-device pmap, sharded jit and shard_map vs one device, same global batches",
        1e-5,
        1e-6,
        "per-device partial sums plus all-reduce add the batch terms in another order than "
        "one device: measured max difference 1.0e-7 on parameters, 9.5e-7 on logged losses "
        "of ~1-10",
    ),
    "train_dac_gan_parallel": Tolerance(
        "`jaxlatent train --model dac` (tiny, DAC's adversarial recipe, batch 8) after 4 AdamW "
        "steps under shard_map on 8 CPU devices vs one device (same global batches and key): "
        "both models' parameters, each array divided by its largest magnitude",
        0.0,
        2e-3,
        "reductions in another order (~1e-7 relative, see train_dac_gan_parallel_metrics) "
        "amplified by AdamW (g / sqrt(v) turns round-off on near-zero gradient components into "
        "steps of ~lr) and by near-tied codes of the quantizer choosing differently: measured "
        "max 6.1e-4 (generator), 4.9e-5 (discriminator); 1.5e-4 / 4.6e-4 with 1024-sample "
        "segments",
    ),
    "train_dac_gan_parallel_moments": Tolerance(
        "the same two runs' AdamW moments (mu, nu) of both models, each array divided by its "
        "largest magnitude",
        0.0,
        2e-2,
        "a near-tied code chosen differently changes a step's gradient discretely, which the "
        "moments keep (0.2 of it in mu): measured max 7.7e-3 (generator mu, a 4-element "
        "weight-norm gain), 4.5e-3 (generator nu), 5.1e-4 (discriminator) while every logged "
        "loss agrees to 3e-7",
    ),
    "train_dac_gan_parallel_metrics": Tolerance(
        "the same two runs' logged values at every step (losses of both models, gradient "
        "norms, mel/STFT/waveform metrics)",
        2e-6,
        0.0,
        "per-device partial sums plus all-reduce in another order: measured max relative "
        "difference 3.0e-7 over steps 1-4 (3.5e-7 with 1024-sample segments)",
    ),
    "train_vq_ema_parallel": Tolerance(
        "`jaxlatent train --model vq_vae_ema` after 20 Adam steps: parameters, Adam moments, "
        "EMA codebook state and logged losses under shard_map on 8 CPU devices vs one device, "
        "same global batches and key",
        1e-5,
        1e-5,
        "gradients and per-code sums are reduced in another order (~1e-7 relative); Adam "
        "divides by sqrt(v), which enlarges that on components with small, cancelling "
        "gradients: measured max 1.5e-6 on parameters of size ~0.06 (lr 2e-3), 1.1e-5 on EMA "
        "code sums up to 56, i.e. at most 0.15 of this tolerance; code counts are exact",
    ),
    "global_norm_parallel": Tolerance(
        "GlobalNorm running mean/std and outputs with axis_name under 8-device shard_map / "
        "pmap vs one call on the whole batch; a NormalizingAutoencoder's parameters and "
        "GlobalNorm statistics after 2 SGD steps in every data-parallel mode vs one device",
        1e-5,
        1e-6,
        "per-device partial sums plus psum add the elements in another order than one "
        "device: measured max 3e-7 relative on the running mean/std, 1.4e-6 absolute on "
        "outputs up to 7.5 and 1.3e-6 on parameters; counts are compared exactly",
    ),
    "train_nae_parallel": Tolerance(
        "`jaxlatent train --model sb_normalizing_ae` after 20 Adam steps under shard_map on 8 "
        "CPU devices vs one device (same global batches and key): parameters, Adam moments, "
        "GlobalNorm statistics and logged values, each array divided by its largest magnitude",
        0.0,
        1e-5,
        "reductions in another order (~1e-7 relative) amplified by Adam's division by sqrt(v); "
        "element-wise relative errors reach 7e-2 on cancelling gradient components, so each "
        "array is scaled by its largest magnitude: measured max 2e-6 (parameters), 3e-7 "
        "(running mean/std); counts and step_count are compared exactly",
    ),
    "train_piq_parallel": Tolerance(
        "`jaxlatent train --model piq`, one Adam step: BatchNorm running statistics, logged "
        "losses and eval metrics under shard_map on 8 CPU devices vs one device, same state and "
        "global batch",
        1e-5,
        1e-7,
        "batch statistics and losses are reduced in another order. Measured over seeds 0-5, each "
        "with XLA's default threads (2 cores) and with one (taskset -c 0, "
        "--xla_cpu_multi_thread_eigen=false): at most 4.8e-9 beyond rtol on the statistics (20x "
        "margin), 1.3e-6 relative on the logged gradient norm and 7.6e-7 on losses (8x), 5.1e-8 "
        "absolute on the eval reconstruction MSE (5e-3)",
    ),
    "train_piq_parallel_moments": Tolerance(
        "`jaxlatent train --model piq`, one Adam step: Adam's moments mu (0.1 g) and nu "
        "(0.001 g**2) under shard_map on 8 CPU devices vs one device, each moment divided by its "
        "largest magnitude; the 8 conv biases that feed a BatchNorm (true gradient exactly 0) are "
        "only checked to be noise-sized (below 1e-4 of the largest first moment)",
        1e-5,
        1e-5,
        "gradients are reduced in another order, and a reduction's error scales with the size "
        "of the gradients, not of the element: measured over seeds 0-4 with default and with one "
        "XLA thread (as train_piq_parallel), at most 7.5e-7 (mu) and 7.3e-8 (nu) of the largest "
        "moment beyond rtol (13x margin). The zero-gradient biases' first moments are noise of "
        "either sign up to 1.1e-6 of it (the -6e-8 vs 7e-8 that failed an absolute 1e-7). Seed 5 "
        "(both thread counts) differs by 3.4e-4 throughout the model while its losses agree to "
        "8e-7: a discrete choice (a near-tied code or ReLU kink) goes the other way; the test "
        "runs seed 0, which has none under either thread count (4.3e-7 and 6.7e-7)",
    ),
    "train_multiprocess": Tolerance(
        "VAE parameters after 4 SGD steps: 2 processes x 4 CPU devices (gloo) vs one process "
        "on one device, same global batch and PRNG key",
        1e-5,
        1e-7,
        "sharded-jit reductions split over 8 devices are summed in another order than on one "
        "device; measured max difference 1.5e-8",
    ),
    "train_bf16": Tolerance(
        "loss of a bf16 mixed-precision step vs the float32 step (same params and batch)",
        3e-2,
        0.0,
        "bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 2e-3 per operation); "
        "a few layers accumulate ~1e-2",
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
