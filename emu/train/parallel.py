"""Devices: the data mesh, placement of states and batches, the processes
of a multi-host run, and the CPU device policy.

A run's batch is split over every device JAX sees (all hosts), or, for an
ensemble whose members divide evenly over the devices, the members are
(`splits_members`). `cpu_device_count` picks how many CPU devices to make of
a host's cores for that rule.

Over several processes (`jax.distributed.initialize`, one per host or GPU)
every process runs the same loop in lockstep: process 0 alone reads and
writes the run folder and decides what depends on its clock or its files
(`on_process_zero`, `same_as_process_zero`); `host_local` turns arrays that
span processes into ones this process holds whole. With one process each of
these is the identity, or the plain call.
"""

import os
import pickle
import sys

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np


def data_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh named 'data' over every device JAX sees (all hosts)."""
  return jax.sharding.Mesh(np.asarray(devices or jax.devices()), ("data",))


def replicate(tree, mesh):
  """Places every array of `tree` on every device of `mesh`."""
  return jax.device_put(
      _placeable(tree, mesh),
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def _placeable(tree, mesh):
  """`tree` with the arrays this process holds whole as numpy, where `mesh`
  spans processes: jax will not move an array from this host's device to
  another's (no cross-host transfers on CPU), but each process puts its own
  copy of host data on its own devices. Otherwise `tree` itself."""
  if not mesh.is_multi_process:
    return tree
  return jax.tree.map(
      lambda a: np.asarray(a) if isinstance(a, jax.Array) and (
          a.is_fully_addressable) else a, tree)


def sync_each_step(mesh, split_members=False) -> bool:
  """Whether a training loop must wait for each step before the next.

  XLA:CPU runs a step's all-reduce (the split batch's gradient) on its
  thread pool; with about 100 steps queued ahead, the devices' halves of
  one step no longer met there and the run hung (LSTM-32, 2 forced devices
  on 2 cores; tests/test_parallel.py). Waiting for each step keeps one in
  flight, and was faster there (12.6 against 22 ms a step). Members split
  over the devices need no collective, nor does one device.
  """
  return (mesh.size > 1 and not split_members
          and mesh.devices.flat[0].platform == "cpu")


def shard_members(tree, mesh):
  """Splits every array of `tree` along its leading (member) axis over the
  mesh's 'data' axis: an ensemble's stacked TrainStates, members apart."""
  return jax.device_put(
      _placeable(tree, mesh),
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")))


def shard_batch(batch, mesh, split=True):
  """Splits host arrays along axis 0 over the mesh's 'data' axis (or, with
  split=False, puts the whole batch on every device).

  Every process holds the whole (deterministic) batch and contributes the
  rows of its own devices, so the same code runs on one host or several.
  """
  sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("data" if split else None))

  def put(array):
    return jax.make_array_from_callback(array.shape, sharding,
                                        lambda index: array[index])

  return jax.tree.map(put, batch)


def host_local(tree):
  """`tree` with every array held whole by this process.

  An array that spans processes (a multi-host run's replicated state or
  metrics) becomes this process's copy of it (`addressable_data(0)`, no
  communication); one split over processes (an ensemble's members) is
  gathered, which every process must then call alike. Arrays this process
  already holds whole, and everything else, are returned as they are.
  """

  def local(array):
    if not isinstance(array, jax.Array) or array.is_fully_addressable:
      return array
    if array.sharding.is_fully_replicated:
      return array.addressable_data(0)
    return multihost_utils.process_allgather(array, tiled=True)

  return jax.tree.map(local, tree)


def to_host(tree):
  """`jax.device_get(tree)`, arrays that span processes included."""
  return jax.device_get(host_local(tree))


def is_process_zero() -> bool:
  """Whether this is process 0: the only one, or the first of a multi-host
  run."""
  return jax.process_index() == 0


def same_as_process_zero(value):
  """Process 0's `value` (any picklable tree; jax arrays come as numpy) on
  every process; process 0 (and a lone process) gets `value` itself.

  Every process must call it at the same point of the run. The bytes travel
  as a uint8 sum over all devices in which only process 0's are nonzero,
  so floats arrive bit for bit (a float64 would be cast to float32 on the
  way otherwise).
  """
  if jax.process_count() == 1:
    return value
  if is_process_zero():
    payload = np.frombuffer(pickle.dumps(jax.tree.map(
        lambda a: np.asarray(a) if isinstance(a, jax.Array) else a, value)),
                            np.uint8)
  else:
    payload = np.zeros(0, np.uint8)
  size = int(multihost_utils.broadcast_one_to_all(np.int32(payload.size)))
  # Padded to a power of two: few distinct shapes, few compilations.
  padded = np.zeros(1 << max(size - 1, 1).bit_length(), np.uint8)
  padded[:payload.size] = payload
  received = multihost_utils.broadcast_one_to_all(padded)
  if is_process_zero():
    return value
  return pickle.loads(received[:size].tobytes())


def on_process_zero(fn):
  """Runs `fn()` on process 0 only; every process returns its result (as
  `same_as_process_zero`) or raises its error.

  For what only process 0 may do (read and write the run folder, score a
  validation set), so that a failure there (a workdir holding another run,
  a full disk) stops every process with process 0's message instead of
  leaving the others waiting in the next collective. With one process,
  `fn()`.
  """
  if jax.process_count() == 1:
    return fn()
  result = error = None
  if is_process_zero():
    try:
      result = fn()
    except Exception as e:  # pylint: disable=broad-except
      error = e
  result, received = same_as_process_zero((result, _picklable(error)))
  error = error or received
  if error is not None:
    error.raised_on_every_process = True  # see `end_if_failed_alone`
    raise error
  return result


def _picklable(error):
  """`error`, or a RuntimeError with its message where it does not pickle."""
  try:
    pickle.dumps(error)
    return error
  except Exception:  # pylint: disable=broad-except
    return RuntimeError(f"{type(error).__name__}: {error}")


def end_if_failed_alone(error: BaseException, brief: bool = False):
  """Ends this process now if `error` stopped it alone in a multi-process
  run; returns otherwise.

  The other processes would wait for a process that failed alone in their
  next collective, and a process that exits normally waits at exit for the
  others (jax's shutdown barrier), so both would hang. A process that is
  gone fails its peers' collectives at once (gloo: connection reset), and
  they end here too. An error every process raised alike
  (`on_process_zero`'s: a workdir holding another run) returns, to be
  reported as usual; so does any error of a lone process.

  Args:
    error: what stopped this process.
    brief: report it as one line `error: ...` and exit with status 2 (a
      user's mistake, as `emu.cli.run_main` does); otherwise log the
      traceback and exit with status 1.
  """
  if jax.process_count() == 1 or getattr(error, "raised_on_every_process",
                                         False):
    return
  where = f"process {jax.process_index()} of {jax.process_count()}"
  if brief:
    print(f"error: {where}: {error}", file=sys.stderr, flush=True)
  else:
    logging.exception("%s failed alone; ending it so that the others stop "
                      "too", where, exc_info=error)
    logging.flush()
  os._exit(2 if brief else 1)  # pylint: disable=protected-access


def splits_members(ensemble: int, n_devices: int) -> bool:
  """Whether an ensemble of E members trains its members apart.

  An ensemble whose members split evenly over the devices runs members
  apart (each device trains E / devices members on the whole batch): its
  work per sample is E times one member's, and splitting the batch instead
  was 2.4x slower (benchmarks/README.md). Otherwise the batch is split and
  everything else replicated.
  """
  return ensemble > 1 and n_devices > 1 and ensemble % n_devices == 0


def cpu_device_count(ensemble, requested, cores, xla_flags):
  """How many CPU devices to ask JAX for, or None to leave its default.

  requested: --cpu_devices (None: choose). An ensemble's members train
  apart when the device count divides E (`splits_members`), so the choice
  is the largest divisor of E up to the cores; one member keeps one
  device, whose matmuls already use every thread. XLA_FLAGS that force a
  device count win over the choice (not over an explicit request).
  """
  if requested is not None:
    if requested < 1:
      raise ValueError(f"--cpu_devices must be at least 1, got {requested}")
    return requested
  if "xla_force_host_platform_device_count" in (xla_flags or ""):
    return None
  if ensemble <= 1:
    return None
  count = max(d for d in range(1, min(ensemble, max(cores, 1)) + 1)
              if ensemble % d == 0)
  return count


def usable_cores() -> int:
  """The cores this process may run on (all of them where the OS cannot
  say: macOS has no sched_getaffinity)."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1
