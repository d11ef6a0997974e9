"""AntixK/PyTorch-VAE checkpoints <-> `jaxlatent.models` (VanillaVAE, BetaVAE, ConditionalVAE,
WAE_MMD, VQVAE).

Reads plain ``model.state_dict()`` files and PyTorch-Lightning ``.ckpt`` files written by the
repo's ``experiment.py`` (``{"state_dict": {"model." + key: tensor}, ...}``), strictly: every
key must be used, every variable filled and every shape must agree, otherwise a
`ConversionError` lists the offending keys (a checkpoint of another model class is named as
such). BatchNorm running statistics and ``num_batches_tracked`` are included. Export gives a
state_dict with exactly the original's keys, shapes and dtypes, which the original loads with
``strict=True``.

Layouts: conv kernels ``[out, in, kh, kw]`` <-> ``[kh, kw, in, out]``, transposed-conv kernels
``[in, out, kh, kw]`` <-> ``[kh, kw, in, out]``, Linear ``[out, in]`` <-> ``[in, out]``. The
Linear layers around the bottleneck need no permutation: the models flatten their feature
maps in torch's channel-major order (see `jaxlatent.models.pytorch_vae.conv_vae`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from converters import assign, checkpoint_files, errors, tables
from jaxlatent.models.pytorch_vae import (
    NUM_RESIDUAL_LAYERS,
    VQVAE,
    WAE_MMD,
    BetaVAE,
    BetaVAEConfig,
    ConditionalVAE,
    ConditionalVAEConfig,
    ConvVAEBackbone,
    VanillaVAE,
    VanillaVAEConfig,
    VQVAEConfig,
    WAEMMDConfig,
)
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

#: Internal key for BetaVAE's loss-call counter, which torch checkpoints do not hold.
_COUNTER_KEY = "<jaxlatent BetaVAE num_iter>"
#: The model class of each config class.
MODEL_CLASSES: dict[type, type[nnx.Module]] = {
    VanillaVAEConfig: VanillaVAE,
    BetaVAEConfig: BetaVAE,
    ConditionalVAEConfig: ConditionalVAE,
    WAEMMDConfig: WAE_MMD,
    VQVAEConfig: VQVAE,
}
#: A key that only one family of PyTorch-VAE state_dicts has, checked in this order.
_MARKERS = (
    ("vq_layer.embedding.weight", "VQVAE"),
    ("embed_class.weight", "ConditionalVAE"),
    ("fc_z.weight", "WAE_MMD"),
    ("fc_mu.weight", "VanillaVAE/BetaVAE"),
)


def _backbone_table(model: ConvVAEBackbone, heads: tuple[str, ...]) -> tables.Table:
    """Encoder, `heads` (Linear layers), decoder: in the original's state_dict order."""
    t: tables.Table = {}
    if isinstance(model, ConditionalVAE):
        t |= tables.linear("embed_class", "embed_class") | tables.conv("embed_data", "embed_data")
    for i in range(len(model.encoder)):
        t |= tables.conv(f"encoder.{i}.0", f"encoder/{i}/conv")
        t |= tables.batch_norm(f"encoder.{i}.1", f"encoder/{i}/bn")
    for head in heads:
        t |= tables.linear(head, head)
    t |= tables.linear("decoder_input", "decoder_input")
    for i in range(len(model.decoder)):
        t |= tables.conv_transpose(f"decoder.{i}.0", f"decoder/{i}/conv")
        t |= tables.batch_norm(f"decoder.{i}.1", f"decoder/{i}/bn")
    t |= tables.conv_transpose("final_layer.0", "final_layer/conv_transpose")
    t |= tables.batch_norm("final_layer.1", "final_layer/bn")
    t |= tables.conv("final_layer.3", "final_layer/conv")
    return t


