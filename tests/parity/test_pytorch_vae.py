"""PyTorch-VAE models vs recorded outputs of the original code, through the production converter.

The reference arrays, recorded by running AntixK/PyTorch-VAE at commit a6896b9 on CPU, and the
torch weights they were recorded from are copied from ``../shared/reference/pytorch_vae`` (see
the README there). All of them, tiny and default-size (slow, 18 MB), are committed in
``tests/data/pytorch_vae/``; a missing file is an error, never a skip.

Every bundle is loaded from its ``.pt`` with `converters.pytorch_vae.load_checkpoint` and
compared on: encode, decode and forward in eval mode (recorded noise), the loss dict at
``M_N = 0.00025`` (training) and ``M_N = 1.0`` (validation), a train-mode forward, the
BatchNorm running statistics after it, the train loss and parameter gradients. VQ code indices
are compared exactly; floats with the named ``pvae_*`` tolerances of tests/tolerances.py.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import checkpoint_files
from converters import pytorch_vae as cv
from jaxlatent.models import (
    BetaVAEConfig,
    ConditionalVAEConfig,
    VanillaVAE,
    VanillaVAEConfig,
    VQVAEConfig,
    WAEMMDConfig,
)
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "pytorch_vae"
CONFIGS = {  # the original's class name -> config
    "VanillaVAE": VanillaVAEConfig,
    "BetaVAE": BetaVAEConfig,
    "ConditionalVAE": ConditionalVAEConfig,
    "WAE_MMD": WAEMMDConfig,
    "VQVAE": VQVAEConfig,
}
GAUSSIAN = ("VanillaVAE", "BetaVAE", "ConditionalVAE")
TINY = [
    "vanilla_vae_tiny",
    "beta_vae_h_tiny",
    "beta_vae_b_tiny",
    "cvae_tiny",
    "vqvae_tiny",
    "wae_mmd_imq_tiny",
    "wae_mmd_rbf_tiny",
]
DEFAULT = ["vanilla_vae_default", "beta_vae_h_default", "beta_vae_b_default"]
BUNDLES = TINY + [pytest.param(b, marks=pytest.mark.slow) for b in DEFAULT]


def _data_file(file: str) -> Path:
    """A reference file (recorded outputs and the torch weights they were recorded from),
    committed in ``tests/data/pytorch_vae``; a missing one is an error, never a skip."""
    path = DATA / file
    if not path.exists():
        raise FileNotFoundError(f"PyTorch-VAE reference file {file!r} is missing from {DATA}")
    return path


@functools.cache
def _arrays(name: str) -> dict[str, np.ndarray]:
    with np.load(_data_file(f"{name}.npz")) as f:
        return {k: f[k] for k in f.files}


@functools.cache
def _torch_state(file: str) -> dict[str, np.ndarray]:
    ref.torch()
    state = checkpoint_files.load_torch_checkpoint(_data_file(file))
    return {k: ref.to_numpy(v) for k, v in state.items()}


def _meta(name: str) -> dict:
    return json.loads(str(_arrays(name)["meta"]))


def _model(name: str):
    """A fresh model of the bundle, loaded from its torch weights by the production converter."""
    meta = _meta(name)
    config = CONFIGS[meta["cls"]].from_model_params(meta["ctor"])  # the original's kwargs
    return cv.from_checkpoint(config, _data_file(meta["weights"]))


def _nhwc(a) -> jax.Array:
    return jnp.asarray(np.moveaxis(np.asarray(a), 1, -1))


def _nchw(a) -> np.ndarray:
    return np.moveaxis(np.asarray(a), -1, 1)


def _close(actual, desired, name: str, what: str) -> None:
    """Compare after dividing both by max|desired| (tolerances are relative to the array max)."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    scale = max(float(np.max(np.abs(desired))), 1e-30)
    assert_close(actual / scale, desired / scale, name, err_msg=what)


def _loss_close(loss, arrays: dict, prefix: str) -> None:
    recorded = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    got = loss._asdict()
    assert set(got) == set(recorded), f"loss keys {sorted(got)} != original {sorted(recorded)}"
    for key, value in recorded.items():
        # BetaVAE 'B' records shape [1]; the port returns scalars (documented).
        assert_close(got[key], value.reshape(()), "pvae_loss", err_msg=f"{prefix}{key}")


def _forward(model, cls: str, a: dict, mode: str):
    x = _nhwc(a["input/x"])
    train = mode == "train"
    if cls in GAUSSIAN:
        kw = {"labels": a["input/labels"]} if cls == "ConditionalVAE" else {}
        return model(x, train=train, eps=a[f"input/eps_{mode}"], **kw)
    return model(x, train=train)


def _loss(model, cls: str, a: dict, out, mode: str, m_n: float):
    if cls == "WAE_MMD":
        return model.loss_function(*out, prior_z=a[f"input/prior_z_{mode}"], M_N=m_n)
    if cls == "BetaVAE":  # every recorded loss used num_iter = 1 (README)
        return model.loss_function(*out, M_N=m_n, step=1)
    return model.loss_function(*out, M_N=m_n)


