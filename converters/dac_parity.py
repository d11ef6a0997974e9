"""`jaxlatent parity dac`: run the torch reference and jaxlatent on the same audio, stage by stage.

For a DAC checkpoint (release ``.pth``, SpeechBrain or fused state_dict) this builds the
official ``dac.DAC`` (descript-audio-codec 1.0.0) with the checkpoint's weights; for a Hugging
Face transformers ``DacModel`` (a ``save_pretrained`` folder or its state_dict,
:func:`converters.dac_formats.checkpoint_format`), transformers' own ``DacModel``. The
jaxlatent model comes through :func:`converters.dac_formats.convert_any`. Both are fed the
same audio (resampled to the model rate, padded to the hop length) and reports, per stage:

* ``encoder``: the continuous latent ``z_e``;
* ``quantizer i``: the quantized output of codebook ``i`` (each side on its own residual, so
  differences propagate as they would) and the agreement of its codes;
* ``z``: the sum of the quantizer outputs;
* ``decoder``: the decoded audio (each side decoding its own ``z``);

with the maximum absolute error and the maximum relative error ``max|a - b| / max|b|``, plus
the time of an encode and a decode in torch (eager, no_grad, second run: the first warms up
TorchScript) and jaxlatent (jit, median of three runs; compilation reported separately), and
the precision each side ran at: jaxlatent's setting (:mod:`jaxlatent.precision`) and backend;
torch's ``float32 (CPU)``, or on CUDA its ``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32`` flags (TF32 convolutions and matmuls when set).

torch, ``dac`` and ``transformers`` are imported here only; ``dac`` imports torchaudio, which
is replaced by a minimal stub when it is not installed (nothing here calls it).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import time
import warnings

import jax
import numpy as np
from flax import nnx

from converters.dac import normalize_state_dict, read_checkpoint
from converters.dac_formats import checkpoint_format, convert_any
from converters.dac_hf import check_hf_state_dict, config_to_hf, read_hf
from converters.torchaudio_stub import install_torchaudio_stub
from jaxlatent._checks import check_n_quantizers
from jaxlatent.codec.resample import resample
from jaxlatent.compilation import compiled
from jaxlatent.datasets import read_audio
from jaxlatent.models.dac import DAC
from jaxlatent.precision import (
    DEFAULT_PRECISION,
    PrecisionLike,
    precision_name,
    resolve_precision,
)

__all__ = ["ParityReport", "StageError", "parity_report", "torch_precision"]


def _import_dac():
    """The official ``dac`` package (a stub torchaudio is installed if there is none)."""
    install_torchaudio_stub()
    try:
        import dac
    except ImportError as e:
        raise ImportError(
            "`jaxlatent parity dac` needs torch and descript-audio-codec "
            "(bash .ci/setup, or in the clone pip install '.[torch]' descript-audio-codec)"
        ) from e
    return dac


def _release_reference(checkpoint, config):
    """The official ``dac.DAC`` holding a release-family checkpoint's weights."""
    dac = _import_dac()
    import torch

    state_dict, _ = read_checkpoint(checkpoint)
    with warnings.catch_warnings():  # the reference's own torch.nn.utils.weight_norm warning
        warnings.simplefilter("ignore", FutureWarning)
        tmodel = dac.DAC(**config.to_kwargs()).eval()
    legacy, _ = normalize_state_dict(state_dict, config)
    tmodel.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in legacy.items()})
    return tmodel


def _transformers_reference(checkpoint, config):
    """transformers' ``DacModel`` holding a transformers-family checkpoint's weights."""
    install_torchaudio_stub()
    try:
        import torch
        from transformers import DacConfig, DacModel
    except ImportError as e:
        raise ImportError(
            "`jaxlatent parity dac` of a transformers DacModel needs torch and transformers>=5 "
            "(pip install 'transformers>=5')"
        ) from e
    if os.path.isdir(checkpoint):
        return DacModel.from_pretrained(os.fspath(checkpoint)).eval()
    state_dict, _, _ = read_hf(checkpoint)
    hf_config = {k: v for k, v in config_to_hf(config).items() if k != "model_type"}
    tmodel = DacModel(DacConfig(**hf_config)).eval()
    if check_hf_state_dict(state_dict, config) != "fused":
        tmodel.apply_weight_norm()
        legacy, _ = normalize_state_dict(state_dict)
        g, v = "parametrizations.weight.original0", "parametrizations.weight.original1"
        state_dict = {
            k.replace(".weight_g", f".{g}").replace(".weight_v", f".{v}"): val
            for k, val in legacy.items()
        }
    tmodel.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state_dict.items()})
    return tmodel


