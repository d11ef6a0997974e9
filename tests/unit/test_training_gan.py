"""The GAN step (`GANObjective`, `GANTrainState`): it is the recipe's two updates (the
discriminator's on the stop-gradient output, then the generator's against the updated
discriminator), every data-parallel mode equals one device, and checkpoints restore it
bit-exactly.

The two models are tiny convolutions written here (any NNX modules train this way)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent import training
from tests.tolerances import assert_close

TX_G, TX_D = optax.sgd(0.05), optax.sgd(0.1)
MODES = {
    "pmap": training.PmapDataParallel,
    "jit": training.ShardedDataParallel,
    "shard_map": training.ShardMapDataParallel,
}


class _Generator(nnx.Module):
    def __init__(self, rngs):
        self.a = jnn.Conv1d(1, 4, 3, padding=1, rngs=rngs)
        self.b = jnn.Conv1d(4, 1, 3, padding=1, rngs=rngs)

    def __call__(self, x, *, train=False, key=None):
        h = self.a(x)
        if train:  # one number from the step's key (the same draw on every device's shard)
            h = h + 0.1 * jax.random.normal(key, ())
        return jnp.tanh(self.b(nnx.leaky_relu(h))), jnp.mean(jnp.square(h))


class _Discriminator(nnx.Module):
    def __init__(self, rngs):
        self.a = jnn.Conv1d(1, 4, 5, padding=2, rngs=rngs)
        self.b = jnn.Conv1d(4, 1, 3, padding=1, rngs=rngs)

    def __call__(self, x, *, train=False):
        h = nnx.leaky_relu(self.a(x), 0.1)
        return [[h, self.b(h)]]


def _generate(gen, batch, *, key, train):
    audio, reg = gen(batch["x"], train=train, key=key)
    return {"audio": audio, "reg": reg}, {"codes": jnp.zeros((2,), jnp.int32)}


def _d_loss(disc, fake, batch, *, train):
    from jaxlatent.losses.dac import GANLoss

    loss = GANLoss(lambda a: disc(a, train=train)).discriminator_loss(fake["audio"], batch["x"])
    return loss, {}


def _g_loss(disc, fake, aux, batch, *, train):
    from jaxlatent.losses.dac import GANLoss

    adv, feat = GANLoss(lambda a: disc(a, train=train)).generator_loss(fake["audio"], batch["x"])
    l1 = jnp.mean(jnp.abs(fake["audio"] - batch["x"]))
    return 10 * l1 + 2 * feat + adv + 0.1 * fake["reg"], {"l1": l1, "adv": adv}


OBJECTIVE = training.GANObjective(_generate, _d_loss, _g_loss, TX_G, TX_D, generator_lr=0.05)


def _models():
    return _Generator(nnx.Rngs(0)), _Discriminator(nnx.Rngs(1))


def _batches(n_steps=3, batch=16):
    rng = np.random.default_rng(0)
    return [
        {"x": rng.uniform(-0.5, 0.5, size=(batch, 32, 1)).astype(np.float32)}
        for _ in range(n_steps)
    ]


def _train(trainer, batches):
    state = trainer.put_state(OBJECTIVE.init(*_models(), key=0))
    for b in batches:
        state, metrics = trainer(state, trainer.put_batch(b))
    return state, metrics


def _leaves(state):
    def host(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return jax.tree_util.tree_flatten_with_path(jax.tree.map(host, state.arrays()))[0]


@functools.cache
def _single_device_run():
    return _train(training.SingleDevice(OBJECTIVE), _batches())


def test_step_is_discriminator_update_then_generator_update_against_it():
    """One step equals the recipe written out with plain `jax.grad` (the generator's forward
    recomputed, the discriminator's loss seeing a detached output)."""
    batch = _batches(1)[0]
    gen, disc = _models()
    state = OBJECTIVE.init(gen, disc, key=0)
    new, metrics = jax.jit(OBJECTIVE.train_step())(state, batch)

    _, step_key = jax.random.split(state.key)
    g_def, g_params, g_rest = nnx.split(gen, nnx.Param, ...)
    d_def, d_params, d_rest = nnx.split(disc, nnx.Param, ...)
    fake, _ = _generate(nnx.merge(g_def, g_params, g_rest), batch, key=step_key, train=True)
    fake = jax.lax.stop_gradient(fake)

    def d_obj(p):
        return _d_loss(nnx.merge(d_def, p, d_rest), fake, batch, train=True)[0]

    d_new = jax.tree.map(lambda p, g: p - 0.1 * g, d_params, jax.grad(d_obj)(d_params))

    def g_obj(p):
        f, a = _generate(nnx.merge(g_def, p, g_rest), batch, key=step_key, train=True)
        return _g_loss(nnx.merge(d_def, d_new, d_rest), f, a, batch, train=True)[0]

    g_loss, g_grads = jax.value_and_grad(g_obj)(g_params)
    g_new = jax.tree.map(lambda p, g: p - 0.05 * g, g_params, g_grads)
    for ours, theirs in ((new.d_params, d_new), (new.g_params, g_new)):
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
            assert_close(a, b, "train_gan_step")
    assert_close(metrics["loss"], g_loss, "train_gan_step")
    assert int(new.step) == 1 and float(metrics["learning_rate"]) == pytest.approx(0.05)
    assert {"disc_loss", "l1", "adv", "grad_norm", "grad_norm_d"} <= set(metrics)
    # the discriminator moved, and differently from one that saw the generator's gradient
    pairs = zip(jax.tree.leaves(d_new), jax.tree.leaves(d_params), strict=True)
    assert all(not np.array_equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_data_parallel_modes_equal_one_device(mode):
    ref_state, ref_metrics = _single_device_run()
    # pmap/shard_map fold the device index into the key: the generator's noise would differ
    state, metrics = _train(MODES[mode](OBJECTIVE, per_device_keys=False), _batches())
    for (path, a), (_, b) in zip(_leaves(state), _leaves(ref_state), strict=True):
        assert_close(a, b, "train_gan_parallel", err_msg=jax.tree_util.keystr(path))
    for k in ref_metrics:
        assert_close(metrics[k], ref_metrics[k], "train_gan_parallel", err_msg=k)


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    state, _ = _single_device_run()
    template = OBJECTIVE.init(*_models(), key=0)
    with training.Checkpointer(tmp_path, save_every=1) as ckpt:
        ckpt.save(state, data_state={"position": 3}, force=True)
        restored, meta = ckpt.restore(template)
    assert meta["data"] == {"position": 3} and meta["step"] == 3
    for (path, a), (_, b) in zip(_leaves(restored), _leaves(state), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    assert set(meta["signature"]) >= {"['discriminator']['params']['a']['kernel']"}


def test_bad_objective_use():
    with pytest.raises(ValueError, match="carries its two optimizers"):
        training.SingleDevice(OBJECTIVE, TX_G)
    with pytest.raises(ValueError, match="full precision"):
        OBJECTIVE.train_step(mixed_precision=training.MixedPrecision())

    def int_fake(gen, batch, *, key, train):
        return {"codes": jnp.zeros((2,), jnp.int32)}, {}

    bad = training.GANObjective(int_fake, _d_loss, _g_loss, TX_G, TX_D)
    with pytest.raises(ValueError, match="floating `fake` leaves"):
        bad.train_step()(bad.init(*_models()), _batches(1)[0])
