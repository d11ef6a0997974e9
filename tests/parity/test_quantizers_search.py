"""Nearest-code search and straight-through gradients vs the PyTorch references.

* DAC's lookup (`dac.nn.quantize.VectorQuantize.decode_latents`: l2-normalised vectors,
  ``(‖x‖² - 2 x·c) + ‖c‖²``, argmax of ``-dist``) against ``nearest_code(metric="cosine")``.
* SpeechBrain PIQ's lookup (`PIQ.VectorQuantization` without class partitioning:
  ``addmm(‖c‖² + ‖x‖², x, cᵀ, alpha=-2)``, argmin) against ``nearest_code(form="addmm")``.

Indices must be exactly equal, chunked or not; the codebooks contain duplicated rows so that
exact ties occur and must resolve to the lowest index, as in torch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent import quantizers as q
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity


def _codebook_with_duplicates(rng, k, d):
    codebook = rng.standard_normal((k, d)).astype(np.float32)
    codebook[k // 2] = codebook[3]  # exact ties: the lower index (3) must win
    codebook[k - 1] = codebook[k // 3]
    return codebook


@pytest.mark.parametrize("k,d", [(1024, 8), (300, 32)])
def test_cosine_search_matches_dac_decode_latents(rng, k, d):
    torch = ref.torch()
    vq = ref.dac_quantize().VectorQuantize(16, k, d)
    codebook = _codebook_with_duplicates(rng, k, d)
    latents = rng.standard_normal((3, 400, d)).astype(np.float32)  # channels-last [B, T, d]
    latents[0, :5] = codebook[[3, k // 2, k - 1, k // 3, 7]] * 2.5  # exact ties after normalise
    with torch.no_grad():
        vq.codebook.weight.copy_(torch.from_numpy(codebook))
        z_q, expected = vq.decode_latents(ref.to_torch(np.moveaxis(latents, -1, 1)))
    expected = ref.to_numpy(expected)
    assert expected[0, 0] == 3 and expected[0, 2] == k // 3
    for chunks in ({}, {"vector_chunk": 100, "code_chunk": 128}):
        idx = q.nearest_code(latents, codebook, metric="cosine", **chunks)
        np.testing.assert_array_equal(idx, expected, err_msg=str(chunks))
    # the quantized vectors are the raw (un-normalised) codebook rows, gathered
    np.testing.assert_array_equal(
        q.lookup_codes(codebook, idx), np.moveaxis(ref.to_numpy(z_q), 1, -1)
    )


@pytest.mark.parametrize("k,d", [(512, 16), (64, 3)])
def test_l2_search_matches_piq_vector_quantization(rng, k, d):
    torch = ref.torch()
    piq = ref.sb_piq()
    codebook = _codebook_with_duplicates(rng, k, d)
    x = rng.standard_normal((2, 14, 25, d)).astype(np.float32)  # [B, W, H, C]
    x[0, 0, :3] = codebook[[3, k // 2, k // 3]]  # exact ties
    labels = torch.tensor([1.0, 0.0])
    expected = piq.VectorQuantization.apply(
        ref.to_torch(x), ref.to_torch(codebook), labels, 10, False, 0, False
    )
    expected = ref.to_numpy(expected)
    assert expected[0, 0, 1] == 3
    for chunks in ({}, {"vector_chunk": 97, "code_chunk": 50}):
        idx = q.nearest_code(x, codebook, form="addmm", **chunks)
        np.testing.assert_array_equal(idx, expected, err_msg=str(chunks))


def test_search_under_jit_matches_dac(rng):
    torch = ref.torch()
    vq = ref.dac_quantize().VectorQuantize(16, 256, 8)
    latents = rng.standard_normal((2, 300, 8)).astype(np.float32)
    with torch.no_grad():
        _, expected = vq.decode_latents(ref.to_torch(np.moveaxis(latents, -1, 1)))
    codebook = jnp.asarray(ref.to_numpy(vq.codebook.weight))
    search = jax.jit(lambda x, c: q.nearest_code(x, c, metric="cosine", code_chunk=64))
    np.testing.assert_array_equal(search(latents, codebook), ref.to_numpy(expected))


def test_straight_through_gradients_match_torch_autograd(rng):
    """Same loss in both frameworks: DAC's STE + codebook loss; gradients w.r.t. z and codebook."""
    torch = ref.torch()
    z = rng.standard_normal((2, 50, 8)).astype(np.float32)
    codebook = rng.standard_normal((64, 8)).astype(np.float32)
    w = rng.standard_normal(z.shape).astype(np.float32)

    idx = np.asarray(q.nearest_code(z, codebook))
    zt = ref.to_torch(z).requires_grad_(True)
    cbt = ref.to_torch(codebook).requires_grad_(True)
    zq = torch.nn.functional.embedding(ref.to_torch(idx.astype(np.int64)), cbt)
    st = zt + (zq - zt).detach()  # dac.nn.quantize.VectorQuantize.forward
    codebook_loss = torch.nn.functional.mse_loss(zq, zt.detach())
    (ref.to_torch(w) * st**2).sum().add(codebook_loss).backward()

    def loss(z, cb):
        zq = q.lookup_codes(cb, idx)
        codebook_loss = jnp.mean((zq - jax.lax.stop_gradient(z)) ** 2)
        return jnp.sum(w * q.straight_through(z, zq) ** 2) + codebook_loss

    gz, gcb = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(z), jnp.asarray(codebook))
    assert_close(gz, ref.to_numpy(zt.grad), "vq_ste_grad", err_msg="d/dz")
    assert_close(gcb, ref.to_numpy(cbt.grad), "vq_ste_grad", err_msg="d/dcodebook")
