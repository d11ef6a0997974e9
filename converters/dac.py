"""DAC checkpoints (release ``.pth``, SpeechBrain and fused-weight state_dicts) <-> jaxlatent.

Three layouts of the same weights are read (:func:`normalize_state_dict`):

* ``"legacy"``: ``weight_g``/``weight_v`` (``torch.nn.utils.weight_norm``; the official
  package and its release ``.pth`` files, ``{"state_dict", "metadata": {"kwargs"}}``);
* ``"parametrizations"``: ``parametrizations.weight.original0/1`` (SpeechBrain 1.1.2's DAC,
  torch >= 2.1 ``parametrizations.weight_norm``);
* ``"fused"``: plain ``weight`` tensors, weight norm folded in (e.g. after torch's
  ``remove_weight_norm``). Such a weight ``w`` becomes ``weight_v = w`` and ``weight_g =
  ||w||`` (norm over every axis but torch's axis 0, computed in float64 and rounded), so the
  recomputed kernel ``g * v / ||v||`` is ``w`` up to one float32 rounding.

Whole models: :func:`convert_checkpoint` (a file or loaded checkpoint -> ``(config, DAC)``,
the config from the metadata or inferred from the shapes by :func:`infer_config`),
:func:`export_release_checkpoint` (a ``.pth`` that ``dac.DAC.load`` reads). Parts:
:func:`convert_codec_parts` converts the encoder and decoder alone. The key tables are
:mod:`converters.dac_tables`; a converted model is saved and restored without torch by
:mod:`jaxlatent.models.dac.store`, and :func:`converters.dac_cache.load_model` caches the
conversion of a ``.pth``.

Conversion is strict: every key of the checkpoint is used, every parameter filled, every
shape checked against the configuration, and a config given by the checkpoint's metadata
must agree with the weights (a :class:`~converters.errors.ConversionError` lists every
problem).

The GAN discriminator converts with :func:`load_discriminator` / :func:`export_discriminator`
(:mod:`converters.dac_discriminator`).

torch is imported only to read or write ``.pth`` files (through :mod:`converters.checkpoint_files`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from converters import assign, checkpoint_files, errors, state_dicts, tables
from converters.dac_discriminator import export_discriminator, load_discriminator
from converters.dac_tables import decoder_table, encoder_table, expected_torch_shapes, model_table
from converters.errors import CheckpointError, ConversionError
from converters.tables import Table, WeightNormStyle
from jaxlatent.models.dac import DAC, DACConfig, Decoder, Encoder
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

__all__ = [
    "check_config_fits",
    "check_state_dict",
    "codec_parts_to_state_dict",
    "convert_checkpoint",
    "convert_codec_parts",
    "decoder_from_state_dict",
    "detect_style",
    "encoder_from_state_dict",
    "export_discriminator",
    "export_release_checkpoint",
    "export_state_dict",
    "infer_config",
    "load_discriminator",
    "model_from_state_dict",
    "normalize_state_dict",
    "read_checkpoint",
    "read_release_checkpoint",
]

SourceStyle = Literal["legacy", "parametrizations", "fused"]

_G, _V = "weight_g", "weight_v"
_PARAM_G, _PARAM_V = "parametrizations.weight.original0", "parametrizations.weight.original1"


# --------------------------------------------------------------------------------------------
# Key styles
# --------------------------------------------------------------------------------------------


def _fold_norm(w: np.ndarray) -> np.ndarray:
    """``||w||`` over every axis but 0, shape ``[C, 1, ..., 1]`` (float64, cast to w's dtype)."""
    w64 = w.astype(np.float64)
    norm = np.sqrt(np.sum(w64 * w64, axis=tuple(range(1, w.ndim)), keepdims=True))
    return norm.astype(w.dtype)


def _weight_norm_prefixes(state_dict: Mapping[str, Any]) -> dict[str, SourceStyle]:
    """Prefix -> style of every weight-normed layer candidate in the state_dict."""
    found: dict[str, SourceStyle] = {}
    for key in state_dict:
        if key.endswith("." + _G):
            found[key[: -len(_G) - 1]] = "legacy"
        elif key.endswith("." + _PARAM_G):
            found[key[: -len(_PARAM_G) - 1]] = "parametrizations"
    return found


def normalize_state_dict(
    state_dict: Mapping[str, Any], config: DACConfig | None = None
) -> tuple[dict[str, Any], SourceStyle]:
    """The state_dict in the legacy key style (``weight_g``/``weight_v``), and its source style.

    Fused ``weight`` tensors of the model's weight-normed convolutions are split into
    ``weight_v = w`` and ``weight_g = ||w||``. With a `config` those are the convolutions of
    its table; without one, every ``*.weight`` except ``*.codebook.weight`` (the only other
    ``weight`` of a DAC). Other keys (``bias``, ``alpha``, ``codebook.weight``, unknown keys)
    are passed through so that the strict check reports what does not belong.

    Raises:
      ConversionError: if the state_dict mixes key styles, or has no weight-normed or fused
        convolution of a DAC model at all.

    Example:
      >>> sd = {
      ...     "encoder.block.0.weight": np.full((2, 1, 7), 0.5, np.float32),
      ...     "quantizer.quantizers.0.codebook.weight": np.zeros((4, 2), np.float32),
      ... }
      >>> out, style = normalize_state_dict(sd)
      >>> style, sorted(out)[:2]
      ('fused', ['encoder.block.0.weight_g', 'encoder.block.0.weight_v'])
      >>> out["encoder.block.0.weight_g"].ravel()  # sqrt(7 * 0.5**2) per output channel
      array([1.3228756, 1.3228756], dtype=float32)
    """
    if config is None:
        wn_prefixes = [
            k[: -len(".weight")]
            for k in state_dict
            if k.endswith(".weight") and not k.endswith(".codebook.weight")
        ]
    else:
        wn_prefixes = [k[: -len(_G) - 1] for k in model_table(config) if k.endswith("." + _G)]
    styles: dict[str, list[str]] = {"legacy": [], "parametrizations": [], "fused": []}
    for prefix, style in _weight_norm_prefixes(state_dict).items():
        styles[style].append(prefix)
    fused = [p for p in wn_prefixes if f"{p}.weight" in state_dict]
    styles["fused"] = fused
    used = [s for s, prefixes in styles.items() if prefixes]
    if not used:
        raise ConversionError(
            "no DAC convolution weights in the state_dict (weight_g/weight_v, "
            "parametrizations.weight.original0/1 or fused weight under encoder.block.0, "
            f"decoder.model.0, ...); first keys: {sorted(state_dict)[:5]}"
        )
    if len(used) > 1:
        counts = ", ".join(f"{s}: {len(styles[s])} (e.g. {styles[s][0]})" for s in used)
        raise ConversionError(f"the state_dict mixes weight-norm key styles ({counts})")
    style: SourceStyle = used[0]
    if style == "legacy":
        return dict(state_dict), style
    out: dict[str, Any] = {}
    fused_keys = {f"{p}.weight": p for p in fused}
    for key, value in state_dict.items():
        if style == "parametrizations" and key.endswith("." + _PARAM_G):
            out[key[: -len(_PARAM_G)] + _G] = value
        elif style == "parametrizations" and key.endswith("." + _PARAM_V):
            out[key[: -len(_PARAM_V)] + _V] = value
        elif key in fused_keys:
            w = state_dicts.to_numpy(value)
            out[f"{fused_keys[key]}.{_V}"] = w
            out[f"{fused_keys[key]}.{_G}"] = _fold_norm(w)
        else:
            out[key] = value
    return out, style


def detect_style(state_dict: Mapping[str, Any]) -> WeightNormStyle:
    """The weight-norm key style of a DAC state_dict.

    Raises:
      ConversionError: if the state_dict mixes styles or has no weight-normed layers (fused
        ``weight`` tensors are first split by :func:`normalize_state_dict`).
    """
    style = tables.detect_weight_norm_style(state_dict)
    if style is None:
        raise ConversionError(
            "no weight-normed convolutions (weight_g/weight_v or "
            "parametrizations.weight.original0/1) in the state_dict: not a DAC state_dict"
        )
    return style


def check_state_dict(
    state_dict: Mapping[str, Any], config: DACConfig, *, style: WeightNormStyle | None = None
) -> WeightNormStyle:
    """Check that `state_dict` is exactly the state_dict of ``dac.DAC(**config.to_kwargs())``.

    Returns:
      The weight-norm style (detected when `style` is None).

    Raises:
      ConversionError: listing every missing, unexpected and mis-shaped key.
    """
    style = detect_style(state_dict) if style is None else style
    expected = expected_torch_shapes(config, style=style)
    state_dicts.check_keys_and_shapes(state_dict, expected, f"a DAC model with {config}")
    return style


# --------------------------------------------------------------------------------------------
# Configuration from the weights
# --------------------------------------------------------------------------------------------


def _shape(state_dict: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ConversionError(
            f"cannot infer the DAC configuration: {key!r} is not in the state_dict "
            f"(first keys: {sorted(state_dict)[:5]})"
        )
    return tuple(state_dicts.to_numpy(state_dict[key]).shape)


def _count(state_dict: Mapping[str, Any], pattern: str) -> int:
    n = 0
    while pattern.format(n) in state_dict:
        n += 1
    return n


def _block_strides(state_dict: Mapping[str, Any], pattern: str) -> list[int]:
    """Strides of the blocks ``1, 2, ...`` whose strided conv's ``weight_v`` is
    ``pattern.format(i)``, up to the first missing one (kernel size ``2 * stride``)."""
    n = 0
    while pattern.format(n + 1) in state_dict:
        n += 1
    return [_shape(state_dict, pattern.format(i + 1))[2] // 2 for i in range(n)]


def infer_config(state_dict: Mapping[str, Any], *, sample_rate: int | None = None) -> DACConfig:
    """The :class:`DACConfig` whose model has the shapes of a legacy-style DAC state_dict.

    Reads the channel counts, strides (kernel ``2 * stride``), codebook count, size and
    dimensions from the shapes. The sample rate is not in the weights: pass `sample_rate`,
    or the architecture must be one of the released variants (whose rate is then used).
    ``quantizer_dropout`` (training only) is 0.

    Raises:
      ConversionError: if the state_dict lacks the keys the shapes are read from.
      ValueError: if the sample rate can be neither inferred nor was given.
    """
    sd = state_dict
    encoder_dim = _shape(sd, "encoder.block.0.weight_v")[0]
    encoder_rates = _block_strides(sd, "encoder.block.{}.block.4.weight_v")
    n_enc = len(encoder_rates)
    latent_dim = _shape(sd, f"encoder.block.{n_enc + 2}.weight_v")[0]
    decoder_dim = _shape(sd, "decoder.model.0.weight_v")[0]
    decoder_rates = _block_strides(sd, "decoder.model.{}.block.1.weight_v")
    n_dec = len(decoder_rates)
    n_codebooks = _count(sd, "quantizer.quantizers.{}.codebook.weight")
    if n_codebooks == 0 or n_enc == 0 or n_dec == 0:
        raise ConversionError(
            "cannot infer the DAC configuration: no encoder blocks, decoder blocks or codebooks "
            f"found (encoder blocks {n_enc}, decoder blocks {n_dec}, codebooks {n_codebooks})"
        )
    books = [_shape(sd, f"quantizer.quantizers.{i}.codebook.weight") for i in range(n_codebooks)]
    dims = [d for _, d in books]
    kwargs = {
        "encoder_dim": encoder_dim,
        "encoder_rates": encoder_rates,
        "latent_dim": latent_dim,
        "decoder_dim": decoder_dim,
        "decoder_rates": decoder_rates,
        "n_codebooks": n_codebooks,
        "codebook_size": books[0][0],
        "codebook_dim": dims[0] if len(set(dims)) == 1 else dims,
    }
    if sample_rate is None:
        for name in ("44khz_8kbps", "44khz_16kbps", "24khz", "16khz"):
            preset = DACConfig.preset(name)
            if dataclasses.replace(preset, quantizer_dropout=0.0) == DACConfig(
                **kwargs, sample_rate=preset.sample_rate
            ):
                sample_rate = preset.sample_rate
                break
        else:
            raise ValueError(
                f"the weights are not a released DAC variant ({kwargs}) and carry no sample "
                "rate: pass sample_rate= or config="
            )
    return DACConfig(**kwargs, sample_rate=sample_rate)


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def _sub_state_dict(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k: v for k, v in state_dict.items() if k.startswith(prefix + ".")}


def _build_and_assign(build: Callable[[], nnx.Module], state_dict, table: Table) -> nnx.Module:
    """The module built by `build`, holding `state_dict` (strictly, by `table`).

    The module is only traced (shape-only variables, no initialisation work).
    """
    module = nnx.eval_shape(build)
    assign.assign_strict(module, state_dict, table)  # fills every variable (or raises)
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))


def _part_from_state_dict(
    state_dict: Mapping[str, Any],
    prefix: str,
    cls: type[Encoder] | type[Decoder],
    table_fn: Callable[..., Table],
    config: DACConfig,
    style: WeightNormStyle | None,
    param_dtype,
    precision: PrecisionLike,
):
    """`cls` (`Encoder` or `Decoder`) filled from the ``{prefix}.*`` keys by `table_fn`."""
    sub = _sub_state_dict(state_dict, prefix)
    style = detect_style(sub) if style is None else style
    return _build_and_assign(
        lambda: cls.from_config(
            config, param_dtype=param_dtype, precision=precision, rngs=nnx.Rngs(0)
        ),
        sub,
        table_fn(config, style=style),
    )


def encoder_from_state_dict(
    state_dict: Mapping[str, Any],
    config: DACConfig,
    *,
    style: WeightNormStyle | None = None,
    param_dtype=jnp.float32,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> Encoder:
    """The :class:`Encoder` holding the ``encoder.*`` tensors of a DAC state_dict.

    Keys outside ``encoder.`` are ignored here (see :func:`convert_codec_parts` for the strict
    check of a whole state_dict); every ``encoder.*`` key must be used and every parameter
    filled, with matching shapes.

    Raises:
      ConversionError: on missing, unexpected or mis-shaped ``encoder.*`` keys.
    """
    return _part_from_state_dict(
        state_dict, "encoder", Encoder, encoder_table, config, style, param_dtype, precision
    )


def decoder_from_state_dict(
    state_dict: Mapping[str, Any],
    config: DACConfig,
    *,
    style: WeightNormStyle | None = None,
    param_dtype=jnp.float32,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> Decoder:
    """The :class:`Decoder` holding the ``decoder.*`` tensors of a DAC state_dict.

    Raises:
      ConversionError: on missing, unexpected or mis-shaped ``decoder.*`` keys.
    """
    return _part_from_state_dict(
        state_dict, "decoder", Decoder, decoder_table, config, style, param_dtype, precision
    )


def convert_codec_parts(
    state_dict: Mapping[str, Any],
    config: DACConfig,
    *,
    style: WeightNormStyle | None = None,
    param_dtype=jnp.float32,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> tuple[Encoder, Decoder]:
    """Encoder and decoder of a whole DAC state_dict (official or SpeechBrain key style).

    The whole state_dict is checked first (:func:`check_state_dict`: every key, the
    quantizer's included, present with the reference's shape, nothing else); the quantizer's
    tensors are then left for the quantizer's converter.

    Raises:
      ConversionError: if the state_dict is not the state_dict of a DAC model with `config`.
    """
    style = check_state_dict(state_dict, config, style=style)
    kw = {"style": style, "param_dtype": param_dtype, "precision": precision}
    return (
        encoder_from_state_dict(state_dict, config, **kw),
        decoder_from_state_dict(state_dict, config, **kw),
    )


def codec_parts_to_state_dict(
    encoder: Encoder,
    decoder: Decoder,
    config: DACConfig,
    *,
    style: WeightNormStyle = "legacy",
) -> dict[str, Any]:
    """The ``encoder.*`` and ``decoder.*`` entries of a reference state_dict (numpy arrays)."""
    return assign.export_state_dict(
        encoder, encoder_table(config, style=style)
    ) | assign.export_state_dict(decoder, decoder_table(config, style=style))


def model_from_state_dict(
    state_dict: Mapping[str, Any],
    config: DACConfig,
    *,
    param_dtype=jnp.float32,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> DAC:
    """A :class:`DAC` holding a DAC state_dict (any of the three key styles), strictly.

    Raises:
      ConversionError: on mixed key styles or any missing, unexpected or mis-shaped key.
    """
    legacy, _ = normalize_state_dict(state_dict, config)
    return _build_and_assign(
        lambda: DAC(config, param_dtype=param_dtype, precision=precision, rngs=nnx.Rngs(0)),
        legacy,
        model_table(config),
    )


def export_state_dict(model: DAC, *, style: WeightNormStyle = "legacy") -> dict[str, np.ndarray]:
    """The reference state_dict of `model` (writable numpy arrays, exact copies)."""
    exported = assign.export_state_dict(model, model_table(model.config, style))
    return {k: np.array(v, copy=True) for k, v in exported.items()}


# --------------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------------


def _metadata_config(metadata: Any, where: str) -> DACConfig:
    """The config of a checkpoint's ``metadata["kwargs"]`` (the ``dac.DAC`` arguments)."""
    if not isinstance(metadata, Mapping) or "kwargs" not in metadata:
        raise CheckpointError(f"{where}: metadata has no 'kwargs' (the dac.DAC arguments)")
    try:
        return DACConfig.from_kwargs(metadata["kwargs"])
    except ValueError as e:
        raise CheckpointError(f"{where}: invalid metadata['kwargs']: {e}") from e


def _metadata_source(config: DACConfig) -> str:
    return f"metadata['kwargs'] {config.to_kwargs()}"


def read_checkpoint(
    source: str | os.PathLike | Mapping[str, Any],
) -> tuple[dict[str, Any], DACConfig | None]:
    """The state_dict and the metadata config (or None) of a checkpoint file or object.

    Accepts a release ``{"state_dict", "metadata": {"kwargs"}}`` (file or dict), a
    ``{"state_dict": ...}`` without metadata, or a bare state_dict (SpeechBrain checkpoints).

    Raises:
      FileNotFoundError: if a path does not exist.
      CheckpointError: if the file is empty, truncated, corrupt or unsafe, or the object is
        not one of the layouts above, a state_dict value is not a dense real tensor, or its
        ``metadata["kwargs"]`` is invalid or has more codebooks or blocks than tensors.
    """
    where = "checkpoint" if isinstance(source, Mapping) else os.fspath(source)
    obj = source if isinstance(source, Mapping) else checkpoint_files.load_torch_checkpoint(source)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{where}: expected a state_dict or a dict with 'state_dict', got {type(obj).__name__}"
        )
    config = None
    if "state_dict" in obj:
        state_dict = obj["state_dict"]
        if obj.get("metadata") is not None:
            config = _metadata_config(obj["metadata"], where)
    else:
        state_dict = obj
    state_dicts.check_state_dict(state_dict, where)
    if not state_dict:
        raise CheckpointError(f"{where}: the state_dict is empty")
    if config is not None:
        check_config_fits(config, state_dict, where)
    return dict(state_dict), config


def check_config_fits(config: DACConfig, state_dict: Mapping[str, Any], where: str) -> None:
    """Refuse a metadata config with more codebooks or blocks than the weights have tensors
    (before a table or model of its size is built; :func:`converters.state_dicts.check_counts_fit`).

    Raises:
      CheckpointError: naming `where` and every count that is too large.
    """
    counts = {"n_codebooks": config.n_codebooks}
    counts |= {"len(encoder_rates)": len(config.encoder_rates)}
    counts |= {"len(decoder_rates)": len(config.decoder_rates)}
    state_dicts.check_counts_fit(where, state_dict, counts)


def read_release_checkpoint(path: str | os.PathLike) -> tuple[DACConfig, dict[str, Any]]:
    """Read an official DAC release ``.pth`` (``{"state_dict", "metadata": {"kwargs"}}``).

    The file is loaded with ``torch.load(weights_only=True)`` (no arbitrary unpickling), the
    config is read from ``metadata["kwargs"]`` and the state_dict is checked against it
    (every key and shape of ``dac.DAC(**kwargs)``; either weight-norm key style, or fused
    ``weight`` tensors).

    Returns:
      ``(config, state_dict)`` with the state_dict's tensors as stored (torch tensors).

    Raises:
      FileNotFoundError: if `path` does not exist.
      CheckpointError: if the file is empty, truncated or corrupt, needs unsafe unpickling, or
        lacks ``state_dict`` / ``metadata["kwargs"]``, or the kwargs are not a valid config.
      ConversionError: if the weights disagree with the metadata (each key listed).
    """
    obj = checkpoint_files.load_torch_checkpoint(path)
    where = os.fspath(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{where}: expected a dict with 'state_dict' and 'metadata', got {type(obj).__name__}"
        )
    missing = [k for k in ("state_dict", "metadata") if k not in obj]
    if missing:
        raise CheckpointError(
            f"{where}: not a DAC release checkpoint, missing {missing} (top-level keys: "
            f"{sorted(map(str, obj))})"
        )
    config, state_dict = _metadata_config(obj["metadata"], where), obj["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"{where}: 'state_dict' is a {type(state_dict).__name__}, not a mapping of tensors"
        )
    state_dicts.check_state_dict(state_dict, where)
    check_config_fits(config, state_dict, where)
    try:
        check_state_dict(normalize_state_dict(state_dict, config)[0], config, style="legacy")
    except ConversionError as e:
        raise errors.located_error(e, where, config_source=_metadata_source(config)) from e
    return config, dict(state_dict)


def convert_checkpoint(
    source: str | os.PathLike | Mapping[str, Any],
    config: DACConfig | None = None,
    *,
    sample_rate: int | None = None,
    param_dtype=jnp.float32,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> tuple[DACConfig, DAC]:
    """Convert a DAC checkpoint (release ``.pth``, SpeechBrain or fused state_dict) to a model.

    Args:
      source: a path (read with ``torch.load(weights_only=True)``) or an already loaded
        checkpoint/state_dict (torch tensors or numpy arrays).
      config: the configuration; default: the checkpoint's ``metadata["kwargs"]``, else
        inferred from the shapes (:func:`infer_config`).
      sample_rate: sample rate for :func:`infer_config` (bare state_dicts only).
      param_dtype: dtype of the JAX parameters.
      precision: precision of the model's convolutions and projections (:mod:`jaxlatent.precision`).

    Returns:
      ``(config, model)``.

    Raises:
      FileNotFoundError, CheckpointError: as :func:`read_checkpoint`.
      ConversionError: if the weights do not fit the configuration (every missing,
        unexpected and mis-shaped key is listed) or mix key styles.
      ValueError: if `config` disagrees with the checkpoint's metadata, or (a
        ConversionError naming the file) the sample rate of a bare state_dict cannot be
        determined.
    """
    state_dict, meta_config = read_checkpoint(source)
    where = "checkpoint" if isinstance(source, Mapping) else os.fspath(source)
    if config is not None and meta_config is not None and config != meta_config:
        raise ValueError(
            f"config {config} disagrees with the checkpoint's metadata['kwargs'] "
            f"{meta_config.to_kwargs()}"
        )
    if config is None and meta_config is not None:
        config = meta_config
    if config is None:
        try:
            legacy, _ = normalize_state_dict(state_dict)
            config = infer_config(legacy, sample_rate=sample_rate)
        except ConversionError as e:
            raise errors.located_error(e, where) from e
        except (ValueError, IndexError) as e:  # no sample rate; a weight with too few axes
            raise ConversionError(f"{where}: cannot infer the DAC configuration: {e}") from e
    try:
        model = model_from_state_dict(
            state_dict, config, param_dtype=param_dtype, precision=precision
        )
    except ConversionError as e:
        # (config == meta_config if both are given)
        source = None if meta_config is None else _metadata_source(meta_config)
        raise errors.located_error(e, where, config_source=source) from e
    return config, model


def export_release_checkpoint(
    model: DAC,
    config: DACConfig | None,
    path: str | os.PathLike,
    *,
    style: WeightNormStyle = "legacy",
) -> None:
    """Write `model` as an official release ``.pth`` (``dac.DAC.load`` reads it), atomically.

    The file is ``{"state_dict": ..., "metadata": {"kwargs": ...}}`` with the reference's
    key names (``weight_g``/``weight_v`` by default) and the ten ``dac.DAC`` keyword
    arguments that audiotools' ``BaseModel.save`` writes. The tensors are exact copies of
    the parameters, so converting the file back gives the same model bit for bit.

    Raises:
      ValueError: if `config` is given and differs from ``model.config``.
    """
    if config is not None and config != model.config:
        raise ValueError(f"config {config} differs from the model's {model.config}")
    config = model.config
    checkpoint_files.save_torch_checkpoint(
        {
            "state_dict": export_state_dict(model, style=style),
            "metadata": {"kwargs": config.to_kwargs()},
        },
        path,
    )
