"""The convolutional encoder/decoder shared by VanillaVAE, BetaVAE, ConditionalVAE and WAE_MMD.

PyTorch-VAE builds the same network in each of these files:

* ``encoder``: for each ``h`` in `hidden_dims`, Conv2d(k3, s2, p1) → BatchNorm2d → LeakyReLU;
* ``decoder_input``: Linear(latent → hidden_dims[-1]·4), viewed as ``[batch, 512, 2, 2]``;
* ``decoder``: for consecutive reversed hidden dims, ConvTranspose2d(k3, s2, p1,
  output_padding=1) → BatchNorm2d → LeakyReLU;
* ``final_layer``: ConvTranspose2d(h0 → h0, same geometry) → BatchNorm2d → LeakyReLU →
  Conv2d(h0 → 3, k3, p1) → Tanh.

Here the network is channels-last. The bottleneck is ``[batch, H/2^L, W/2^L, hidden_dims[-1]]``
(``L = len(hidden_dims)``); for the original's only working configuration (64×64 images,
``hidden_dims[-1] == 512``, L = 5) that is the original's 2×2×512.

**Flatten order.** torch flattens NCHW feature maps channel-major before ``fc_mu``/``fc_var``
and ``view``s the ``decoder_input`` output as NCHW. This module transposes to channels-first
around those two reshapes (a tiny transpose of the bottleneck), so the Linear layers keep the
torch weights unpermuted and a converter copies them with a plain transpose.

Torch module paths map one to one: ``encoder.{i}.0/1`` → ``encoder/{i}/conv|bn``,
``decoder.{i}.0/1`` → ``decoder/{i}/conv|bn``, ``final_layer.0/1/3`` →
``final_layer/conv_transpose|bn|conv``.
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.models.pytorch_vae.base import (
    BaseVAE,
    check_images,
    leaky_relu,
    output_activation_fn,
    reparameterize,
    torch_linear,
)
from jaxlatent.models.pytorch_vae.config import ConvVAEConfig

Array = jax.Array


class ConvBlock(nnx.Module):
    """Conv2d(k3, s2, p1) → BatchNorm → LeakyReLU (an ``encoder.{i}`` of the original)."""

    def __init__(self, cin: int, cout: int, *, precision: Any, rngs: nnx.Rngs):
        self.conv = jnn.Conv2d(cin, cout, 3, stride=2, padding=1, precision=precision, rngs=rngs)
        self.bn = jnn.BatchNorm(cout)

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        return leaky_relu(self.bn(self.conv(x), use_running_average=not train))


class DeconvBlock(nnx.Module):
    """ConvTranspose2d(k3, s2, p1, output_padding 1) → BatchNorm → LeakyReLU (doubles H, W)."""

    def __init__(self, cin: int, cout: int, *, precision: Any, rngs: nnx.Rngs):
        self.conv = jnn.ConvTranspose2d(
            cin, cout, 3, stride=2, padding=1, output_padding=1, precision=precision, rngs=rngs
        )
        self.bn = jnn.BatchNorm(cout)

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        return leaky_relu(self.bn(self.conv(x), use_running_average=not train))


class FinalLayer(nnx.Module):
    """The original's ``final_layer``: upsample, BatchNorm, LeakyReLU, Conv2d(k3) and Tanh."""

    def __init__(
        self, channels: int, out_channels: int, activation: str, *, precision, rngs: nnx.Rngs
    ):
        self.conv_transpose = jnn.ConvTranspose2d(
            channels,
            channels,
            3,
            stride=2,
            padding=1,
            output_padding=1,
            precision=precision,
            rngs=rngs,
        )
        self.bn = jnn.BatchNorm(channels)
        self.conv = jnn.Conv2d(channels, out_channels, 3, padding=1, precision=precision, rngs=rngs)
        self.activation = activation

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        x = leaky_relu(self.bn(self.conv_transpose(x), use_running_average=not train))
        return output_activation_fn(self.activation)(self.conv(x))