def _vqvae_table(model: VQVAE) -> tables.Table:
    n = len(model.hidden_dims)
    t: tables.Table = {}

    def residual(part: str, i: int) -> tables.Table:
        return tables.conv(f"{part}.{i}.resblock.0", f"{part}/{i}/conv1", bias=False) | (
            tables.conv(f"{part}.{i}.resblock.2", f"{part}/{i}/conv2", bias=False)
        )

    for i in range(n + 1):  # strided convs, then the 3x3 conv
        t |= tables.conv(f"encoder.{i}.0", f"encoder/{i}/conv")
    for i in range(n + 1, n + 1 + NUM_RESIDUAL_LAYERS):
        t |= residual("encoder", i)
    last = n + 2 + NUM_RESIDUAL_LAYERS  # after the bare LeakyReLU
    t |= tables.conv(f"encoder.{last}.0", f"encoder/{last}/conv")
    t |= tables.embedding("vq_layer.embedding", "vq_layer/embedding")
    t |= tables.conv("decoder.0.0", "decoder/0/conv")
    for i in range(1, 1 + NUM_RESIDUAL_LAYERS):
        t |= residual("decoder", i)
    for i in range(2 + NUM_RESIDUAL_LAYERS, 2 + NUM_RESIDUAL_LAYERS + n):
        t |= tables.conv_transpose(f"decoder.{i}.0", f"decoder/{i}/conv")
    return t


def torch_table(model: nnx.Module) -> tables.Table:
    """The conversion table ``{torch key: Rule}`` of a PyTorch-VAE model (torch keys only).

    Raises:
      TypeError: for a model that is not one of the PyTorch-VAE classes.
    """
    if isinstance(model, VQVAE):
        return _vqvae_table(model)
    if not isinstance(model, VanillaVAE | ConditionalVAE | WAE_MMD):
        raise TypeError(f"not a PyTorch-VAE model: {type(model).__name__}")
    heads = ("fc_z",) if isinstance(model, WAE_MMD) else ("fc_mu", "fc_var")
    return _backbone_table(model, heads)


def _module_table(model: nnx.Module) -> tables.Table:
    table = torch_table(model)
    if isinstance(model, BetaVAE):
        table |= tables.tensor(_COUNTER_KEY, "num_iter")
    return table


def _class_label(model: nnx.Module) -> str:
    if isinstance(model, VanillaVAE):  # BetaVAE included: same keys
        return "VanillaVAE/BetaVAE"
    return type(model).__name__


def detect_model_class(state_dict: Mapping[str, Any]) -> str | None:
    """Which PyTorch-VAE family a state_dict belongs to, from its keys (None if unknown).

    Returns one of "VQVAE", "ConditionalVAE", "WAE_MMD", "VanillaVAE/BetaVAE" (these two have
    identical keys).
    """
    for key, name in _MARKERS:
        if key in state_dict:
            return name
    return None