@dataclasses.dataclass(frozen=True)
class StageError:
    """Error of one stage: jaxlatent (`a`) against torch (`b`)."""

    stage: str
    max_abs: float
    max_rel: float
    code_agreement: float | None = None  # fraction of equal codes (quantizers only)

    @classmethod
    def of(cls, stage: str, a: np.ndarray, b: np.ndarray, codes=None) -> StageError:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{stage}: shapes differ, jaxlatent {a.shape} vs torch {b.shape}")
        err = float(np.abs(a - b).max())
        scale = float(np.abs(b).max())
        agreement = None if codes is None else float(np.mean(codes[0] == codes[1]))
        return cls(stage, err, err / scale if scale > 0 else err, agreement)


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """What :func:`parity_report` measured."""

    checkpoint: str
    audio: str
    seconds: float
    sample_rate: int
    stages: tuple[StageError, ...]
    code_agreement: float
    torch_encode_s: float
    torch_decode_s: float
    jax_encode_s: float
    jax_decode_s: float
    jax_compile_s: float
    #: jaxlatent's precision setting and backend, e.g. ``"highest (cpu)"``.
    jax_precision: str
    #: the torch side's, e.g. ``"float32 (CPU)"`` or ``"cuda: matmul allow_tf32=False, cudnn
    #: allow_tf32=True"``.
    torch_precision: str

    def format(self) -> str:
        lines = [
            f"DAC parity: {self.checkpoint}",
            f"audio: {self.audio}, {self.seconds:.2f} s at {self.sample_rate} Hz",
            "",
            f"{'stage':<14} {'max abs err':>12} {'max rel err':>12} {'codes equal':>12}",
        ]
        for s in self.stages:
            codes = "" if s.code_agreement is None else f"{100 * s.code_agreement:.2f} %"
            lines.append(f"{s.stage:<14} {s.max_abs:12.3e} {s.max_rel:12.3e} {codes:>12}")
        lines += [
            "",
            f"all codes equal: {100 * self.code_agreement:.3f} %",
            f"{'':<10} {'encode':>10} {'decode':>10}",
            f"{'torch':<10} {self.torch_encode_s:9.3f}s {self.torch_decode_s:9.3f}s  (eager)",
            f"{'jaxlatent':<10} {self.jax_encode_s:9.3f}s {self.jax_decode_s:9.3f}s  "
            f"(jit; compile {self.jax_compile_s:.1f} s, {jax.default_backend()})",
            f"precision: jaxlatent {self.jax_precision}; torch {self.torch_precision}",
        ]
        return "\n".join(lines)


def _default_audio() -> str:
    return str(importlib.resources.files("jaxlatent") / "data" / "speech_16k_spk1_snt1.wav")


def torch_precision(device) -> str:
    """What precision torch runs float32 convolutions and matmuls at on `device`.

    Args:
      device: a ``torch.device``.

    Returns:
      ``"float32 (CPU)"`` off CUDA; on CUDA the TF32 flags, ``"cuda: matmul allow_tf32=B,
      cudnn allow_tf32=B"`` (``torch.backends.cuda.matmul.allow_tf32``: matmuls,
      ``torch.backends.cudnn.allow_tf32``: convolutions; TF32 where True on Ampere and later).
    """
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return "float32 (CPU)"
    return (
        f"cuda: matmul allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
        f"cudnn allow_tf32={torch.backends.cudnn.allow_tf32}"
    )


