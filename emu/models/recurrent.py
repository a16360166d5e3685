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
    silent_rest: the zero state is the model's rest, so silence in gives
      exactly silence out (audio-only input): the biases that would move the
      state or the output on silence are held at 0 (`silenced`; they start
      at 0 and get no gradient, so exported weights hold 0 there). Without
      it the state settles from zero to a rest point of its own, a start-up
      transient and a DC offset on silence (report.json's idle_output),
      which also swamps a level-balanced loss (`esr_level`) on quiet clips.
      With knob channels the rest depends on the knobs.
  """
  hidden_size: int = 32
  num_layers: int = 1
  skip: bool = True
  unroll: int = 1
  silent_rest: bool = False

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

  def _rest_masks(self):
    """A 0/1 numpy mask per parameter of a layer (None: left as is) that
    keeps the zero state still on silent input (`silent_rest`)."""
    raise NotImplementedError

  def silenced(self, layers, b_out):
    """(layers, b_out) with the biases `silent_rest` holds at 0 zeroed.

    A product with a constant 0 rather than a new parameter layout, so the
    parameters (and every export of them) keep their shapes; those entries
    get a zero gradient and stay at their initial 0.
    """
    masks = self._rest_masks()
    layers = [tuple(p if m is None else p * m for p, m in zip(layer, masks))
              for layer in layers]
    return layers, jnp.zeros_like(b_out)

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
    """(y [batch, time, 1], state after the last sample) of the stack run
    over a block x [batch, time, channels] from `state` (None: the
    initial state): the model contract (emu.models)."""
    if state is None:
      state = self.initial_state(x.shape[0])
    layers = [
        self._layer_params(k, x.shape[-1] if k == 0 else self.hidden_size)
        for k in range(self.num_layers)]
    bound = 0.1 / math.sqrt(self.hidden_size)  # small: start near identity
    w_out = self.param("w_out", _uniform(bound), (self.hidden_size, 1))
    b_out = self.param("b_out", nn.initializers.zeros, (1,))
    if self.silent_rest:
      layers, b_out = self.silenced(layers, b_out)

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
      bias = uniform(key, shape, dtype).at[hsz:2 * hsz].set(self.forget_bias)
      return bias * self._rest_masks()[2] if self.silent_rest else bias

    w_ih = self.param(f"w_ih_{k}", uniform, (in_features, 4 * hsz))
    w_hh = self.param(f"w_hh_{k}", _gate_orthogonal(4), (hsz, 4 * hsz))
    bias = self.param(f"bias_{k}", bias_init, (4 * hsz,))
    return w_ih, w_hh, bias

  def _rest_masks(self):
    # The candidate g's bias: with it 0, h = 0 and c = 0 give g = 0, so c
    # and h stay 0 whatever the gates' own biases (they set the rest's
    # time constants, which the small-signal response needs).
    return None, None, silent_rest_mask(self.hidden_size, 4, 2)

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


def silent_rest_mask(hidden_size, num_gates, candidate):
  """[num_gates * H] float32 ones, zeros on gate block `candidate`."""
  mask = np.ones((num_gates, hidden_size), np.float32)
  mask[candidate] = 0.0
  return mask.reshape(-1)


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
    mask = self._rest_masks()[2] if self.silent_rest else 1.0

    def bias_init(key, shape, dtype=jnp.float32):
      return uniform(key, shape, dtype) * mask

    w_ih = self.param(f"w_ih_{k}", uniform, (in_features, 3 * hsz))
    w_hh = self.param(f"w_hh_{k}", _gate_orthogonal(3), (hsz, 3 * hsz))
    b_ih = self.param(f"b_ih_{k}", bias_init, (3 * hsz,))
    b_hh = self.param(f"b_hh_{k}", bias_init, (3 * hsz,))
    return w_ih, w_hh, b_ih, b_hh

  def _rest_masks(self):
    # The candidate n's biases b_in and b_hn: with them 0, h = 0 gives
    # n = 0 and h stays 0.
    mask = silent_rest_mask(self.hidden_size, 3, 2)
    return None, None, mask, mask

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
