"""`PIQClassifier`: the small audio classifier that ``jaxlatent train --model piq`` interprets.

A `Conv2dEncoder_v2` embedding of log spectrograms ``[batch, time, bins]``, the mean over
time and frequency, and a linear head. It stands in for the pretrained classifier of
SpeechBrain's PIQ recipe (``recipes/ESC50/interpret/train_piq.py``: `Conv2dEncoder_v2` + ECAPA
`Classifier`), with the same embedding, so that a classifier and its interpreter train in one
run. Source: SpeechBrain 1.1.2 ``speechbrain.lobes.models.PIQ.Conv2dEncoder_v2`` for the
embedding; the pooling and head are this project's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlatent.models.piq.blocks import Conv2dEncoder_v2
from jaxlatent.precision import DEFAULT_PRECISION, PrecisionLike, set_precision

Array = jax.Array


class PIQClassifier(nnx.Module):
    """`Conv2dEncoder_v2` embedding, mean over time and frequency, linear head.

    Args:
      dim: channels of the representation.
      num_classes: classes.
      rngs: `nnx.Rngs`.
      precision: precision of every convolution and of the head's matmul
        (:mod:`jaxlatent.precision`; default ``"highest"``).

    Example:
      >>> clf = nnx.eval_shape(lambda: PIQClassifier(32, 2, rngs=nnx.Rngs(0)))
      >>> x = jax.ShapeDtypeStruct((3, 32, 129), jnp.float32)
      >>> hcat, logits = nnx.eval_shape(lambda m, x: m(x, train=True), clf, x)
      >>> hcat.shape, logits.shape
      ((3, 2, 8, 32), (3, 2))
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        precision: PrecisionLike = DEFAULT_PRECISION,
    ):
        self.embedding = Conv2dEncoder_v2(dim, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)
        set_precision(self, precision)

    def __call__(self, x: Array, *, train: bool = False) -> tuple[Array, Array]:
        """Embed and classify log spectrograms.

        Args:
          x: floating ``[batch, T, F]`` (T, F >= 16).
          train: BatchNorm batch statistics (updating the running ones); False: the running
            statistics.

        Returns:
          ``(hcat [batch, T // 16, F // 16, dim], logits [batch, classes])``, float32.

        Raises:
          ValueError: for a bad `x` (see `Conv2dEncoder_v2`).
        """
        hcat = self.embedding(x, train=train)
        return hcat, self.head(jnp.mean(hcat, axis=(1, 2)))
