"""LSTM and GRU sequence models (thesis sections 2.4, 2.5, 3.1.1).

Both follow the model contract of `emu.models`: x [batch, time, channels] ->
y [batch, time, 1], with the state carried between calls.

Speed is the point of this module. On CPU a time step costs little arithmetic
(H = 32: one [batch, 32] x [32, 128] matmul) and a fixed overhead per XLA
kernel, so the step is written to compile into few kernels:

- one `lax.scan` over time runs the whole stack and the output head (batched
  path; one short stream: `_lstm_forward_one`), so the
  loop stores y_t ([batch, 1]) rather than h_t, and there is one loop per
  call rather than one per layer;
- the input projection x_t @ w_ih + b is computed inside the step. With one or
  two input channels XLA fuses it into the gate kernel; computing it for all
  steps up front, as the usual recipe has it, writes a [time, batch, 4H]
  array to memory and was 2-3x slower here (batch 1: 910 vs 340 ns/step;
  batch 32 training: 365k vs 400k samples/s);
- every sigmoid is written as tanh(v / 2) / 2 + 1 / 2, and the LSTM applies
  one tanh to all 4H gates at once: with four separate activations a step
  took ~790 ns, with one ~300 ns (one CPU thread, H = 32).

Measured on one thread of a shared 2-core CPU (jax 0.10.2), LSTM H = 32: 10 s
of 44.1 kHz audio in one call runs ~78x faster than real time. One stream
in short blocks (streaming) takes `_lstm_forward_one`, which stores h_t and
applies the head after the loop: 64-sample blocks through
`emu.stream.Streamer` ~50x (benchmarks/README.md). `unroll` > 1 made
every case slower on XLA:CPU (a larger loop body is scheduled differently),
so keep it 1 on CPU.

Parameters use the PyTorch layout transposed to [in, out] (for x @ w), so
weights export to PyTorch, Neural Amp Modeler and RTNeural by a transpose.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _uniform(bound):
  """uniform(-bound, bound); bound = 1/sqrt(H) is PyTorch's RNN init."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _gate_orthogonal(num_gates):
  """Orthogonal [H, H] block per gate, concatenated to [H, num_gates * H].

  An orthogonal recurrent matrix neither grows nor shrinks h on its own, which
  keeps gradients alive over the thousands of steps audio needs.
  """
  def init(key, shape, dtype=jnp.float32):
    hidden = shape[0]
    keys = jax.random.split(key, num_gates)
    blocks = [nn.initializers.orthogonal()(k, (hidden, hidden), dtype)
              for k in keys]
    return jnp.concatenate(blocks, axis=1)
  return init


def _lstm_gate_affine(hidden_size):
  """scale, offset [4H] with tanh(v * scale) * scale + offset equal to
  sigmoid(v) on the i, f, o gates and tanh(v) on g.

  Built with numpy so they enter the trace as literal constants; built with
  jnp, the concatenation was fused into the loop body and halved its speed.
  """
  half, one = np.full(hidden_size, 0.5), np.ones(hidden_size)
  scale = np.concatenate([half, half, one, half]).astype(np.float32)
  offset = np.concatenate([half, half, 0 * one, half]).astype(np.float32)
  return scale, offset


