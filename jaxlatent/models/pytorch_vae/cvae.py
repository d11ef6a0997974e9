"""ConditionalVAE of AntixK/PyTorch-VAE (``models/cvae.py``) in Flax NNX, channels-last."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent.models.pytorch_vae.base import (
    VAELoss,
    VAEOutput,
    check_images,
    check_vectors,
    gaussian_kld,
    mse_loss,
    torch_linear,
)
from jaxlatent.models.pytorch_vae.config import ConditionalVAEConfig
from jaxlatent.models.pytorch_vae.conv_vae import GaussianConvVAE
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike

Array = jax.Array


class ConditionalVAE(GaussianConvVAE):
    """Conditional VAE (Sohn et al. 2015) conditioned on label/attribute vectors.

    Source: AntixK/PyTorch-VAE ``models/cvae.py`` (commit a6896b9). The labels ``[batch,
    num_classes]`` (cast to float: one-hot classes or, as the repo trains it on CelebA, multi-hot
    attributes) are embedded by ``embed_class`` = Linear(num_classes → H·W) into one extra image
    channel; the image first goes through ``embed_data``, a 1×1 conv. The encoder sees
    ``concat([embed_data(x), embedded labels], channels)``, and the decoder gets
    ``concat([z, labels])`` (``latent_dim + num_classes`` wide). The rest is VanillaVAE's
    network and loss (logged ``KLD = -KL``, not detached: no numeric difference).

    Differences from the original (the config's defaults reproduce it): the `VanillaVAE`
    options (`img_size` may be ``(H, W)``, `out_channels`, `output_activation`,
    `negate_logged_kld`) are fields of `ConditionalVAEConfig`; randomness and the mode
    (``train``, default False) are explicit;
    `encode` takes the embedded input (as the original's ``encode``) and :meth:`embed` builds
    it; labels of the wrong width raise ValueError naming the shapes.

    Args:
      config: a `ConditionalVAEConfig` (`num_classes`, `latent_dim`, ...; the label embedding
        has H·W outputs, so inputs must have exactly `img_size`).
      precision, rngs: as `VanillaVAE`.

    Example:
      >>> import jax.numpy as jnp
      >>> config = ConditionalVAEConfig(in_channels=3, num_classes=10, latent_dim=4,
      ...                               hidden_dims=[8], img_size=2)
      >>> cvae = ConditionalVAE(config, rngs=nnx.Rngs(0))
      >>> labels = jnp.eye(10)[:2]
      >>> cvae(jnp.ones((2, 2, 2, 3)), labels=labels, rngs=nnx.Rngs(1)).z.shape
      (2, 14)
      >>> cvae.sample(2, labels=labels, rngs=nnx.Rngs(2)).shape
      (2, 2, 2, 3)
    """

    CONFIG = ConditionalVAEConfig

    def __init__(
        self,
        config: ConditionalVAEConfig,
        *,
        precision: PrecisionLike = DEFAULT_PRECISION,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            config,
            encoder_in_channels=config.in_channels + 1,  # the extra label channel
            decoder_in_features=config.latent_dim + config.num_classes,
            precision=precision,
            rngs=rngs,
        )
        self.num_classes = config.num_classes
        height, width = self.img_size
        kw = {"precision": precision, "rngs": rngs}
        self.embed_class = torch_linear(config.num_classes, height * width, **kw)
        self.embed_data = jnn.Conv2d(config.in_channels, config.in_channels, 1, **kw)
        self._add_gaussian_heads(**kw)

    def _labels(self, labels: Any, batch: int) -> Array:
        if labels is None:
            raise ValueError("ConditionalVAE needs labels= of shape [batch, num_classes]")
        check_vectors("labels", labels, self.num_classes, "ConditionalVAE", batch=batch)
        return jnp.asarray(labels).astype(jnp.float32)  # the original's labels.float()

    def embed(self, x: Array, labels: Array) -> Array:
        """The encoder input ``[batch, H, W, in_channels + 1]`` of images and labels.

        Raises:
          ValueError: if `x` is not ``[batch, *img_size, in_channels]`` or `labels` is not
            ``[batch, num_classes]``.
        """
        check_images("x", x, (*self.img_size, self.in_channels), "ConditionalVAE")
        y = self._labels(labels, x.shape[0])
        height, width = self.img_size
        embedded_class = self.embed_class(y).reshape(x.shape[0], height, width, 1)
        return jnp.concatenate([self.embed_data(x), embedded_class], axis=-1)

    def decode(self, z: Array, *, train: bool = False) -> Array:
        """Images of ``concat([z, labels])`` ``[batch, latent_dim + num_classes]``."""
        check_vectors("z", z, self.latent_dim + self.num_classes, "ConditionalVAE")
        return self.decode_features(z, train=train)

    def __call__(
        self,
        x: Array,
        *,
        labels: Array,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
        eps: Array | None = None,
    ) -> VAEOutput:
        """The original's ``forward(x, labels=labels)`` (`train`, `rngs`, `eps` as for
        `VanillaVAE.__call__`).

        Returns:
          `VAEOutput` whose `z` is the decoder input ``concat([z, labels])``.

        Raises:
          ValueError: for wrong image or label shapes, or unless exactly one of `rngs`/`eps`
            is given.
        """
        mu, log_var = self.encode(self.embed(x, labels), train=train)
        z = self.reparameterize(mu, log_var, rngs=rngs, eps=eps)
        z = jnp.concatenate([z, self._labels(labels, x.shape[0])], axis=1)
        return VAEOutput(self.decode(z, train=train), x, mu, log_var, z)

    def loss_function(
        self, recons: Array, input: Array, mu: Array, log_var: Array, *_: Any, M_N: Any
    ) -> VAELoss:
        """``mse + M_N · KL``; logged ``KLD = -KL`` unless ``negate_logged_kld=False``."""
        recons_loss = mse_loss(recons, input)
        kld = gaussian_kld(mu, log_var)
        loss = recons_loss + M_N * kld
        return VAELoss(loss, recons_loss, -kld if self.config.negate_logged_kld else kld)

    def sample(
        self, num_samples: int, *, rngs: nnx.Rngs, labels: Array, train: bool = False
    ) -> Array:
        """Decode ``num_samples`` N(0, I) latents with `labels` ``[num_samples, num_classes]``."""
        y = self._labels(labels, num_samples)
        z = jax.random.normal(rngs.noise(), (num_samples, self.latent_dim))
        return self.decode(jnp.concatenate([z, y], axis=1), train=train)

    def generate(self, x: Array, *, labels: Array, **kwargs: Any) -> Array:
        """Reconstruction of `x` given `labels` (``train=``, ``rngs=`` or ``eps=`` as for
        `__call__`)."""
        return self(x, labels=labels, **kwargs).recons