def _timed(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _jax_stages(model, x, *, n_q):
    """Encoder output, and every quantizer's output and codes (each on its own residual)."""
    z_e = model.encoder(x)
    residual, z_q, codes = z_e, [], []
    for q in model.quantizer.quantizers[:n_q]:
        out = q(residual)
        residual = residual - out.z_q
        z_q.append(out.z_q)
        codes.append(out.indices)
    return z_e, z_q, codes


def _check_model_precision(model: DAC, precision: PrecisionLike) -> None:
    if model.precision != resolve_precision(precision):
        raise ValueError(
            f"the model was built with precision {model.precision}, not {precision!r}: "
            f"pass precision= as it was built"
        )


def parity_report(
    checkpoint: str | os.PathLike,
    *,
    audio: str | os.PathLike | None = None,
    seconds: float = 2.0,
    n_quantizers: int | None = None,
    precision: PrecisionLike = DEFAULT_PRECISION,
    torch_device: str = "cpu",
    model: DAC | None = None,
) -> ParityReport:
    """Compare jaxlatent with the official ``dac.DAC`` on one clip, stage by stage.

    Args:
      checkpoint: a DAC checkpoint file, or a transformers ``DacModel`` folder (then the
        torch side is transformers' model).
      audio: an audio file (first channel used); default: bundled 16 kHz speech.
      seconds: how much of the clip to use (from the start).
      n_quantizers: codebooks to run (default all).
      precision: the jaxlatent model's precision (:mod:`jaxlatent.precision`; default
        ``"highest"``, the reference's float32 values).
      torch_device: the torch device of the reference (``"cpu"``, ``"cuda"``, ...; its
        TF32 flags are the caller's, ``torch.backends.cuda.matmul.allow_tf32`` and
        ``torch.backends.cudnn.allow_tf32``).
      model: the jaxlatent model of `checkpoint` when the caller has already converted it
        (``jaxlatent demo`` does; a conversion costs seconds), built with `precision`;
        default: converted here.

    Returns:
      A :class:`ParityReport` (``.format()`` gives the printed table).

    Raises:
      ImportError: without torch / descript-audio-codec (transformers for its checkpoints).
      ValueError: for an unreadable checkpoint or audio file, or bad arguments (an unknown
        `precision` included, or a `model` built with another precision).
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    jax_precision = f"{precision_name(precision)} ({jax.default_backend()})"
    if model is None:
        config, model = convert_any(checkpoint, precision=precision)
    else:
        config = model.config
        _check_model_precision(model, precision)
    n_q = check_n_quantizers(n_quantizers, config.n_codebooks)
    if checkpoint_format(checkpoint) == "transformers":
        tmodel = _transformers_reference(checkpoint, config)
    else:
        tmodel = _release_reference(checkpoint, config)
    import torch

    tmodel = tmodel.to(torch_device)
    audio_path = os.fspath(audio) if audio is not None else _default_audio()
    clip = read_audio(audio_path)
    x = clip.audio[: max(1, int(seconds * clip.sample_rate)), 0]
    x = resample(x, clip.sample_rate, config.sample_rate)
    hop = config.hop_length
    x = np.pad(x, (0, -len(x) % hop))[None, :, None].astype(np.float32)  # [1, samples, 1]
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))).to(torch_device)

    def to_last(t):  # torch [batch, channels, time] -> numpy [batch, time, channels]
        return np.moveaxis(t.detach().cpu().numpy(), 1, -1)

    def sync():  # the end of a timed torch region (asynchronous devices)
        if xt.device.type == "cuda":
            torch.cuda.synchronize()

    # torch, stage by stage; timed on a second run (the first one warms up TorchScript's Snake)
    def run_torch():
        start = time.perf_counter()
        ze = tmodel.encoder(xt)
        residual, zq, stages = ze, 0, []
        for q in tmodel.quantizer.quantizers[:n_q]:
            zq_i, _, _, codes_i, _ = q(residual)
            stages.append((to_last(zq_i), codes_i.cpu().numpy()))
            zq, residual = zq + zq_i, residual - zq_i
        sync()
        mid = time.perf_counter()
        audio_out = tmodel.decoder(zq)
        sync()
        return ze, zq, stages, audio_out, mid - start, time.perf_counter() - mid

    with torch.no_grad():
        run_torch()
        ze_t, zq_t, stages_t, audio_t, torch_encode, torch_decode = run_torch()

    # jaxlatent, compiled as the codec compiles it, stage by stage and timed
    graphdef, state = nnx.split(model)
    encode = compiled(DAC.encode, graphdef, n_quantizers=n_q)
    decode = compiled(DAC.decode, graphdef)
    start = time.perf_counter()
    enc = jax.block_until_ready(encode(state, x))
    dec = jax.block_until_ready(decode(state, enc.z))
    compile_s = time.perf_counter() - start
    jax_encode = _timed(lambda: encode(state, x).codes)
    jax_decode = _timed(lambda: decode(state, enc.z))
    ze_j, zq_j, codes_j = compiled(_jax_stages, graphdef, n_q=n_q)(state, x)
    stages = [StageError.of("encoder", ze_j, to_last(ze_t))]
    for i, (zq_ref, codes_ref) in enumerate(stages_t):
        stages.append(
            StageError.of(
                f"quantizer {i}", zq_j[i], zq_ref, codes=(np.asarray(codes_j[i]), codes_ref)
            )
        )
    stages.append(StageError.of("z", enc.z, to_last(zq_t)))
    stages.append(StageError.of("decoder", dec, to_last(audio_t)))
    codes_t = np.stack([c for _, c in stages_t], axis=1)
    return ParityReport(
        checkpoint=os.fspath(checkpoint),
        audio=audio_path,
        seconds=x.shape[1] / config.sample_rate,
        sample_rate=config.sample_rate,
        stages=tuple(stages),
        code_agreement=float(np.mean(np.asarray(enc.codes) == codes_t)),
        torch_encode_s=torch_encode,
        torch_decode_s=torch_decode,
        jax_encode_s=jax_encode,
        jax_decode_s=jax_decode,
        jax_compile_s=compile_s,
        jax_precision=jax_precision,
        torch_precision=torch_precision(xt.device),
    )
