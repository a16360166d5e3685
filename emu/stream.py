"""Inference: whole signals (`make_predict`) and blocks with carried state
(`Streamer`), the way a real-time host runs them (`realtime`).

The streaming path is the model contract itself: `model.apply(params, block,
state)` jitted once per block size, the state handed from block to block. It
gives the same output as one offline call (tests check it per model).

Their speed is measured by emu.report.speed.
"""

import functools
import warnings

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np




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
  read when JAX creates its CPU client); benchmarks/bench.py's inference
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
