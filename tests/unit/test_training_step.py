"""jaxlatent.training: TrainState, the train/eval step, optimizer, mixed precision."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxlatent import training
from tests.tolerances import assert_close
from tests.training_job import conv_bn_autoencoder as ConvBN
from tests.training_job import mse_loss_fn


def _batch(rng, n=16):
    return {"x": rng.normal(size=(n, 10, 3)).astype(np.float32)}


def test_train_state_split_and_merge(rng):
    model = ConvBN()
    state = training.TrainState.create(model, optax.sgd(0.1), key=3)
    assert set(state.params["bn"]) == {"scale", "bias"}
    assert set(state.model_state["bn"]) == {"mean", "var", "num_batches_tracked"}
    assert int(state.step) == 0 and jnp.issubdtype(state.key.dtype, jax.dtypes.prng_key)
    x = jnp.asarray(_batch(rng)["x"])
    np.testing.assert_array_equal(state.merge()(x), model(x))
    with pytest.raises(ValueError, match="selects no variables"):
        training.TrainState.create(model, optax.sgd(0.1), param_filter=nnx.Cache)


def test_as_typed_key():
    k = training.as_typed_key(jax.random.PRNGKey(1))
    assert jnp.issubdtype(k.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(k), jax.random.PRNGKey(1))
    assert training.as_typed_key(k) is k


def test_sgd_step_matches_hand_written_update(rng):
    """One step = params - lr * grad of the loss; BatchStat is updated by the forward pass only."""
    batch = _batch(rng)
    model = ConvBN()
    state = training.TrainState.create(model, optax.sgd(0.5), key=0)
    step = jax.jit(training.make_train_step(mse_loss_fn, optax.sgd(0.5)))
    new, metrics = step(state, batch)

    graphdef, params, rest = nnx.split(ConvBN(), nnx.Param, ...)

    @jax.jit
    def reference(params):
        def loss(p):
            m = nnx.merge(graphdef, p, jax.tree.map(lambda x: x, rest))  # fresh BatchStats
            return mse_loss_fn(m, batch, key=None, train=True)[0]

        value, grads = jax.value_and_grad(loss)(params)
        h = nnx.merge(graphdef, params, rest).conv(batch["x"])
        return (
            value,
            optax.tree.norm(grads),
            jax.tree.map(lambda p, g: p - 0.5 * g, params, grads),
            h,
        )

    value, grad_norm, expected, h = reference(params)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(metrics["loss"], value)
    np.testing.assert_allclose(metrics["grad_norm"], grad_norm, rtol=1e-6)
    assert int(new.step) == 1
    h = np.asarray(h)
    np.testing.assert_allclose(new.model_state["bn"]["mean"][...], 0.1 * h.mean((0, 1)), rtol=1e-5)
    assert int(new.model_state["bn"]["num_batches_tracked"][...]) == 1
    # the optimizer never sees BatchStat variables
    assert len(jax.tree.leaves(optax.sgd(0.5).init(state.params))) == len(
        jax.tree.leaves(state.opt_state)
    )


def test_keys_advance_deterministically(rng):
    def loss_fn(model, batch, *, key, train):
        loss, aux = mse_loss_fn(model, batch, key=key, train=train)
        return loss, {**aux, "draw": jax.random.uniform(key)}

    tx = optax.sgd(0.1)
    state = training.TrainState.create(ConvBN(), tx, key=7)
    step = jax.jit(training.make_train_step(loss_fn, tx))
    batch = _batch(rng)
    s1, m1 = step(state, batch)
    _, m2 = step(s1, batch)
    _, m3 = step(state, batch)
    assert float(m1["draw"]) != float(m2["draw"])
    assert float(m1["draw"]) == float(m3["draw"])


def test_clipping_and_schedule_metrics(rng):
    schedule = optax.linear_schedule(1.0, 0.5, transition_steps=2)
    tx = training.make_optimizer("sgd", schedule, clip_grad_norm=1e-3)
    state = training.TrainState.create(ConvBN(), tx, key=0)
    step = jax.jit(training.make_train_step(mse_loss_fn, tx, learning_rate=schedule))
    lrs = []
    for _ in range(3):
        new, metrics = step(state, _batch(rng))
        delta = jax.tree.map(lambda a, b: a - b, new.params, state.params)
        assert float(metrics["grad_norm"]) > 1e-2  # the unclipped norm is reported
        assert float(optax.tree.norm(delta)) <= 1e-3 * float(metrics["learning_rate"]) * 1.0001
        lrs.append(float(metrics["learning_rate"]))
        state = new
    assert lrs == [1.0, 0.75, 0.5]


def test_make_optimizer_bad_input():
    with pytest.raises(ValueError, match="unknown optimizer 'adamz'"):
        training.make_optimizer("adamz")
    with pytest.raises(ValueError, match="clip_grad_norm must be positive"):
        training.make_optimizer("adam", clip_grad_norm=0.0)
    with pytest.raises(ValueError, match="reduce"):
        training.make_train_step(mse_loss_fn, optax.sgd(0.1), reduce="sum")


def test_non_scalar_loss_is_rejected(rng):
    def bad(model, batch, *, key, train):
        return model(batch["x"]).mean(axis=(1, 2)), {}

    state = training.TrainState.create(ConvBN(), optax.sgd(0.1))
    with pytest.raises(ValueError, match="scalar loss"):
        jax.jit(training.make_train_step(bad, optax.sgd(0.1)))(state, _batch(rng))


def test_mixed_precision_bf16_compute_fp32_params(rng):
    seen = {}

    def loss_fn(model, batch, *, key, train):
        seen["x"], seen["length"] = batch["x"].dtype, batch["length"].dtype
        seen["kernel"], seen["scale"] = model.conv.kernel.dtype, model.bn.scale.dtype
        return mse_loss_fn(model, batch, key=key, train=train)

    tx = optax.sgd(0.1)
    state = training.TrainState.create(ConvBN(), tx, key=0)
    batch = {**_batch(rng), "length": np.ones(16, np.float32)}
    policy = training.MixedPrecision(keep_fp32=nnx.PathContains("bn"))
    new, m16 = jax.jit(training.make_train_step(loss_fn, tx, mixed_precision=policy))(state, batch)
    assert seen == {
        "x": jnp.bfloat16,
        "length": jnp.float32,  # per-example vectors are not cast
        "kernel": jnp.bfloat16,
        "scale": jnp.float32,  # kept by the keep_fp32 filter
    }
    for leaf in jax.tree.leaves((new.params, new.opt_state, new.model_state["bn"]["var"])):
        assert leaf.dtype == jnp.float32
    _, m32 = jax.jit(training.make_train_step(loss_fn, tx))(state, batch)
    assert m16["loss"].dtype == jnp.float32
    assert float(m16["loss"]) != float(m32["loss"])  # the compute really ran in bf16
    assert_close(m16["loss"], m32["loss"], "train_bf16")


def test_eval_step_uses_running_statistics_and_changes_nothing(rng):
    tx = optax.sgd(0.1)
    state = training.TrainState.create(ConvBN(), tx, key=0)
    state, _ = jax.jit(training.make_train_step(mse_loss_fn, tx))(state, _batch(rng))
    batch = _batch(rng)
    metrics = jax.jit(training.make_eval_step(mse_loss_fn))(state, batch)
    model = state.merge()
    expected = mse_loss_fn(model, batch, key=None, train=False)[0]
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-6)
    np.testing.assert_array_equal(model.bn.mean[...], state.model_state["bn"]["mean"][...])
