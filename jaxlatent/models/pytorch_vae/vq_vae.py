"""VQVAE of AntixK/PyTorch-VAE (``models/vq_vae.py``) in Flax NNX, channels-last."""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.models.pytorch_vae.base import (
    BaseVAE,
    check_images,
    leaky_relu,
    mse_loss,
    output_activation_fn,
    uniform_init,
)
from jaxlatent.models.pytorch_vae.config import VQVAEConfig
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike
from jaxlatent.quantizers.search import check_code_indices, lookup_codes, nearest_code
from jaxlatent.quantizers.straight_through import straight_through

Array = jax.Array

#: Residual layers in the encoder and in the decoder (hard-wired in the original).
NUM_RESIDUAL_LAYERS = 6


class VQVAEQuantizerOutput(NamedTuple):
    """Output of `VQVAEQuantizer`.

    Attributes:
      quantized: the codes with straight-through gradients ``[batch, H, W, D]``.
      vq_loss: ``beta · commitment + codebook`` loss, float32 scalar.
      indices: chosen code per position ``[batch, H, W]``, int32.
    """

    quantized: Array
    vq_loss: Array
    indices: Array


class VQVAEOutput(NamedTuple):
    """`forward` of VQVAE: the original's ``[recons, input, vq_loss]`` plus the code indices."""

    recons: Array
    input: Array
    vq_loss: Array
    indices: Array


class VQVAELoss(NamedTuple):
    """The loss dict of VQVAE (keys as in the original)."""

    loss: Array
    Reconstruction_Loss: Array
    VQ_Loss: Array


class VQVAEQuantizer(nnx.Module):
    """The original's ``VectorQuantizer`` (a port of Sonnet v2's), channels-last.

    Named `VQVAEQuantizer` here: `jaxlatent.quantizers.VectorQuantizer` is the generic
    gradient/EMA quantizer.

    Nearest code by squared L2 distance ``(‖x‖² + ‖e‖²) - 2 x·e`` (the shared exact search,
    `jaxlatent.quantizers.nearest_code`, float32 at ``Precision.HIGHEST``, lowest index on
    ties, as torch.argmin), ``vq_loss = beta · mse(sg(q), z) + mse(q, sg(z))`` and
    straight-through gradients (`jaxlatent.quantizers.straight_through`). No EMA.

    Difference: the original's straight-through output ``z + (q - z).detach()`` rounds (it
    differs from the code by about an ulp of z); here the output is the code itself, bit for
    bit. Gradients are the same.

    Args:
      num_embeddings: codebook size K.
      embedding_dim: code dimension D.
      beta: commitment weight.
      rngs: codebook initialisation, uniform in ``±1/K`` as the original.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, beta: float = 0.25, *, rngs):
        self.K = num_embeddings
        self.D = embedding_dim
        self.beta = beta
        self.embedding = nnx.Embed(
            num_embeddings,
            embedding_dim,
            embedding_init=uniform_init(1.0 / num_embeddings),
            rngs=rngs,
        )

    @property
    def codebook(self) -> Array:
        """The codebook ``[K, D]``."""
        return self.embedding.embedding[...]

    def __call__(self, latents: Array) -> VQVAEQuantizerOutput:
        """Quantise encoder latents ``[batch, H, W, D]``.

        Raises:
          ValueError: if the last axis of `latents` is not D.
        """
        check_images("latents", latents, (None, None, self.D), "VQVAEQuantizer")
        codebook = self.codebook
        indices = nearest_code(latents, codebook, form="addmm")
        q = jnp.take(codebook, indices, axis=0)
        commitment_loss = mse_loss(jax.lax.stop_gradient(q), latents)
        embedding_loss = mse_loss(q, jax.lax.stop_gradient(latents))
        vq_loss = commitment_loss * self.beta + embedding_loss
        return VQVAEQuantizerOutput(straight_through(latents, q), vq_loss, indices)

    def lookup(self, indices: Array) -> Array:
        """Codes ``[..., D]`` of integer `indices` ``[...]`` (checked when concrete)."""
        return lookup_codes(self.codebook, indices)


class ConvAct(nnx.Module):
    """(Transposed) convolution followed by an activation (one ``nn.Sequential`` entry)."""

    def __init__(
        self, cin, cout, kernel, stride, padding, *, transposed=False, act="leaky", precision, rngs
    ):
        cls = jnn.ConvTranspose2d if transposed else jnn.Conv2d
        self.conv = cls(
            cin, cout, kernel, stride=stride, padding=padding, precision=precision, rngs=rngs
        )
        self.act = act

    def __call__(self, x: Array) -> Array:
        y = self.conv(x)
        return leaky_relu(y) if self.act == "leaky" else output_activation_fn(self.act)(y)


class ResidualLayer(nnx.Module):
    """``x + conv1x1(relu(conv3x3(x)))``, both convs without bias (``resblock.0``/``.2``)."""

    def __init__(self, channels: int, *, precision: Any, rngs: nnx.Rngs):
        self.conv1 = jnn.Conv2d(
            channels, channels, 3, padding=1, bias=False, precision=precision, rngs=rngs
        )
        self.conv2 = jnn.Conv2d(channels, channels, 1, bias=False, precision=precision, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return x + self.conv2(jax.nn.relu(self.conv1(x)))


class LeakyReLU(nnx.Module):
    """A bare ``nn.LeakyReLU()`` entry of the original's Sequential (keeps indices aligned)."""

    def __call__(self, x: Array) -> Array:
        return leaky_relu(x)


