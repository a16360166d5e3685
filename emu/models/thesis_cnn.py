"""The thesis's dilated CNN (section 3.1.3): a window of K samples -> one.

  for group g = 0 .. groups-1 (filters and kernel halve, the rest doubles):
    conv(filters >> g, kernel >> g, stride 2**g), tanh
    conv(filters >> g, kernel >> g, dilation 2**g), tanh
    max pool(size 2**g, stride 2**g)
  flatten; dense 8, tanh; dense 4, tanh; dense 2, tanh; dense 1
  y = that + the window's last input sample

Padding. With VALID layers the thesis's own setting (K = 1024, 128 filters,
kernel 128, 4 groups) shrinks to nothing in group 3, so every layer is
"right-aligned causal": its last output ends exactly at its last input, and
the front of the window is padded with zeros (the window's unseen past as
silence; -inf for max pooling), giving ceil(length / stride) outputs. K = 1024
then maps 1024 -> 1024 -> 256 -> 16 -> 1 sample(s) of 16 filters.

Over a sequence the model slides its window one sample at a time; the state is
the last K - 1 input samples.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from emu.models import common

# Windows evaluated per chunk of a sequence: bounds memory to about
# 256 * K * filters activations (134 MB at the thesis's setting).
_WINDOWS_PER_CHUNK = 256


def layer_plan(window, filters, kernel_size, groups):
  """The layers and their output lengths, checking that each is possible.

  Returns:
    A list of (name, features, kernel, stride, dilation, out_length), three
    per group g = 1, 2, ...: 'group{g}_strided', 'group{g}_dilated' (convs)
    and 'group{g}_pool' (features, kernel and dilation None); lengths in
    samples of that layer's time axis.

  Raises:
    ValueError: naming the hyperparameter to change when a group would have
      no filters or no kernel taps, or the window is empty.
  """
  if window < 1:
    raise ValueError(f"window must be >= 1 sample, got {window}")
  plan, length = [], window
  for g in range(groups):
    f, k, step = filters >> g, kernel_size >> g, 2 ** g
    if f < 1 or k < 1:
      raise ValueError(
          f"group {g + 1} of {groups} would have {f} filters and kernel size "
          f"{k} (each halves per group): reduce groups or raise filters "
          f"(now {filters}) and kernel_size (now {kernel_size}) to at least "
          f"{2 ** (groups - 1)}")
    length = -(-length // step)
    plan.append((f"group{g + 1}_strided", f, k, step, 1, length))
    plan.append((f"group{g + 1}_dilated", f, k, 1, step, length))
    length = -(-length // step)
    plan.append((f"group{g + 1}_pool", None, None, step, None, length))
  return plan


def _right_align(x, needed, fill=0.0):
  """Pads (or crops) the front of x's time axis to `needed` samples."""
  extra = needed - x.shape[1]
  if extra < 0:
    return x[:, -extra:]
  return jnp.pad(x, ((0, 0), (extra, 0), (0, 0)), constant_values=fill)


class _WindowNet(nn.Module):
  """windows [n, K, C] -> [n, 1], the CNN before the skip connection."""
  window: int
  filters: int
  kernel_size: int
  groups: int

  @nn.compact
  def __call__(self, windows):
    h = windows
    plan = layer_plan(self.window, self.filters, self.kernel_size,
                      self.groups)
    for name, features, kernel, stride, dilation, length in plan:
      if name.endswith("pool"):
        h = _right_align(h, length * stride, fill=-jnp.inf)
        h = h.reshape(h.shape[0], length, stride, h.shape[-1]).max(axis=2)
        continue
      w = self.param(f"{name}_kernel", nn.initializers.lecun_normal(),
                     (kernel, h.shape[-1], features))
      b = self.param(f"{name}_bias", nn.initializers.zeros, (features,))
      needed = (length - 1) * stride + (kernel - 1) * dilation + 1
      h = common.conv1d(_right_align(h, needed), w, stride, dilation) + b
      h = jnp.tanh(h)
    h = h.reshape(h.shape[0], -1)
    for i, features in enumerate((8, 4, 2)):
      h = jnp.tanh(nn.Dense(features, name=f"dense_{i}")(h))
    return nn.Dense(1, name="dense_3")(h)