def unwrap_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The model state_dict of a plain state_dict or a Lightning checkpoint.

    A Lightning checkpoint (a dict with a "state_dict" entry) has its ``model.`` prefixes
    removed; its other entries (optimizer states, epoch, ...) are ignored.

    Raises:
      errors.ConversionError: if a Lightning state_dict has keys without the ``model.`` prefix.
    """
    if not isinstance(checkpoint, Mapping):
        raise errors.ConversionError(
            f"expected a state_dict or a Lightning checkpoint dict, got {type(checkpoint)}"
        )
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping):
        return dict(checkpoint)
    other = [k for k in state if not k.startswith("model.")]
    if other:
        raise errors.ConversionError(
            "Lightning checkpoint has state_dict keys outside the 'model.' submodule "
            "(not a PyTorch-VAE experiment.py checkpoint?)",
            unexpected=other,
        )
    return {k[len("model.") :]: v for k, v in state.items()}


def load_state_dict(model: nnx.Module, checkpoint: Mapping[str, Any]) -> None:
    """Copy a PyTorch-VAE state_dict (or Lightning checkpoint dict) into `model`, strictly.

    Args:
      model: a VanillaVAE, BetaVAE, ConditionalVAE, WAE_MMD or VQVAE built with the
        checkpoint's architecture (its config's ``hidden_dims``, ``latent_dim``, ...).
        BetaVAE keeps its loss-call counter (not in torch checkpoints).
      checkpoint: torch tensors or numpy arrays by torch key, plain or Lightning-wrapped.

    Raises:
      errors.ConversionError: if the checkpoint is of another model class (named, with the
        keys that differ), or any key, variable or shape does not match; nothing is assigned.
      TypeError: if `model` is not a PyTorch-VAE model.
    """
    state = unwrap_checkpoint(checkpoint)
    table = torch_table(model)
    detected, wanted = detect_model_class(state), _class_label(model)
    if detected != wanted:
        what = f"a {detected} state_dict" if detected else "not a PyTorch-VAE state_dict"
        raise errors.ConversionError(
            f"checkpoint is {what} but the model is a {type(model).__name__}",
            missing=[k for k in table if k not in state],
            unexpected=[k for k in state if k not in table],
        )
    if isinstance(model, BetaVAE):
        counter = model.num_iter.get_value()
        if isinstance(counter, jax.ShapeDtypeStruct):  # built by nnx.eval_shape: start at 0
            counter = np.zeros(counter.shape, counter.dtype)
        state[_COUNTER_KEY] = np.asarray(counter)
    assign.assign_strict(model, state, _module_table(model))
    # assign_strict stores numpy arrays; hold jax arrays like a freshly initialised model (no
    # in-place numpy writes by BatchNorm updates, no aliasing with exported arrays).
    for var in assign.module_variables(model).values():
        var.set_value(jnp.asarray(var.get_value()))


def load_checkpoint(model: nnx.Module, path: str | os.PathLike) -> None:
    """`load_state_dict` from a ``.pt``/``.pth``/``.ckpt`` file (``torch.load`` with
    ``weights_only=True``) or a ``.safetensors`` file (the ``safetensors`` library, no torch).

    Raises:
      FileNotFoundError, errors.CheckpointError: for unreadable files.
      errors.ConversionError: as `load_state_dict`.
    """
    load_state_dict(model, checkpoint_files.load_torch_checkpoint(path))


def from_checkpoint(
    config: Any,
    checkpoint: str | os.PathLike | Mapping[str, Any],
    *,
    precision: PrecisionLike = DEFAULT_PRECISION,
) -> nnx.Module:
    """Build the model of `config` and fill it from a checkpoint file or (Lightning) state_dict.

    The model is built with `nnx.eval_shape` (no random initialisation is computed) and then
    loaded strictly, so every variable comes from the checkpoint (BetaVAE's counter starts at
    0, as a resumed original's does).

    Args:
      config: a `VanillaVAEConfig`, `BetaVAEConfig`, `ConditionalVAEConfig`, `WAEMMDConfig` or
        `VQVAEConfig` (e.g. ``VanillaVAEConfig.from_model_params(model_params)`` of the
        original's config); it selects the model class.
      checkpoint: a ``.pt``/``.ckpt`` path, or a state_dict / Lightning checkpoint dict.
      precision: the model's conv/matmul precision.

    Raises:
      TypeError: if `config` is not one of those configs.
      errors.ConversionError: as `load_state_dict`.

    Example:
      >>> from jaxlatent.models import VanillaVAE, VanillaVAEConfig
      >>> config = VanillaVAEConfig(in_channels=3, latent_dim=4, hidden_dims=[8], img_size=2)
      >>> small = VanillaVAE(config, rngs=nnx.Rngs(0))
      >>> copy = from_checkpoint(config, export_state_dict(small))
      >>> bool((copy.fc_mu.kernel[...] == small.fc_mu.kernel[...]).all())
      True
    """
    cls = MODEL_CLASSES.get(type(config))
    if cls is None:
        raise TypeError(
            f"not a PyTorch-VAE config: {type(config).__name__}; expected one of "
            f"{sorted(c.__name__ for c in MODEL_CLASSES)}"
        )
    model = nnx.eval_shape(lambda: cls(config, precision=precision, rngs=nnx.Rngs(0)))
    if isinstance(checkpoint, Mapping):
        load_state_dict(model, checkpoint)
    else:
        load_checkpoint(model, checkpoint)
    return model


def export_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
    """The original's state_dict of `model` (numpy arrays; ``num_batches_tracked`` int64)."""
    table = _module_table(model)
    state = assign.export_state_dict(model, table)
    state.pop(_COUNTER_KEY, None)
    return {
        k: np.array(v, np.int64 if k.endswith("num_batches_tracked") else v.dtype)
        for k, v in state.items()
    }


def save_state_dict(model: nnx.Module, path: str | os.PathLike) -> None:
    """``torch.save`` the exported state_dict (loads with ``model.load_state_dict(strict=True)``
    into the original class built with the config's ``model_params``); a ``.safetensors``
    `path` is written with the ``safetensors`` library instead."""
    checkpoint_files.save_torch_checkpoint(export_state_dict(model), path)
