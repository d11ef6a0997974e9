"""Helpers of the FSQ/LFQ parity tests: reference/jaxlatent pairs built through the converter,
JAX parameter gradients in torch layout, and real features (DAC encoder latents of speech)."""

from __future__ import annotations

import functools

import numpy as np
from flax import nnx

from converters.vector_quantize import (
    export_vector_quantize_pytorch,
    load_vector_quantize_pytorch,
)
from tests import reference as ref
from tests.real_audio import read_clip


def pair(torch_cls, jax_cls, seed: int = 0, **kwargs):
    """``(torch module, jaxlatent module)`` with the same arguments; the torch module's random
    weights (``torch.manual_seed(seed)``) are copied into the JAX one by the converter."""
    torch = ref.torch()
    torch.manual_seed(seed)
    t = torch_cls(**kwargs)
    j = jax_cls(**kwargs, rngs=nnx.Rngs(seed + 1))
    load_vector_quantize_pytorch(j, t.state_dict())
    return t, j


@nnx.jit(static_argnames=("train",))
def call(module, x, *, train: bool = False, **kwargs):
    """``module(x, train=train, **kwargs)`` compiled (eager JAX compiles every op apart)."""
    return module(x, train=train, **kwargs)


@nnx.jit(static_argnames=("name",))
def method(module, name: str, *args):
    """``getattr(module, name)(*args)`` compiled."""
    return getattr(module, name)(*args)


def torch_grads(module) -> dict[str, np.ndarray]:
    """Gradients of the torch module's parameters, by state_dict key."""
    return {k: ref.to_numpy(p.grad) for k, p in module.named_parameters() if p.grad is not None}


def jax_grads(module, grads: nnx.State) -> dict[str, np.ndarray]:
    """Parameter gradients `grads` (an `nnx.State` of `module`'s Params) in the torch layout and
    under the torch keys, through the converter's own table (only the Param entries)."""
    clone = nnx.clone(module)
    nnx.update(clone, grads)
    exported = export_vector_quantize_pytorch(clone)
    params = {
        k
        for k in exported
        if k.endswith(("weight", "bias")) and "orthogonal_rot" not in k and not k.endswith("mask")
    }
    return {k: v for k, v in exported.items() if k in params}


def dac_latents(channels: int = 16) -> np.ndarray:
    return _dac_latents(channels).copy()


@functools.cache
def _dac_latents(channels: int) -> np.ndarray:
    """Real features ``[2, 25, channels]`` (float32, each channel standardised): a random-init
    small DAC encoder's latents (``dac.model.dac.Encoder(8, [2, 4, 5, 8], channels)``, hop
    320) of the first 0.5 s of two bundled 16 kHz speech clips, channels-last."""
    torch = ref.torch()
    torch.manual_seed(0)
    encoder = ref.dac().model.dac.Encoder(8, [2, 4, 5, 8], channels).eval()
    clips = [
        read_clip(n, 0.5)[0][:, 0] for n in ("speech_16k_spk1_snt1.wav", "speech_16k_spk2_snt2.wav")
    ]
    audio = ref.to_torch(np.stack(clips)[:, None, :])
    with torch.no_grad():
        z = ref.to_numpy(encoder(audio)).transpose(0, 2, 1)
    z = (z - z.mean(axis=(0, 1))) / z.std(axis=(0, 1))
    return z.astype(np.float32)
