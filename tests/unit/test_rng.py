"""`jaxlatent._rng.next_key` is ``rngs.<stream>()``: same keys, same stream state, eagerly and
under `nnx.eval_shape` (what keeps initial weights unchanged while making the abstract model
of `load_converted` cheap)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from jaxlatent._rng import next_key


def _data(keys) -> np.ndarray:
    return np.stack([np.asarray(jax.random.key_data(k)) for k in keys])


@pytest.mark.parametrize("stream", ["params", "dropout"])
def test_next_key_equals_stream_call(stream):
    ours, flax_rngs = nnx.Rngs(params=3, default=5), nnx.Rngs(params=3, default=5)
    # "dropout" is missing: both fall back to the default stream
    got = _data([next_key(ours, stream) for _ in range(4)])
    want = _data([getattr(flax_rngs, stream)() for _ in range(4)])
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got, axis=0)) == 4
    for name in ("params", "default"):
        assert int(getattr(ours, name).count[...]) == int(getattr(flax_rngs, name).count[...])
    # interleaving with flax's own calls continues the same sequence
    np.testing.assert_array_equal(
        _data([getattr(flax_rngs, stream)()]), _data([next_key(ours, stream)])
    )


def test_next_key_under_eval_shape_matches_eager_values():
    def draws(rngs, use_next_key):
        return jax.numpy.stack(
            [
                jax.random.key_data(next_key(rngs) if use_next_key else rngs.params())
                for _ in range(3)
            ]
        )

    @nnx.jit(static_argnums=1)
    def traced(rngs, use_next_key):
        return draws(rngs, use_next_key), rngs.params.count[...]

    ours, theirs = traced(nnx.Rngs(0), True), traced(nnx.Rngs(0), False)
    np.testing.assert_array_equal(np.asarray(ours[0]), np.asarray(theirs[0]))
    assert int(ours[1]) == int(theirs[1]) == 3
    shapes = nnx.eval_shape(lambda: draws(nnx.Rngs(0), True))
    assert shapes.shape == (3, 2)


def test_next_key_missing_stream_raises():
    with pytest.raises(AttributeError):
        next_key(nnx.Rngs(params=0), "noise")
