"""A deterministic, resumable batch iterator over in-memory arrays, sharded per process.

Batch number ``p`` (its *position*) is a pure function of ``(seed, p)``: epoch
``p // batches_per_epoch`` is a fresh permutation from ``numpy.random.default_rng([seed,
epoch])`` and the batch is one slice of it. Saving the position in a checkpoint and calling
`set_state` after a restart therefore continues with exactly the batches an uninterrupted
run would have seen. In a multi-process run every process computes the same global batch
indices and loads only its own contiguous slice (``process_index``), so the global batch —
the processes' slices stacked in process order — is the same for any process count.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


class ArrayDataIterator:
    """Endless deterministic minibatches of a pytree of arrays sharing a leading axis.

    Args:
      data: a pytree (e.g. a dict) of arrays ``[examples, ...]``.
      batch_size: the *global* batch size (all processes together).
      seed: seed of the shuffling permutations.
      shuffle: reshuffle every epoch (False: examples in order).
      process_index, process_count: this process's slice of each global batch (default:
        ``jax.process_index()`` / ``jax.process_count()``).

    Each epoch drops the last ``examples % batch_size`` examples of its permutation.

    Raises:
      ValueError: if the leaves disagree on the number of examples, there are fewer
        examples than `batch_size`, or `batch_size` is not divisible by `process_count`.

    Example:
      >>> it = ArrayDataIterator({"x": np.arange(10)}, batch_size=4, seed=0)
      >>> first = next(it)["x"]
      >>> state = it.get_state()
      >>> second = next(it)["x"]
      >>> it.set_state(state)
      >>> bool((next(it)["x"] == second).all()), state
      (True, {'position': 1, 'seed': 0, 'batch_size': 4, 'examples': 10})
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        self.data = jax.tree.map(np.asarray, data)
        sizes = {x.shape[0] if x.ndim else None for x in jax.tree.leaves(self.data)}
        if len(sizes) != 1 or None in sizes:
            shapes = jax.tree.map(np.shape, self.data)
            raise ValueError(f"data leaves must share a leading example axis, got {shapes}")
        self.num_examples = sizes.pop()
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if batch_size < 1 or batch_size > self.num_examples:
            raise ValueError(
                f"batch_size must be in [1, {self.num_examples}] (the number of examples), "
                f"got {batch_size}"
            )
        if batch_size % self.process_count:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the {self.process_count} processes"
            )
        self.batch_size = batch_size
        self.local_batch_size = batch_size // self.process_count
        self.seed = seed
        self.shuffle = shuffle
        self.batches_per_epoch = self.num_examples // batch_size
        self.position = 0
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            if self.shuffle:
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
            else:
                perm = np.arange(self.num_examples)
            self._perm = (epoch, perm)
        return self._perm[1]

    def global_indices(self, position: int) -> np.ndarray:
        """Example indices of global batch number `position`."""
        epoch, i = divmod(position, self.batches_per_epoch)
        return self._permutation(epoch)[i * self.batch_size : (i + 1) * self.batch_size]

    def __iter__(self) -> ArrayDataIterator:
        return self

    def __next__(self) -> Any:
        idx = self.global_indices(self.position)
        lo = self.process_index * self.local_batch_size
        idx = idx[lo : lo + self.local_batch_size]
        self.position += 1
        return jax.tree.map(lambda x: x[idx], self.data)

    def get_state(self) -> dict[str, int]:
        """JSON-serialisable state: the position and what it depends on."""
        return {
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "examples": self.num_examples,
        }

    def set_state(self, state: dict[str, int]) -> None:
        """Continue from a state returned by `get_state`.

        Raises:
          ValueError: if the state was saved with another seed, batch size or data size
            (the positions would then mean different batches).
        """
        mine = self.get_state()
        for name in ("seed", "batch_size", "examples"):
            if state.get(name) != mine[name]:
                raise ValueError(
                    f"data iterator state has {name}={state.get(name)} but this iterator has "
                    f"{name}={mine[name]}; resume with the same data and settings"
                )
        self.position = int(state["position"])
