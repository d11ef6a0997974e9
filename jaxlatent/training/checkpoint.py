"""Checkpoints of a `TrainState` with orbax-checkpoint's `CheckpointManager`.

One checkpoint per saved step, in ``<directory>/<step>/``, holding two items:

* ``state`` — params, optimizer state, model state (BatchNorm statistics, EMA buffers, RNG
  state), step and PRNG key, written by `StandardSave` (typed PRNG keys are stored as their
  ``uint32`` key data and re-wrapped on restore);
* ``meta`` — JSON: the step, the data iterator state (its position), a signature
  ``{path: [shape, dtype]}`` of the state that identifies the model and optimizer, and any
  extra JSON the caller adds.

Orbax writes each checkpoint into ``<step>.orbax-checkpoint-tmp-<time>`` and renames it when
every file is written (and, on filesystems without atomic rename, marks it with
``commit_success.txt``), so a checkpoint interrupted mid-save — a killed process, a full
disk — is never listed, restored or counted as the latest. Saving is asynchronous by
default (the arrays are copied to host before `save` returns, so training continues on the
same buffers); `wait` blocks until the last save is final.

Restoring targets the layout of a template state: every restored array gets the sharding
of the template's leaf, so a checkpoint written from 8 replicated devices restores onto one
device and back (orbax reads only the bytes each device needs). All processes of a
multi-process run must call `save` and `restore` together.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxlatent.training.state import TrainState


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _saveable(state: TrainState) -> dict[str, Any]:
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state.arrays())


def state_signature(state: TrainState) -> dict[str, list]:
    """``{path: [shape, dtype]}`` of every stored array: identifies model and optimizer."""
    flat, _ = jax.tree_util.tree_flatten_with_path(_saveable(state))
    return {
        jax.tree_util.keystr(path).removesuffix(".value"): [
            list(jnp.shape(x)),
            str(jnp.result_type(x)),
        ]
        for path, x in flat
    }


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
    if _is_key(x):
        data = jax.eval_shape(jax.random.key_data, x)
        return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=x.sharding)
    if isinstance(x, jax.Array):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x), sharding=sharding)


_GROUPS = ("['step']", "['params']", "['model_state']", "['opt_state']", "['key']")


def _signature_diff(saved: dict[str, list], current: dict[str, list]) -> list[str]:
    def order(path):
        group = next((i for i, g in enumerate(_GROUPS) if path.startswith(g)), len(_GROUPS))
        return group, path

    lines = []
    for path in sorted(saved.keys() | current.keys(), key=order):
        if path not in current:
            lines.append(f"  {path} is in the checkpoint but not in the state")
        elif path not in saved:
            lines.append(f"  {path} is in the state but not in the checkpoint")
        elif saved[path] != current[path]:
            lines.append(f"  {path}: checkpoint {saved[path]}, state {current[path]}")
    if len(lines) > 8:
        lines = [*lines[:8], f"  ... and {len(lines) - 8} more differences"]
    return lines


class Checkpointer:
    """Save and restore `TrainState`s every `save_every` steps, keeping the last `keep`.

    Args:
      directory: the checkpoint folder (created if missing).
      save_every: `should_save` is true every this many steps (None: only when forced).
      keep: how many of the most recent checkpoints to keep (None: all).
      async_save: write in a background thread (call `wait` or `close` to finish).

    Raises:
      ValueError: if `save_every` or `keep` is not positive.

    Example:
      >>> import optax, tempfile
      >>> from flax import nnx
      >>> tx = optax.sgd(0.1)
      >>> state = TrainState.create(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), tx)
      >>> with Checkpointer(tempfile.mkdtemp(), save_every=1) as ckpt:
      ...     _ = ckpt.save(state, data_state={"position": 0}, force=True)
      ...     restored, meta = ckpt.restore(state)
      >>> ckpt.all_steps(), meta["data"]
      ([0], {'position': 0})
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        save_every: int | None = None,
        keep: int | None = 3,
        async_save: bool = True,
    ):
        if save_every is not None and save_every < 1:
            raise ValueError(f"save_every must be a positive number of steps, got {save_every}")
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be a positive number of checkpoints, got {keep}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.save_every = save_every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=async_save
        )
        self._manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "meta"), options=options
        )

    def should_save(self, step: int) -> bool:
        """True when `step` is a multiple of `save_every`."""
        return self.save_every is not None and step > 0 and step % self.save_every == 0

    def save(
        self,
        state: TrainState,
        *,
        data_state: Any = None,
        extra: dict[str, Any] | None = None,
        force: bool = False,
        step: int | None = None,
    ) -> bool:
        """Save `state` at its step if `should_save` (or `force`); returns whether it did.

        A step that already has a checkpoint is not written again.

        Args:
          state: the state to save (its `step` names the checkpoint).
          data_state: JSON-serialisable position of the data iterator.
          extra: more JSON-serialisable information to store.
          force: save even when `should_save` is false.
          step: ``int(state.step)`` if the caller knows it (avoids a device sync).
        """
        if step is None:
            step = int(jax.device_get(state.step))
        if not (force or self.should_save(step)) or step in self._manager.all_steps():
            return False
        meta = {
            "step": step,
            "data": data_state,
            "signature": state_signature(state),
            "extra": extra or {},
        }
        return bool(
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(_saveable(state)), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
        )

    def latest_step(self) -> int | None:
        """The newest finalized checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of all finalized checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def metadata(self, step: int | None = None) -> dict[str, Any]:
        """The JSON `meta` item of a checkpoint (default: the latest)."""
        step = self._step(step)
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return out.meta

    def restore(
        self, template: TrainState, step: int | None = None
    ) -> tuple[TrainState, dict[str, Any]]:
        """Restore a checkpoint onto the layout (shardings) of `template`.

        Args:
          template: a state of the same model and optimizer, placed where the restored arrays
            should live (e.g. ``trainer.put_state(TrainState.create(...))``).
          step: the checkpoint to restore (default: the latest).

        Returns:
          ``(state, meta)``: the restored state and the checkpoint's JSON metadata (``meta
          ["data"]`` is the data iterator state).

        Raises:
          FileNotFoundError: if there is no (finalized) checkpoint.
          ValueError: if the checkpoint was written for another model or optimizer (its
            arrays' paths, shapes or dtypes differ from the template's).
        """
        step = self._step(step)
        meta = self.metadata(step)
        diff = _signature_diff(meta["signature"], state_signature(template))
        if diff:
            raise ValueError(
                f"checkpoint {self.directory}/{step} was written for another model or "
                "optimizer:\n" + "\n".join(diff)
            )
        target = jax.tree.map(_abstract, template.arrays())
        out = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
        )
        arrays = jax.tree.map(
            lambda t, x: (
                jax.random.wrap_key_data(x, impl=jax.random.key_impl(t)) if _is_key(t) else x
            ),
            template.arrays(),
            out.state,
        )
        return template.with_arrays(arrays), meta

    def _step(self, step: int | None) -> int:
        self.wait()  # a save of this manager still in flight is not finalized yet
        if step is None:
            step = self.latest_step()
        if step is None or step not in self._manager.all_steps():
            which = "" if step is None else f" of step {step}"
            raise FileNotFoundError(f"no finalized checkpoint{which} in {self.directory}")
        return step

    def wait(self) -> None:
        """Block until pending asynchronous saves are finalized."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release the manager."""
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
