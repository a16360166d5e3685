"""WaveNet: a stack of causal dilated convolutions (van den Oord et al. 2016).

The feed-forward counterpart of the recurrent models, in the form Neural Amp
Modeler popularised for amplifiers (Wright et al. 2019 call it a TCN):

  h = 1x1(x)                                   # input channels -> C
  for each dilation d:
    z = causal_conv(h, kernel_size, dilation d)  # C -> 2C (gated) or C
    a = tanh(z[:C]) * sigmoid(z[C:])             # or tanh(z) ungated
    skips += 1x1_skip(a);  h = h + 1x1_res(a)    # last layer: no 1x1_res
  y = 1x1_head(skips)  (+ x[..., :1] if skip)

A whole block is processed in parallel. Streaming is exact: each layer keeps
the last (kernel_size - 1) * d samples of its input as state, prepends them to
the next block and convolves VALID, which is a ring buffer in array form.

NAM's own WaveNet differs in layout (no input bias, one head path summed
from raw activations, an input mixer per layer); it is
`emu.models.nam_wavenet`, and `emu.plugins.folds.wavenet_as_nam` writes this
model in its form for `.nam` export. This model starts from zero histories;
NAM's from silence (the two differ in the first receptive field).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from emu.models import common


def _reference_dilations():
  """NAM's standard stack: 1, 2, ..., 512, twice (20 layers)."""
  return tuple(2 ** i for i in range(10)) * 2


class WaveNet(nn.Module):
  """Causal dilated convolution stack with gated activations.

  Attributes:
    channels: C, residual channels of every layer.
    kernel_size: taps of each dilated convolution.
    dilations: one layer per entry, in samples.
    gated: tanh(a) * sigmoid(b) (the convolution makes 2C channels); False
      for plain tanh (C channels).
    skip: add the input audio x[..., :1] to the output.

  Parameters (I input channels, L layers, C channels, k taps, G = 2 if gated
  else 1): input (I + 1) * C; per layer k * C * G * C + G * C (conv) and
  (C + 1) * C (skip 1x1); L - 1 residual 1x1s of (C + 1) * C (the last
  layer's would feed nothing); head C + 1. The default (I = 1): 32 +
  20 * (1,568 + 272) + 19 * 272 + 17 = 42,017.

  State: tuple over layers of [batch, (kernel_size - 1) * d, C], the layer's
  most recent inputs (zeros: silence before the first sample).
  """
  channels: int = 16
  kernel_size: int = 3
  dilations: tuple = _reference_dilations()
  gated: bool = True
  skip: bool = False

  @property
  def receptive_field(self):
    """Input samples that reach one output: 1 + sum((k - 1) * d)."""
    return 1 + sum((self.kernel_size - 1) * d for d in self.dilations)

  def initial_state(self, batch):
    """Zero input history of every layer."""
    return tuple(
        jnp.zeros((batch, (self.kernel_size - 1) * d, self.channels),
                  jnp.float32)
        for d in self.dilations)

  @nn.compact
  def __call__(self, x, state=None):
    """(y [batch, time, 1], state) of a block x [batch, time, channels]
    from `state` (None: the initial state): the model contract
    (emu.models)."""
    if state is None:
      state = self.initial_state(x.shape[0])
    width = self.channels * (2 if self.gated else 1)
    h = nn.Dense(self.channels, name="input")(x)
    skips = 0.0
    new_state = []
    last = len(self.dilations) - 1
    for i, (d, history) in enumerate(zip(self.dilations, state)):
      kernel = self.param(f"conv_{i}_kernel", nn.initializers.lecun_normal(),
                          (self.kernel_size, self.channels, width))
      bias = self.param(f"conv_{i}_bias", nn.initializers.zeros, (width,))
      padded = jnp.concatenate([history, h], axis=1)
      new_state.append(padded[:, padded.shape[1] - history.shape[1]:])
      z = common.conv1d(padded, kernel, dilation=d) + bias  # [b, time, width]
      if self.gated:
        a = jnp.tanh(z[..., :self.channels]) * jax.nn.sigmoid(
            z[..., self.channels:])
      else:
        a = jnp.tanh(z)
      skips = skips + nn.Dense(self.channels, name=f"skip_{i}")(a)
      if i < last:
        h = h + nn.Dense(self.channels, name=f"residual_{i}")(a)
    # A small head keeps the untrained output near silence (near the dry
    # signal with skip) instead of the sum of L random skip paths.
    head_init = nn.initializers.variance_scaling(0.01, "fan_in", "normal")
    y = nn.Dense(1, kernel_init=head_init, name="head")(skips)
    if self.skip:
      y = y + x[..., :1]
    return y, tuple(new_state)

