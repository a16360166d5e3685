"""Inference: whole signals (`make_predict`), blocks with carried state
(`Streamer`), and their speed, measured the way a real-time host runs.

The streaming path is the model contract itself: `model.apply(params, block,
state)` jitted once per block size, the state handed from block to block. It
gives the same output as one offline call (tests check it per model).

Streaming speed has one home here: `measure_best` (the fastest of a few
`measure` runs) in a process set up by `as_realtime_process` (pinned to one
core, one XLA thread, inline dispatch). `measure_in_child` runs it for a run
folder's model in such a child, `python -m emu.stream --workdir=...`; the
report (`emu.evaluate`) and the benchmark's inference part
(benchmarks/bench_parts.py, its own child) both measure this way, so their
figures agree.
"""

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

from absl import app
from absl import flags
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from emu import workdir as workdir_lib


def as_batch(signal) -> jnp.ndarray:
  """[time] or [time, channels] (audio + knobs) -> [1, time, channels]."""
  x = jnp.asarray(signal, jnp.float32)
  return x.reshape(1, x.shape[0], -1)


def make_predict(model, method=None):
  """Jitted whole-signal inference: x [time(, channels)] -> y [time] numpy.

  With method='member_outputs' (an Ensemble), y is [members, time].
  """
  apply = jax.jit(lambda p, x: model.apply(p, x, None, method=method)[0])

  def predict(params, signal):
    y = np.asarray(apply(params, as_batch(signal)))
    return y.reshape(-1) if method is None else y.reshape(y.shape[0], -1)

  return predict


def realtime() -> bool:
  """Runs this process's JAX CPU computations inline (no async dispatch).

  JAX's CPU client normally hands each computation to a dispatch thread and
  returns at once, which lets a training loop queue its next step. A
  real-time audio process waits for every block's output anyway, and the
  hand-off costs more than the work: LSTM-32, one pinned thread of the
  2-core CPU, `Streamer.process` per 64-sample block 48.8 us with async
  dispatch, 33.3 us inline (1-sample blocks 27.8 -> 12.8 us). Call this
  once, before the first JAX computation of the process (the setting is
  read when JAX creates its CPU client); experiments/bench.py's inference
  part and `python -m emu.apply` do.

  Returns:
    True if dispatch is now inline; False (with a warning) if JAX had
    already started its backends, so that the call came too late.
  """
  global _realtime
  if _realtime is not None:  # decided by the first call
    return _realtime
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  _realtime = True
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    started = xla_bridge.backends_are_initialized()
  except (ImportError, AttributeError):  # a jax without this private helper
    return True
  if started:
    warnings.warn(
        "emu.stream.realtime() called after JAX created its CPU client: "
        "dispatch stays asynchronous. Call it before the first JAX "
        "computation (e.g. right after the imports).", stacklevel=2)
    _realtime = False
  return _realtime


_realtime = None


# Parameters up to this many numbers are baked into the streaming step as
# constants: one argument fewer per call (less dispatch work), and XLA may
# fold them. Larger models (the thesis CNN: 3 M) stay arguments, so that
# compiling does not embed megabytes of constants.
_CONSTANT_PARAMS_MAX = 1 << 16


class Streamer:
  """Processes a mono stream in blocks, carrying the model's state.

    streamer = Streamer(model, params)
    for block in blocks:            # [block_size] float32
      out = streamer.process(block)  # [block_size]

  Knob values (conditioning channels) may change between blocks: pass
  `knobs` [channels - 1] to `process`.

  Each call is one jitted step (compiled once per block size) around
  `model.apply(params, x, state)`; its fixed cost is mostly JAX's dispatch,
  so the step takes one argument. The carried state lives on the host, in
  one reused numpy buffer laid out `[block, knobs, flat state]`: a call
  writes the block into the head, runs the step on the whole buffer (the
  step slices, unravels and broadcasts inside), and copies the new flat
  state from the step's one output `[y, flat state]` back into the tail.
  Small models' parameters are constants of the step. Measured on one
  pinned thread of the quiet 2-core CPU, LSTM-32, 64-sample blocks, inline
  dispatch (`realtime()`): 27.7-28.2 us per `process` call, against
  31.2-31.9 us with the state kept on the device and donated to the step
  (benchmarks/README.md). With JAX's async dispatch a call may return
  before the step has read its input (which may alias the numpy buffer),
  so there the buffer is copied before each call.
  """

  def __init__(self, model, params):
    self.model = model
    self.params = params
    flat, self._unravel = jax.flatten_util.ravel_pytree(
        model.initial_state(1))
    if flat.dtype not in (jnp.float32, jnp.complex64):
      raise ValueError(
          f"Streamer carries float32 or complex64 states; this model's "
          f"flattened state is {flat.dtype}. Cast the model's state to "
          "float32 (or complex64) in its initial_state and apply.")
    self._complex = flat.dtype == jnp.complex64
    # The state as float32 numbers (a complex state interleaved re, im).
    self._state_size = flat.size * (2 if self._complex else 1)
    self._constant = sum(p.size for p in jax.tree.leaves(params)) <= (
        _CONSTANT_PARAMS_MAX)
    self._steps = {}  # (block size, knobs) -> jitted step
    self._key = self._step = None  # the current layout's
    self._head = 0  # block + knob numbers in front of the state
    self._buf = np.zeros(self._state_size, np.float32)
    self._copy = not inline_dispatch()

  def _make_step(self, size, n_knobs):
    model, unravel, head = self.model, self._unravel, size + n_knobs
    is_complex = self._complex

    def step(params, z):
      x = z[:size].reshape(1, size, 1)
      if n_knobs:
        knobs = jnp.broadcast_to(z[size:head], (1, size, n_knobs))
        x = jnp.concatenate([x, knobs], axis=-1)
      y, state = model.apply(params, x,
                             unravel(_from_float32(z[head:], is_complex)))
      flat = _to_float32(jax.flatten_util.ravel_pytree(state)[0])
      return jnp.concatenate([y.reshape(-1), flat])

    if self._constant:
      return jax.jit(functools.partial(step, self.params))
    return functools.partial(jax.jit(step), self.params)

  def reset(self):
    """Back to the initial state (silence before the first block)."""
    self._buf[self._head:] = 0

  @property
  def state(self):
    """The carried state, in the model's own pytree form."""
    return self._unravel(_from_float32(jnp.asarray(self._buf[self._head:]),
                                       self._complex))

  @state.setter
  def state(self, value):
    flat = np.asarray(_to_float32(jax.flatten_util.ravel_pytree(value)[0]))
    if flat.size != self._state_size:
      raise ValueError(
          f"state has {flat.size} numbers once flattened; this model "
          f"carries {self._state_size} (use model.initial_state(1)'s "
          "structure, batch 1).")
    self._buf[self._head:] = flat

  def process(self, block, knobs=None) -> np.ndarray:
    """block: [time] float32 -> output [time] float32 (numpy)."""
    # numpy, not jnp: every jnp op on the host side is one more dispatch.
    x = np.asarray(block, np.float32)
    if x.ndim != 1:
      x = x.reshape(-1)
    size = x.shape[0]
    n_knobs = 0 if knobs is None else len(knobs)
    if (size, n_knobs) != self._key:  # a new block size: a new buffer
      self._set_layout(size, n_knobs)
    buf = self._buf
    buf[:size] = x
    if n_knobs:
      buf[size:self._head] = knobs
    out = np.asarray(self._step(buf.copy() if self._copy else buf))
    buf[self._head:] = out[size:]
    return out[:size]

  def _set_layout(self, size, n_knobs):
    key = (size, n_knobs)
    if key not in self._steps:
      self._steps[key] = self._make_step(size, n_knobs)
    head = size + n_knobs
    if head != self._head:
      buf = np.empty(head + self._state_size, np.float32)
      buf[head:] = self._buf[self._head:]
      self._buf, self._head = buf, head
    self._key, self._step = key, self._steps[key]