class _Recurrent(nn.Module):
  """Stack of recurrent layers and a linear head; subclasses supply the cell.

  Attributes:
    hidden_size: H, units per layer.
    num_layers: stacked layers; layer k reads layer k-1's h at the same step.
    skip: add the input audio x[..., :1] to the output (Wright et al. 2019),
      so the network learns only what the effect changes.
    unroll: time steps per `lax.scan` iteration (compile time and code size
      for loop overhead); 1 was fastest on CPU, see the module docstring.
  """
  hidden_size: int = 32
  num_layers: int = 1
  skip: bool = True
  unroll: int = 1

  @property
  def receptive_field(self):
    """Samples of past input that can affect an output: unbounded (IIR)."""
    return math.inf

  def _zero_layer_state(self, batch):
    raise NotImplementedError

  def initial_state(self, batch):
    """Zero state: a tuple over layers of the cell's state, each [batch, H]."""
    return tuple(self._zero_layer_state(batch)
                 for _ in range(self.num_layers))

  def _layer_params(self, k, in_features):
    raise NotImplementedError

  def _cell(self, params, carry, x_t):
    """One step of one layer: carry, x_t [batch, in] -> carry, h [batch, H]."""
    raise NotImplementedError

  def _sequence(self, layers, w_out, b_out, state, x):
    """The stack and head over time-major x [time, batch, in]: one scan.

    Returns y [time, batch, 1] and the state after the last step.
    """
    def step(state, x_t):
      new_state = []
      h = x_t
      for params, carry in zip(layers, state):
        carry, h = self._cell(params, carry, h)
        new_state.append(carry)
      return tuple(new_state), h @ w_out + b_out

    state, y = jax.lax.scan(step, state, x, unroll=self.unroll)
    return y, state

  @nn.compact
  def __call__(self, x, state=None):
    """Runs the stack over a block of samples.

    Args:
      x: [batch, time, channels] float32; channel 0 is the audio.
      state: as `initial_state(batch)`, or None for that.

    Returns:
      y [batch, time, 1], and the state after the last sample.
    """
    if state is None:
      state = self.initial_state(x.shape[0])
    layers = [
        self._layer_params(k, x.shape[-1] if k == 0 else self.hidden_size)
        for k in range(self.num_layers)]
    bound = 0.1 / math.sqrt(self.hidden_size)  # small: start near identity
    w_out = self.param("w_out", _uniform(bound), (self.hidden_size, 1))
    b_out = self.param("b_out", nn.initializers.zeros, (1,))

    # Time-major, so the scan slices the leading axis.
    y, state = self._sequence(layers, w_out, b_out, tuple(state),
                              jnp.swapaxes(x, 0, 1))
    y = jnp.swapaxes(y, 0, 1)
    if self.skip:
      y = y + x[..., :1]
    return y, state


class LSTM(_Recurrent):
  """Stacked LSTM, gates in PyTorch order i, f, g, o (no peepholes).

    i, f, g, o = split(x @ w_ih + h @ w_hh + bias)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c')

  Parameters per layer k: `w_ih_k` [in, 4H], `w_hh_k` [H, 4H], `bias_k` [4H];
  then `w_out` [H, 1], `b_out` [1]. One layer, one input channel, H = 32:
  4*32*(1 + 32) + 4*32 + 32 + 1 = 4,385 parameters. Neural Amp Modeler's
  LSTM 1x32 counts 4,577 = 4,385 + 128 (PyTorch keeps b_ih and b_hh apart;
  export here as b_ih = bias, b_hh = 0) + 64 (NAM learns the initial (h, c);
  here it is zero).

  State: tuple over layers of (h, c), each [batch, H].

  Attributes (besides those of `_Recurrent`):
    forget_bias: initial forget-gate bias; 1.0 makes the cell remember by
      default (Jozefowicz et al. 2015). The other biases and w_ih start
      PyTorch-uniform; w_hh starts orthogonal per gate.
  """
  forget_bias: float = 1.0

  def _zero_layer_state(self, batch):
    # Two arrays, not one twice, so a caller may donate the state to jit.
    shape = (batch, self.hidden_size)
    return (jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))

  def _layer_params(self, k, in_features):
    hsz = self.hidden_size
    uniform = _uniform(1.0 / math.sqrt(hsz))

    def bias_init(key, shape, dtype=jnp.float32):
      return uniform(key, shape, dtype).at[hsz:2 * hsz].set(self.forget_bias)

    w_ih = self.param(f"w_ih_{k}", uniform, (in_features, 4 * hsz))
    w_hh = self.param(f"w_hh_{k}", _gate_orthogonal(4), (hsz, 4 * hsz))
    bias = self.param(f"bias_{k}", bias_init, (4 * hsz,))
    return w_ih, w_hh, bias

  def _cell(self, params, carry, x_t):
    h, c, _, _ = _lstm_step(params, carry, x_t)
    return (h, c), h

  def _sequence(self, layers, w_out, b_out, state, x):
    if len(layers) != 1:
      return super()._sequence(layers, w_out, b_out, state, x)
    # One layer (the usual audio model): the same forward pass, with a
    # hand-written backward pass, see `_lstm_sequence`.
    (h0, c0), = state
    y, h, c = _lstm_sequence(self.unroll, tuple(layers[0]), w_out, b_out,
                             x, h0, c0)
    return y, ((h, c),)


