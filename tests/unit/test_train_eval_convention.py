"""One train/eval convention: an explicit ``train: bool = False`` call argument, never NNX's
``.train()``/``.eval()`` module state (README, "Layout convention").

* Every model class exported by `jaxlatent.models` and its subpackages either takes a
  keyword ``train`` defaulting to False on ``__call__``, or is listed in `NO_MODE` with the
  reason its computation has no train/eval difference.
* Representative models at tiny sizes (BatchNorm, GlobalNorm statistics, an EMA codebook,
  PIQ's class-restricted codes) compute the same outputs and the same state whatever
  ``.train()``/``.eval()`` was called on them before, for either fixed ``train``; and
  ``train=True`` differs from ``train=False`` (the mode is real, so the comparison can fail).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxlatent.models
from jaxlatent import models
from jaxlatent.models import pytorch_vae as pv
from jaxlatent.models.piq import ResBlockAudio
from jaxlatent.quantizers import VectorQuantizerConfig
from jaxlatent.quantizers.piq import VQEmbedding

#: Exported model classes without a train/eval difference (so without ``train``), and why.
NO_MODE = {
    "Autoencoder": "the abstract SpeechBrain interface",
    "VariationalAutoencoder": "wraps caller-given modules; its noise is the key/noise argument",
    "ConvAutoencoder": "convolutions and leaky ReLU only",
    "VQVAEQuantizer": "nearest-code search with straight-through gradients, no state",
    "Encoder": "DAC's encoder: weight-normed convolutions and Snake",
    "EncoderBlock": "DAC's encoder block: weight-normed convolutions and Snake",
    "Decoder": "DAC's decoder: weight-normed convolutions and Snake",
    "DecoderBlock": "DAC's decoder block: weight-normed convolutions and Snake",
    "ResidualUnit": "DAC's residual unit: weight-normed convolutions and Snake",
    "Snake1d": "an activation with a learnt parameter",
    "MPD": "DAC's period discriminator: weight-normed convolutions and leaky ReLU",
    "MSD": "DAC's scale discriminator: resampling, weight-normed convolutions and leaky ReLU",
    "MRD": "DAC's band discriminator: STFT, weight-normed convolutions and leaky ReLU",
}


def _exported_model_classes() -> dict[str, type]:
    root = jaxlatent.models
    names = [root.__name__] + [
        info.name for info in pkgutil.walk_packages(root.__path__, root.__name__ + ".")
    ]
    found: dict[str, type] = {}
    for name in names:
        if any(part.startswith("_") for part in name.split(".")):
            continue
        module = importlib.import_module(name)
        if not hasattr(module, "__path__"):  # packages: what they export
            continue
        exported = getattr(module, "__all__", None) or [
            n for n in vars(module) if not n.startswith("_")
        ]
        for n in exported:
            obj = getattr(module, n)
            if inspect.isclass(obj) and issubclass(obj, nnx.Module):
                found[obj.__name__] = obj
    return found


def test_every_exported_model_takes_train_or_has_no_mode():
    classes = _exported_model_classes()
    assert len(classes) > 20  # the walk found the subpackages' models
    assert not set(NO_MODE) - set(classes), "stale NO_MODE entries: delete them"
    for name, cls in sorted(classes.items()):
        params = inspect.signature(cls.__call__).parameters
        if name in NO_MODE:
            assert "train" not in params, f"{name} takes train but is listed in NO_MODE"
            continue
        assert "train" in params, (
            f"{name}.__call__ has no `train` keyword: add `train: bool = False` (or list the "
            "class in NO_MODE with the reason it has no train/eval difference)"
        )
        train = params["train"]
        assert train.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}: train is not keyword-only"
        assert train.default is False, f"{name}: train defaults to {train.default!r}, not False"


# --- behaviour: .train()/.eval() change nothing, train= does --------------------------------


def _vanilla_vae():
    config = pv.VanillaVAEConfig(in_channels=3, latent_dim=4, hidden_dims=[8], img_size=2)
    model = pv.VanillaVAE(config, rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(1), (4, 2, 2, 3))
    eps = jax.random.normal(jax.random.key(2), (4, 4))
    return model, lambda m, train: m(x, train=train, eps=eps)


def _normalizing_autoencoder():
    rngs = nnx.Rngs(0)
    model = models.NormalizingAutoencoder(nnx.Linear(3, 2, rngs=rngs), nnx.Linear(2, 3, rngs=rngs))
    warm = jax.random.normal(jax.random.key(1), (2, 5, 3))
    model.encode(warm, train=True)  # non-zero running statistics
    x = 2.0 * jax.random.normal(jax.random.key(2), (2, 5, 3)) + 1.0
    length = jnp.array([1.0, 0.6])
    return model, lambda m, train: m.train_sample(x, length, train=train)


def _ema_vq_vae():
    codebook = VectorQuantizerConfig.vqvae_ema(8, 2, decay=0.9)
    model = models.ConvVQVAE(3, 4, codebook, 3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 3))
    key = jax.random.key(2)
    return model, lambda m, train: m(x, train=train, key=key)


def _piq_res_block():
    model = ResBlockAudio(4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 3, 5, 4))
    return model, lambda m, train: m(x, train=train)


def _piq_codebook():
    model = VQEmbedding(16, 2, numclasses=3, shared_keys=4, rngs=nnx.Rngs(0))
    # inputs on the shared codes: training forbids them, evaluation picks them
    x = jnp.tile(model.embedding[...][12:], (2, 3, 1)).reshape(2, 3, 4, 2)
    labels = jnp.array([0, 2])
    return model, lambda m, train: m.straight_through(x, labels, train=train)


CASES = {
    "VanillaVAE (BatchNorm)": _vanilla_vae,
    "NormalizingAutoencoder (GlobalNorm)": _normalizing_autoencoder,
    "ConvVQVAE (EMA codebook)": _ema_vq_vae,
    "ResBlockAudio (PIQ, BatchNorm)": _piq_res_block,
    "VQEmbedding (PIQ codes)": _piq_codebook,
}


def _run(model, call, train: bool, switch: str | None):
    model = nnx.clone(model)
    if switch is not None:
        getattr(model, switch)()  # NNX's .train() / .eval()
    out = call(model, train)
    return [np.asarray(leaf) for leaf in jax.tree.leaves((out, nnx.state(model)))]


@pytest.mark.parametrize("case", list(CASES))
def test_module_mode_switches_change_nothing(case):
    model, call = CASES[case]()
    results = {}
    for train in (True, False):
        plain = _run(model, call, train, None)
        for switch in ("train", "eval"):
            switched = _run(model, call, train, switch)
            for a, b in zip(switched, plain, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{case}: .{switch}(), train={train}")
        results[train] = plain
    differs = any(not np.array_equal(a, b) for a, b in zip(*results.values(), strict=True))
    assert differs, f"{case}: train=True and train=False compute the same (no mode to test)"