@pytest.mark.parametrize("name", BUNDLES)
def test_eval_mode(name):
    meta, a = _meta(name), _arrays(name)
    cls = meta["cls"]
    model = _model(name)  # the calls' default, train=False, is the recording's eval mode
    x = _nhwc(a["input/x"])
    if cls in ("VanillaVAE", "BetaVAE"):
        mu, log_var = model.encode(x)
        _close(mu, a["eval/encode/mu"], "pvae_activations", "encode mu")
        _close(log_var, a["eval/encode/log_var"], "pvae_activations", "encode log_var")
        _close(_nchw(model.decode(a["input/z_dec"])), a["eval/decode"], "pvae_activations", "dec")
    elif cls == "ConditionalVAE":
        enc_in = model.embed(x, a["input/labels"])
        _close(_nchw(enc_in), a["eval/encoder_in"], "pvae_activations", "encoder_in")
        mu, log_var = model.encode(enc_in)
        _close(mu, a["eval/encode/mu"], "pvae_activations", "encode mu")
        _close(log_var, a["eval/encode/log_var"], "pvae_activations", "encode log_var")
        dec_in = np.concatenate([a["input/z_dec"], a["input/labels"]], axis=1)
        np.testing.assert_array_equal(dec_in, a["eval/decode_in"])
        _close(_nchw(model.decode(dec_in)), a["eval/decode"], "pvae_activations", "decode")
    elif cls == "WAE_MMD":
        _close(model.encode(x), a["eval/encode/z"], "pvae_activations", "encode z")
        _close(_nchw(model.decode(a["input/z_dec"])), a["eval/decode"], "pvae_activations", "dec")
    else:
        (encoding,) = model.encode(x)
        _close(_nchw(encoding), a["eval/encode/encoding"], "pvae_activations", "encoding")
        quantized, vq_loss, indices = model.vq_layer(encoding)
        assert indices.dtype == jnp.int32
        np.testing.assert_array_equal(indices, a["eval/vq/indices"])  # exactly
        _close(_nchw(quantized), a["eval/vq/quantized"], "pvae_activations", "quantized")
        assert_close(vq_loss, a["eval/vq/vq_loss"], "pvae_loss", err_msg="vq_loss")
        codes = model.vq_layer.lookup(jnp.asarray(a["input/idx_dec"], jnp.int32))
        np.testing.assert_array_equal(_nchw(codes), a["eval/decode_in"])  # a gather: exact
        decoded = model.decode_indices(jnp.asarray(a["input/idx_dec"], jnp.int32))
        _close(_nchw(decoded), a["eval/decode"], "pvae_activations", "decode")

    out = _forward(model, cls, a, "eval")
    _close(_nchw(out.recons), a["eval/recons"], "pvae_activations", "forward recons")
    if cls in GAUSSIAN:
        _close(out.z, a["eval/z"], "pvae_activations", "forward z")
    if cls == "VQVAE":
        np.testing.assert_array_equal(out.indices, a["eval/vq/indices"])
    _loss_close(_loss(model, cls, a, out, "eval", meta["kld_weight"]), a, "eval/loss/")
    _loss_close(_loss(model, cls, a, out, "eval", meta["val_M_N"]), a, "eval/val_loss/")


def _state_grads(model, grads) -> dict[str, np.ndarray]:
    """Parameter gradients in torch layout, keyed like the original's state_dict."""
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    return cv.export_state_dict(nnx.merge(graphdef, grads, rest))


