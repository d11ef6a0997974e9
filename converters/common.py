"""Shared machinery of every jaxlatent converter: PyTorch state_dicts <-> NNX modules.

A converter is a **table** ``{torch_key: Rule(jax_path, transform)}`` built by small functions
per torch layer (:func:`linear`, :func:`conv`, :func:`conv_transpose`, :func:`weight_norm_conv`,
:func:`batch_norm`, :func:`layer_norm`, :func:`embedding`, :func:`tensor`). The same table
drives both directions:

* :func:`assign_strict` copies a state_dict into a module: every source key must be used,
  every target variable filled, every shape must agree, otherwise a :class:`ConversionError`
  lists what is missing, unexpected or mis-shaped — nothing is assigned on error.
* :func:`export_state_dict` turns the module back into a torch-layout state_dict.

Transforms are named pairs of inverse functions (torch layout -> JAX layout and back); JAX paths
are '/'-joined NNX attribute paths (``"encoder/layers/0/kernel"``).

torch is imported only inside :func:`load_torch_checkpoint` and :func:`save_torch_checkpoint`,
and only for ``.pth``-like files: ``.safetensors`` files are read and written with the
``safetensors`` library into and from numpy arrays (:func:`load_safetensors`,
:func:`save_safetensors`), never unpickling anything.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlatent.atomic import atomic_write

WeightNormStyle = Literal["legacy", "parametrizations"]


class ConversionError(ValueError):
    """A state_dict does not fit the target model (lists every problem at once)."""

    def __init__(
        self,
        message: str,
        *,
        missing: Iterable[str] = (),
        unexpected: Iterable[str] = (),
        mismatched: Iterable[str] = (),
    ):
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted(mismatched)
        parts = [message]
        for title, items in (
            ("missing (needed, not in the checkpoint)", self.missing),
            ("unexpected (in the checkpoint, not used)", self.unexpected),
            ("mis-shaped", self.mismatched),
        ):
            if items:
                parts.append(f"{title}: {len(items)}\n  " + "\n  ".join(items))
        super().__init__("\n".join(parts))


def located_error(
    error: ConversionError, where: str, *, config_source: str | None = None
) -> ConversionError:
    """`error` with its message prefixed by `where` (the file or object that was read).

    When `config_source` says where the configuration came from (e.g. ``"metadata['kwargs']
    {...}"`` of the file itself) and `error` lists keys, the message says instead that the
    weights disagree with it, and the missing, unexpected and mis-shaped keys are kept.

    Example:
      >>> e = ConversionError("bad", missing=["a.weight"])
      >>> str(located_error(e, "x.pth")).splitlines()[0]
      'x.pth: bad'
      >>> located_error(e, "x.pth", config_source="metadata['kwargs']").args[0].splitlines()[0]
      "x.pth: the weights disagree with metadata['kwargs']"
    """
    if config_source is None or not (error.missing or error.unexpected or error.mismatched):
        return ConversionError(f"{where}: {error}")
    return ConversionError(
        f"{where}: the weights disagree with {config_source}",
        missing=error.missing,
        unexpected=error.unexpected,
        mismatched=error.mismatched,
    )


class CheckpointError(ValueError):
    """A checkpoint file cannot be read (missing, truncated, corrupt, or unsafe)."""


# --------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Transform:
    """A named layout change: `to_jax` maps a torch array to JAX layout, `to_torch` inverts it."""

    name: str
    to_jax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]

    def torch_shape(self, jax_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.to_torch(np.empty(jax_shape, np.float32)).shape


def _move_first_two_last(w: np.ndarray) -> np.ndarray:
    # torch (A, B, *k) -> (*k, B, A)
    n = w.ndim
    return np.transpose(w, (*range(2, n), 1, 0))


def _move_last_two_first(w: np.ndarray) -> np.ndarray:
    # (*k, B, A) -> (A, B, *k)
    n = w.ndim
    return np.transpose(w, (n - 1, n - 2, *range(n - 2)))


def _transpose_kernel_to_jax(w: np.ndarray) -> np.ndarray:
    # torch ConvTranspose (in, out, *k) -> (*k, in, out)
    n = w.ndim
    return np.transpose(w, (*range(2, n), 0, 1))


def _transpose_kernel_to_torch(w: np.ndarray) -> np.ndarray:
    n = w.ndim
    return np.transpose(w, (n - 2, n - 1, *range(n - 2)))


def _squeeze_channel_vector(w: np.ndarray) -> np.ndarray:
    if w.ndim == 1:
        return w
    if w.ndim == 0 or any(d != 1 for d in w.shape[1:]):
        raise ValueError(f"expected a per-channel tensor [C, 1, ...], got shape {w.shape}")
    return w.reshape(w.shape[0])


IDENTITY = Transform("identity", lambda w: w, lambda w: w)
#: `nn.Linear.weight` ``[out, in]`` <-> ``kernel [in, out]``.
LINEAR_KERNEL = Transform("linear_kernel", lambda w: w.T, lambda w: w.T)
#: `nn.ConvNd.weight` ``[out, in/g, *k]`` <-> ``kernel [*k, in/g, out]``.
CONV_KERNEL = Transform("conv_kernel", _move_first_two_last, _move_last_two_first)
#: `nn.ConvTransposeNd.weight` ``[in, out, *k]`` <-> ``kernel [*k, in, out]``.
CONV_TRANSPOSE_KERNEL = Transform(
    "conv_transpose_kernel", _transpose_kernel_to_jax, _transpose_kernel_to_torch
)


def channel_vector(torch_ndim: int) -> Transform:
    """Per-channel tensor ``[C, 1, ..., 1]`` (torch_ndim axes) <-> ``[C]`` (weight-norm g)."""
    return Transform(
        f"channel_vector_{torch_ndim}d",
        _squeeze_channel_vector,
        lambda w: w.reshape(w.shape[0], *([1] * (torch_ndim - 1))),
    )


def channels_first_to_last(torch_ndim: int) -> Transform:
    """A broadcast parameter ``[1, C, 1...]`` <-> ``[1, 1..., C]`` (e.g. Snake's alpha)."""
    to_jax = (0, *range(2, torch_ndim), 1)
    to_torch = tuple(int(i) for i in np.argsort(to_jax))
    return Transform(
        f"channels_first_to_last_{torch_ndim}d",
        lambda w: np.transpose(w, to_jax),
        lambda w: np.transpose(w, to_torch),
    )


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """Where a torch tensor goes: the '/'-joined NNX path and the layout transform."""

    jax_path: str
    transform: Transform = IDENTITY


Table = dict[str, Rule]


def _join(prefix: str, name: str, sep: str) -> str:
    return f"{prefix}{sep}{name}" if prefix else name


def tensor(torch_key: str, jax_path: str, transform: Transform = IDENTITY) -> Table:
    """A single tensor (parameter or buffer)."""
    return {torch_key: Rule(jax_path, transform)}


def linear(torch_prefix: str, jax_prefix: str, *, bias: bool = True) -> Table:
    """`nn.Linear` -> `flax.nnx.Linear` (``kernel``, ``bias``)."""
    table = tensor(
        _join(torch_prefix, "weight", "."), _join(jax_prefix, "kernel", "/"), LINEAR_KERNEL
    )
    if bias:
        table |= tensor(_join(torch_prefix, "bias", "."), _join(jax_prefix, "bias", "/"))
    return table


def conv(torch_prefix: str, jax_prefix: str, *, bias: bool = True) -> Table:
    """`nn.Conv1d/2d` -> `jaxlatent.nn.Conv1d/2d` or `flax.nnx.Conv` (``kernel``, ``bias``)."""
    table = tensor(
        _join(torch_prefix, "weight", "."), _join(jax_prefix, "kernel", "/"), CONV_KERNEL
    )
    if bias:
        table |= tensor(_join(torch_prefix, "bias", "."), _join(jax_prefix, "bias", "/"))
    return table


def conv_transpose(torch_prefix: str, jax_prefix: str, *, bias: bool = True) -> Table:
    """`nn.ConvTranspose1d/2d` -> `jaxlatent.nn.ConvTranspose1d/2d` (``kernel``, ``bias``)."""
    table = tensor(
        _join(torch_prefix, "weight", "."),
        _join(jax_prefix, "kernel", "/"),
        CONV_TRANSPOSE_KERNEL,
    )
    if bias:
        table |= tensor(_join(torch_prefix, "bias", "."), _join(jax_prefix, "bias", "/"))
    return table


def weight_norm_names(style: WeightNormStyle) -> tuple[str, str]:
    """torch key suffixes of (g, v) for the legacy and the parametrizations weight norm."""
    if style == "legacy":  # torch.nn.utils.weight_norm (official DAC checkpoints)
        return "weight_g", "weight_v"
    if style == "parametrizations":  # torch.nn.utils.parametrizations.weight_norm
        return "parametrizations.weight.original0", "parametrizations.weight.original1"
    raise ValueError(
        f"unknown weight-norm style {style!r}; expected 'legacy' or 'parametrizations'"
    )


def weight_norm_conv(
    torch_prefix: str,
    jax_prefix: str,
    *,
    style: WeightNormStyle,
    transposed: bool = False,
    ndim: int = 1,
    bias: bool = True,
) -> Table:
    """Weight-normed (transposed) conv -> `jaxlatent.nn.WNConv*` (``weight_g``, ``weight_v``).

    Both torch key styles are supported (`style`): ``weight_g``/``weight_v`` and
    ``parametrizations.weight.original0/1``. For a transposed conv, g is per input channel.
    """
    g_name, v_name = weight_norm_names(style)
    table = tensor(
        _join(torch_prefix, g_name, "."),
        _join(jax_prefix, "weight_g", "/"),
        channel_vector(ndim + 2),
    )
    table |= tensor(
        _join(torch_prefix, v_name, "."),
        _join(jax_prefix, "weight_v", "/"),
        CONV_TRANSPOSE_KERNEL if transposed else CONV_KERNEL,
    )
    if bias:
        table |= tensor(_join(torch_prefix, "bias", "."), _join(jax_prefix, "bias", "/"))
    return table


def batch_norm(
    torch_prefix: str, jax_prefix: str, *, affine: bool = True, track_running_stats: bool = True
) -> Table:
    """`nn.BatchNorm1d/2d` -> `jaxlatent.nn.BatchNorm` (running statistics included)."""
    table: Table = {}
    if affine:
        table |= tensor(_join(torch_prefix, "weight", "."), _join(jax_prefix, "scale", "/"))
        table |= tensor(_join(torch_prefix, "bias", "."), _join(jax_prefix, "bias", "/"))
    if track_running_stats:
        for src, dst in (
            ("running_mean", "mean"),
            ("running_var", "var"),
            ("num_batches_tracked", "num_batches_tracked"),
        ):
            table |= tensor(_join(torch_prefix, src, "."), _join(jax_prefix, dst, "/"))
    return table


def layer_norm(torch_prefix: str, jax_prefix: str, *, affine: bool = True) -> Table:
    """`nn.LayerNorm` (over the last axis) -> `flax.nnx.LayerNorm` (``scale``, ``bias``)."""
    if not affine:
        return {}
    return tensor(_join(torch_prefix, "weight", "."), _join(jax_prefix, "scale", "/")) | tensor(
        _join(torch_prefix, "bias", "."), _join(jax_prefix, "bias", "/")
    )


def embedding(torch_prefix: str, jax_prefix: str, *, jax_name: str = "embedding") -> Table:
    """`nn.Embedding` ``weight [N, D]`` -> `flax.nnx.Embed` ``embedding [N, D]``."""
    return tensor(_join(torch_prefix, "weight", "."), _join(jax_prefix, jax_name, "/"))


def detect_weight_norm_style(state_dict: Mapping[str, Any]) -> WeightNormStyle | None:
    """Which weight-norm key style a state_dict uses (None if it has no weight-normed layer).

    Raises:
      ConversionError: if the state_dict mixes both styles.
    """
    legacy = any(k.endswith(".weight_g") or k == "weight_g" for k in state_dict)
    param = any("parametrizations.weight.original" in k for k in state_dict)
    if legacy and param:
        raise ConversionError(
            "the state_dict mixes legacy (weight_g/weight_v) and parametrizations weight-norm keys"
        )
    return "legacy" if legacy else ("parametrizations" if param else None)


# --------------------------------------------------------------------------------------------
# Assignment and export
# --------------------------------------------------------------------------------------------


def _path_str(path: tuple[Any, ...]) -> str:
    return "/".join(str(p) for p in path)


def module_variables(module: nnx.Module) -> dict[str, nnx.Variable]:
    """'/'-joined path -> Variable of every Param/BatchStat-like variable (RNG state excluded)."""
    state = nnx.state(module, nnx.Not(nnx.RngState))
    return {_path_str(path): var for path, var in nnx.to_flat_state(state)}


def _check_table(table: Table) -> None:
    seen: dict[str, str] = {}
    for key, rule in table.items():
        if rule.jax_path in seen:
            raise ValueError(
                f"conversion table maps both {seen[rule.jax_path]!r} and {key!r} to "
                f"{rule.jax_path!r}"
            )
        seen[rule.jax_path] = key


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor or array-like as a numpy array (bfloat16/float16 through float32)."""
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) in ("torch.bfloat16", "torch.float16"):
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def assign_strict(
    module: nnx.Module,
    state_dict: Mapping[str, Any],
    table: Table,
    *,
    dont_load: Iterable[str] = (),
) -> None:
    """Copy `state_dict` into `module` through `table`, strictly and atomically.

    Args:
      module: the target NNX module (its variables are overwritten in place).
      state_dict: torch-layout tensors (torch tensors or numpy arrays) by key.
      table: the converter table.
      dont_load: torch keys allowed to be present but ignored (an explicit allow-list).

    Raises:
      ConversionError: listing every checkpoint key the table does not use, every table key
        absent from the checkpoint, every target path missing from the module, every module
        variable the table does not fill, and every shape mismatch. Nothing is assigned.
    """
    _check_table(table)
    dont_load = set(dont_load)
    variables = module_variables(module)
    unexpected = [k for k in state_dict if k not in table and k not in dont_load]
    missing = [f"{k} -> {r.jax_path}" for k, r in table.items() if k not in state_dict]
    bad_targets = [
        f"{r.jax_path} (from {k})" for k, r in table.items() if r.jax_path not in variables
    ]
    covered = {r.jax_path for r in table.values()}
    unfilled = [
        f"{p} (module variable, no checkpoint key maps to it)"
        for p in variables
        if p not in covered
    ]
    mismatched = []
    values: dict[str, np.ndarray] = {}
    for key, rule in table.items():
        if key not in state_dict or rule.jax_path not in variables:
            continue
        src = to_numpy(state_dict[key])
        var = variables[rule.jax_path]
        target = var.get_value()
        try:
            value = rule.transform.to_jax(src)
        except ValueError as e:
            mismatched.append(f"{key}: {e}")
            continue
        if tuple(value.shape) != tuple(target.shape):
            mismatched.append(
                f"{key} {tuple(src.shape)} -> {rule.jax_path}: got {tuple(value.shape)} after "
                f"{rule.transform.name}, expected {tuple(target.shape)}"
            )
            continue
        values[rule.jax_path] = value.astype(target.dtype)
    if unexpected or missing or bad_targets or unfilled or mismatched:
        raise ConversionError(
            f"checkpoint does not match {type(module).__name__}",
            missing=missing + bad_targets + unfilled,
            unexpected=unexpected,
            mismatched=mismatched,
        )
    for path, value in values.items():
        # A JAX array (a copy): the module never aliases the caller's numpy buffers.
        variables[path].set_value(jnp.asarray(value))


def export_state_dict(module: nnx.Module, table: Table) -> dict[str, np.ndarray]:
    """The torch-layout state_dict of `module` (numpy arrays), through the same `table`.

    Raises:
      ConversionError: if a table path is missing from the module or a module variable is not
        covered by the table.
    """
    _check_table(table)
    variables = module_variables(module)
    missing = [r.jax_path for r in table.values() if r.jax_path not in variables]
    covered = {r.jax_path for r in table.values()}
    unexported = [p for p in variables if p not in covered]
    if missing or unexported:
        raise ConversionError(
            f"table does not match {type(module).__name__}",
            missing=missing,
            unexpected=unexported,
        )
    return {
        key: np.array(rule.transform.to_torch(np.asarray(variables[rule.jax_path].get_value())))
        for key, rule in table.items()
    }


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


#: The tensors a checkpoint may hold, in bytes per byte of its file: views of one storage
#: (tied weights) count each time, so a little more than 1; a broadcast view (stride 0) that
#: would expand a few stored bytes into gigabytes when copied is refused.
MAX_TENSOR_BYTES_PER_FILE_BYTE = 4


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _check_archive(path: str, size: int) -> None:
    """``torch.save``'s zip format, every member stored uncompressed within the file's size.

    torch reads a compressed member into a buffer of its declared size (a zip bomb), and the
    format before torch 1.6 (not a zip) allocates every storage's declared size before reading
    it, so neither is read.
    """
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            starts_as_zip = f.read(4) == b"PK\x03\x04"
        raise CheckpointError(
            f"{path} is {'truncated' if starts_as_zip else 'corrupt'} or not a torch "
            "checkpoint: not a whole zip archive (torch.save's format since torch 1.6; the "
            "older format is not read, because it allocates the sizes it declares before "
            "reading them)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (
        zipfile.BadZipFile,
        OSError,
        ValueError,
        EOFError,
        OverflowError,
        NotImplementedError,
    ) as e:
        raise CheckpointError(f"{path} is corrupt: {_first_line(e)}") from e
    for member in members:
        if member.compress_type != zipfile.ZIP_STORED or member.file_size != member.compress_size:
            raise CheckpointError(
                f"{path}: archive member {member.filename[:200]!r} is compressed, which "
                "torch.save never does (refusing to inflate it)"
            )
    if sum(m.file_size for m in members) > size:
        raise CheckpointError(f"{path}: the archive's members declare more bytes than the file has")


def _check_tensors(obj: Any, path: str, size: int) -> None:
    """Every tensor in `obj` dense and on the CPU, all of them together not much larger than
    the file (walked without recursion; shared and cyclic references are visited once)."""
    import torch

    budget = MAX_TENSOR_BYTES_PER_FILE_BYTE * size
    total, seen, todo = 0, set(), [obj]
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, torch.Tensor):
            if x.layout != torch.strided or x.is_quantized or x.device.type != "cpu":
                raise CheckpointError(
                    f"{path}: holds a {x.layout} {x.dtype} tensor on {x.device} "
                    f"(quantized={x.is_quantized}); only dense CPU tensors are read"
                )
            total += x.numel() * x.element_size()
            if total > budget:
                raise CheckpointError(
                    f"{path}: its tensors hold more than {budget} bytes, more than its "
                    f"{size} bytes can store (a broadcast or overlapping view?)"
                )
        elif isinstance(x, Mapping):
            todo.extend(x.keys())
            todo.extend(x.values())
        elif isinstance(x, list | tuple | set | frozenset):
            todo.extend(x)


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Load a torch checkpoint (``.pth``/``.pt``/``.ckpt``) safely on CPU, in bounded memory.

    Uses ``torch.load(map_location="cpu", weights_only=True)``: tensors, containers and plain
    Python values load; arbitrary pickled objects are refused. Before loading, the file must
    be ``torch.save``'s zip archive (torch >= 1.6) with uncompressed members; after loading,
    every tensor must be dense, and all tensors together at most
    ``MAX_TENSOR_BYTES_PER_FILE_BYTE`` times the file's size.

    A ``.safetensors`` file is read by :func:`load_safetensors` instead (no torch): its
    tensors, or ``{"state_dict": tensors, "metadata": {...}}`` when its header holds metadata
    besides ``format``.

    Raises:
      FileNotFoundError: if `path` does not exist.
      CheckpointError: if the file is empty, truncated, corrupt, not a torch checkpoint (or
        one in the format before torch 1.6), needs unpickling of arbitrary objects, or holds
        sparse, quantized or broadcast tensors; the message names the file and the problem.
    """
    path = os.fspath(path)
    if is_safetensors(path):
        tensors, metadata = load_safetensors(path)
        return {"state_dict": tensors, "metadata": metadata} if metadata else tensors
    import torch

    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"checkpoint is empty: {path}")
    _check_archive(path, size)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        message = str(e)
        if "Unsupported global" in message:  # a pickled object that is not data
            detail = next(line for line in message.splitlines() if "Unsupported global" in line)
            raise CheckpointError(
                f"{path}: refusing to unpickle objects other than tensors and plain containers "
                f"(weights_only=True): {detail.strip()}"
            ) from e
        raise CheckpointError(
            f"{path} is corrupt or not a torch checkpoint: {_first_line(e)}"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, OSError) as e:
        raise CheckpointError(
            f"{path} is truncated or not a torch checkpoint: {_first_line(e)}"
        ) from e
    except Exception as e:
        # torch's weights-only unpickler, on hostile bytes, fails inside its own parsing with
        # whatever that raises (IndexError on its stack, TypeError or AssertionError from its
        # rebuild functions, ...); only torch.load runs in this try, and the cause is chained.
        raise CheckpointError(f"{path} is corrupt: {_first_line(e)}") from e
    _check_tensors(obj, path, size)
    return obj


_REAL_TORCH_DTYPES = frozenset(
    f"torch.{name}"
    for name in (
        "bool", "uint8", "int8", "int16", "int32", "int64",
        "float16", "bfloat16", "float32", "float64",
    )
)  # fmt: skip


def check_state_dict(state_dict: Any, where: str) -> None:
    """Check that `state_dict` maps names to dense real tensors (torch or numpy).

    Raises:
      CheckpointError: naming `where` and the first offending key, if `state_dict` is not a
        mapping, a key is not a string, or a value is not a dense (strided, unquantized)
        tensor of a bool, integer or floating dtype.
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(
            f"{where}: 'state_dict' is not a mapping of names to tensors, but a "
            f"{type(state_dict).__name__}"
        )
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"{where}: 'state_dict' is not a mapping of names to tensors: key "
                f"{str(key)[:100]!r} is a {type(key).__name__}"
            )
        if isinstance(value, np.ndarray):
            ok = value.dtype.kind in "biuf"
        elif hasattr(value, "detach") and hasattr(value, "layout"):  # a torch.Tensor
            ok = (
                str(value.dtype) in _REAL_TORCH_DTYPES
                and str(value.layout) == "torch.strided"
                and not value.is_quantized
            )
        else:
            ok = False
        if not ok:
            what = f"{type(value).__name__} {getattr(value, 'dtype', '')}".strip()
            raise CheckpointError(
                f"{where}: 'state_dict' is not a mapping of names to tensors: {key[:200]!r} "
                f"is a {what}, not a dense bool, integer or float tensor"
            )


def check_keys_and_shapes(
    state_dict: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], what: str
) -> None:
    """Raise unless `state_dict` has exactly the keys of `expected`, each of its shape.

    Raises:
      ConversionError: ``"state_dict does not match {what}"``, listing every missing,
        unexpected and mis-shaped key.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: {tuple(to_numpy(v).shape)}, expected {expected[k]}"
        for k, v in state_dict.items()
        if k in expected and tuple(to_numpy(v).shape) != expected[k]
    ]
    if missing or unexpected or mismatched:
        raise ConversionError(
            f"state_dict does not match {what}",
            missing=missing,
            unexpected=unexpected,
            mismatched=mismatched,
        )


