"""Multi-process (multi-host) wiring on JAX's own distributed runtime.

Every process runs the same program. Call `initialize_distributed` first, before anything
touches a device; afterwards ``jax.devices()`` lists the devices of all processes and
``jax.local_devices()`` this process's. Then:

* build the trainer over all devices (`ShardedDataParallel` / `ShardMapDataParallel`);
* give each process its slice of every global batch (`ArrayDataIterator` does this from
  ``jax.process_index()``); ``trainer.put_batch`` assembles the global array with
  ``jax.make_array_from_process_local_data``;
* call checkpoint `save`/`restore` on every process (orbax coordinates them); only the
  primary process (`is_primary`) writes logs.

On Cloud TPU, Slurm and Kubernetes ``jax.distributed.initialize()`` finds its arguments
itself: call `initialize_distributed()` without arguments. On CPU the processes talk over
gloo; the test suite runs two local processes on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: int | Sequence[int] | None = None,
    initialization_timeout: int = 300,
) -> None:
    """Join a multi-process JAX job (`jax.distributed.initialize` with argument checks).

    Args:
      coordinator_address: ``"host:port"`` of process 0's coordinator service.
      num_processes: number of processes in the job.
      process_id: this process's index in ``[0, num_processes)``.
      local_device_ids: restrict this process to these local devices.
      initialization_timeout: seconds to wait for all processes to join.

    Raises:
      ValueError: if only some of the three arguments are given, `num_processes` is not
        positive, `process_id` is out of range, or the address has no port.
    """
    given = [a is not None for a in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ValueError(
            "give all of coordinator_address, num_processes and process_id, or none of them "
            f"(auto-detection); got coordinator_address={coordinator_address!r}, "
            f"num_processes={num_processes!r}, process_id={process_id!r}"
        )
    if all(given):
        if num_processes < 1:
            raise ValueError(f"num_processes must be positive, got {num_processes}")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process_id must be in [0, {num_processes}), got {process_id}")
        host, _, port = coordinator_address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(
                f"coordinator_address must be 'host:port', got {coordinator_address!r}"
            )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout,
    )


def is_primary() -> bool:
    """True in the process that writes logs and summaries (process 0)."""
    return jax.process_index() == 0


def any_process(flag: bool) -> bool:
    """True if `flag` is true in any process (a collective: every process must call it)."""
    if jax.process_count() == 1:
        return flag
    import numpy as np
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).any())


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier `name` (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