@pytest.mark.parametrize("name", BUNDLES)
def test_train_mode_bn_stats_and_gradients(name):
    """One train-mode forward + backward from the freshly loaded state, as the recording.

    Run eagerly: the per-operation compilations are shared by the bundles of equal shapes
    (jit is covered by tests/unit). The BatchNorm updates of the differentiated forward are
    kept by `nnx.value_and_grad`, so the running statistics are checked after it.
    """
    meta, a = _meta(name), _arrays(name)
    cls = meta["cls"]
    model = _model(name)  # _forward(..., "train") calls it with train=True

    def loss_fn(model):
        out = _forward(model, cls, a, "train")
        loss = _loss(model, cls, a, out, "train", meta["kld_weight"])
        return loss.loss, (out, loss)

    (_, (out, loss)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    for field in ("recons", "mu", "log_var", "z"):
        if f"train/{field}" in a:
            got = getattr(out, field)
            got = _nchw(got) if field == "recons" else got
            _close(got, a[f"train/{field}"], "pvae_activations", f"train {field}")
    if cls == "VQVAE":
        assert_close(out.vq_loss, a["train/vq/vq_loss"], "pvae_loss", err_msg="train vq_loss")
    _loss_close(loss, a, "train/loss/")

    state = cv.export_state_dict(model)
    bn_keys = [k for k in a if k.startswith("train/bn_after/")]
    assert bool(bn_keys) == (cls != "VQVAE")
    for key in bn_keys:
        torch_key = key[len("train/bn_after/") :]
        if torch_key.endswith("num_batches_tracked"):
            assert state[torch_key].dtype == np.int64
            np.testing.assert_array_equal(state[torch_key], a[key], err_msg=torch_key)
        else:
            _close(state[torch_key], a[key], "pvae_bn_stats", torch_key)

    grads = _state_grads(model, grads)
    keys = [k for k in a if k.startswith("train/grad/")]
    assert keys == [f"train/grad/{k}" for k in meta["grads"]]
    for key in keys:
        torch_key = key[len("train/grad/") :]
        _close(grads[torch_key], a[key], "pvae_grad", f"grad {torch_key}")


@pytest.mark.parametrize(
    "name", ["beta_vae_b_tiny", pytest.param("beta_vae_b_default", marks=pytest.mark.slow)]
)
def test_beta_vae_capacity_schedule(name):
    """The 'B' loss along the capacity schedule, on the recorded train-mode outputs."""
    meta, a = _meta(name), _arrays(name)
    model = _model(name)
    out = (_nhwc(a["train/recons"]), _nhwc(a["input/x"]), a["train/mu"], a["train/log_var"])
    for num_iter, c, loss in zip(
        a["train/capacity/num_iter"], a["train/capacity/C"], a["train/capacity/loss"], strict=True
    ):
        assert_close(model.capacity(num_iter), c, "pvae_loss", err_msg=f"C at {num_iter}")
        got = model.loss_function(*out, M_N=meta["kld_weight"], step=int(num_iter))
        assert_close(got.loss, loss, "pvae_loss", err_msg=f"loss at num_iter={num_iter}")
    # Default (step=None): the model's own counter, advanced before use as the original's
    # `self.num_iter += 1`; the first call uses 1, which is what train/loss recorded.
    assert int(model.num_iter[...]) == 0  # explicit steps leave it alone
    first = model.loss_function(*out, M_N=meta["kld_weight"])
    assert int(model.num_iter[...]) == 1
    assert_close(first.loss, a["train/loss/loss"].reshape(()), "pvae_loss", err_msg="counter")
    model.loss_function(*out, M_N=1.0)  # a validation call advances it too (original quirk)
    assert int(model.num_iter[...]) == 2


@pytest.mark.parametrize(
    "name", [*TINY, pytest.param("vanilla_vae_default", marks=pytest.mark.slow)]
)
def test_export_matches_the_original_state_dict(name):
    """Export gives the original's keys, shapes, dtypes and (after loading) the same values."""
    meta = _meta(name)
    original = _torch_state(meta["weights"])
    exported = cv.export_state_dict(_model(name))
    assert list(exported) == list(original)  # same keys in the same order as state_dict()
    for key, value in original.items():
        assert exported[key].dtype == value.dtype, key
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_lightning_checkpoint():
    """experiment.py's .ckpt loads (``model.`` prefixes stripped) and gives the recorded output."""
    a = _arrays("vanilla_vae_tiny")
    config = VanillaVAEConfig(in_channels=3, latent_dim=16, hidden_dims=[8, 16, 32, 64, 512])
    model = nnx.eval_shape(lambda: VanillaVAE(config, rngs=nnx.Rngs(1)))
    cv.load_checkpoint(model, _data_file("vanilla_vae_tiny.ckpt"))
    exported = cv.export_state_dict(model)
    for key, value in _torch_state("vanilla_vae_tiny.pt").items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    out = model(_nhwc(a["input/x"]), train=False, eps=a["input/eps_eval"])
    _close(_nchw(out.recons), a["eval/recons"], "pvae_activations", "ckpt recons")


def test_saved_state_dict_loads_in_torch_strictly(tmp_path):
    """`save_state_dict` writes a file torch reads back with the recorded keys and values."""
    torch = ref.torch()
    model = _model("cvae_tiny")
    path = tmp_path / "cvae.pt"
    cv.save_state_dict(model, path)
    loaded = torch.load(path, weights_only=True)
    original = _torch_state(_meta("cvae_tiny")["weights"])
    assert list(loaded) == list(original)
    for key, value in original.items():
        assert loaded[key].dtype == torch.from_numpy(value).dtype, key
        assert loaded[key].shape == value.shape, key  # 0-d counters stay 0-d
        np.testing.assert_array_equal(ref.to_numpy(loaded[key]), value, err_msg=key)


def test_safetensors_state_dict_round_trip(tmp_path):
    """`save_state_dict` to a ``.safetensors`` path: safetensors' own torch loader reads the
    recorded keys and values, and `load_checkpoint` reads it back (no torch.load)."""
    ref.torch()
    safetensors_torch = ref.require("safetensors.torch")
    model = _model("cvae_tiny")
    path = tmp_path / "cvae.safetensors"
    cv.save_state_dict(model, path)
    loaded = safetensors_torch.load_file(str(path))
    original = _torch_state(_meta("cvae_tiny")["weights"])
    assert sorted(loaded) == sorted(original)
    for key, value in original.items():
        assert loaded[key].shape == value.shape, key  # 0-d counters stay 0-d
        np.testing.assert_array_equal(ref.to_numpy(loaded[key]), value, err_msg=key)
    meta = _meta("cvae_tiny")
    restored = cv.from_checkpoint(CONFIGS[meta["cls"]].from_model_params(meta["ctor"]), path)
    exported = cv.export_state_dict(restored)
    for key, value in original.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
