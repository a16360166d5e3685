"""Devices: the data mesh, placement of states and batches, and the CPU
device policy.

A run's batch is split over every device JAX sees (all hosts), or, for an
ensemble whose members divide evenly over the devices, the members are
(`splits_members`). `cpu_device_count` picks how many CPU devices to make of
a host's cores for that rule.
"""

import os

import jax
import numpy as np


def data_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh named 'data' over every device JAX sees (all hosts)."""
  return jax.sharding.Mesh(np.asarray(devices or jax.devices()), ("data",))


def replicate(tree, mesh):
  """Places every array of `tree` on every device of `mesh`."""
  return jax.device_put(
      tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


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
      tree, jax.sharding.NamedSharding(mesh,
                                       jax.sharding.PartitionSpec("data")))


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