def check_counts_fit(where: str, state_dict: Mapping[str, Any], counts: Mapping[str, int]) -> None:
    """Refuse a configuration (from a file's metadata) with more layers than tensors.

    Checked before any table or model is built, so that a mutated count in a file does not
    make a converter build millions of layers: each of `counts` (layers, codebooks, each
    with at least one tensor) must be at most the number of tensors in `state_dict`. (Sizes
    need no such bound: they are compared against the tensors' shapes on abstract arrays.)

    Raises:
      CheckpointError: naming `where` and every count that is too large.
    """
    too_many = [f"{k}={v}" for k, v in counts.items() if v > len(state_dict)]
    if too_many:
        raise CheckpointError(
            f"{where}: metadata['kwargs'] {', '.join(too_many)} exceed the "
            f"{len(state_dict)} tensors of the state_dict"
        )


def save_torch_checkpoint(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` `obj` (numpy arrays become tensors) atomically to `path`.

    A ``.safetensors`` path is written by :func:`save_safetensors` instead: `obj` is then a
    state_dict, or ``{"state_dict": ..., "metadata": {...}}``.

    Raises:
      ValueError: for a ``.safetensors`` path, if `obj` is not of those forms.
    """
    if is_safetensors(path):
        if isinstance(obj, Mapping) and "state_dict" in obj:
            unknown = sorted(set(obj) - {"state_dict", "metadata"})
            if unknown:
                raise ValueError(
                    f"a .safetensors file holds a state_dict and metadata, not {unknown}"
                )
            save_safetensors(obj["state_dict"], path, metadata=obj.get("metadata"))
        else:
            save_safetensors(obj, path)
        return
    import torch

    def convert(x):
        if isinstance(x, np.ndarray):
            return torch.from_numpy(np.asarray(x, order="C"))  # (keeps 0-d arrays 0-d)
        if isinstance(x, Mapping):
            return {k: convert(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return type(x)(convert(v) for v in x)
        return x

    buffer = io.BytesIO()
    torch.save(convert(obj), buffer)
    atomic_write(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------------

#: The ``format`` entry of a ``.safetensors`` header that transformers writes and checks.
SAFETENSORS_FORMAT = "pt"


def is_safetensors(path: str | os.PathLike) -> bool:
    """True if `path` names a ``.safetensors`` file (by its suffix)."""
    return os.fspath(path).lower().endswith(".safetensors")


def _read_safetensors(path: str | os.PathLike, read: Callable[[Any], Any]) -> Any:
    """``read(f)`` of the file opened by ``safetensors.safe_open`` (numpy), errors named."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint is empty: {path}")
    try:
        with safe_open(path, framework="np") as f:
            return read(f)
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{path} is corrupt or not a safetensors file: {_first_line(e)}"
        ) from e
    except SafetensorError as e:
        raise CheckpointError(f"{path} is truncated or corrupt: {_first_line(e)}") from e


def safetensors_keys(path: str | os.PathLike) -> list[str]:
    """The tensor names of a ``.safetensors`` file (read from its header only).

    Raises:
      FileNotFoundError, CheckpointError: as :func:`load_safetensors`.
    """
    return _read_safetensors(path, lambda f: list(f.keys()))


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors and metadata of a ``.safetensors`` file, as numpy arrays (no torch).

    The ``safetensors`` library checks the header against the file's size before reading a
    tensor; no code is unpickled. float16 and bfloat16 tensors become float32. Metadata
    values that are JSON (as :func:`save_safetensors` writes them) are decoded; the
    ``format`` entry (``"pt"`` for files written by torch or transformers) is dropped.

    Returns:
      ``(tensors, metadata)``.

    Raises:
      FileNotFoundError: if `path` does not exist.
      CheckpointError: if the file is empty, truncated or corrupt (the message names the file
        and the library's first line).
    """
    raw_meta, tensors = _read_safetensors(
        path, lambda f: (f.metadata() or {}, {key: f.get_tensor(key) for key in f.keys()})
    )
    for key, value in tensors.items():
        if value.dtype == np.float16 or value.dtype.kind == "V":  # bfloat16, float8 (ml_dtypes)
            tensors[key] = value.astype(np.float32)
    metadata: dict[str, Any] = {}
    for key, value in raw_meta.items():
        if key == "format":
            continue
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value
    return tensors, metadata


def save_safetensors(
    state_dict: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write `state_dict` (numpy arrays or torch tensors) as a ``.safetensors`` file, atomically.

    The header's ``format`` is ``"pt"`` (what ``transformers`` expects); every `metadata` value
    is stored as JSON (:func:`load_safetensors` decodes it).

    Raises:
      ValueError: if a key is not a string or `metadata` has a ``format`` entry.
    """
    from safetensors.numpy import save

    bad = [k for k in state_dict if not isinstance(k, str)]
    if bad:
        raise ValueError(f"safetensors keys must be strings, got {bad[:5]}")
    header = {"format": SAFETENSORS_FORMAT}
    for key, value in (metadata or {}).items():
        if key == "format":
            raise ValueError("metadata key 'format' is reserved (the safetensors header's format)")
        header[str(key)] = json.dumps(value)
    # (np.asarray, not np.ascontiguousarray: that makes 0-d arrays 1-d)
    arrays = {k: np.asarray(to_numpy(v), order="C") for k, v in state_dict.items()}
    atomic_write(path, save(arrays, metadata=header))
