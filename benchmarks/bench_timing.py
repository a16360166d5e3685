"""How the benchmark times things: compiled steps, inference, one core.

Timings on a shared machine are noisy: every number is the best of
`repeats` runs, and variants compared with each other take turns in every
repeat (`best_step_times`), so that a change of load hits them alike.
"""

import dataclasses
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from emu import models
from emu.report import speed


def example():
  """An input of the shape model.init takes (made on demand: creating an
  array starts JAX's backend, which must wait for the pinning and
  `stream.realtime()` of a child)."""
  return jnp.zeros((1, 256, 1), jnp.float32)


def pin_to_one_core():
  """Pins this process (and the threads it will start) to one core: the
  report's streaming child's pinning (`emu.report.speed.pin_to_one_core`)."""
  return speed.pin_to_one_core()


def build(spec, key_seed=0):
  """(model, params, parameter count) of a (family, hyperparameters)."""
  family, kwargs = spec
  model = models.create(family, **kwargs)
  params = model.init(jax.random.PRNGKey(key_seed), example())
  count = sum(int(p.size) for p in jax.tree.leaves(params))
  return model, params, count


@dataclasses.dataclass
class Timed:
  """A train step under test: fn(state, batch) -> (state, metrics)."""
  fn: Callable
  state: Any
  batch: Any
  sync: bool = False  # wait for every step, as train.fit does on some meshes


def compile_step(step, state, batch):
  """(step jitted with its state donated and compiled, compile seconds)."""
  start = time.perf_counter()
  compiled = jax.jit(step, donate_argnums=0).lower(state, batch).compile()
  return compiled, time.perf_counter() - start


def first_run(fn, state, batch):
  """The state after one untimed step (its allocations happen here)."""
  state, metrics = fn(state, batch)
  jax.block_until_ready(metrics)
  return state


def best_step_times(timed: dict, steps: int, repeats: int):
  """Best seconds per step of each Timed, ({key: wall}, {key: CPU}).

  Each repeat runs `steps` steps of every variant in turn (the load
  changes between repeats); the states carry on from step to step.
  """
  wall = {k: math.inf for k in timed}
  cpu = dict(wall)
  for _ in range(repeats):
    for key, t in timed.items():
      start, start_cpu = time.perf_counter(), time.process_time()
      for _ in range(steps):
        t.state, metrics = t.fn(t.state, t.batch)
        if t.sync:
          jax.block_until_ready(metrics)
      jax.block_until_ready(metrics)
      wall[key] = min(wall[key], (time.perf_counter() - start) / steps)
      cpu[key] = min(cpu[key], (time.process_time() - start_cpu) / steps)
  return wall, cpu


def best_offline(model, params, seconds: float, repeats: int) -> dict:
  """`speed.offline_rtf` of one call, the fastest of `repeats`."""
  return max((speed.offline_rtf(model, params, seconds=seconds, repeats=1)
              for _ in range(repeats)), key=lambda r: r["rtf"])


def best_stream(model, params, block: int, seconds: float, max_blocks: int,
                repeats: int) -> dict:
  """`speed.measure` at one block size, the fastest of `repeats`: the
  report's own measurement (`emu.report.speed.measure_best`, which
  `emu.report.speed.measure_in_child` runs), so the two agree."""
  return speed.measure_best(model, params, block, seconds=seconds,
                             max_blocks=max_blocks, repeats=repeats)
