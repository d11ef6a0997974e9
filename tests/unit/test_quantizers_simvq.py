"""SimVQ / ResidualSimVQ without torch: bad arguments, the frozen codebook is not a Param,
quantizer dropout needs a key, decoding reproduces the output (parity against
vector-quantize-pytorch: tests/parity/test_quantizers_simvq.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlatent import quantizers as q


def test_bad_arguments():
    with pytest.raises(ValueError, match="codebook_size must be a positive int, got 0"):
        q.SimVQ(4, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="channel_first=True"):
        q.SimVQ(4, 8, channel_first=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="heads=2"):
        q.ResidualSimVQ(dim=4, num_quantizers=2, codebook_size=8, heads=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="quantize_dropout_cutoff_index=2"):
        q.ResidualSimVQ(
            dim=4,
            num_quantizers=2,
            codebook_size=8,
            quantize_dropout=True,
            quantize_dropout_cutoff_index=2,
            rngs=nnx.Rngs(0),
        )
    vq = q.SimVQ(4, 8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"dim=4, got shape \(2, 3\)"):
        vq(jnp.ones((2, 3)))


def test_frozen_codebook_is_not_trained_and_dropout_needs_key():
    rvq = q.ResidualSimVQ(
        dim=4, num_quantizers=3, codebook_size=8, quantize_dropout=True, rngs=nnx.Rngs(0)
    )
    params = nnx.state(rvq, nnx.Param)
    assert all("code_transform" in str(path) for path, _ in nnx.to_flat_state(params))
    x = jax.random.normal(jax.random.key(0), (2, 5, 4))
    with pytest.raises(ValueError, match="key is required"):
        rvq(x, train=True)
    lasts = set()
    for k in range(6):
        out = rvq(x, train=True, key=jax.random.key(k))
        last = int(rvq.dropout_index(jax.random.key(k)))
        lasts.add(last)
        idx = np.asarray(out.indices)
        assert (idx[..., : last + 1] >= 0).all() and (idx[..., last + 1 :] == -1).all()
        assert not np.asarray(out.losses)[last + 1 :].any()
        np.testing.assert_allclose(
            rvq.get_output_from_indices(out.indices), out.quantized, atol=1e-6
        )
    assert len(lasts) > 1
