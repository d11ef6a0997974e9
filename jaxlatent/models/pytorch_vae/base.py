"""The `BaseVAE` interface of AntixK/PyTorch-VAE and what its models share.

PyTorch-VAE (https://github.com/AntixK/PyTorch-VAE, commit a6896b9, ``models/base.py``) gives
every model ``encode``, ``decode``, ``sample``, ``generate``, ``forward`` and
``loss_function``. Here the same methods work on **channels-last** images
``[batch, height, width, channels]``; randomness is explicit (an `nnx.Rngs`, or the noise
itself so that recorded noise can be replayed), and train/eval mode is an explicit
``train: bool = False`` keyword of every method that runs the network (``__call__``,
``encode``, ``decode``, ``sample``, ``generate``): ``train=True`` is torch's train mode
(BatchNorm normalises with the batch statistics and updates its running ones),
``train=False`` its eval mode (running statistics, no update). NNX's ``.train()`` /
``.eval()`` do not change what a call computes. Note the default: torch modules start in
train mode, so a parity call of a new torch module pairs with ``train=True`` here.

Outputs are typed NamedTuples; losses are NamedTuples whose field names are the keys of the
original's loss dict (``loss._asdict()`` gives that dict).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent._checks import check_choice, check_floating, shape_str
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike, resolve_precision

Array = jax.Array

#: Output activations offered by the models (the original always uses Tanh).
OUTPUT_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}


class VAEOutput(NamedTuple):
    """`forward` of the Gaussian VAEs: the original's ``[recons, input, mu, log_var]`` plus z.

    Attributes:
      recons: reconstruction ``[batch, H, W, out_channels]``.
      input: the input images ``[batch, H, W, in_channels]`` (returned as the original does).
      mu: posterior mean ``[batch, latent_dim]``.
      log_var: posterior log-variance ``[batch, latent_dim]``.
      z: the latent passed to `decode` (ConditionalVAE: concatenated with the labels).
    """

    recons: Array
    input: Array
    mu: Array
    log_var: Array
    z: Array


class VAELoss(NamedTuple):
    """The loss dict of VanillaVAE, ConditionalVAE and BetaVAE (keys as in the original)."""

    loss: Array
    Reconstruction_Loss: Array
    KLD: Array


def uniform_init(bound: float):
    """Initialiser drawing U(-bound, bound).

    The values are drawn as a flat vector and reshaped: with JAX's default partitionable
    threefry, compiling a draw of a multi-dimensional shape costs about ten times more.
    """

    def init(key, shape, dtype=jnp.float32):
        flat = jax.random.uniform(key, (math.prod(shape),), dtype, -bound, bound)
        return flat.reshape(shape)

    return init


def torch_linear(
    in_features: int,
    out_features: int,
    *,
    precision: PrecisionLike = DEFAULT_PRECISION,
    rngs: nnx.Rngs,
) -> nnx.Linear:
    """`nnx.Linear` initialised as `torch.nn.Linear` (kernel and bias uniform in
    ``±1/sqrt(in_features)``), its matmul at `precision` (:mod:`jaxlatent.precision`)."""
    bound = 1.0 / math.sqrt(in_features)
    return nnx.Linear(
        in_features,
        out_features,
        kernel_init=uniform_init(bound),
        bias_init=uniform_init(bound),
        precision=resolve_precision(precision),
        rngs=rngs,
    )


def leaky_relu(x: Array) -> Array:
    """`torch.nn.LeakyReLU()` (negative slope 0.01)."""
    return jax.nn.leaky_relu(x, negative_slope=0.01)


def output_activation_fn(name: str) -> Callable[[Array], Array]:
    """The output activation called `name` ("tanh", "sigmoid" or "identity").

    Raises:
      ValueError: for another name.
    """
    check_choice("output_activation", name, tuple(OUTPUT_ACTIVATIONS))
    return OUTPUT_ACTIVATIONS[name]


def check_images(name: str, x: Any, expected: tuple[int | None, int | None, int], owner: str):
    """Raise ValueError unless `x` is floating ``[batch, H, W, C]`` of the expected size.

    `expected` is ``(H, W, C)``; a None size accepts any value.
    """
    check_floating(name, x)
    shape = jnp.shape(x)
    ok = len(shape) == 4 and all(
        e is None or s == e for s, e in zip(shape[1:], expected, strict=True)
    )
    if not ok:
        want = ", ".join("any" if e is None else str(e) for e in expected)
        raise ValueError(
            f"{owner} expects {name} of shape [batch, {want}] (channels-last "
            f"[batch, height, width, channels]), got shape {shape_str(x)}"
        )


def check_vectors(name: str, x: Any, width: int, owner: str, batch: int | None = None) -> None:
    """Raise ValueError unless `x` is ``[batch, width]`` (and has `batch` rows if given)."""
    shape = jnp.shape(x)
    if len(shape) != 2 or shape[1] != width or (batch is not None and shape[0] != batch):
        rows = "batch" if batch is None else str(batch)
        raise ValueError(f"{owner} expects {name} of shape [{rows}, {width}], got {shape_str(x)}")


def mse_loss(recons: Array, target: Array) -> Array:
    """`F.mse_loss(recons, target)` (mean over every element), float32 scalar.

    Raises:
      ValueError: if the shapes differ (torch would broadcast with a warning).
    """
    if jnp.shape(recons) != jnp.shape(target):
        raise ValueError(
            f"recons and input must have the same shape, got {shape_str(recons)} and "
            f"{shape_str(target)} (is out_channels equal to the input's channel count?)"
        )
    return jnp.mean(jnp.square(recons - target))


def gaussian_kld(mu: Array, log_var: Array) -> Array:
    """``mean_batch(-0.5 · sum_latent(1 + log_var - mu² - exp(log_var)))``, as the original.

    Example:
      >>> gaussian_kld(jnp.zeros((2, 3)), jnp.zeros((2, 3)))
      Array(-0., dtype=float32)
    """
    if jnp.shape(mu) != jnp.shape(log_var) or jnp.ndim(mu) != 2:
        raise ValueError(
            f"mu and log_var must both be [batch, latent_dim], got {shape_str(mu)} and "
            f"{shape_str(log_var)}"
        )
    return jnp.mean(-0.5 * jnp.sum(1 + log_var - mu**2 - jnp.exp(log_var), axis=1), axis=0)


def reparameterize(
    mu: Array, log_var: Array, *, rngs: nnx.Rngs | None = None, eps: Array | None = None
) -> Array:
    """``eps · exp(0.5 · log_var) + mu`` with ``eps ~ N(0, 1)`` from `rngs` or given.

    Args:
      mu, log_var: ``[batch, latent_dim]``.
      rngs: source of the noise (its ``noise`` stream, or the default stream).
      eps: the noise itself, shape of `mu` (e.g. recorded torch noise); exclusive with `rngs`.

    Raises:
      ValueError: unless exactly one of `rngs` and `eps` is given, or if `eps` has another
        shape than `mu`.
    """
    std = jnp.exp(0.5 * log_var)
    return draw_noise(mu, rngs=rngs, eps=eps, name="eps") * std + mu


def draw_noise(like: Array, *, rngs: nnx.Rngs | None, eps: Array | None, name: str) -> Array:
    """Standard normal noise shaped like `like`: given as `eps` or drawn from `rngs`."""
    if (rngs is None) == (eps is None):
        raise ValueError(f"pass exactly one of rngs= (to draw {name}) and {name}= (given noise)")
    if eps is None:
        return jax.random.normal(rngs.noise(), jnp.shape(like), jnp.result_type(like))
    if jnp.shape(eps) != jnp.shape(like):
        raise ValueError(f"{name} must have shape {shape_str(like)}, got {shape_str(eps)}")
    return jnp.asarray(eps, jnp.result_type(like))


class BaseVAE(nnx.Module):
    """The PyTorch-VAE model interface (``models/base.py``), channels-last.

    Subclasses implement `encode`, `decode`, `__call__` (the original's ``forward``) and
    `loss_function`; `sample` and `generate` are implemented where the original has them.
    Differences from the original interface: ``sample(num_samples, *, rngs)`` takes an
    `nnx.Rngs` instead of a torch device, randomness in `__call__`/`generate` is passed
    explicitly, and so is the mode (``train=``, default False: eval; see the module
    docstring).
    """

    def encode(self, x: Array, *, train: bool = False) -> Any:
        raise NotImplementedError

    def decode(self, z: Array, *, train: bool = False) -> Array:
        raise NotImplementedError

    def sample(self, num_samples: int, *, rngs: nnx.Rngs, **kwargs) -> Array:
        raise NotImplementedError

    def generate(self, x: Array, **kwargs) -> Array:
        """The reconstruction of `x`: ``self(x, **kwargs)[0]``, as the original."""
        return self(x, **kwargs)[0]

    def __call__(self, x: Array, *, train: bool = False, **kwargs) -> Any:
        raise NotImplementedError

    def loss_function(self, *args, **kwargs) -> Any:
        raise NotImplementedError
