"""The torch references of `bench_train` and their jaxlatent twins, as `TrainPair`s.

Each ``build_*`` makes the reference model with torch, SpeechBrain 1.1.2 or `dac` modules,
converts its weights into the jaxlatent model of `benchmarks.train_models` with the
production converters (`converters.speechbrain`, `converters.dac_quantizer`,
`converters.dac`), and returns both train steps on the same fixed batch: torch eager with
``torch.optim.Adam`` (``foreach`` implementation) and a jaxlatent `SingleDevice` trainer
(``jax.jit`` of `make_train_step`, state donated) with ``optax.adam`` of the same learning
rate. What each model and loss is: see `benchmarks.train_models`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx

from benchmarks.train_models import (
    CODEBOOK_WEIGHT,
    COMMITMENT_WEIGHT,
    KL_WEIGHT,
    ConvSize,
    DACSize,
    TrainPair,
    conv_batch,
    dac_batch,
    dac_loss_fn,
    jax_stepper,
    jax_vae,
    jax_vqvae,
    vae_loss_fn,
    vqvae_loss_fn,
)
from converters.torchaudio_stub import install_torchaudio_stub
from jaxlatent import training


def _torch_conv_stack(size: ConvSize, c_in: int, c_out: int, *, final_act: bool):
    import torch
    from speechbrain.nnet.CNN import Conv1d

    k = size.kernel
    layers = [
        Conv1d(out_channels=size.hidden, kernel_size=k, in_channels=c_in),
        torch.nn.LeakyReLU(),
        Conv1d(out_channels=c_out, kernel_size=k, in_channels=size.hidden),
    ]
    return torch.nn.Sequential(*layers, *([torch.nn.LeakyReLU()] if final_act else []))


def _conv_table(prefix: str):
    from converters import speechbrain as sbconv

    return sbconv.sequential({0: sbconv.conv1d, 2: sbconv.conv1d})(prefix, prefix)


def _torch_stepper(model, params, learning_rate: float, loss_of: Callable[[], Any]) -> Callable:
    import torch

    opt = torch.optim.Adam(params, lr=learning_rate, foreach=True)

    def step():
        with torch.enable_grad():  # benchmarks.common.time_torch runs under no_grad
            opt.zero_grad(set_to_none=True)
            loss = loss_of()
            loss.backward()
            opt.step()
        return loss.detach()

    model.train()
    return step


def _param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _pair(
    name: str,
    batch_size: int,
    shape: str,
    learning_rate: float,
    loss_fn: Callable,
    jmodel,
    batch,
    tmodel,
    loss_of: Callable[[], Any],
) -> TrainPair:
    """The `TrainPair` of `jmodel` (a `SingleDevice` trainer with ``optax.adam``) and `tmodel`
    (``torch.optim.Adam`` on ``loss_of()``), both at `learning_rate` on the same `batch`."""
    tx = training.make_optimizer("adam", learning_rate)
    return TrainPair(
        name,
        batch_size,
        shape,
        _param_count(tmodel),
        jax_stepper(training.SingleDevice(loss_fn, tx), jmodel, tx, batch),
        _torch_stepper(tmodel, tmodel.parameters(), learning_rate, loss_of),
    )


def build_vae(size: ConvSize | None = None, seed: int = 0) -> TrainPair:
    """The SpeechBrain VAE and its jaxlatent twin with the same weights (see module doc)."""
    size = size or ConvSize()
    import torch
    from speechbrain.nnet.autoencoders import VariationalAutoencoder as SBVAE
    from speechbrain.nnet.linear import Linear
    from speechbrain.nnet.losses import VariationalAutoencoderLoss as SBLoss

    from converters import speechbrain as sbconv

    torch.manual_seed(seed)
    tvae = SBVAE(
        encoder=_torch_conv_stack(size, size.freq, size.hidden, final_act=True),
        decoder=_torch_conv_stack(size, size.latent, size.freq, final_act=False),
        mean=Linear(n_neurons=size.latent, input_size=size.hidden),
        log_var=Linear(n_neurons=size.latent, input_size=size.hidden),
    )
    table = sbconv.variational_autoencoder_table(
        encoder=sbconv.sequential({0: sbconv.conv1d, 2: sbconv.conv1d}),
        decoder=sbconv.sequential({0: sbconv.conv1d, 2: sbconv.conv1d}),
        mean=sbconv.linear,
        log_var=sbconv.linear,
    )
    jvae = sbconv.convert_autoencoder(tvae, jax_vae(size, nnx.Rngs(seed)), table)

    batch = conv_batch(size, seed)
    x, length, noise = (torch.from_numpy(batch[k]) for k in ("x", "length", "noise"))
    sb_loss = SBLoss(dist_loss_weight=KL_WEIGHT)

    def loss_of():
        randn_like = torch.randn_like
        torch.randn_like = lambda t: noise  # SpeechBrain's reparameterize draws with it
        try:
            out = tvae.train_sample(x, length)
        finally:
            torch.randn_like = randn_like
        return sb_loss(out, x, length)

    shape = f"{size.frames} x {size.freq} frames"
    return _pair(
        "vae", size.batch, shape, size.learning_rate, vae_loss_fn, jvae, batch, tvae, loss_of
    )


def build_vqvae(size: ConvSize | None = None, seed: int = 0) -> TrainPair:
    """The conv VQ-VAE with `dac.nn.quantize.VectorQuantize` and its jaxlatent twin."""
    size = size or ConvSize()
    import torch
    from dac.nn.quantize import VectorQuantize as DACVectorQuantize

    from converters import speechbrain as sbconv
    from converters.dac_quantizer import vector_quantize_table

    class TorchVQVAE(torch.nn.Module):
        def __init__(self, encoder, vq, decoder):
            super().__init__()
            self.encoder, self.vq, self.decoder = encoder, vq, decoder

        def forward(self, x):
            h = self.encoder(x)  # SpeechBrain layers are channels-last, dac's are not
            z_q, commitment, codebook, _, _ = self.vq(h.transpose(1, 2))
            return self.decoder(z_q.transpose(1, 2)), commitment.mean(), codebook.mean()

    torch.manual_seed(seed)
    encoder = _torch_conv_stack(size, size.freq, size.hidden, final_act=True)
    vq = DACVectorQuantize(size.hidden, size.codebook_size, size.codebook_dim)
    decoder = _torch_conv_stack(size, size.hidden, size.freq, final_act=False)
    tmodel = TorchVQVAE(encoder, vq, decoder)
    table = _conv_table("encoder") | _conv_table("decoder")
    table |= vector_quantize_table("vq", "vq", style="legacy")
    jmodel = sbconv.convert_autoencoder(tmodel, jax_vqvae(size, nnx.Rngs(seed)), table)

    batch = conv_batch(size, seed)
    x = torch.from_numpy(batch["x"])

    def loss_of():
        rec, commitment, codebook = tmodel(x)
        mse = torch.nn.functional.mse_loss(rec, x)
        return mse + COMMITMENT_WEIGHT * commitment + CODEBOOK_WEIGHT * codebook

    shape = f"{size.frames} x {size.freq} frames"
    lr = size.learning_rate
    return _pair("vqvae", size.batch, shape, lr, vqvae_loss_fn, jmodel, batch, tmodel, loss_of)


def build_dac(size: DACSize | None = None, seed: int = 0) -> TrainPair:
    """`dac.DAC` (random weights, release layout) and its conversion by `converters.dac`."""
    size = size or DACSize()
    import torch

    install_torchaudio_stub()
    import dac

    from converters.dac import convert_checkpoint

    kwargs = size.config.to_kwargs()
    torch.manual_seed(seed)
    tmodel = dac.DAC(**kwargs)
    checkpoint = {"state_dict": tmodel.state_dict(), "metadata": {"kwargs": kwargs}}
    _, jmodel = convert_checkpoint(checkpoint)

    batch = dac_batch(size, seed)
    audio = torch.from_numpy(batch["audio"].transpose(0, 2, 1).copy())  # [batch, 1, samples]

    def loss_of():
        out = tmodel(audio, size.config.sample_rate)
        rec = out["audio"]
        l1 = torch.nn.functional.l1_loss(rec, audio[..., : rec.shape[-1]])
        return (
            l1
            + COMMITMENT_WEIGHT * out["vq/commitment_loss"]
            + CODEBOOK_WEIGHT * out["vq/codebook_loss"]
        )

    shape = f"{size.seconds:g} s at {size.config.sample_rate // 1000} kHz"
    lr = size.learning_rate
    return _pair("dac", size.batch, shape, lr, dac_loss_fn, jmodel, batch, tmodel, loss_of)


BUILDERS = {"vae": build_vae, "vqvae": build_vqvae, "dac": build_dac}
