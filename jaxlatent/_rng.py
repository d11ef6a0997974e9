"""The next key of an `nnx.Rngs` stream, cheap under a trace (private module).

:func:`next_key` returns exactly what ``rngs.params()`` returns and leaves the stream in the
same state (key ``fold_in(stream.key, stream.count)``, count + 1), but writes the count back as
a whole value instead of flax 0.12.8's indexed update (``count[...] += 1``). Under a trace
(`nnx.eval_shape` of a model, how :func:`jaxlatent.models.dac.load_converted` builds the
model it restores into) the indexed update compares the tracers' ``.sharding``, and each such
lookup builds an error message by walking every equation traced so far: the cost grows with
the square of the layer count (`nnx.eval_shape` of the 16 kHz DAC took 0.9 s of CPU, 0.3 s
with whole-value writes). Same keys, so the same initial weights (tests/unit/test_rng.py).
"""

from __future__ import annotations

import jax
from flax import nnx


def next_key(rngs: nnx.Rngs, stream: str = "params") -> jax.Array:
    """The key ``getattr(rngs, stream)()`` would return, advancing the stream the same way.

    Args:
      rngs: the model's random streams (a missing `stream` falls back to ``default``, as
        ``rngs.params()`` does).
      stream: the stream's name.

    Returns:
      A typed key array (``jax.dtypes.prng_key``), the stream's key shape.

    Raises:
      AttributeError: if `rngs` has neither `stream` nor a ``default`` stream.
      flax.errors.TraceContextError: if the stream cannot be updated in this trace (as
        ``rngs.params()``).
    """
    rng_stream = getattr(rngs, stream)
    count = rng_stream.count[...]
    key = jax.random.fold_in(rng_stream.key[...], count)
    rng_stream.count.set_value(count + 1)
    return key