def _lstm_step(params, carry, x_t):
  """One LSTM step: (h, c), x_t [batch, in] -> h, c, gates (activated), tanh(c).
  """
  w_ih, w_hh, bias = params
  h, c = carry
  return _lstm_update(x_t @ w_ih + bias + h @ w_hh, c)


def _lstm_update(gates, c, prescaled=False):
  """Pre-activation gates [..., 4H] and c -> h, c, act, tanh(c) (see
  `_lstm_step`; one tanh over all 4H gates, module docstring). prescaled:
  the gates already carry the scale of `_lstm_gate_affine` (folded into the
  weights)."""
  scale, offset = _lstm_gate_affine(c.shape[-1])
  act = jnp.tanh(gates if prescaled else gates * scale) * scale + offset
  i, f, g, o = jnp.split(act, 4, axis=-1)
  c = f * c + i * g
  tanh_c = jnp.tanh(c)
  return o * tanh_c, c, act, tanh_c


# One stream (batch 1) and blocks up to this many samples take
# `_lstm_forward_one`: the streaming path.
_ONE_STREAM_MAX_TIME = 4096


def _lstm_forward(unroll, layer, w_out, b_out, x, h0, c0):
  """y [time, batch, 1], h, c: the scan stores only y (see module doc)."""
  if x.shape[1] == 1 and x.shape[0] <= _ONE_STREAM_MAX_TIME:
    y, h, c = _lstm_forward_one(unroll, layer, w_out, b_out, x[:, 0],
                                h0[0], c0[0])
    return y[:, None], h[None], c[None]

  def step(carry, x_t):
    h, c, _, _ = _lstm_step(layer, carry, x_t)
    return (h, c), h @ w_out + b_out

  (h, c), y = jax.lax.scan(step, (h0, c0), x, unroll=unroll)
  return y, h, c


def _lstm_forward_one(unroll, layer, w_out, b_out, x, h0, c0):
  """`_lstm_forward` for one stream: x [time, in], h0, c0 [H] -> y [time, 1].

  The form of a streaming block (batch 1, short), in the fewest kernels per
  step: vectors rather than [1, H] rows (a [1, H] row is transposed for the
  matmul, one more kernel per step), the gate scale of `_lstm_update` folded
  into the weights (once per call, or at compile time when the weights are
  constants, as in `emu.stream.Streamer`), and the head applied to all h_t
  after the loop (a [time, H] array, small for a block). LSTM-32, 64-sample
  blocks, one pinned thread, inline dispatch: 30.3 -> 27.8 us per call.
  """
  w_ih, w_hh, bias = layer
  scale, _ = _lstm_gate_affine(h0.shape[-1])
  w_ih, w_hh, bias = w_ih * scale, w_hh * scale, bias * scale

  def step(carry, x_t):
    h, c = carry
    h, c, _, _ = _lstm_update(x_t @ w_ih + bias + h @ w_hh, c,
                              prescaled=True)
    return (h, c), h

  (h, c), hs = jax.lax.scan(step, (h0, c0), x, unroll=unroll)
  return hs @ w_out + b_out, h, c


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lstm_sequence(unroll, layer, w_out, b_out, x, h0, c0):
  """One LSTM layer and the linear head over x [time, batch, in].

  The forward pass is `_lstm_forward`. The backward pass is written by hand
  because autodiff of the scan was the training bottleneck: it accumulates
  every weight gradient inside the reverse loop (an outer product and a
  [H, 4H] read-modify-write per step). Here the reverse loop only carries
  (dh, dc) and emits the gate gradients [time, batch, 4H]; the weight
  gradients are then a few large matmuls over all steps at once, as cuDNN
  does. tests/test_lstm_vjp.py checks it against autodiff. Training step,
  H = 32, one thread of a loaded 2-core CPU, best of 2: batch 8 x 1024
  samples 769k -> 969k samples/s, 16 x 1024 860k -> 966k; no gain at
  64 x 2048 (528k -> 513k, within the noise).
  """
  return _lstm_forward(unroll, layer, w_out, b_out, x, h0, c0)