def _to_float32(flat):
  """A flat float32 or complex64 state as float32 numbers (complex: re, im
  interleaved), the form the host buffer holds."""
  if jnp.iscomplexobj(flat):
    flat = jnp.stack([flat.real, flat.imag], axis=-1).reshape(-1)
  return flat.astype(jnp.float32)


def _from_float32(flat, is_complex):
  """`_to_float32` undone."""
  return jax.lax.complex(flat[0::2], flat[1::2]) if is_complex else flat


def inline_dispatch() -> bool:
  """Whether JAX runs on the CPU with inline dispatch (`realtime()`), so a
  step has finished reading its input when its output is ready."""
  if _realtime is False or jax.default_backend() != "cpu":
    return False
  return not jax.config.read("jax_cpu_enable_async_dispatch")


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
  streamer = streamer or Streamer(model, params)
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
                "real-time host runs and experiments/bench.py measures")
IN_PROCESS_METHOD = ("in the calling process, its threads and dispatch as "
                     "they were: not how a real-time host runs (slower than "
                     "experiments/bench.py's figures)")
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
  inline = realtime()
  xla_flags = os.environ.get("XLA_FLAGS", "")
  return {"pinned_cpus": cpus, "xla_flags": xla_flags,
          "one_xla_thread": all(f in xla_flags.split()
                                for f in ONE_THREAD_XLA_FLAGS.split()),
          "inline_dispatch": bool(inline and inline_dispatch()),
          "backend": jax.default_backend()}


def measure_best(model, params, block_size: int, sample_rate: int = 44100,
                 seconds: float = SECONDS, max_blocks: int = MAX_BLOCKS,
                 repeats: int = REPEATS, channels: int = 1,
                 budget_s=None) -> dict:
  """The fastest of `repeats` `measure` runs at one block size (a shared
  machine's load only ever slows a run down). budget_s: no more runs once
  those so far took this long (a slow model; None: always `repeats`). The
  row's `repeats` says how many ran."""
  streamer, rows = Streamer(model, params), []  # one compile for all runs
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
  a real-time host runs: a child (`python -m emu.stream`) on the CPU with
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
  path = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
          os.environ.get("PYTHONPATH", "")]  # emu from a source checkout
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=ONE_THREAD_XLA_FLAGS,
             PYTHONPATH=os.pathsep.join(p for p in path if p))
  argv = [sys.executable, "-m", "emu.stream", f"--workdir={workdir}",
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
  model, params, _ = workdir_lib.load_params(fl.workdir, fl.which)
  info = workdir_lib.dataset_info(fl.workdir)
  rows = [measure_best(model, params, int(block),
                       sample_rate=int(info["sample_rate"]),
                       seconds=fl.seconds, max_blocks=fl.max_blocks,
                       repeats=fl.repeats, channels=info.get("channels", 1),
                       budget_s=fl.budget_s or None)
          for block in fl.blocks]
  with open(fl.out, "w") as f:
    json.dump({"settings": settings, "rows": rows, "parameters": int(
        sum(np.size(p) for p in jax.tree.leaves(params)))}, f)
  return 0


if __name__ == "__main__":
  # `python -m emu.stream` runs a copy of this file as __main__: work in
  # emu.stream itself, whose realtime() the Streamer reads.
  from emu import cli  # pylint: disable=g-import-not-at-top
  from emu import stream as _stream  # pylint: disable=g-import-not-at-top
  _stream._define_flags()  # pylint: disable=protected-access
  cli.run_main(_stream.main)
