"""A tiny training job for the subprocess tests of jaxlatent.training (and its model/data).

``python -m tests.training_job --out DIR --steps N [...]`` trains a small convolutional VAE
with BatchNorm (jaxlatent's VariationalAutoencoder + VariationalAutoencoderLoss, so the
per-step PRNG key matters) on fixed random sequences with partial lengths, through `fit`,
and writes the final parameters to ``--params-out`` (npz, one entry per parameter path).

Test hooks: ``--hang-at S`` writes ``DIR/hang.marker`` after step S and then sleeps (the
test kills it there); ``--slow-after S`` writes the marker after step S and then sleeps
0.2 s per step (the test signals it). Multi-process: ``--coordinator HOST:PORT
--num-processes P --process-id I`` (each process sees the devices XLA_FLAGS gives it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlatent import nn as jnn
from jaxlatent import training
from jaxlatent.losses import VariationalAutoencoderLoss
from jaxlatent.models import VariationalAutoencoder

FEATURES, FRAMES, HIDDEN, LATENT = 4, 8, 8, 2


def make_data(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """Random sequences ``[n, FRAMES, FEATURES]`` with relative lengths in (0, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FRAMES, FEATURES)).astype(np.float32)
    length = rng.integers(FRAMES // 2, FRAMES + 1, size=n).astype(np.float32) / FRAMES
    return {"x": x, "length": length}


class ConvBN(nnx.Module):
    """Conv1d → BatchNorm → leaky ReLU → Conv1d: a tiny deterministic model with BatchStats
    (``train=True``: batch statistics, updating the running ones; else running statistics)."""

    def __init__(self, features: int = 3, hidden: int = 8, seed: int = 0):
        rngs = nnx.Rngs(seed)
        self.conv = jnn.Conv1d(features, hidden, 3, padding=1, rngs=rngs)
        self.bn = jnn.BatchNorm(hidden)
        self.out = jnn.Conv1d(hidden, features, 3, padding=1, rngs=rngs)

    def __call__(self, x, *, train: bool = False):
        h = self.bn(self.conv(x), use_running_average=not train)
        return self.out(nnx.leaky_relu(h))


_MODELS: dict = {}


def _cached_clone(factory, *args):
    """A fresh ``factory(*args)`` with test weights, built once per process and cloned.

    Parameters are drawn with numpy (uniform in [-0.5, 0.5)) instead of the modules' own
    initialisers: `jax.random.uniform` with a multi-dimensional shape takes seconds to
    compile on a busy CPU (partitionable threefry), and the tests need any weights, not
    torch's. The other variables (BatchNorm statistics) come from the constructor, under
    `jax.jit` so the unused random initialisers are dead code that XLA drops.
    """
    key = (factory, *args)
    if key not in _MODELS:
        graphdef, params, _ = nnx.split(nnx.eval_shape(lambda: factory(*args)), nnx.Param, ...)
        rest = jax.jit(lambda: nnx.split(factory(*args), nnx.Param, ...)[2])()
        rng = np.random.default_rng(0)
        params = jax.tree.map(
            lambda s: jnp.asarray(rng.uniform(-0.5, 0.5, s.shape).astype(s.dtype)), params
        )
        _MODELS[key] = nnx.merge(graphdef, params, rest)
    return nnx.clone(_MODELS[key])


def conv_bn_autoencoder(features: int = 3, hidden: int = 8, seed: int = 0) -> ConvBN:
    """A fresh `ConvBN` (cached initialisation)."""
    return _cached_clone(ConvBN, features, hidden, seed)


def vae(seed: int = 0) -> VariationalAutoencoder:
    """A fresh `build_vae(seed)` (cached initialisation)."""
    return _cached_clone(build_vae, seed)


def mse_loss_fn(model, batch, *, key, train):
    """``loss_fn`` protocol: mean squared reconstruction error of ``batch["x"]``."""
    y = model(batch["x"], train=train)
    err = (y.astype(jnp.float32) - batch["x"].astype(jnp.float32)) ** 2
    return jnp.mean(err), {"rmse": jnp.sqrt(jnp.mean(err))}


def build_vae(seed: int = 0):
    rngs = nnx.Rngs(seed)
    encoder = nnx.Sequential(
        jnn.Conv1d(FEATURES, HIDDEN, 3, padding=1, rngs=rngs),
        jnn.BatchNorm(HIDDEN),
        nnx.leaky_relu,
    )
    decoder = nnx.Sequential(
        jnn.Conv1d(LATENT, HIDDEN, 3, padding=1, rngs=rngs),
        nnx.leaky_relu,
        jnn.Conv1d(HIDDEN, FEATURES, 3, padding=1, rngs=rngs),
    )
    return VariationalAutoencoder(
        encoder=encoder,
        decoder=decoder,
        mean=jnn.Conv1d(HIDDEN, LATENT, 1, rngs=rngs),
        log_var=jnn.Conv1d(HIDDEN, LATENT, 1, rngs=rngs),
    )


def vae_loss(model, batch, *, key, train):
    """``loss_fn`` protocol of jaxlatent.training for the VAE (batchmean reduction)."""
    # Standard-normal noise drawn flat and reshaped: the same numbers as a draw with the
    # latent's shape (partitionable threefry), but much faster to compile on CPU.
    shape = (*batch["x"].shape[:-1], LATENT)
    noise = jax.random.normal(key, (int(np.prod(shape)),)).reshape(shape)
    out = model.train_sample(batch["x"], batch["length"], noise=noise)
    d = VariationalAutoencoderLoss(dist_loss_weight=1e-2).details(
        out, batch["x"], length=batch["length"], reduction="batchmean"
    )
    return d.loss, {"rec_loss": d.rec_loss, "dist_loss": d.dist_loss}


def flat_params(state) -> dict[str, np.ndarray]:
    """``{path: array}`` of a state's params (works on replicated multi-process arrays)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(state.params)
    return {jax.tree_util.keystr(p): np.asarray(x.addressable_shards[0].data) for p, x in flat}


def init_state(tx):
    """The initial TrainState of the job (the cached test-weight VAE)."""
    return training.TrainState.create(vae(), tx, key=0)


TRAINERS = ("single", "pmap", "jit", "shard_map")


def make_trainer(kind: str, tx, **kwargs):
    cls = {
        "single": training.SingleDevice,
        "pmap": training.PmapDataParallel,
        "jit": training.ShardedDataParallel,
        "shard_map": training.ShardMapDataParallel,
    }[kind]
    return cls(vae_loss, tx, **kwargs)


def make_tx(optimizer: str):
    return training.make_optimizer(optimizer, 1e-2, clip_grad_norm=1.0)


def run_in_process(trainer: str, optimizer: str, steps: int, batch_size: int = 8):
    """The job's training without `fit` (no checkpoints or logs): the final state."""
    tx = make_tx(optimizer)
    dp = make_trainer(trainer, tx)
    state = dp.put_state(init_state(tx))
    data = training.ArrayDataIterator(make_data(), batch_size, seed=0)
    for _ in range(steps):
        state, _ = dp(state, dp.put_batch(next(data)))
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=3)
    parser.add_argument("--trainer", choices=TRAINERS, default="single")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--params-out")
    parser.add_argument("--hang-at", type=int)
    parser.add_argument("--slow-after", type=int)
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    args = parser.parse_args(argv)

    if args.coordinator:
        training.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    tx = make_tx(args.optimizer)
    state = init_state(tx)
    data = training.ArrayDataIterator(make_data(), args.batch_size, seed=0)
    marker = os.path.join(args.out, "hang.marker")

    def on_step(step, state, metrics):
        if args.hang_at is not None and step == args.hang_at:
            open(marker, "w").close()
            while True:
                time.sleep(1)
        if args.slow_after is not None and step >= args.slow_after:
            if step == args.slow_after:
                open(marker, "w").close()
            time.sleep(0.2)

    result = training.fit(
        make_trainer(args.trainer, tx),
        state,
        data,
        steps=args.steps,
        out_dir=args.out,
        checkpoint_every=args.checkpoint_every,
        log_every=1,
        resume=args.resume,
        progress=False,
        on_step=on_step,
    )
    if args.params_out:
        path = args.params_out.format(process=jax.process_index())
        np.savez(path, **flat_params(result.state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