def _lstm_sequence_fwd(unroll, layer, w_out, b_out, x, h0, c0):
  def step(carry, x_t):
    h, c, act, tanh_c = _lstm_step(layer, carry, x_t)
    return (h, c), (h, c, act, tanh_c)

  (h, c), (hs, cs, acts, tanh_cs) = jax.lax.scan(step, (h0, c0), x,
                                                 unroll=unroll)
  y = hs @ w_out + b_out
  residuals = (layer, w_out, x, h0, c0, hs, cs, acts, tanh_cs)
  return (y, h, c), residuals


def _lstm_sequence_bwd(unroll, residuals, cotangents):
  layer, w_out, x, h0, c0, hs, cs, acts, tanh_cs = residuals
  dy, dh_last, dc_last = cotangents
  w_ih, w_hh, _ = layer
  hidden = h0.shape[-1]
  scale, offset = _lstm_gate_affine(hidden)
  # d act / d gates for act = tanh(v * s) * s + o: s^2 - (act - o)^2.
  scale2 = scale * scale
  c_prev = jnp.concatenate([c0[None], cs[:-1]], axis=0)
  dh_out = dy @ w_out.T  # [time, batch, H]

  def step(carry, inputs):
    dh, dc = carry
    dh_t, act, tanh_c, c_before = inputs
    dh = dh + dh_t
    i, f, g, o = jnp.split(act, 4, axis=-1)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    d_act = jnp.concatenate([dc * g, dc * c_before, dc * i, dh * tanh_c],
                            axis=-1)
    d_gates = d_act * (scale2 - jnp.square(act - offset))
    return (d_gates @ w_hh.T, dc * f), d_gates

  (dh0, dc0), d_gates = jax.lax.scan(
      step, (dh_last, dc_last), (dh_out, acts, tanh_cs, c_prev),
      reverse=True, unroll=unroll)
  h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
  d_layer = (jnp.einsum("tbi,tbg->ig", x, d_gates),
             jnp.einsum("tbh,tbg->hg", h_prev, d_gates),
             jnp.sum(d_gates, axis=(0, 1)))
  d_w_out = jnp.einsum("tbh,tbo->ho", hs, dy)
  d_b_out = jnp.sum(dy, axis=(0, 1))
  dx = d_gates @ w_ih.T
  return d_layer, d_w_out, d_b_out, dx, dh0, dc0


_lstm_sequence.defvjp(_lstm_sequence_fwd, _lstm_sequence_bwd)


class GRU(_Recurrent):
  """Stacked GRU in the PyTorch/Keras "reset after" form, gates r, z, n.

    r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)
    z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn))
    h' = (1 - z) * n + z * h

  Parameters per layer k: `w_ih_k` [in, 3H], `w_hh_k` [H, 3H], `b_ih_k` [3H],
  `b_hh_k` [3H] (b_hn cannot be folded into b_in because r scales it); then
  `w_out` [H, 1], `b_out` [1]. One layer, one input channel, H = 32:
  3*32*(1 + 32) + 2*3*32 + 32 + 1 = 3,393 parameters.

  State: tuple over layers of h, each [batch, H].
  """

  def _zero_layer_state(self, batch):
    return jnp.zeros((batch, self.hidden_size), jnp.float32)

  def _layer_params(self, k, in_features):
    hsz = self.hidden_size
    uniform = _uniform(1.0 / math.sqrt(hsz))
    w_ih = self.param(f"w_ih_{k}", uniform, (in_features, 3 * hsz))
    w_hh = self.param(f"w_hh_{k}", _gate_orthogonal(3), (hsz, 3 * hsz))
    b_ih = self.param(f"b_ih_{k}", uniform, (3 * hsz,))
    b_hh = self.param(f"b_hh_{k}", uniform, (3 * hsz,))
    return w_ih, w_hh, b_ih, b_hh

  def _cell(self, params, h, x_t):
    w_ih, w_hh, b_ih, b_hh = params
    hsz = self.hidden_size
    gates_x = x_t @ w_ih + b_ih
    gates_h = h @ w_hh + b_hh
    # r and z from one tanh over 2H, sigmoid(v) = tanh(v / 2) / 2 + 1 / 2:
    # fewer, cheaper kernels on CPU, as in the LSTM.
    rz = jnp.tanh(0.5 * (gates_x[:, :2 * hsz] + gates_h[:, :2 * hsz]))
    r, z = jnp.split(rz * 0.5 + 0.5, 2, axis=-1)
    n = jnp.tanh(gates_x[:, 2 * hsz:] + r * gates_h[:, 2 * hsz:])
    h = (1.0 - z) * n + z * h
    return h, h