class ThesisCNN(nn.Module):
  """The thesis CNN under the causal, stateful model contract.

  Attributes:
    window: K, input samples per output (the receptive field).
    filters: filters of group 1; halved per group.
    kernel_size: taps of group 1's convolutions; halved per group.
    groups: (strided conv, dilated conv, pool) groups; stride, dilation and
      pool size are 2**g in group g = 0, 1, ...
    input_channels: channels of x (audio + conditioning). Needed up front,
      unlike in the other models, because the state holds raw input samples.

  Parameters, one input channel, the thesis's setting (K = 1024, 128, 128,
  4 groups): 3,011,225, of which group 1's second convolution holds
  2,097,280. Cost: about 2.6 G multiply-adds per output sample at that
  setting, so it is a model for the thesis's window-mode experiments, not
  for streaming.

  State: [batch, K - 1, input_channels], the last K - 1 input samples.
  """
  window: int = 1024
  filters: int = 128
  kernel_size: int = 128
  groups: int = 4
  input_channels: int = 1

  def setup(self):
    # Shared by __call__ and predict_last, so that params from init(key, x)
    # serve both.
    self.net = _WindowNet(self.window, self.filters, self.kernel_size,
                          self.groups)

  @property
  def receptive_field(self):
    """Input samples that reach one output: the window."""
    return self.window

  def initial_state(self, batch):
    """K - 1 samples of silence on every channel."""
    return jnp.zeros((batch, self.window - 1, self.input_channels),
                     jnp.float32)

  def _check_channels(self, x):
    if x.shape[-1] != self.input_channels:
      raise ValueError(
          f"ThesisCNN(input_channels={self.input_channels}) got input with "
          f"{x.shape[-1]} channels; create it with "
          f"input_channels={x.shape[-1]}")

  def predict_last(self, windows):
    """Window mode: windows [n, K, C] -> y at each window's last sample [n, 1].

    Equals the last output of `__call__` on the window from the zero state.
    """
    self._check_channels(windows)
    if windows.shape[1] != self.window:
      raise ValueError(
          f"windows have {windows.shape[1]} samples, the model takes "
          f"window={self.window}")
    return self.net(windows) + windows[:, -1, :1]

  def __call__(self, x, state=None):
    """Slides the window over a block.

    Args:
      x: [batch, time, channels] float32; channel 0 is the audio.
      state: [batch, K - 1, channels], the preceding samples, or None for
        silence.

    Returns:
      y [batch, time, 1], y[t] = predict_last(the K samples ending at t),
      and the new state.
    """
    self._check_channels(x)
    batch, time, channels = x.shape
    if state is None:
      state = self.initial_state(batch)
    k = self.window
    history = jnp.concatenate([state, x], axis=1)  # [batch, K - 1 + time, C]
    new_state = history[:, time:]
    chunk = max(1, min(time, _WINDOWS_PER_CHUNK // batch))
    num_chunks = -(-time // chunk)
    history = jnp.pad(history, ((0, 0), (0, num_chunks * chunk - time), (0, 0)))
    # offsets[i, j]: sample j of the window ending at the chunk's i-th output.
    offsets = jnp.arange(chunk)[:, None] + jnp.arange(k)[None, :]

    def one_chunk(module, carry, start):
      span = jax.lax.dynamic_slice_in_dim(history, start, chunk + k - 1, 1)
      windows = span[:, offsets].reshape(batch * chunk, k, channels)
      return carry, module.predict_last(windows).reshape(batch, chunk)

    # A lifted scan over chunks (a bounded-memory map), sharing the params.
    scan = nn.scan(one_chunk, variable_broadcast="params",
                   split_rngs={"params": False})
    _, y = scan(self, None, jnp.arange(num_chunks) * chunk)
    y = jnp.swapaxes(y, 0, 1).reshape(batch, num_chunks * chunk)
    return y[:, :time, None], new_state

