"""The rotation trick (`jaxlatent.quantizers.rotation_trick`) vs vector-quantize-pytorch
1.32.0's ``rotate_to(src, tgt)``: forward values and the gradients of ``sum(w * out)`` w.r.t.
the source vectors, on random pairs and on the special cases (antiparallel pair, equal
vectors, a code scaled from the input); the target gets no gradient in either."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlatent import quantizers as q
from tests import reference as ref
from tests.tolerances import assert_close

pytestmark = pytest.mark.parity


def _reference(x, codes, w):
    lucid = ref.require("vector_quantize_pytorch.vector_quantize_pytorch")
    xt = ref.to_torch(x).requires_grad_()
    ct = ref.to_torch(codes).requires_grad_()
    out = lucid.rotate_to(xt, ct)
    (ref.to_torch(w) * out).sum().backward()
    assert ct.grad is None or not ct.grad.abs().max()
    return ref.to_numpy(out), ref.to_numpy(xt.grad)


def test_rotation_trick_matches_rotate_to(rng):
    x = rng.standard_normal((3, 40, 8)).astype(np.float32)
    codes = rng.standard_normal((3, 40, 8)).astype(np.float32)
    codes[0, 0] = -2.0 * x[0, 0]  # antiparallel: the reflection plane is undefined
    codes[0, 1] = x[0, 1]  # equal: identity
    codes[0, 2] = 3.0 * x[0, 2]  # same direction, scaled
    w = rng.standard_normal(x.shape).astype(np.float32)
    out_ref, grad_ref = _reference(x, codes, w)

    def objective(x, c):
        return jnp.sum(w * q.rotation_trick(x, c))

    grad, grad_codes = jax.grad(objective, argnums=(0, 1))(jnp.asarray(x), jnp.asarray(codes))
    np.testing.assert_array_equal(q.rotation_trick(x, codes), codes)
    assert_close(codes, out_ref, "vq_rotation_out")
    assert_close(grad, grad_ref, "vq_rotation_grad")
    assert not np.asarray(grad_codes).any()
    # not straight-through: the gradient is rotated and rescaled
    assert np.abs(np.asarray(grad) - w).max() > 0.5
