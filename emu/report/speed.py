"""Streaming speed, measured the way a real-time host runs.

Streaming speed has one home here: `measure_best` (the fastest of a few
`measure` runs) in a process set up by `as_realtime_process` (pinned to one
core, one XLA thread, inline dispatch). `measure_in_child` runs it for a run
folder's model in such a child, `python -m emu.report.speed --workdir=...`;
the report (`emu.report.evaluate`) and the benchmark's inference part
(benchmarks/bench_parts.py, its own child) both measure this way, so their
figures agree.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from emu import cli
from emu import stream
from emu import workdir as workdir_lib
from emu.train import checkpoints as checkpoints_lib
from emu.train import restore


def measure(model, params, block_size: int, sample_rate: int = 44100,
            seconds: float = 2.0, max_blocks: int = 4000, seed: int = 0,
            channels: int = 1, streamer=None) -> dict:
  """Streaming speed at one block size.

  Runs `seconds` of noise (at most `max_blocks` blocks) through
  `Streamer.process`, the path an application uses (numpy block in, numpy
  block out, state carried), waiting for each block's output before sending
  the next, as a real-time audio callback must. streamer: a `Streamer` of
  this model to reuse (it is reset; its step compiles once for many runs).

  Returns:
    dict with block_size, blocks, rtf (seconds of audio per second of
    compute), cpu_rtf (per second of CPU time: steadier on a loaded
    machine), us_per_sample, block_ms_mean and block_ms_p99 (compute time
    per block), and buffer_ms (the block's length: the latency it adds).
  """
  streamer = streamer or stream.Streamer(model, params)
  blocks = max(1, min(int(seconds * sample_rate) // block_size, max_blocks))
  rng = np.random.default_rng(seed)
  audio = rng.uniform(-0.5, 0.5, (blocks, block_size)).astype(np.float32)
  knobs = (rng.uniform(0, 1, channels - 1).astype(np.float32)
           if channels > 1 else None)
  streamer.process(audio[0], knobs)  # compile
  streamer.reset()
  times = np.empty(blocks)
  cpu_start = time.process_time()
  for i in range(blocks):
    start = time.perf_counter()
    streamer.process(audio[i], knobs)
    times[i] = time.perf_counter() - start
  cpu = max(time.process_time() - cpu_start, 1e-9)
  total = float(times.sum())
  n = blocks * block_size
  return {
      "block_size": block_size,
      "blocks": blocks,
      "rtf": n / sample_rate / total,
      "cpu_rtf": n / sample_rate / cpu,
      "us_per_sample": total / n * 1e6,
      "block_ms_mean": float(times.mean() * 1e3),
      "block_ms_p99": float(np.percentile(times, 99) * 1e3),
      "buffer_ms": block_size / sample_rate * 1e3,
  }


def offline_rtf(model, params, seconds: float = 10.0,
                sample_rate: int = 44100, repeats: int = 3,
                channels: int = 1) -> dict:
  """Whole-signal inference speed: one call on `seconds` of audio."""
  apply = jax.jit(lambda p, x: model.apply(p, x, None)[0])
  n = int(seconds * sample_rate)
  x = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (1, n, channels)),
                  jnp.float32)
  start = time.perf_counter()
  jax.block_until_ready(apply(params, x))
  compile_s = time.perf_counter() - start
  best = np.inf
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(apply(params, x))
    best = min(best, time.perf_counter() - start)
  return {"seconds": seconds, "rtf": seconds / best,
          "us_per_sample": best / n * 1e6, "compile_s": compile_s}


# How a real-time host runs, so how the report's child and the benchmark's
# inference part measure: one XLA thread (XLA_FLAGS, read when JAX starts:
# a child's environment), one pinned core, inline dispatch, the CPU.
ONE_THREAD_XLA_FLAGS = ("--xla_cpu_multi_thread_eigen=false "
                        "intra_op_parallelism_threads=1")
CHILD_METHOD = ("in a child process pinned to one core, one XLA thread, "
                "inline dispatch (emu.stream.realtime), on the CPU: as a "
                "real-time host runs and benchmarks/bench.py measures")
IN_PROCESS_METHOD = ("in the calling process, its threads and dispatch as "
                     "they were: not how a real-time host runs (slower than "
                     "benchmarks/bench.py's figures)")
# One measurement (the benchmark's): the fastest of 3 runs of 2 s of noise
# each, at most 4000 blocks.
SECONDS, MAX_BLOCKS, REPEATS = 2.0, 4000, 3


def pin_to_one_core():
  """Pins this process (and the threads it will start) to one core, the
  lowest it may use, before JAX starts its threads; returns the CPUs it may
  use now (None where the OS cannot pin)."""
  if not hasattr(os, "sched_setaffinity"):
    return None
  os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  return sorted(os.sched_getaffinity(0))


def as_realtime_process() -> dict:
  """Makes this process run as a real-time host, pinned to one core with
  inline dispatch, before its first JAX computation (XLA_FLAGS, e.g.
  `ONE_THREAD_XLA_FLAGS`, come from the environment). Returns what it runs
  with: pinned_cpus (None: not pinned), xla_flags, one_xla_thread (they ask
  for one thread), inline_dispatch and backend."""
  cpus = pin_to_one_core()
  inline = stream.realtime()
  xla_flags = os.environ.get("XLA_FLAGS", "")
  return {"pinned_cpus": cpus, "xla_flags": xla_flags,
          "one_xla_thread": all(f in xla_flags.split()
                                for f in ONE_THREAD_XLA_FLAGS.split()),
          "inline_dispatch": bool(inline and stream.inline_dispatch()),
          "backend": jax.default_backend()}


def measure_best(model, params, block_size: int, sample_rate: int = 44100,
                 seconds: float = SECONDS, max_blocks: int = MAX_BLOCKS,
                 repeats: int = REPEATS, channels: int = 1,
                 budget_s=None) -> dict:
  """The fastest of `repeats` `measure` runs at one block size (a shared
  machine's load only ever slows a run down). budget_s: no more runs once
  those so far took this long (a slow model; None: always `repeats`). The
  row's `repeats` says how many ran."""
  streamer, rows = stream.Streamer(model, params), []  # one compile for all runs
  for _ in range(max(1, repeats)):
    rows.append(measure(model, params, block_size, sample_rate=sample_rate,
                        seconds=seconds, max_blocks=max_blocks,
                        seed=len(rows), channels=channels, streamer=streamer))
    spent = sum(r["blocks"] * r["block_ms_mean"] / 1e3 for r in rows)
    if budget_s is not None and spent >= budget_s:
      break
  return dict(max(rows, key=lambda r: r["rtf"]), repeats=len(rows))


def measure_in_child(workdir: str, block_sizes, which: str = "best",
                     seconds: float = SECONDS, max_blocks: int = MAX_BLOCKS,
                     repeats: int = REPEATS, budget_s=None,
                     timeout_s: float = 600.0) -> dict:
  """Streaming speed of a run folder's model (`emu.workdir.load_params`) as
  a real-time host runs: a child (`python -m emu.report.speed`) on the CPU with
  `ONE_THREAD_XLA_FLAGS`, pinned to one core, inline dispatch.

  Returns:
    {"method": CHILD_METHOD, "settings": what the child set
    (`as_realtime_process`), "parameters": the model's parameter count,
    "rows": one `measure_best` row per block size}.

  Raises:
    RuntimeError: the child failed (the end of its error output says why)
    or ran past timeout_s.
  """
  fd, out = tempfile.mkstemp(suffix=".json", prefix="emu_stream_")
  os.close(fd)  # the child writes it
  path = [os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))),
          os.environ.get("PYTHONPATH", "")]  # emu from a source checkout
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=ONE_THREAD_XLA_FLAGS,
             PYTHONPATH=os.pathsep.join(p for p in path if p))
  argv = [sys.executable, "-m", "emu.report.speed", f"--workdir={workdir}",
          f"--which={which}", f"--out={out}",
          "--blocks=" + ",".join(str(int(b)) for b in block_sizes),
          f"--seconds={seconds}", f"--max_blocks={max_blocks}",
          f"--repeats={repeats}", f"--budget_s={budget_s or 0}"]
  try:
    try:
      result = subprocess.run(argv, env=env, capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
      raise RuntimeError(f"the streaming child ran over {timeout_s:g} s"
                         ) from e
    if result.returncode:
      raise RuntimeError(f"the streaming child failed ({result.returncode}):"
                         f" {result.stderr[-2000:].strip()}")
    with open(out) as f:
      measured = json.load(f)
  finally:
    os.remove(out)
  return {"method": CHILD_METHOD, **measured}


# The report's streaming measurement stops after this many seconds of
# runs per block size (a slow model).
STREAM_BUDGET_S = 5.0
NOT_MEASURED = "not measured (--stream_blocks is empty)"


def _parameter_count(params) -> int:
  return int(sum(np.size(p) for p in jax.tree.leaves(params)))


def _can_load(workdir) -> bool:
  """Whether workdir holds a run a child process can load (its config,
  dataset facts and best checkpoint)."""
  return (all(os.path.exists(workdir_lib.path(workdir, name))
              for name in (workdir_lib.CONFIG, workdir_lib.DATASET)) and
          checkpoints_lib.Checkpoints(workdir).exists("best"))


def streaming_speed(model, params, workdir, block_sizes, sample_rate,
                    channels=1) -> dict:
  """Streaming speed as a real-time host gets it, and how it was measured.

  A run folder's model is measured in a child process on one pinned core
  with inline dispatch (`measure_in_child`, as
  benchmarks/bench.py does). A model that is not on disk (a notebook's,
  or one whose checkpoint is another model) is measured in this process
  (`emu.report.IN_PROCESS_METHOD`), its method saying so.

  Returns:
    {"method", "rows": one `measure_best` row per block size,
    and "settings" (the child's) or "why" (why in this process)}.
  """
  if not block_sizes:
    return {"method": NOT_MEASURED, "rows": []}
  why = f"{workdir} holds no trained run (config, best checkpoint) to load"
  if _can_load(workdir):
    try:
      measured = measure_in_child(workdir, block_sizes,
                                         budget_s=STREAM_BUDGET_S)
      if measured["parameters"] == _parameter_count(params):
        return measured
      why = (f"the best checkpoint in {workdir} has "
             f"{measured['parameters']} parameters, this model "
             f"{_parameter_count(params)}")
    except RuntimeError as e:
      why = str(e)
  logging.warning("streaming speed measured in this process (%s): slower "
                  "than a real-time host's", why)
  rows = [measure_best(model, params, block, sample_rate=sample_rate,
                              channels=channels, budget_s=STREAM_BUDGET_S)
          for block in block_sizes]
  return {"method": IN_PROCESS_METHOD, "why": why,
          "inline_dispatch": stream.inline_dispatch(),
          "backend": jax.default_backend(), "rows": rows}


def _define_flags():
  flags.DEFINE_string("workdir", None, "The run folder whose model streams.",
                      required=True)
  flags.DEFINE_string("which", "best", "Its checkpoint: best or last.")
  flags.DEFINE_list("blocks", ["1", "64", "512"], "Block sizes (samples).")
  flags.DEFINE_string("out", None, "Write the JSON here.", required=True)
  flags.DEFINE_float("seconds", SECONDS, "Seconds of noise per run.")
  flags.DEFINE_integer("max_blocks", MAX_BLOCKS, "Most blocks per run.")
  flags.DEFINE_integer("repeats", REPEATS, "Runs per block size.",
                       lower_bound=1)
  flags.DEFINE_float("budget_s", 0.0, "No more runs after this many s.")


def main(argv):
  """The child of `measure_in_child`: the measurement as JSON."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  fl = flags.FLAGS
  settings = as_realtime_process()  # before JAX computes anything
  if not settings["inline_dispatch"]:
    raise RuntimeError("JAX started before emu.stream could set inline "
                       "dispatch")
  model, params, _ = restore.load_params(fl.workdir, fl.which)
  info = workdir_lib.dataset_info(fl.workdir)
  rows = [measure_best(model, params, int(block),
                       sample_rate=int(info["sample_rate"]),
                       seconds=fl.seconds, max_blocks=fl.max_blocks,
                       repeats=fl.repeats, channels=info.get("channels", 1),
                       budget_s=fl.budget_s or None)
          for block in fl.blocks]
  with open(fl.out, "w") as f:
    json.dump({"settings": settings, "rows": rows, "parameters": _parameter_count(params)}, f)
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
