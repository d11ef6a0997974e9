"""The two argmin strategies of the chunked search (CPU two-pass, accelerator fused) agree."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent.quantizers import default_chunks, search


def _both(x, codebook, **kw):
    kw = dict(metric="l2", form="addmm", vector_chunk=4, code_chunk=3) | kw
    return [
        np.asarray(
            search._nearest_code(
                jnp.asarray(x), jnp.asarray(codebook), None, None, two_pass=tp, **kw
            )
        )
        for tp in (True, False)
    ]


@pytest.mark.parametrize("code_chunk", [2, 3, 100])
def test_two_pass_equals_fused_argmin_with_ties_and_nan(rng, code_chunk):
    codebook = rng.standard_normal((11, 3)).astype(np.float32)
    codebook[7] = codebook[2]  # exact ties across chunks
    codebook[5] = codebook[4]  # and within one
    x = rng.standard_normal((13, 3)).astype(np.float32)
    x[:4] = codebook[[2, 4, 7, 5]]
    x[5, 1] = np.nan  # a NaN vector: NaN distances to every code
    two_pass, fused = _both(x, codebook, code_chunk=code_chunk)
    np.testing.assert_array_equal(two_pass, fused)
    assert two_pass[0] == 2 and two_pass[1] == 4 and two_pass[2] == 2 and two_pass[3] == 4
    d = ((x[:, None, :] - codebook[None]) ** 2).sum(-1)
    ok = ~np.isnan(x).any(1)
    np.testing.assert_array_equal(two_pass[ok], d[ok].argmin(1))


def test_default_chunks_follow_the_backend():
    assert default_chunks("cpu") == search.CPU_CHUNKS
    assert default_chunks("gpu") == default_chunks("tpu") == search.ACCELERATOR_CHUNKS