# --------------------------------------------------- E members in one scan


def lstm_members(model, params, x, state):
  """E one-layer LSTMs (an ensemble's members) on the same input, in one scan.

  The members share `model`'s hyperparameters and x, and have their own
  weights: the cell carries the member axis itself (one batched matmul and
  one fused activation per step for all E). `jax.vmap` of the one-member
  `_lstm_sequence` stored every step's activations of all E (28 MB per
  1,024 steps at E = 4, out of cache) and copied them between member-major
  and time-major layouts; here the backward pass recomputes the forward in
  chunks that stay in cache, see `_members_sequence`. tests/test_ensemble.py
  checks it against each member run alone and against autodiff.

  Args:
    model: the member, an `LSTM` with num_layers == 1.
    params: the member's parameters with a leading axis E on every leaf.
    x: [batch, time, channels], shared by every member.
    state: `model.initial_state(batch)` with a leading axis E: ((h, c),),
      each [E, batch, H].

  Returns:
    y [E, batch, time, 1] and the state after the last sample.
  """
  if not isinstance(model, LSTM) or model.num_layers != 1:
    raise ValueError("lstm_members runs one-layer LSTMs; got "
                     f"{type(model).__name__} with "
                     f"{getattr(model, 'num_layers', None)} layers")
  (h0, c0), = state
  layer = (params["w_ih_0"], params["w_hh_0"], params["bias_0"])
  chunk = _members_chunk(h0.shape[0], x.shape[0], model.hidden_size,
                         x.shape[-1])
  y, h, c = _members_sequence(model.unroll, chunk, layer, params["w_out"],
                              params["b_out"], jnp.swapaxes(x, 0, 1), h0, c0)
  y = jnp.transpose(y, (1, 2, 0, 3))  # -> [E, batch, time, 1]
  if model.skip:
    y = y + x[..., :1]
  return y, ((h, c),)


def _members_chunk(members, batch, hidden, channels):
  """Time steps per backward chunk: ~1 MiB of recomputed values (L2 here).

  E = 4, batch 8, H = 32 gives 16; 16 to 128 timed alike (one thread, 1,024
  steps), where storing every step instead made the gradient 2.6x slower.
  """
  per_step = 4 * members * batch * (10 * hidden + channels + 1)
  chunk = 8
  while chunk < 128 and 2 * chunk * per_step <= 2 ** 20:
    chunk *= 2
  return chunk


def _members_step(layer, carry, x_t):
  """`_lstm_step` for E members: layer leaves [E, ...], (h, c) [E, batch, H],
  x_t [batch, in] shared -> h, c, gates (activated), tanh(c)."""
  w_ih, w_hh, bias = layer
  h, c = carry
  gates = (jnp.einsum("bi,eig->ebg", x_t, w_ih) + bias[:, None]
           + jnp.einsum("ebh,ehg->ebg", h, w_hh))
  return _lstm_update(gates, c)


def _members_head(h, w_out, b_out):
  """h [E, batch, H] -> y [E, batch, 1]."""
  return jnp.einsum("ebh,eho->ebo", h, w_out) + b_out[:, None]


def _chunks(time, chunk):
  """(chunk length C, leading remainder r, chunk count n): time = r + n C."""
  chunk = max(1, min(chunk, time))
  rest = time % chunk
  return chunk, rest, (time - rest) // chunk