class ConvVAEBackbone(BaseVAE):
    """Encoder, ``decoder_input``, decoder and ``final_layer`` of the Gaussian-family VAEs.

    Subclasses add their heads (``fc_mu``/``fc_var`` or ``fc_z``) on `feature_size` inputs.

    Args:
      config: the model's config (`hidden_dims`, `img_size`, `out_channels`,
        `output_activation`; the decoder uses `hidden_dims` reversed).
      encoder_in_channels: channels entering the encoder (None: ``config.in_channels``).
      decoder_in_features: width of the vectors entering `decode` (None:
        ``config.latent_dim``).
      precision: precision of every conv and matmul (:mod:`jaxlatent.precision`).
      rngs: parameter initialisation (torch's default uniform initialisers).

    Raises:
      ValueError: if `config` is not a config of this model class.
    """

    #: The config class this model takes.
    CONFIG: type[ConvVAEConfig] = ConvVAEConfig

    def __init__(
        self,
        config: ConvVAEConfig,
        *,
        encoder_in_channels: int | None = None,
        decoder_in_features: int | None = None,
        precision: Any,
        rngs: nnx.Rngs,
    ):
        self._check_config(config)
        if encoder_in_channels is None:
            encoder_in_channels = config.in_channels
        if decoder_in_features is None:
            decoder_in_features = config.latent_dim
        self.config = config
        self.in_channels = config.in_channels
        self.latent_dim = config.latent_dim
        dims = config.hidden_dims
        height, width = config.image_shape
        factor = 2 ** len(dims)
        self.hidden_dims = dims
        self.img_size = (height, width)
        self.encoder_in_channels = encoder_in_channels
        self.out_channels = config.out_channels
        self.bottleneck = (height // factor, width // factor, dims[-1])
        self.feature_size = dims[-1] * (height // factor) * (width // factor)
        cins = (encoder_in_channels, *dims[:-1])
        kw = {"precision": precision, "rngs": rngs}
        self.encoder = nnx.List([ConvBlock(a, b, **kw) for a, b in zip(cins, dims, strict=True)])
        self.decoder_input = torch_linear(
            decoder_in_features, self.feature_size, precision=precision, rngs=rngs
        )
        rev = dims[::-1]
        self.decoder = nnx.List(
            [DeconvBlock(a, b, precision=precision, rngs=rngs) for a, b in itertools.pairwise(rev)]
        )
        self.final_layer = FinalLayer(
            rev[-1], config.out_channels, config.output_activation, precision=precision, rngs=rngs
        )

    @classmethod
    def _check_config(cls, config: Any) -> None:
        """Raise ValueError unless `config` is a ``cls.CONFIG``."""
        if not isinstance(config, cls.CONFIG):
            raise ValueError(
                f"{cls.__name__} needs a {cls.CONFIG.__name__}, got {type(config).__name__} "
                f"(see {cls.CONFIG.__name__}.from_model_params for the original's model_params)"
            )

    def check_input(self, x: Array, name: str = "x") -> None:
        """Raise ValueError unless `x` is ``[batch, H, W, encoder_in_channels]``."""
        check_images(name, x, (*self.img_size, self.encoder_in_channels), type(self).__name__)

    def encode_features(self, x: Array, *, train: bool = False) -> Array:
        """Encoder output flattened in torch's channel-major order, ``[batch, feature_size]``.

        `train` selects the BatchNorm statistics: the batch's (and a running-statistics
        update) when True, the running ones when False.
        """
        self.check_input(x)
        for block in self.encoder:
            x = block(x, train=train)
        return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)

    def decode_features(self, z: Array, *, train: bool = False) -> Array:
        """``decoder_input`` → view as ``[batch, C, h, w]`` → decoder → ``final_layer``
        (`train` as for `encode_features`)."""
        h, w, c = self.bottleneck
        x = self.decoder_input(z).reshape(z.shape[0], c, h, w)
        x = jnp.transpose(x, (0, 2, 3, 1))
        for block in self.decoder:
            x = block(x, train=train)
        return self.final_layer(x, train=train)


class GaussianConvVAE(ConvVAEBackbone):
    """`ConvVAEBackbone` with the Gaussian heads ``fc_mu``/``fc_var`` (VanillaVAE, BetaVAE,
    ConditionalVAE): `encode` gives ``(mu, log_var)``, `reparameterize` draws from them.

    Subclasses call `_add_gaussian_heads` after the backbone (and any layers the original
    creates first, so parameters are initialised in the original's order).
    """

    def _add_gaussian_heads(self, *, precision: Any, rngs: nnx.Rngs) -> None:
        """``fc_mu`` and ``fc_var``: `feature_size` → `latent_dim` linear layers."""
        self.fc_mu = torch_linear(
            self.feature_size, self.latent_dim, precision=precision, rngs=rngs
        )
        self.fc_var = torch_linear(
            self.feature_size, self.latent_dim, precision=precision, rngs=rngs
        )

    def encode(self, x: Array, *, train: bool = False) -> tuple[Array, Array]:
        """``(mu, log_var)``, each ``[batch, latent_dim]``, of encoder inputs
        ``[batch, H, W, encoder_in_channels]``.

        `train`: BatchNorm with batch statistics (updating the running ones), else running
        statistics (torch's train/eval mode).

        Raises:
          ValueError: if `x` is not ``[batch, *img_size, encoder_in_channels]``.
        """
        h = self.encode_features(x, train=train)
        return self.fc_mu(h), self.fc_var(h)

    def reparameterize(
        self, mu: Array, log_var: Array, *, rngs: nnx.Rngs | None = None, eps: Array | None = None
    ) -> Array:
        """``eps · exp(0.5 · log_var) + mu`` (see `base.reparameterize`)."""
        return reparameterize(mu, log_var, rngs=rngs, eps=eps)