class VQVAE(BaseVAE):
    """VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning",
    arXiv:1711.00937).

    Source: AntixK/PyTorch-VAE ``models/vq_vae.py`` (commit a6896b9). Encoder: Conv(k4, s2,
    p1)+LeakyReLU per hidden dim, Conv(k3)+LeakyReLU, 6 `ResidualLayer`s, LeakyReLU,
    Conv(1×1 → D)+LeakyReLU (the latent is activated before quantisation, as the original);
    `VQVAEQuantizer`; decoder: Conv(k3)+LeakyReLU, 6 ResidualLayers, LeakyReLU,
    ConvTranspose(k4, s2, p1)+LeakyReLU per reversed hidden dim, ConvTranspose(→ 3)+Tanh. No
    BatchNorm (train and eval mode are identical: `train` is accepted and has no effect).
    Loss: ``mse(recons, x) + vq_loss``. ``encoder.{i}`` / ``decoder.{i}`` indices equal the
    original's.

    Differences from the original (the config's defaults reproduce it): `out_channels` (3)
    and `output_activation` ("tanh") are fields of `VQVAEConfig`; images whose height or width
    is not a multiple of ``2**len(hidden_dims)`` raise ValueError (the original's
    reconstruction would not match the input size); `img_size` is unused, as in the original;
    the straight-through output is the code itself (see `VQVAEQuantizer`); ``sample`` raises
    NotImplementedError (the original raises ``Warning``): there is no learnt prior over the
    codes. `decode` takes latents ``[batch, h, w, D]``; `decode_indices` decodes code indices.

    Args:
      config: a `VQVAEConfig` (`embedding_dim` D, `num_embeddings` K, `hidden_dims`, `beta`).
      precision: precision of every conv and matmul (:mod:`jaxlatent.precision`;
        default ``"highest"``).
      rngs: parameter initialisation (torch's default initialisers; codebook U(±1/K)).

    Raises:
      ValueError: if `config` is not a `VQVAEConfig`.

    Example:
      >>> import jax.numpy as jnp
      >>> config = VQVAEConfig(in_channels=3, embedding_dim=8, num_embeddings=16, hidden_dims=[8])
      >>> vq = VQVAE(config, rngs=nnx.Rngs(0))
      >>> out = vq(jnp.ones((2, 4, 4, 3)))
      >>> out.recons.shape, out.indices.shape, out.indices.dtype
      ((2, 4, 4, 3), (2, 2, 2), dtype('int32'))
      >>> vq.decode_indices(out.indices).shape
      (2, 4, 4, 3)
    """

    def __init__(
        self, config: VQVAEConfig, *, precision: PrecisionLike = DEFAULT_PRECISION, rngs: nnx.Rngs
    ):
        if not isinstance(config, VQVAEConfig):
            raise ValueError(
                f"VQVAE needs a VQVAEConfig, got {type(config).__name__} (see "
                "VQVAEConfig.from_model_params for the original's model_params)"
            )
        self.config = config
        dims = config.hidden_dims
        embedding_dim = config.embedding_dim
        self.in_channels = config.in_channels
        self.embedding_dim = embedding_dim
        self.num_embeddings = config.num_embeddings
        self.hidden_dims = dims
        self.img_size = config.img_size
        out_channels = config.out_channels
        kw = {"precision": precision, "rngs": rngs}
        top = dims[-1]
        cins = (config.in_channels, *dims[:-1])
        self.encoder = nnx.List(
            [ConvAct(a, b, 4, 2, 1, **kw) for a, b in zip(cins, dims, strict=True)]
            + [ConvAct(top, top, 3, 1, 1, **kw)]
            + [ResidualLayer(top, **kw) for _ in range(NUM_RESIDUAL_LAYERS)]
            + [LeakyReLU(), ConvAct(top, embedding_dim, 1, 1, 0, **kw)]
        )
        self.vq_layer = VQVAEQuantizer(config.num_embeddings, embedding_dim, config.beta, rngs=rngs)
        rev = dims[::-1]
        act = config.output_activation
        self.decoder = nnx.List(
            [ConvAct(embedding_dim, top, 3, 1, 1, **kw)]
            + [ResidualLayer(top, **kw) for _ in range(NUM_RESIDUAL_LAYERS)]
            + [LeakyReLU()]
            + [ConvAct(a, b, 4, 2, 1, transposed=True, **kw) for a, b in itertools.pairwise(rev)]
            + [ConvAct(rev[-1], out_channels, 4, 2, 1, transposed=True, act=act, **kw)]
        )

    @property
    def downsampling(self) -> int:
        """Ratio of image size to latent size, ``2**len(hidden_dims)``."""
        return 2 ** len(self.hidden_dims)

    def encode(self, x: Array, *, train: bool = False) -> tuple[Array]:
        """``(encoding,)``: the pre-quantisation latent ``[batch, H/f, W/f, D]`` (f =
        `downsampling`), a 1-tuple as the original's ``[result]``. `train` has no effect (the
        `BaseVAE` interface; VQVAE computes the same in both modes).

        Raises:
          ValueError: if `x` is not ``[batch, H, W, in_channels]`` with H and W multiples of f.
        """
        del train
        check_images("x", x, (None, None, self.in_channels), "VQVAE")
        f = self.downsampling
        if x.shape[1] % f or x.shape[2] % f:
            raise ValueError(
                f"VQVAE with len(hidden_dims)={len(self.hidden_dims)} needs image height and "
                f"width that are multiples of {f}, got shape {tuple(x.shape)}"
            )
        for layer in self.encoder:
            x = layer(x)
        return (x,)

    def decode(self, z: Array, *, train: bool = False) -> Array:
        """Images ``[batch, H, W, out_channels]`` of (quantised) latents ``[batch, h, w, D]``
        (`train` has no effect)."""
        del train
        check_images("z", z, (None, None, self.embedding_dim), "VQVAE")
        for layer in self.decoder:
            z = layer(z)
        return z

    def decode_indices(self, indices: Array) -> Array:
        """Images of code indices ``[batch, h, w]`` (int, in ``[0, num_embeddings)``)."""
        check_code_indices(indices, self.num_embeddings)
        return self.decode(self.vq_layer.lookup(indices))

    def __call__(self, x: Array, *, train: bool = False) -> VQVAEOutput:
        """The original's ``forward``: ``VQVAEOutput(recons, input, vq_loss, indices)``.

        `train` has no effect (no BatchNorm or dropout); it is accepted so every `BaseVAE`
        is called alike.
        """
        del train
        encoding = self.encode(x)[0]
        quantized, vq_loss, indices = self.vq_layer(encoding)
        return VQVAEOutput(self.decode(quantized), x, vq_loss, indices)

    def loss_function(
        self, recons: Array, input: Array, vq_loss: Array, *_: Any, M_N: Any = None
    ) -> VQVAELoss:
        """``mse(recons, input) + vq_loss`` (``M_N`` is accepted and ignored, as the original)."""
        del M_N
        recons_loss = mse_loss(recons, input)
        return VQVAELoss(recons_loss + vq_loss, recons_loss, vq_loss)

    def sample(self, num_samples: int, *, rngs: nnx.Rngs, **kwargs: Any) -> Array:
        """Not available: VQ-VAE has no prior over codes here (the original raises Warning).

        Raises:
          NotImplementedError: always.
        """
        raise NotImplementedError(
            "VQVAE sampler is not implemented (no learnt prior over the codes); decode chosen "
            "code indices with decode_indices() instead"
        )

    def generate(self, x: Array, **kwargs: Any) -> Array:
        """The reconstruction of `x` (keywords, such as ``rngs`` or ``train``, are ignored)."""
        return self(x).recons