def _members_forward(unroll, layer, w_out, b_out, x, h0, c0):
  """y [time, E, batch, 1], h, c: one scan that stores only y."""
  def step(carry, x_t):
    h, c, _, _ = _members_step(layer, carry, x_t)
    return (h, c), _members_head(h, w_out, b_out)

  (h, c), y = jax.lax.scan(step, (h0, c0), x, unroll=unroll)
  return y, h, c


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _members_sequence(unroll, chunk, layer, w_out, b_out, x, h0, c0):
  """E LSTM layers and heads over x [time, batch, in]: `_members_forward`.

  The backward pass is `_lstm_sequence`'s (the reverse loop carries only
  (dh, dc); weight gradients are matmuls over many steps at once) with the
  memory of E members in mind: the forward pass keeps (h, c) at the start
  of every `chunk` steps and nothing else; the backward pass recomputes one
  chunk's activations at a time into buffers that stay in cache, runs the
  reverse loop over it, and adds the chunk's weight gradients with one
  batched matmul [E, H + in + 1, steps x batch] x [E, steps x batch, 4H]
  (rows h_{t-1}, x_t and 1: w_hh, w_ih and the bias at once). Storing every
  step's activations instead, as `_lstm_sequence` does, left E = 4
  memory-bound (28 MB per 1,024 steps, out of cache): its gradient cost
  5.5x one member's, the chunked one 2.2-2.5x, although it runs the
  forward pass twice (one thread of the shared 2-core CPU, batch 8, H = 32).
  """
  return _members_forward(unroll, layer, w_out, b_out, x, h0, c0)


def _members_sequence_fwd(unroll, chunk, layer, w_out, b_out, x, h0, c0):
  def step(carry, x_t):
    h, c, _, _ = _members_step(layer, carry, x_t)
    return (h, c), _members_head(h, w_out, b_out)

  def run_chunk(carry, x_chunk):
    end, y = jax.lax.scan(step, carry, x_chunk, unroll=unroll)
    return end, (carry, y)

  length, rest, count = _chunks(x.shape[0], chunk)
  (h, c), y_rest = jax.lax.scan(step, (h0, c0), x[:rest], unroll=unroll)
  (h, c), (starts, y) = jax.lax.scan(
      run_chunk, (h, c), x[rest:].reshape((count, length) + x.shape[1:]))
  y = jnp.concatenate([y_rest, y.reshape((-1,) + y.shape[2:])], axis=0)
  return (y, h, c), (layer, w_out, x, h0, c0, starts, h)


