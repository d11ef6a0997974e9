"""The quantizers ``jaxlatent train --quantizer NAME`` puts into the VQ-VAE models.

`QUANTIZERS` maps each short name to a one-line description of its settings, sized from the
model's preset (``latent``: the code dimension; ``codebook_size``; ``codebook_update``):

* ``vq`` — the generic `VectorQuantizer` of the model (the default: EMA or gradient codebook);
* ``fsq`` — `FSQ` with levels ``[8, 5, 5, 5]`` (1000 codes; projections from ``latent``);
* ``rfsq`` — `ResidualFSQ`, 2 layers of levels ``[8, 5, 5, 5]``, quantizer dropout;
* ``lfq`` — `LFQ` with ``2**8`` codes (projections when ``latent != 8``), entropy loss weight
  0.1, commitment weight 0.25;
* ``rlfq`` — `ResidualLFQ`, 2 layers of ``2**8`` codes as ``lfq``, quantizer dropout;
* ``simvq`` — `SimVQ` with ``codebook_size`` codes (frozen codebook, learnt linear map);
* ``rsimvq`` — `ResidualSimVQ`, 2 layers of ``codebook_size`` codes, quantizer dropout;
* ``rvq`` — `ResidualVQ`, 2 layers of ``codebook_size`` codes with the model's codebook
  settings (EMA with k-means init and dead-code restarts, or gradient with cosine codes),
  quantizer dropout.

Quantizer dropout (lucidrains' ``quantize_dropout``) draws its cut-off layer from the training
step's key; evaluation uses every layer. The training objective adds the quantizer's
auxiliary loss (the sum over layers; FSQ has none). `usage_metrics` gives the code usage
(distinct codes) and perplexity of each codebook: ``codes_used`` / ``perplexity`` for one
codebook; for residual quantizers their means over the layers plus ``codes_used_L{i}`` /
``perplexity_L{i}`` per layer ``i``.

Source: the quantizers follow vector-quantize-pytorch 1.32.0 (see `jaxlatent.quantizers`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent.quantizers import (
    FSQ,
    LFQ,
    ResidualFSQ,
    ResidualLFQ,
    ResidualSimVQ,
    ResidualVQ,
    SimVQ,
    VectorQuantizerConfig,
)

Array = jax.Array

FSQ_LEVELS = (8, 5, 5, 5)
LFQ_CODEBOOK_SIZE = 2**8
RESIDUAL_LAYERS = 2

#: ``--quantizer`` names → what each builds (``vq`` is the model's own).
QUANTIZERS: dict[str, str] = {
    "vq": "the model's VectorQuantizer (default)",
    "fsq": "FSQ, levels [8, 5, 5, 5]",
    "rfsq": "ResidualFSQ, 2 x levels [8, 5, 5, 5], quantizer dropout",
    "lfq": "LFQ, 2**8 codes, entropy loss",
    "rlfq": "ResidualLFQ, 2 x 2**8 codes, quantizer dropout",
    "simvq": "SimVQ, codebook_size codes",
    "rsimvq": "ResidualSimVQ, 2 x codebook_size codes, quantizer dropout",
    "rvq": "ResidualVQ, 2 x codebook_size codes (the model's codebook), quantizer dropout",
}


class _SimVQ(nnx.Module):
    """`SimVQ` called as the other quantizers (``train`` and ``key`` are unused)."""

    def __init__(self, vq: SimVQ):
        self.vq = vq

    def __call__(self, x, *, train: bool = False, key=None, axis_name=None):
        return self.vq(x, axis_name=axis_name)


def vq_config(p: Any) -> VectorQuantizerConfig:
    """The `VectorQuantizerConfig` of a VQ-VAE preset (``codebook_update`` ema/gradient)."""
    if p.codebook_update == "gradient":
        return VectorQuantizerConfig.vqvae(p.codebook_size, p.latent, metric="cosine")
    return VectorQuantizerConfig.vqvae_ema(
        p.codebook_size,
        p.latent,
        decay=p.ema_decay,
        kmeans_init=True,
        kmeans_iters=5,
        dead_code_threshold=p.dead_code_threshold,
    )


def quantizer_factory(name: str, p: Any):
    """``factory(dim, rngs) -> module`` of quantizer `name` for preset `p` (None for ``vq``).

    Raises:
      ValueError: for an unknown name, listing the choices.
    """
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; choose one of: {', '.join(QUANTIZERS)}")
    residual = dict(num_quantizers=RESIDUAL_LAYERS, quantize_dropout=True)
    lfq = dict(codebook_size=LFQ_CODEBOOK_SIZE, entropy_loss_weight=0.1)
    factories = {
        "vq": None,
        "fsq": lambda d, rngs: FSQ(FSQ_LEVELS, dim=d, rngs=rngs),
        "rfsq": lambda d, rngs: ResidualFSQ(levels=FSQ_LEVELS, dim=d, rngs=rngs, **residual),
        "lfq": lambda d, rngs: LFQ(dim=d, commitment_loss_weight=0.25, rngs=rngs, **lfq),
        "rlfq": lambda d, rngs: ResidualLFQ(
            dim=d, commitment_loss_weight=0.25, rngs=rngs, **lfq, **residual
        ),
        "simvq": lambda d, rngs: _SimVQ(SimVQ(d, p.codebook_size, rngs=rngs)),
        "rsimvq": lambda d, rngs: ResidualSimVQ(
            dim=d, codebook_size=p.codebook_size, rngs=rngs, **residual
        ),
        "rvq": lambda d, rngs: ResidualVQ(
            dim=d, codebook_size=p.codebook_size, config=vq_config(p), rngs=rngs, **residual
        ),
    }
    return factories[name]


def quantizer_loss(out: NamedTuple) -> Array:
    """The auxiliary loss of a quantizer output: ``loss``, the sum of ``losses``, or 0 (FSQ)."""
    if hasattr(out, "loss"):
        return out.loss
    if hasattr(out, "losses"):
        return jnp.sum(out.losses)
    return jnp.zeros((), jnp.float32)


def usage_metrics(out: NamedTuple) -> dict[str, Array]:
    """Per-codebook usage of a quantizer output (float32 scalars; see the module docstring).

    ``counts`` is ``[codebook_size]`` (one codebook) or ``[layers, codebook_size]``, and
    ``perplexity`` a scalar or ``[layers]``.
    """
    used = jnp.sum(out.counts > 0, axis=-1).astype(jnp.float32)
    perplexity = jnp.asarray(out.perplexity, jnp.float32)
    metrics = {"codes_used": jnp.mean(used), "perplexity": jnp.mean(perplexity)}
    if used.ndim == 1:
        for i in range(used.shape[0]):
            metrics[f"codes_used_L{i}"] = used[i]
            metrics[f"perplexity_L{i}"] = perplexity[i]
    return metrics
