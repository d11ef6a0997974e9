"""A small convolutional VQ-VAE over time, channels-last ``[batch, time, features]``.

`ConvVQVAE` is a VQ-VAE (van den Oord et al. 2017, arXiv:1711.00937): a convolutional
encoder that halves the time axis, the generic `jaxlatent.quantizers.VectorQuantizer`
(gradient or EMA codebook, k-means init, dead-code restarts, by its config; or any quantizer
given as a factory) and a transposed-convolution decoder. ``jaxlatent train`` trains it on
log spectrograms (``vq_vae_ema``, ``vq_vae``, ``--quantizer``); the feature axis is the
channel axis.

Source: the architecture is this project's; the quantizer follows lucidrains'
vector-quantize-pytorch (see `jaxlatent.quantizers.VectorQuantizer`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike
from jaxlatent.quantizers import VectorQuantizer, VectorQuantizerConfig, VectorQuantizerOutput

Array = jax.Array


class ConvVQVAEOutput(NamedTuple):
    """Output of `ConvVQVAE.__call__`."""

    #: ``[batch, time, features]``: the reconstruction.
    rec: Array
    #: the quantizer's output (codes ``[batch, time // 2]``, losses, code counts): a
    #: `VectorQuantizerOutput`, or the output type of the ``quantizer`` factory's module.
    vq: VectorQuantizerOutput | Any


class ConvVQVAE(nnx.Module):
    """VQ-VAE over time with the generic `VectorQuantizer` (gradient or EMA codebook), or
    another quantizer from a `quantizer` factory (FSQ, LFQ, SimVQ, residual forms).

    Encoder: ``Conv1d(features, hidden, k)`` → leaky ReLU → ``Conv1d(hidden, hidden, 4,
    stride 2)`` → leaky ReLU → ``Conv1d(hidden, dim, 1)`` (time halved); the quantizer on
    ``[batch, time/2, dim]``; decoder: ``ConvTranspose1d(dim, hidden, 4, stride 2)`` → leaky
    ReLU → ``Conv1d(hidden, features, k)``.

    The attribute ``axis_name`` (None) is the quantizer's cross-device axis; the training core
    (`jaxlatent.training.set_axis_name`) sets it to the mapped axis under pmap / shard_map, so
    EMA statistics, k-means init and dead-code restarts use the global batch.

    Args:
      features: input (and output) channels.
      hidden: hidden channels.
      codebook: the quantizer's config (its ``dim`` is the latent size), or, with
        `quantizer`, the latent size ``dim`` (an int).
      kernel_size: odd kernel size of the outer convolutions.
      quantizer: optional factory ``quantizer(dim, rngs) -> module`` replacing the
        `VectorQuantizer`; the module is called as ``q(z, train=, key=, axis_name=)`` on
        ``z [batch, time/2, dim]`` and returns a NamedTuple with ``quantized`` (e.g.
        `jaxlatent.quantizers.FSQ`, `ResidualVQ`). `decode_indices` then needs the
        `VectorQuantizer`.
      precision: precision of every convolution (a name of
        :data:`jaxlatent.precision.PRECISIONS` or a `jax.lax.Precision`; default
        ``"highest"``); a `quantizer` factory sets its quantizer's own.
      rngs: initialisation randomness.

    Raises:
      ValueError: if `codebook` is an int without a `quantizer` factory.

    Example:
      >>> cfg = VectorQuantizerConfig.vqvae_ema(codebook_size=8, dim=2)
      >>> vq = nnx.eval_shape(lambda: ConvVQVAE(6, 8, cfg, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((2, 10, 6), jax.numpy.float32)
      >>> out = nnx.eval_shape(lambda m, x: m(x, train=True), vq, x)
      >>> out.rec.shape, out.vq.indices.shape
      ((2, 10, 6), (2, 5))
    """

    def __init__(
        self,
        features: int,
        hidden: int,
        codebook: VectorQuantizerConfig | int,
        kernel_size: int = 5,
        *,
        quantizer: Callable[[int, nnx.Rngs], nnx.Module] | None = None,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        if isinstance(codebook, int) and quantizer is None:
            raise ValueError(f"ConvVQVAE: codebook={codebook} (a latent size) needs a quantizer")
        dim = codebook if isinstance(codebook, int) else codebook.dim
        k, p = kernel_size, kernel_size // 2
        kw = {"precision": precision, "rngs": rngs}
        self.encoder = nnx.Sequential(
            jnn.Conv1d(features, hidden, k, padding=p, **kw),
            nnx.leaky_relu,
            jnn.Conv1d(hidden, hidden, 4, stride=2, padding=1, **kw),
            nnx.leaky_relu,
            jnn.Conv1d(hidden, dim, 1, **kw),
        )
        if quantizer is None:
            self.quantizer = VectorQuantizer(codebook, rngs=rngs)
        else:
            self.quantizer = quantizer(dim, rngs)
        self.decoder = nnx.Sequential(
            jnn.ConvTranspose1d(dim, hidden, 4, stride=2, padding=1, **kw),
            nnx.leaky_relu,
            jnn.Conv1d(hidden, features, k, padding=p, **kw),
        )
        self.axis_name: str | None = None

    def __call__(self, x: Array, *, train: bool = False, key: Array | None = None):
        """Encode, quantize (updating the codebook state when `train`), decode.

        Args:
          x: ``[batch, time, features]`` with an even ``time``.
          train: update the quantizer's state (see `VectorQuantizer`).
          key: PRNG key of the k-means init / dead-code restarts (the same on every device).

        Returns:
          `ConvVQVAEOutput` ``(rec, vq)``.

        Raises:
          ValueError: if the time axis is odd (the decoder would not restore it).
        """
        if x.shape[1] % 2:
            raise ValueError(f"ConvVQVAE needs an even time axis, got x of shape {x.shape}")
        vq = self.quantizer(self.encoder(x), train=train, key=key, axis_name=self.axis_name)
        return ConvVQVAEOutput(self.decoder(vq.quantized), vq)

    def decode_indices(self, indices: Array) -> Array:
        """Reconstruction from codes ``[batch, time // 2]`` → ``[batch, time, features]``."""
        return self.decoder(self.quantizer.decode(indices))
