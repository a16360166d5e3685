"""Block-by-block inference with carried state, and its speed.

The streaming path is the model contract itself: `model.apply(params, block,
state)` jitted once per block size, the state handed from block to block. It
gives the same output as one offline call (tests check it per model).
"""

import functools
import time
import warnings

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np


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

  Each call is one jitted step (compiled once per block shape) whose fixed
  cost is mostly JAX's dispatch, so the step is cut to the fewest arguments:
  the block as a numpy array (reshaped inside the step), and the state
  flattened to one array that is donated (updated in place). Small models'
  parameters are constants of the step. Measured on one thread of a loaded
  2-core CPU, LSTM-32, per call: params as an argument and a (h, c) state
  31.5 us at 1-sample blocks, 52 us at 64; closed over, flat and donated 25
  us and 47 us (see benchmarks/README.md). A real-time process should also
  call `realtime()` first (inline dispatch): 64-sample blocks 48.8 -> 33.3
  us on a quiet machine.
  """

  def __init__(self, model, params):
    self.model = model
    self.params = params
    flat, self._unravel = jax.flatten_util.ravel_pytree(
        model.initial_state(1))
    # Shape and dtype (complex for a complex state, e.g. lru): a zero state
    # of another dtype would compile the step a second time.
    self._flat_zeros = (flat.shape, flat.dtype)
    constant = sum(p.size for p in jax.tree.leaves(params)) <= (
        _CONSTANT_PARAMS_MAX)
    unravel = self._unravel

    def step(params, x, flat_state):
      # x: [time] (audio only) or [time, channels]; the reshapes are free
      # inside the step and save host-side numpy calls per block.
      x = x.reshape(1, x.shape[0], -1)
      y, state = model.apply(params, x, unravel(flat_state))
      return y.reshape(-1), jax.flatten_util.ravel_pytree(state)[0]

    if constant:
      jitted = jax.jit(functools.partial(step, params), donate_argnums=1)
      self._step = jitted
    else:
      jitted = jax.jit(step, donate_argnums=2)
      self._step = functools.partial(jitted, params)
    self.reset()

  def reset(self):
    """Back to the initial state (silence before the first block)."""
    self._flat_state = jnp.zeros(*self._flat_zeros)

  @property
  def state(self):
    """The carried state, in the model's own pytree form."""
    return self._unravel(self._flat_state)

  @state.setter
  def state(self, value):
    self._flat_state = jax.flatten_util.ravel_pytree(value)[0]

  def process(self, block, knobs=None) -> np.ndarray:
    """block: [time] float32 -> output [time] float32 (numpy)."""
    # numpy, not jnp: every jnp op on the host side is one more dispatch.
    x = np.asarray(block, np.float32)
    if x.ndim != 1:
      x = x.reshape(-1)
    if knobs is not None:
      knobs = np.broadcast_to(np.asarray(knobs, np.float32),
                              (x.shape[0], len(knobs)))
      x = np.concatenate([x.reshape(-1, 1), knobs], axis=-1)
    y, self._flat_state = self._step(x, self._flat_state)
    return np.asarray(y)


def measure(model, params, block_size: int, sample_rate: int = 44100,
            seconds: float = 2.0, max_blocks: int = 4000, seed: int = 0,
            channels: int = 1) -> dict:
  """Streaming speed at one block size.

  Runs `seconds` of noise (at most `max_blocks` blocks) through
  `Streamer.process`, the path an application uses (numpy block in, numpy
  block out, state carried), waiting for each block's output before sending
  the next, as a real-time audio callback must.

  Returns:
    dict with block_size, blocks, rtf (seconds of audio per second of
    compute), us_per_sample, block_ms_mean and block_ms_p99 (compute time
    per block), and buffer_ms (the block's own length: the latency a block
    adds before any compute).
  """
  streamer = Streamer(model, params)
  blocks = max(1, min(int(seconds * sample_rate) // block_size, max_blocks))
  rng = np.random.default_rng(seed)
  audio = rng.uniform(-0.5, 0.5, (blocks, block_size)).astype(np.float32)
  knobs = (rng.uniform(0, 1, channels - 1).astype(np.float32)
           if channels > 1 else None)
  streamer.process(audio[0], knobs)  # compile
  streamer.reset()
  times = np.empty(blocks)
  for i in range(blocks):
    start = time.perf_counter()
    streamer.process(audio[i], knobs)
    times[i] = time.perf_counter() - start
  total = float(times.sum())
  n = blocks * block_size
  return {
      "block_size": block_size,
      "blocks": blocks,
      "rtf": n / sample_rate / total,
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
