"""SpeechBrain PIQ state_dicts <-> jaxlatent's PIQ modules.

Tables for SpeechBrain 1.1.2 `speechbrain.lobes.models.PIQ`, one explicit entry per
``nn.Sequential`` index:

=================================  ==========================================================
torch key prefix                   jaxlatent path
=================================  ==========================================================
``embedding`` (`VQEmbedding`)      ``embedding`` (`nnx.Param` ``[K, D]``, no transform)
``block.0`` / ``block.1``          ``conv1`` / ``bn1`` (`ResBlockAudio`; ``block.2`` is ReLU)
``block.3`` / ``block.4``          ``conv2`` / ``bn2``
``conv{i}`` / ``bn{i}``            ``conv{i}`` / ``bn{i}`` (`Conv2dEncoder_v2`), ``resblock``
``codebook.embedding``             ``codebook/embedding`` (PSI models)
``adapter``                        ``adapter`` (a `ResBlockAudio`, if ``use_adapter``)
``down`` / ``up``                  ``down`` / ``up`` (if ``adapter_reduce_dim``)
``decoder.{0,3,6,9,12}``           ``decoder/deconv{1..5}`` (transposed convs)
``decoder.{2,5,8,11}``             ``decoder/bn{1..4}`` (BatchNorm; 1/4/7/10 are ReLUs)
=================================  ==========================================================

Kernels change layout (`converters.tables.conv` / `conv_transpose`); BatchNorm running
statistics and ``num_batches_tracked`` are converted too, so a model converted in the middle of
training continues exactly. torch is imported only by the file helpers of
`converters.checkpoint_files`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

from converters import assign, tables
from converters.tables import Table
from jaxlatent.models.piq import (
    Conv2dEncoder_v2,
    PSIDecoder,
    ResBlockAudio,
    VectorQuantizedPSI_Audio,
)
from jaxlatent.quantizers.piq import VQEmbedding

M = TypeVar("M", bound=nnx.Module)

__all__ = [
    "conv2d_encoder_v2_table",
    "export_state_dict",
    "from_state_dict",
    "load_state_dict",
    "psi_decoder_table",
    "res_block_audio_table",
    "table_for",
    "vector_quantized_psi_table",
    "vq_embedding_table",
]


def _key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _path(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def vq_embedding_table(torch_prefix: str = "", jax_prefix: str = "") -> Table:
    """`VQEmbedding`: ``embedding.weight [K, D]`` -> ``embedding [K, D]``.

    Example:
      >>> vq_embedding_table("codebook", "codebook")["codebook.embedding.weight"].jax_path
      'codebook/embedding'
    """
    return tables.embedding(_key(torch_prefix, "embedding"), jax_prefix)


def res_block_audio_table(torch_prefix: str = "", jax_prefix: str = "") -> Table:
    """`ResBlockAudio`: ``block.0/1/3/4`` -> ``conv1``, ``bn1``, ``conv2``, ``bn2``."""
    return (
        tables.conv(_key(torch_prefix, "block.0"), _path(jax_prefix, "conv1"))
        | tables.batch_norm(_key(torch_prefix, "block.1"), _path(jax_prefix, "bn1"))
        | tables.conv(_key(torch_prefix, "block.3"), _path(jax_prefix, "conv2"))
        | tables.batch_norm(_key(torch_prefix, "block.4"), _path(jax_prefix, "bn2"))
    )


def conv2d_encoder_v2_table(torch_prefix: str = "", jax_prefix: str = "") -> Table:
    """`Conv2dEncoder_v2`: ``conv1-4``, ``bn1-4`` (same names) and ``resblock``."""
    table: Table = {}
    for i in range(1, 5):
        table |= tables.conv(_key(torch_prefix, f"conv{i}"), _path(jax_prefix, f"conv{i}"))
        table |= tables.batch_norm(_key(torch_prefix, f"bn{i}"), _path(jax_prefix, f"bn{i}"))
    return table | res_block_audio_table(
        _key(torch_prefix, "resblock"), _path(jax_prefix, "resblock")
    )


def psi_decoder_table(torch_prefix: str = "decoder", jax_prefix: str = "decoder") -> Table:
    """The PSI decoder ``nn.Sequential``: indices 0/3/6/9/12 and 2/5/8/11.

    Example:
      >>> table = psi_decoder_table()
      >>> table["decoder.12.weight"].jax_path, table["decoder.11.running_var"].jax_path
      ('decoder/deconv5/kernel', 'decoder/bn4/var')
    """
    table: Table = {}
    for i in range(4):
        table |= tables.conv_transpose(
            _key(torch_prefix, str(3 * i)), _path(jax_prefix, f"deconv{i + 1}")
        )
        table |= tables.batch_norm(
            _key(torch_prefix, str(3 * i + 2)), _path(jax_prefix, f"bn{i + 1}")
        )
    return table | tables.conv_transpose(_key(torch_prefix, "12"), _path(jax_prefix, "deconv5"))


def vector_quantized_psi_table(
    *, use_adapter: bool = True, adapter_reduce_dim: bool = True
) -> Table:
    """`VectorQuantizedPSI_Audio` and its FocalNet/ViT variants (same keys).

    Example:
      >>> len(vector_quantized_psi_table())
      49
      >>> len(vector_quantized_psi_table(use_adapter=False, adapter_reduce_dim=False))
      31
    """
    table = vq_embedding_table("codebook", "codebook")
    if use_adapter:
        table |= res_block_audio_table("adapter", "adapter")
    if adapter_reduce_dim:
        table |= tables.conv("down", "down") | tables.conv_transpose("up", "up")
    return table | psi_decoder_table()


def table_for(module: nnx.Module) -> Table:
    """The conversion table of a PIQ module (any class of `jaxlatent.models.piq`).

    Raises:
      ValueError: for a module that is not one of PIQ's.
    """
    if isinstance(module, VectorQuantizedPSI_Audio):
        return vector_quantized_psi_table(
            use_adapter=module.use_adapter, adapter_reduce_dim=module.adapter_reduce_dim
        )
    if isinstance(module, VQEmbedding):
        return vq_embedding_table()
    if isinstance(module, ResBlockAudio):
        return res_block_audio_table()
    if isinstance(module, Conv2dEncoder_v2):
        return conv2d_encoder_v2_table()
    if isinstance(module, PSIDecoder):
        return psi_decoder_table("", "")
    raise ValueError(f"no PIQ conversion table for {type(module).__name__}")


def load_state_dict(
    module: nnx.Module, state_dict: Mapping[str, Any], *, dont_load=()
) -> nnx.Module:
    """Copy a SpeechBrain PIQ `state_dict` into `module` (strict, atomic); returns `module`.

    Raises:
      ConversionError: listing every missing, unexpected or mis-shaped key (nothing assigned).
    """
    assign.assign_strict(module, state_dict, table_for(module), dont_load=dont_load)
    return module


def export_state_dict(module: nnx.Module):
    """The SpeechBrain (torch layout) state_dict of a PIQ module, as numpy arrays."""
    return assign.export_state_dict(module, table_for(module))


def from_state_dict(build: Callable[[], M], state_dict: Mapping[str, Any], *, dont_load=()) -> M:
    """Build a PIQ module from a SpeechBrain `state_dict` without initialising it first.

    Args:
      build: a function returning the module, e.g.
        ``lambda: VectorQuantizedPSI_Audio(dim=128, K=512, rngs=nnx.Rngs(0))``; it is only
        traced (`nnx.eval_shape`), so no random initialisation is computed.
      state_dict: torch tensors or numpy arrays by SpeechBrain key.
      dont_load: keys allowed in `state_dict` but ignored.

    Returns:
      The module holding the checkpoint's values.

    Raises:
      ConversionError: listing every missing, unexpected or mis-shaped key.
    """
    module = nnx.eval_shape(build)
    assign.assign_strict(module, state_dict, table_for(module), dont_load=dont_load)
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))
