"""The image models of `jaxlatent train`: the PyTorch-VAE family on [0, 1] images.

Image batches are dicts ``{"x": [batch, H, W, C] float32 in [0, 1], "labels": [batch,
num_classes] float32}`` (`jaxlatent.apps.image_data`). Each model is registered with small
presets that train on 2 CPU cores, using the models' corrected options for [0, 1] data of any
channel count (``out_channels`` = input channels, ``output_activation="sigmoid"``, any
``img_size`` that is a multiple of ``2**len(hidden_dims)``), set in the models' configs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxlatent.apps.metrics import codes_used
from jaxlatent.apps.spec import ModelSpec
from jaxlatent.models import pytorch_vae as pv

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ImagePreset:
    """Size and width settings of an image model.

    Attributes:
      img_size: square input size (a multiple of ``2**len(hidden_dims)``).
      channels: input (and output) channels; grayscale data are replicated to 3.
      hidden_dims: encoder widths.
      latent_dim: latent size (VQ-VAE: the code dimension).
      num_embeddings: VQ-VAE codebook size.
      kld_weight: the KL weight ``M_N`` of the Gaussian VAEs' loss.
      learning_rate: default Adam learning rate.
    """

    img_size: int = 16
    channels: int = 1
    hidden_dims: tuple[int, ...] = (8, 16, 32)
    latent_dim: int = 8
    num_embeddings: int = 32
    kld_weight: float = 0.00025
    learning_rate: float = 2e-3


PRESETS: dict[str, ImagePreset] = {
    # the digits' own 8×8 size, for smoke tests
    "micro": ImagePreset(img_size=8, hidden_dims=(4, 8), latent_dim=4, num_embeddings=16),
    # 16×16 grayscale: a few seconds per hundred steps on 2 CPU cores
    "tiny": ImagePreset(),
    # RGB (digits replicated to 3 channels), 32×32, four stages as the original's 64×64 net
    "small": ImagePreset(img_size=32, channels=3, hidden_dims=(8, 16, 32, 64), latent_dim=16),
}


def _common(p: ImagePreset) -> dict[str, Any]:
    return dict(
        in_channels=p.channels,
        hidden_dims=p.hidden_dims,
        img_size=p.img_size,
        out_channels=p.channels,
        output_activation="sigmoid",
    )


def _aux(loss_tuple: Any) -> dict[str, Array]:
    return {k: v for k, v in loss_tuple._asdict().items() if k != "loss"}


# --- Gaussian VAEs (vanilla, beta) ------------------------------------------------------


def _gaussian_loss(p: ImagePreset):
    def loss_fn(model, batch, *, key, train):
        x = batch["x"]
        eps = jax.random.normal(key, (x.shape[0], model.latent_dim), x.dtype)
        out = model(x, train=train, eps=eps)
        losses = model.loss_function(*out, M_N=p.kld_weight)
        return losses.loss, _aux(losses)

    return loss_fn


def _gaussian_reconstruct(model, batch, key):
    mu, _ = model.encode(batch["x"])  # the posterior mean
    return model.decode(mu)


def _prior_sample(model, n, key, num_classes, preset):
    return model.decode(jax.random.normal(key, (n, model.latent_dim)))


# --- ConditionalVAE -----------------------------------------------------------------------


def _cvae_loss(p: ImagePreset):
    def loss_fn(model, batch, *, key, train):
        x = batch["x"]
        eps = jax.random.normal(key, (x.shape[0], model.latent_dim), x.dtype)
        out = model(x, labels=batch["labels"], train=train, eps=eps)
        losses = model.loss_function(*out, M_N=p.kld_weight)
        return losses.loss, _aux(losses)

    return loss_fn


def _cvae_reconstruct(model, batch, key):
    mu, _ = model.encode(model.embed(batch["x"], batch["labels"]))
    return model.decode(jnp.concatenate([mu, batch["labels"].astype(mu.dtype)], axis=1))


def _cvae_sample(model, n, key, num_classes, preset):
    labels = jax.nn.one_hot(jnp.arange(n) % num_classes, num_classes)
    z = jax.random.normal(key, (n, model.latent_dim))
    return model.decode(jnp.concatenate([z, labels], axis=1))


# --- WAE-MMD ------------------------------------------------------------------------------


def _wae_loss(p: ImagePreset):
    def loss_fn(model, batch, *, key, train):
        out = model(batch["x"], train=train)
        prior = jax.random.normal(key, out.z.shape, out.z.dtype)
        losses = model.loss_function(*out, prior_z=prior)
        return losses.loss, _aux(losses)

    return loss_fn


def _wae_reconstruct(model, batch, key):
    return model(batch["x"]).recons


# --- VQ-VAE -------------------------------------------------------------------------------


def _vq_loss(p: ImagePreset):
    def loss_fn(model, batch, *, key, train):
        out = model(batch["x"], train=train)
        losses = model.loss_function(*out)
        used = codes_used(out.indices, model.num_embeddings)
        return losses.loss, {**_aux(losses), "codes_used": used}

    return loss_fn


def _vq_reconstruct(model, batch, key):
    return model(batch["x"]).recons


def _vq_sample(model, n, key, num_classes, preset):
    side = model.img_size // model.downsampling
    indices = jax.random.randint(key, (n, side, side), 0, model.num_embeddings)
    return model.decode_indices(indices)


def _build_vanilla(p, num_classes, rngs):
    return pv.VanillaVAE(pv.VanillaVAEConfig(latent_dim=p.latent_dim, **_common(p)), rngs=rngs)


def _build_beta(p, num_classes, rngs):
    # 'B' (capacity-annealed) with configs/bbvae.yaml's gamma and schedule
    config = pv.BetaVAEConfig(
        latent_dim=p.latent_dim,
        gamma=10.0,
        max_capacity=25,
        Capacity_max_iter=10000,
        loss_type="B",
        **_common(p),
    )
    return pv.BetaVAE(config, rngs=rngs)


def _build_cvae(p, num_classes, rngs):
    config = pv.ConditionalVAEConfig(num_classes=num_classes, latent_dim=p.latent_dim, **_common(p))
    return pv.ConditionalVAE(config, rngs=rngs)


def _build_wae(p, num_classes, rngs):
    config = pv.WAEMMDConfig(
        latent_dim=p.latent_dim, reg_weight=100, kernel_type="imq", **_common(p)
    )
    return pv.WAE_MMD(config, rngs=rngs)


def _build_vqvae(p, num_classes, rngs):
    common = _common(p) | {"hidden_dims": p.hidden_dims[:2]}  # two stages, as the original's
    config = pv.VQVAEConfig(embedding_dim=p.latent_dim, num_embeddings=p.num_embeddings, **common)
    return pv.VQVAE(config, rngs=rngs)


def _image(name, description, build, loss_fn, reconstruct, sample, **kw) -> ModelSpec:
    return ModelSpec(
        name, description, "image", build, loss_fn, reconstruct, sample, presets=dict(PRESETS), **kw
    )


IMAGE_MODELS: tuple[ModelSpec, ...] = (
    _image(
        "vanilla_vae",
        "PyTorch-VAE VanillaVAE (Gaussian VAE, conv encoder/decoder)",
        _build_vanilla,
        _gaussian_loss,
        _gaussian_reconstruct,
        _prior_sample,
    ),
    _image(
        "beta_vae",
        "PyTorch-VAE BetaVAE, capacity-annealed loss 'B'",
        _build_beta,
        _gaussian_loss,
        _gaussian_reconstruct,
        _prior_sample,
    ),
    _image(
        "conditional_vae",
        "PyTorch-VAE ConditionalVAE, conditioned on the digit class",
        _build_cvae,
        _cvae_loss,
        _cvae_reconstruct,
        _cvae_sample,
        sample_title="samples from the prior, classes 0, 1, 2, ... in order",
        needs_labels=True,
    ),
    _image(
        "wae_mmd",
        "PyTorch-VAE WAE_MMD (IMQ kernel)",
        _build_wae,
        _wae_loss,
        _wae_reconstruct,
        _prior_sample,
    ),
    _image(
        "vqvae",
        "PyTorch-VAE VQVAE (gradient codebook)",
        _build_vqvae,
        _vq_loss,
        _vq_reconstruct,
        _vq_sample,
        sample_title="decoded uniformly random codes (VQ-VAE has no learnt prior)",
    ),
)
