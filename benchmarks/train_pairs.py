"""The torch references of `bench_train` and their conversion to jaxlatent.

`torch_reference` makes a reference model with torch, SpeechBrain 1.1.2 or `dac` modules
(torch seed fixed) and its loss on the fixed batch; `convert` turns its weights into the
jaxlatent model of `benchmarks.train_models` with the production converters
(`converters.speechbrain`, `converters.dac_quantizer`, `converters.dac`); `torch_stepper` is
the torch train step (eager, ``torch.optim.Adam``, ``foreach`` implementation). The jaxlatent
step (`train_models.jax_trainer_stepper`) imports no torch: `bench_train` runs the two sides
in separate processes. What each model and loss is: see `benchmarks.train_models`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from flax import nnx

from benchmarks.train_models import (
    CODEBOOK_WEIGHT,
    COMMITMENT_WEIGHT,
    KL_WEIGHT,
    ConvSize,
    DACSize,
    conv_batch,
    dac_batch,
    jax_vae,
    jax_vqvae,
)
from converters.torchaudio_stub import install_torchaudio_stub


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


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclasses.dataclass
class TorchReference:
    """One model's torch side: the module, its training loss on the fixed batch (a closure
    ``loss_of() -> tensor``) and the Adam learning rate."""

    name: str
    model: Any
    loss_of: Callable[[], Any]
    learning_rate: float


def _vae(size: ConvSize, seed: int) -> TorchReference:
    import torch
    from speechbrain.nnet.autoencoders import VariationalAutoencoder as SBVAE
    from speechbrain.nnet.linear import Linear
    from speechbrain.nnet.losses import VariationalAutoencoderLoss as SBLoss

    torch.manual_seed(seed)
    tvae = SBVAE(
        encoder=_torch_conv_stack(size, size.freq, size.hidden, final_act=True),
        decoder=_torch_conv_stack(size, size.latent, size.freq, final_act=False),
        mean=Linear(n_neurons=size.latent, input_size=size.hidden),
        log_var=Linear(n_neurons=size.latent, input_size=size.hidden),
    )
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

    return TorchReference("vae", tvae, loss_of, size.learning_rate)


def _convert_vae(tvae, size: ConvSize, seed: int) -> nnx.Module:
    from converters import speechbrain as sbconv

    table = sbconv.variational_autoencoder_table(
        encoder=sbconv.sequential({0: sbconv.conv1d, 2: sbconv.conv1d}),
        decoder=sbconv.sequential({0: sbconv.conv1d, 2: sbconv.conv1d}),
        mean=sbconv.linear,
        log_var=sbconv.linear,
    )
    return sbconv.convert_autoencoder(tvae, jax_vae(size, nnx.Rngs(seed)), table)


def _vqvae(size: ConvSize, seed: int) -> TorchReference:
    import torch
    from dac.nn.quantize import VectorQuantize as DACVectorQuantize

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
    x = torch.from_numpy(conv_batch(size, seed)["x"])

    def loss_of():
        rec, commitment, codebook = tmodel(x)
        mse = torch.nn.functional.mse_loss(rec, x)
        return mse + COMMITMENT_WEIGHT * commitment + CODEBOOK_WEIGHT * codebook

    return TorchReference("vqvae", tmodel, loss_of, size.learning_rate)


def _convert_vqvae(tmodel, size: ConvSize, seed: int) -> nnx.Module:
    from converters import speechbrain as sbconv
    from converters.dac_quantizer import vector_quantize_table

    table = _conv_table("encoder") | _conv_table("decoder")
    table |= vector_quantize_table("vq", "vq", style="legacy")
    return sbconv.convert_autoencoder(tmodel, jax_vqvae(size, nnx.Rngs(seed)), table)


def _dac(size: DACSize, seed: int) -> TorchReference:
    import dac
    import torch

    torch.manual_seed(seed)
    tmodel = dac.DAC(**size.config.to_kwargs())
    audio = torch.from_numpy(dac_batch(size, seed)["audio"].transpose(0, 2, 1).copy())

    def loss_of():  # audio: [batch, 1, samples]
        out = tmodel(audio, size.config.sample_rate)
        rec = out["audio"]
        l1 = torch.nn.functional.l1_loss(rec, audio[..., : rec.shape[-1]])
        return (
            l1
            + COMMITMENT_WEIGHT * out["vq/commitment_loss"]
            + CODEBOOK_WEIGHT * out["vq/codebook_loss"]
        )

    return TorchReference("dac", tmodel, loss_of, size.learning_rate)


def _convert_dac(tmodel, size: DACSize, seed: int) -> nnx.Module:
    from converters.dac import convert_checkpoint

    kwargs = size.config.to_kwargs()
    checkpoint = {"state_dict": tmodel.state_dict(), "metadata": {"kwargs": kwargs}}
    return convert_checkpoint(checkpoint)[1]


_TORCH = {"vae": _vae, "vqvae": _vqvae, "dac": _dac}
_CONVERT = {"vae": _convert_vae, "vqvae": _convert_vqvae, "dac": _convert_dac}


def torch_reference(name: str, size: ConvSize | DACSize, seed: int = 0) -> TorchReference:
    """The torch reference model `name` (``vae``, ``vqvae``, ``dac``; see module doc), built
    with torch seed `seed`, and its loss on the fixed batch of `size` and `seed`. A stub
    torchaudio is installed when there is none (SpeechBrain and `dac` import it; nothing here
    calls it)."""
    install_torchaudio_stub()
    return _TORCH[name](size, seed)


def convert(ref: TorchReference, size: ConvSize | DACSize, seed: int = 0) -> nnx.Module:
    """The jaxlatent twin of `ref` with the same weights, by the production converters."""
    return _CONVERT[ref.name](ref.model, size, seed)


def torch_stepper(ref: TorchReference) -> Callable[[], Any]:
    """``step() -> loss tensor``: one ``torch.optim.Adam`` (foreach) step of ``ref.loss_of``."""
    import torch

    opt = torch.optim.Adam(ref.model.parameters(), lr=ref.learning_rate, foreach=True)

    def step():
        with torch.enable_grad():
            opt.zero_grad(set_to_none=True)
            loss = ref.loss_of()
            loss.backward()
            opt.step()
        return loss.detach()

    ref.model.train()
    return step
