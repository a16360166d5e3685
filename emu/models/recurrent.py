"""LSTM and GRU sequence models (thesis sections 2.4, 2.5, 3.1.1).

Both follow the model contract of `emu.models`: x [batch, time, channels] ->
y [batch, time, 1], with the state carried between calls.

Speed is the point of this module. On CPU a time step costs little arithmetic
(H = 32: one [batch, 32] x [32, 128] matmul) and a fixed overhead per XLA
kernel, so the step is written to compile into few kernels:

- one `lax.scan` over time runs the whole stack and the output head, so the
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
of 44.1 kHz audio in one call runs ~75x faster than real time; 64-sample
blocks ~37x (~41x with params closed over and the state donated in jit; the
fixed cost per call is ~15 us); 128-sample blocks ~50x. `unroll` > 1 made
every case slower on XLA:CPU (a larger loop body is scheduled differently),
so keep it 1 on CPU.

Parameters use the PyTorch layout transposed to [in, out] (for x @ w), so
weights export to PyTorch, Neural Amp Modeler and RTNeural by a transpose.
"""

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

    def step(state, x_t):
      new_state = []
      h = x_t
      for params, carry in zip(layers, state):
        carry, h = self._cell(params, carry, h)
        new_state.append(carry)
      return tuple(new_state), h @ w_out + b_out

    # Time-major, so the scan slices the leading axis.
    state, y = jax.lax.scan(step, tuple(state), jnp.swapaxes(x, 0, 1),
                            unroll=self.unroll)
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
    w_ih, w_hh, bias = params
    h, c = carry
    gates = x_t @ w_ih + bias + h @ w_hh
    scale, offset = _lstm_gate_affine(self.hidden_size)
    i, f, g, o = jnp.split(jnp.tanh(gates * scale) * scale + offset, 4,
                           axis=-1)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), h


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