def _members_sequence_bwd(unroll, chunk, residuals, cotangents):
  layer, w_out, x, h0, c0, starts, h_last = residuals
  dy, dh_last, dc_last = cotangents
  w_ih, w_hh, _ = layer
  members, batch, hidden = h0.shape
  channels = x.shape[-1]
  rows, gates = hidden + channels + 1, 4 * hidden
  length, rest, count = _chunks(x.shape[0], chunk)
  scale, offset = _lstm_gate_affine(hidden)
  scale2 = scale * scale
  w_hh_t = jnp.swapaxes(w_hh, 1, 2)
  # The recompute stores h_{t-1} at step t, so w_out's gradient, the sum of
  # h_t dy_t, pairs it with dy_{t-1}; the last step's term comes at the end.
  dy_before = jnp.concatenate([jnp.zeros_like(dy[:1]), dy[:-1]], axis=0)
  ones = jnp.ones((members, 1, batch), x.dtype)

  def buffers(steps):
    """One chunk's values, filled anew by every chunk: z_t = [h_{t-1}; x_t;
    1] (rows first, as the weight matmul reads it), d gates / d [dc, dc, dc,
    dh], o (1 - tanh^2 c) (d c_t / d c_t through h), f, and d gates."""
    return (jnp.zeros((members, rows, steps, batch), x.dtype),
            jnp.zeros((steps, members, batch, gates), x.dtype),
            jnp.zeros((steps, members, batch, hidden), x.dtype),
            jnp.zeros((steps, members, batch, hidden), x.dtype),
            jnp.zeros((members, steps, batch, gates), x.dtype))

  def chunk_bwd(carry, inputs):
    dh, dc, d_weights, d_w_out, bufs = carry
    h_start, c_start, x_chunk, dy_chunk, dy_before_chunk = inputs
    steps = x_chunk.shape[0]

    def recompute(carry, inputs):
      h, c, (zs, gate_factor, out_factor, forget, d_gates) = carry
      t, x_t = inputs
      h_new, c_new, act, tanh_c = _members_step(layer, (h, c), x_t)
      i, f, g, o = jnp.split(act, 4, axis=-1)
      z = jnp.concatenate(
          [jnp.swapaxes(h, 1, 2),
           jnp.broadcast_to(x_t.T[None], (members, channels, batch)), ones],
          axis=1)
      # d act / d gates for act = tanh(v * s) * s + o: s^2 - (act - o)^2.
      factor = (jnp.concatenate([g, c, i, tanh_c], axis=-1)
                * (scale2 - jnp.square(act - offset)))
      update = jax.lax.dynamic_update_index_in_dim
      bufs = (update(zs, z, t, axis=2),
              update(gate_factor, factor, t, axis=0),
              update(out_factor, o * (1.0 - tanh_c * tanh_c), t, axis=0),
              update(forget, f, t, axis=0), d_gates)
      return (h_new, c_new, bufs), None

    (_, _, bufs), _ = jax.lax.scan(recompute, (h_start, c_start, bufs),
                                   (jnp.arange(steps), x_chunk),
                                   unroll=unroll)
    zs, gate_factor, out_factor, forget, d_gates = bufs

    def step(carry, inputs):
      dh, dc, d_gates = carry
      t, dy_t = inputs
      dh = dh + jnp.einsum("ebo,eho->ebh", dy_t, w_out)
      dc = dc + dh * out_factor[t]
      d_gate = (jnp.concatenate([dc, dc, dc, dh], axis=-1)
                * gate_factor[t])
      d_gates = jax.lax.dynamic_update_index_in_dim(d_gates, d_gate, t,
                                                    axis=1)
      return (jnp.einsum("ebg,egh->ebh", d_gate, w_hh_t),
              dc * forget[t], d_gates), None

    (dh, dc, d_gates), _ = jax.lax.scan(
        step, (dh, dc, d_gates), (jnp.arange(steps), dy_chunk),
        reverse=True, unroll=unroll)
    # w_hh, w_ih and bias at once: [E, rows, steps x batch] @ [E, ..., 4H].
    d_weights = d_weights + jnp.matmul(
        zs.reshape(members, rows, steps * batch),
        d_gates.reshape(members, steps * batch, gates))
    d_w_out = d_w_out + jnp.einsum("ehcb,cebo->eho", zs[:, :hidden],
                                   dy_before_chunk)
    dx = jnp.einsum("ecbg,eig->cbi", d_gates, w_ih)
    bufs = (zs, gate_factor, out_factor, forget, d_gates)
    return (dh, dc, d_weights, d_w_out, bufs), dx

  def chunked(a):
    return a[rest:].reshape((count, length) + a.shape[1:])

  carry = (dh_last, dc_last, jnp.zeros((members, rows, gates), x.dtype),
           jnp.zeros_like(w_out), buffers(length))
  carry, dx = jax.lax.scan(
      chunk_bwd, carry,
      (starts[0], starts[1], chunked(x), chunked(dy), chunked(dy_before)),
      reverse=True)
  dx = dx.reshape((-1,) + x.shape[1:])
  if rest:  # the leading steps before the first full chunk
    carry, dx_rest = chunk_bwd(
        carry[:4] + (buffers(rest),),
        (h0, c0, x[:rest], dy[:rest], dy_before[:rest]))
    dx = jnp.concatenate([dx_rest, dx], axis=0)
  dh0, dc0, d_weights, d_w_out, _ = carry
  d_layer = (d_weights[:, hidden:hidden + channels],
             d_weights[:, :hidden],
             d_weights[:, hidden + channels])
  d_w_out = d_w_out + jnp.einsum("ebh,ebo->eho", h_last, dy[-1])
  d_b_out = jnp.sum(dy, axis=(0, 2))
  return d_layer, d_w_out, d_b_out, dx, dh0, dc0


_members_sequence.defvjp(_members_sequence_fwd, _members_sequence_bwd)
