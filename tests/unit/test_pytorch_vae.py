"""PyTorch-VAE models and converter: bad input, options, sampling shapes, jit, round trips.

Models are built abstractly (`nnx.eval_shape`) and filled with numpy random weights through the
production converter (`from_checkpoint`), which is much cheaper than running the random
initialisers; every model uses the same small shapes so compiled operations are shared.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from converters import assign, errors
from converters import pytorch_vae as cv
from jaxlatent.models import (
    VQVAE,
    WAE_MMD,
    BetaVAE,
    BetaVAEConfig,
    ConditionalVAEConfig,
    VanillaVAE,
    VanillaVAEConfig,
    VQVAEConfig,
    WAEMMDConfig,
)

B, LATENT, CLASSES = 2, 4, 10  # the doctests' shapes: compiled operations are shared
SMALL = {"hidden_dims": [8], "img_size": 2}  # 2×2 images, 1×1×8 bottleneck
GAUSS = {"in_channels": 3, "latent_dim": LATENT, **SMALL}
VQ = VQVAEConfig(in_channels=3, embedding_dim=8, num_embeddings=16, hidden_dims=[8])


def _random_state(config) -> dict[str, np.ndarray]:
    cls = cv.MODEL_CLASSES[type(config)]
    abstract = nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(0)))
    variables = assign.module_variables(abstract)
    rng = np.random.default_rng(0)
    state = {}
    for key, rule in cv.torch_table(abstract).items():
        shape = rule.transform.torch_shape(variables[rule.jax_path].get_value().shape)
        if key.endswith("num_batches_tracked"):
            state[key] = np.zeros(shape, np.int64)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            state[key] = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
    return state


def _build(config):
    return cv.from_checkpoint(config, _random_state(config))


def _vanilla(**kw):
    return _build(VanillaVAEConfig(**(GAUSS | kw)))


def _images(channels=3, size=2, batch=B, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(0, 1, (batch, size, size, channels)))


def _eps(seed=1):
    return np.random.default_rng(seed).standard_normal((B, LATENT)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_image_size_the_config_cannot_handle():
    with pytest.raises(ValueError, match=r"img_size \(60, 60\).*multiples of 2\*\*5 = 32"):
        VanillaVAEConfig(in_channels=3, latent_dim=8, img_size=60)
    vae = _vanilla()
    with pytest.raises(ValueError, match=r"\[batch, 2, 2, 3\].*got shape \(2, 4, 4, 3\)"):
        vae.encode(_images(size=4))
    with pytest.raises(ValueError, match=r"got shape \(2, 3, 2, 2\)"):  # NCHW by mistake
        vae(jnp.moveaxis(_images(), -1, 1), eps=_eps())
    with pytest.raises(ValueError, match=r"z of shape \[batch, 4\], got \(2, 5\)"):
        vae.decode(jnp.zeros((B, LATENT + 1)))
    vq = _build(VQ)
    with pytest.raises(ValueError, match=r"multiples of 2, got shape \(2, 3, 3, 3\)"):
        vq(_images(size=3))


def test_conditional_vae_label_width():
    cvae = _build(ConditionalVAEConfig(num_classes=CLASSES, **GAUSS))
    x = _images()
    with pytest.raises(ValueError, match=r"labels of shape \[2, 10\], got \(2, 9\)"):
        cvae(x, labels=jnp.zeros((B, CLASSES - 1)), eps=_eps())
    with pytest.raises(ValueError, match=r"labels of shape \[2, 10\], got \(3, 10\)"):
        cvae(x, labels=jnp.zeros((3, CLASSES)), eps=_eps())
    with pytest.raises(ValueError, match=r"labels of shape \[2, 10\], got \(2, 3\)"):
        cvae.sample(2, labels=jnp.zeros((2, 3)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"z of shape \[batch, 14\], got \(2, 4\)"):
        cvae.decode(jnp.zeros((B, LATENT)))  # decode needs concat([z, labels])


def test_checkpoint_of_another_model_class():
    vq_state = _random_state(VQ)
    vae = _vanilla()
    with pytest.raises(errors.ConversionError) as info:
        cv.load_state_dict(vae, vq_state)
    message = str(info.value)
    assert "checkpoint is a VQVAE state_dict but the model is a VanillaVAE" in message
    assert "vq_layer.embedding.weight" in message and "fc_mu.weight" in message
    wae_state = _random_state(WAEMMDConfig(**GAUSS))
    with pytest.raises(errors.ConversionError, match=r"a WAE_MMD state_dict.*BetaVAE"):
        cv.from_checkpoint(BetaVAEConfig(**GAUSS), wae_state)
    with pytest.raises(errors.ConversionError, match="not a PyTorch-VAE state_dict"):
        cv.load_state_dict(vae, {"weight": np.zeros(3, np.float32)})


def _build_from(state):
    return cv.from_checkpoint(VanillaVAEConfig(**GAUSS), state)


def test_checkpoint_of_another_configuration_names_keys_and_shapes():
    state = _random_state(VanillaVAEConfig(**(GAUSS | {"latent_dim": LATENT + 2})))
    with pytest.raises(errors.ConversionError) as info:
        _build_from(state)
    assert "fc_mu.weight (6, 8)" in str(info.value) and "expected (8, 4)" in str(info.value)
    state = _random_state(VanillaVAEConfig(**GAUSS))
    del state["encoder.0.1.running_var"]
    state["extra"] = np.zeros(1, np.float32)
    with pytest.raises(errors.ConversionError) as info:
        _build_from(state)
    assert info.value.unexpected == ["extra"]
    assert any("encoder.0.1.running_var" in m for m in info.value.missing)


def test_lightning_checkpoint_layout():
    state = _random_state(VanillaVAEConfig(**GAUSS))
    ckpt = {"epoch": 3, "state_dict": {"model." + k: v for k, v in state.items()}}
    vae = _build_from(ckpt)
    np.testing.assert_array_equal(vae.fc_mu.kernel[...], state["fc_mu.weight"].T)
    ckpt["state_dict"]["discriminator.weight"] = np.zeros(2, np.float32)
    with pytest.raises(errors.ConversionError, match=r"outside the 'model\.'") as info:
        _build_from(ckpt)
    assert info.value.unexpected == ["discriminator.weight"]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: VanillaVAEConfig(**GAUSS, output_activation="relu"), "relu"),
        (lambda: BetaVAEConfig(**GAUSS, loss_type="C"), "loss_type 'C'"),
        (lambda: WAEMMDConfig(**GAUSS, kernel_type="cauchy"), "cauchy"),
        (lambda: WAEMMDConfig(**GAUSS, mmd_estimator="biased"), "biased"),
        (lambda: VanillaVAEConfig(in_channels=3, latent_dim=4, hidden_dims=[]), "hidden_dims"),
        (lambda: VanillaVAEConfig(in_channels=3, latent_dim=4, img_size=(2, 2, 2)), "img_size"),
        (lambda: VanillaVAEConfig(in_channels=0, latent_dim=4), "in_channels must be a positive"),
        (lambda: BetaVAEConfig(**GAUSS, Capacity_max_iter=0), "Capacity_max_iter must be pos"),
        (lambda: ConditionalVAEConfig(**GAUSS, num_classes=True), "num_classes must be a pos"),
        (lambda: VQVAEConfig(in_channels=3, embedding_dim=8, num_embeddings=0), "num_embeddings"),
        (lambda: VanillaVAE(VQ, rngs=nnx.Rngs(0)), "VanillaVAE needs a VanillaVAEConfig, got VQ"),
        (lambda: BetaVAE(VanillaVAEConfig(**GAUSS), rngs=nnx.Rngs(0)), "needs a BetaVAEConfig"),
        (lambda: VQVAE({"in_channels": 3}, rngs=nnx.Rngs(0)), "VQVAE needs a VQVAEConfig, got d"),
    ],
)
def test_bad_configuration(make, match):
    with pytest.raises(ValueError, match=match):
        nnx.eval_shape(make)


def test_noise_arguments():
    vae = _vanilla()
    x = _images()
    with pytest.raises(ValueError, match=r"exactly one of rngs= .* and eps="):
        vae(x)
    with pytest.raises(ValueError, match=r"exactly one of rngs= .* and eps="):
        vae(x, rngs=nnx.Rngs(0), eps=_eps())
    with pytest.raises(ValueError, match=r"eps must have shape \(2, 4\), got \(2, 5\)"):
        vae(x, eps=np.zeros((B, LATENT + 1), np.float32))
    wae = _build(WAEMMDConfig(**GAUSS))
    with pytest.raises(ValueError, match="prior_z="):
        wae.loss_function(*wae(x))
    with pytest.raises(ValueError, match=r"batch >= 2.*\(1, 4\)"):
        wae.loss_function(*wae(x[:1]), prior_z=np.zeros((1, LATENT), np.float32))


def test_reconstruction_shape_mismatch():
    vae = _vanilla(in_channels=1)  # the original's 3 output channels against 1-channel data
    out = vae(_images(channels=1), eps=_eps())
    assert out.recons.shape == (B, 2, 2, 3)
    with pytest.raises(ValueError, match=r"\(2, 2, 2, 3\) and \(2, 2, 2, 1\)"):
        vae.loss_function(*out, M_N=1.0)


# --------------------------------------------------------------------------------------------
# Options (corrected behaviour) and original quirks
# --------------------------------------------------------------------------------------------


def test_any_image_size_channels_and_activation():
    vae = _build(
        VanillaVAEConfig(
            in_channels=1,
            latent_dim=LATENT,
            hidden_dims=[8, 16],
            img_size=(4, 8),
            out_channels=1,
            output_activation="sigmoid",
        )
    )
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (B, 4, 8, 1)))
    out = vae(x, eps=_eps())
    assert out.recons.shape == (B, 4, 8, 1)
    assert float(out.recons.min()) >= 0.0 and float(out.recons.max()) <= 1.0
    assert vae.bottleneck == (1, 2, 16) and vae.fc_mu.kernel.shape == (32, LATENT)
    assert np.isfinite(float(vae.loss_function(*out, M_N=1.0).loss))


def test_config_model_params_with_name():
    for config_cls, params in (
        (BetaVAEConfig, {"name": "BetaVAE", "in_channels": 3, "latent_dim": 4, "loss_type": "H"}),
        (
            VQVAEConfig,
            {"name": "VQVAE", "in_channels": 3, "embedding_dim": 8, "num_embeddings": 16},
        ),
    ):
        config = config_cls.from_model_params(params)
        cls = cv.MODEL_CLASSES[config_cls]
        model = nnx.eval_shape(lambda c=config, cls=cls: cls(c, rngs=nnx.Rngs(0)))
        assert model.in_channels == 3 and model.config == config
    with pytest.raises(ValueError, match=r"unknown VanillaVAE model_params \['latent_size'\]"):
        VanillaVAEConfig.from_model_params({"in_channels": 3, "latent_dim": 4, "latent_size": 3})
    with pytest.raises(ValueError, match="name 'VQVAE' does not describe a WAE_MMD"):
        WAEMMDConfig.from_model_params({"name": "VQVAE", "in_channels": 3, "latent_dim": 4})
    with pytest.raises(
        ValueError, match=r"unknown BetaVAEConfig preset 'vae'.*\['bhvae', 'bbvae'\]"
    ):
        BetaVAEConfig.preset("vae")


def test_presets_are_the_original_configs():
    """The model_params of configs/*.yaml at a6896b9 (values copied from those files)."""
    yaml = {
        "vae": (VanillaVAEConfig, {"name": "VanillaVAE", "in_channels": 3, "latent_dim": 128}),
        "bhvae": (BetaVAEConfig, {"name": "BetaVAE", "in_channels": 3, "latent_dim": 128,
                                  "loss_type": "H", "beta": 10.0}),
        "bbvae": (BetaVAEConfig, {"name": "BetaVAE", "in_channels": 3, "latent_dim": 128,
                                  "loss_type": "B", "gamma": 10.0, "max_capacity": 25,
                                  "Capacity_max_iter": 10000}),
        "cvae": (ConditionalVAEConfig, {"name": "ConditionalVAE", "in_channels": 3,
                                        "num_classes": 40, "latent_dim": 128}),
        "wae_mmd_imq": (WAEMMDConfig, {"name": "WAE_MMD", "in_channels": 3, "latent_dim": 128,
                                       "reg_weight": 100, "kernel_type": "imq"}),
        "wae_mmd_rbf": (WAEMMDConfig, {"name": "WAE_MMD", "in_channels": 3, "latent_dim": 128,
                                       "reg_weight": 5000, "kernel_type": "rbf"}),
        "vq_vae": (VQVAEConfig, {"name": "VQVAE", "in_channels": 3, "embedding_dim": 64,
                                 "num_embeddings": 512, "img_size": 64, "beta": 0.25}),
    }  # fmt: skip
    assert sorted(yaml) == sorted(n for c in cv.MODEL_CLASSES for n in c.PRESETS)
    for name, (config_cls, params) in yaml.items():
        assert config_cls.preset(name) == config_cls.from_model_params(params), name
    assert VanillaVAEConfig.vae().hidden_dims == (32, 64, 128, 256, 512)
    assert VQVAEConfig.vq_vae().hidden_dims == (128, 256)


def test_config_is_frozen_and_leaves_the_callers_list_alone():
    dims = [8, 16]
    params = {"in_channels": 3, "latent_dim": 4, "hidden_dims": dims, "img_size": 4}
    config = VanillaVAEConfig.from_model_params(params)
    assert dims == [8, 16] and config.hidden_dims == (8, 16)  # the original reverses `dims`
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.latent_dim = 5
    a = nnx.eval_shape(lambda: VanillaVAE(config, rngs=nnx.Rngs(0)))
    b = nnx.eval_shape(lambda: VanillaVAE(config, rngs=nnx.Rngs(0)))
    assert a.hidden_dims == b.hidden_dims == (8, 16)
    assert a.decoder[0].conv.kernel.shape == b.decoder[0].conv.kernel.shape
    assert hash(config) == hash(VanillaVAEConfig(**params))
    default = VanillaVAEConfig.from_model_params({**params, "hidden_dims": None, "img_size": 64})
    assert default.hidden_dims == (32, 64, 128, 256, 512)  # None: the original's default


def test_kld_sign_in_the_logged_dict():
    original = _vanilla()
    fixed = _vanilla(negate_logged_kld=False)
    out = original(_images(), eps=_eps())
    a = original.loss_function(*out, M_N=0.5)
    b = fixed.loss_function(*out, M_N=0.5)
    assert float(b.KLD) > 0 and float(a.KLD) == -float(b.KLD)
    assert float(a.loss) == float(b.loss)  # the total uses +KL either way
    np.testing.assert_allclose(a.loss, a.Reconstruction_Loss + 0.5 * b.KLD, rtol=1e-6)


def test_beta_vae_losses_and_explicit_step():
    h = _build(BetaVAEConfig(loss_type="H", beta=10.0, **GAUSS))
    b = _build(
        BetaVAEConfig(loss_type="B", gamma=10.0, max_capacity=25, Capacity_max_iter=100, **GAUSS)
    )
    out = h(_images(), eps=_eps())
    lh = h.loss_function(*out, M_N=0.1)
    np.testing.assert_allclose(lh.loss, lh.Reconstruction_Loss + 1.0 * lh.KLD, rtol=1e-6)
    assert float(lh.KLD) > 0  # BetaVAE logs +KL
    assert int(h.num_iter[...]) == 1  # 'H' advances the counter too, as the original
    for step, c in ((0, 0.0), (40, 10.0), (100, 25.0), (500, 25.0)):
        lb = b.loss_function(*out, M_N=0.1, step=step)
        want = lb.Reconstruction_Loss + 1.0 * abs(float(lb.KLD) - c)
        np.testing.assert_allclose(lb.loss, want, rtol=1e-6)
    assert int(b.num_iter[...]) == 0
    default = b.loss_function(*out, M_N=0.1)  # counter: 1
    np.testing.assert_allclose(default.loss, b.loss_function(*out, M_N=0.1, step=1).loss)


def _mmd_numpy(z, p, kernel, reg_weight, estimator):
    n, d = z.shape
    c = 2.0 * d * 2.0

    def k(a, b):
        sq = (a[:, None, :] - b[None, :, :]) ** 2
        if kernel == "imq":
            return c / (1e-7 + c + sq.sum(-1))
        return np.exp(-(sq.mean(-1) if estimator == "original" else sq.sum(-1)) / c)

    def off(m):
        return m.sum() - np.trace(m)

    if estimator == "unbiased":
        return reg_weight * ((off(k(p, p)) + off(k(z, z))) / (n * (n - 1)) - 2 * k(p, z).mean())
    w = reg_weight / (n * (n - 1))
    red = off if kernel == "imq" else np.mean
    return w * (red(k(p, p)) + red(k(z, z)) - 2 * red(k(p, z)))


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
@pytest.mark.parametrize("estimator", ["original", "unbiased"])
def test_wae_mmd_estimators(kernel, estimator):
    config = WAEMMDConfig(
        in_channels=3, latent_dim=6, kernel_type=kernel, reg_weight=7.0, mmd_estimator=estimator
    )
    wae = nnx.eval_shape(lambda: WAE_MMD(config, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(2)
    z, p = rng.standard_normal((2, 5, 6))
    got = wae.compute_mmd(jnp.asarray(z, jnp.float32), jnp.asarray(p, jnp.float32))
    np.testing.assert_allclose(got, _mmd_numpy(z, p, kernel, 7.0, estimator), rtol=1e-5, atol=5e-6)


# --------------------------------------------------------------------------------------------
# sample / generate / train-eval / jit
# --------------------------------------------------------------------------------------------


def test_sample_and_generate_shapes():
    x = _images()
    for config_cls in (VanillaVAEConfig, BetaVAEConfig, WAEMMDConfig):
        model = _build(config_cls(**GAUSS))
        assert model.sample(5, rngs=nnx.Rngs(0)).shape == (5, 2, 2, 3)
        extra = {} if config_cls is WAEMMDConfig else {"rngs": nnx.Rngs(1)}
        assert model.generate(x, **extra).shape == x.shape
    cvae = _build(ConditionalVAEConfig(num_classes=CLASSES, **GAUSS))
    labels = jnp.eye(CLASSES)[:B]
    assert cvae.sample(B, rngs=nnx.Rngs(0), labels=labels).shape == (B, 2, 2, 3)
    assert cvae.generate(x, labels=labels, eps=_eps()).shape == x.shape
    vq = _build(VQ)
    assert vq.generate(_images(size=4)).shape == (B, 4, 4, 3)
    with pytest.raises(NotImplementedError, match="decode_indices"):
        vq.sample(2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"values in \[16, 16\].*16 codes"):
        vq.decode_indices(jnp.full((1, 2, 2), 16, jnp.int32))


def test_sample_draws_from_rngs():
    vae = _vanilla()
    a = vae.sample(2, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(a, vae.sample(2, rngs=nnx.Rngs(0)))
    assert not np.array_equal(a, vae.sample(2, rngs=nnx.Rngs(1)))


def test_eval_mode_keeps_running_statistics():
    """The mode is the call's `train` (default False); NNX's .train()/.eval() change nothing."""
    vae = _vanilla()
    before = cv.export_state_dict(vae)
    vae.train()  # would switch an attribute-driven BatchNorm to batch statistics
    evaluated = vae(_images(), eps=_eps())
    after = cv.export_state_dict(vae)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    vae.eval()
    trained = vae(_images(), train=True, eps=_eps())
    assert cv.export_state_dict(vae)["encoder.0.1.num_batches_tracked"] == 1
    assert not np.allclose(trained.recons, evaluated.recons)  # the batch statistics were used


def _train_step(model, x, eps):
    def loss_fn(model):
        return model.loss_function(*model(x, train=True, eps=eps), M_N=0.01).loss

    return nnx.value_and_grad(loss_fn)(model)


def test_jit_train_step_matches_eager():
    x, eps = _images(), _eps()
    eager_model = _build(BetaVAEConfig(**GAUSS))
    jit_model = _build(BetaVAEConfig(**GAUSS))
    # Eager forward and loss (gradients eagerly are covered against torch by the parity tests).
    eager_loss = eager_model.loss_function(*eager_model(x, train=True, eps=eps), M_N=0.01).loss
    step = nnx.jit(_train_step)
    loss, grads = step(jit_model, x, eps)
    np.testing.assert_allclose(loss, eager_loss, rtol=1e-6)
    for path, g in nnx.to_flat_state(grads):
        g = np.asarray(g.get_value())
        assert np.isfinite(g).all() and np.abs(g).max() > 0, path  # every parameter learns
    # BatchNorm statistics and the BetaVAE counter update in place under nnx.jit too.
    e, j = cv.export_state_dict(eager_model), cv.export_state_dict(jit_model)
    for key in e:
        np.testing.assert_allclose(j[key], e[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert int(jit_model.num_iter[...]) == int(eager_model.num_iter[...]) == 1
    step(jit_model, x, eps)
    assert int(jit_model.num_iter[...]) == 2
    assert cv.export_state_dict(jit_model)["encoder.0.1.num_batches_tracked"] == 2


def test_vqvae_under_jit_and_grad():
    vq = _build(VQ)
    x = _images(size=4)

    @nnx.jit
    def step(model, x):
        def loss_fn(model):
            out = model(x)
            return model.loss_function(*out).loss, out.indices

        return nnx.value_and_grad(loss_fn, has_aux=True)(model)

    (_, indices), grads = step(vq, x)
    assert indices.dtype == jnp.int32 and indices.shape == (B, 2, 2)
    np.testing.assert_array_equal(indices, vq(x).indices)
    codebook_grad = np.asarray(grads["vq_layer"]["embedding"]["embedding"].get_value())
    used = np.unique(np.asarray(indices))
    assert np.abs(codebook_grad[used]).sum() > 0  # the codebook loss reaches the used codes
    unused = np.setdiff1d(np.arange(16), used)
    assert not np.abs(codebook_grad[unused]).any()
    assert float(jnp.abs(grads["encoder"][0]["conv"]["kernel"].get_value()).max()) > 0


def test_vq_layer_quantizes_to_codes_and_straight_through():
    vq = _build(VQ)
    latents = jnp.asarray(np.random.default_rng(3).standard_normal((2, 2, 2, 8)), jnp.float32)
    out = vq.vq_layer(latents)
    codebook = np.asarray(vq.vq_layer.codebook)
    d = ((np.asarray(latents)[..., None, :] - codebook) ** 2).sum(-1)
    np.testing.assert_array_equal(out.indices, d.argmin(-1))
    np.testing.assert_array_equal(out.quantized, codebook[np.asarray(out.indices)])  # exact
    mse = ((codebook[np.asarray(out.indices)] - np.asarray(latents)) ** 2).mean()
    np.testing.assert_allclose(out.vq_loss, 1.25 * mse, rtol=1e-6)
    g = jax.grad(lambda z: jnp.sum(3.0 * vq.vq_layer(z).quantized))(latents)
    np.testing.assert_allclose(g, 3.0 * np.ones_like(latents) + 0.0, rtol=0)


# --------------------------------------------------------------------------------------------
# Converter round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        VanillaVAEConfig(**GAUSS),
        BetaVAEConfig(**GAUSS),
        ConditionalVAEConfig(num_classes=CLASSES, **GAUSS),
        WAEMMDConfig(**GAUSS),
        VQ,
    ],
    ids=lambda c: type(c).__name__,
)
def test_export_round_trip(config):
    state = _random_state(config)
    model = cv.from_checkpoint(config, state)
    exported = cv.export_state_dict(model)
    assert list(exported) == list(state)
    for key, value in state.items():
        assert exported[key].dtype == value.dtype, key
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_beta_vae_counter_is_kept_on_load_and_not_exported():
    config = BetaVAEConfig(**GAUSS)
    beta = _build(config)
    beta.num_iter[...] = jnp.int32(7)
    state = cv.export_state_dict(beta)
    assert not any("num_iter" in k for k in state)
    cv.load_state_dict(beta, state)
    assert int(beta.num_iter[...]) == 7
    assert int(cv.from_checkpoint(config, state).num_iter[...]) == 0
    with pytest.raises(TypeError, match="not a PyTorch-VAE config: dict"):
        cv.from_checkpoint({"in_channels": 3}, state)
