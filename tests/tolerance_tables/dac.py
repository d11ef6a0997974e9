"""Parity tolerances of DAC: its training losses, the codec, the discriminator, the converters."""

from __future__ import annotations

from tests.tolerance_tables import Tolerance

DAC: dict[str, Tolerance] = {
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
    "dac_sin_squared_derivative": Tolerance(
        "jaxlatent.models.dac.sin_squared_and_derivative_reduced's sin(2y) (float32) vs float64, "
        "abs(y) < 8192",
        0.0,
        2.5e-7,
        "2 * sin(r) * cos(r) of the same reduction and polynomials as dac_sin_squared: measured "
        "max 1.6e-7 absolute over 2M points per range (XLA's 2 * sin(y) * cos(y): 1.2e-7)",
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
}
