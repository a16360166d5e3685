"""Linear Recurrent Unit: a diagonal complex state-space model.

Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long
Sequences". One layer maps u [batch, time, d_in] to y [batch, time, d_out]:

  h_t = lambda * h_{t-1} + (gamma * B) u_t       h_t: [N] complex
  y_t = Re(C h_t) + D u_t

with lambda = exp(-(exp(nu_log) + NU_MIN) + i exp(theta_log)), so |lambda| <=
exp(-NU_MIN) < 1 for any parameter value, even after float32 rounding.
Because u is real, Re(C h) pairs each mode with its conjugate: one mode plus
D is any real second-order IIR filter with complex poles (a biquad),
exactly. A one-layer LRU is therefore a linear,
time-invariant filter (an EQ), with `frequency_response` to prove it.

Deeper stacks put a pointwise nonlinearity between the filters, a
Wiener-Hammerstein cascade for nonlinear effects:

  z = layer_0(x)                                   channels -> features
  z = layer_l(z + mix_l(gelu(z)))  l = 1..L-1      features -> features (1)
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from emu.models import scan

# The least decay rate per sample: |lambda| <= exp(-1e-6), a time constant of
# 1e6 samples (23 s at 44.1 kHz), far from 1 in float32 (whose spacing below
# 1 is 6e-8), where exp(-exp(nu_log)) alone would round to exactly 1.
NU_MIN = 1e-6


class LRULayer(nn.Module):
  """One diagonal complex linear recurrence with a real readout.

  Attributes:
    out_features: d_out, the readout width.
    state_size: N, complex modes.
    r_min, r_max: initial pole radii, |lambda| drawn so that |lambda|^2 is
      uniform in [r_min^2, r_max^2] (uniform on the ring).
    f_min_hz, f_max_hz, sample_rate: initial pole angles, log-spaced over
      [f_min_hz, f_max_hz] (one random point per log-frequency stratum).
    normalize: multiply B by gamma = sqrt(1 - |lambda|^2), so each mode's
      white-noise gain starts at |B|^2 whatever its radius.
    backend, unroll: see emu.models.scan.linear_recurrence.
  """
  out_features: int
  state_size: int = 4
  r_min: float = 0.9
  r_max: float = 0.99999
  f_min_hz: float = 20.
  f_max_hz: float = 20000.
  sample_rate: float = 44100.
  normalize: bool = True

  @nn.compact
  def __call__(self, u, h0, backend="associative", unroll=1):
    """u: [batch, time, d_in] float32; h0: [batch, N] complex64.

    Returns (y [batch, time, out_features] float32, h_last [batch, N]).
    """
    d_in, n, d_out = u.shape[-1], self.state_size, self.out_features
    params = {
        "nu_log": self.param("nu_log", self._nu_log_init, (n,)),
        "theta_log": self.param("theta_log", self._theta_log_init, (n,)),
        "B_re": self.param("B_re", _normal(1 / math.sqrt(2 * d_in)),
                           (d_in, n)),
        "B_im": self.param("B_im", _normal(1 / math.sqrt(2 * d_in)),
                           (d_in, n)),
        "C_re": self.param("C_re", _normal(1 / math.sqrt(n)), (n, d_out)),
        "C_im": self.param("C_im", _normal(1 / math.sqrt(n)), (n, d_out)),
        "D": self.param("D", _normal(1 / math.sqrt(d_in)), (d_in, d_out)),
    }
    lam, b, c, d = layer_coefficients(params, self.normalize)
    bu = jnp.einsum("btd,dn->btn", u.astype(jnp.complex64), b)
    h, h_last = scan.linear_recurrence(lam, bu, h0, backend, unroll)
    # Re(h @ C) without forming the complex product's imaginary part.
    y = h.real @ c.real - h.imag @ c.imag + u @ d
    return y, h_last

  def _nu_log_init(self, key, shape):
    r_squared = jax.random.uniform(
        key, shape, minval=self.r_min**2, maxval=self.r_max**2)
    return jnp.log(jnp.maximum(-0.5 * jnp.log(r_squared) - NU_MIN, 1e-30))

  def _theta_log_init(self, key, shape):
    # Stratified in log-frequency so that even a few modes span the band.
    u = (jnp.arange(shape[0]) + jax.random.uniform(key, shape)) / shape[0]
    f_hz = self.f_min_hz * (self.f_max_hz / self.f_min_hz)**u
    return jnp.log(2 * jnp.pi * f_hz / self.sample_rate)


def layer_coefficients(params, normalize=True):
  """The filter an LRULayer's parameters describe.

  Returns (lambda [N] complex64, B [d_in, N] complex64 including gamma,
  C [N, d_out] complex64, D [d_in, d_out] float32).
  """
  nu = jnp.exp(params["nu_log"]) + NU_MIN
  theta = jnp.exp(params["theta_log"])
  lam = jnp.exp(jax.lax.complex(-nu, theta))
  b = jax.lax.complex(params["B_re"], params["B_im"])
  if normalize:
    # sqrt(1 - |lambda|^2) = sqrt(-expm1(-2 nu)), exact even as |lambda| -> 1.
    b = b * jnp.sqrt(-jnp.expm1(-2 * nu))
  c = jax.lax.complex(params["C_re"], params["C_im"])
  return lam, b, c, params["D"]


def _normal(stddev):
  return lambda key, shape: stddev * jax.random.normal(key, shape)


class LRU(nn.Module):
  """A stack of LRU layers under the emu model contract.

  y, state = model.apply(params, x, state), x: [batch, time, channels]
  float32 (channel 0 audio, the rest conditioning), y: [batch, time, 1].

  Attributes:
    state_size: complex modes per layer (one mode = one biquad).
    num_layers: 1 is a purely linear filter, y = Re(C h) + D x; more layers
      add gelu + Dense mixing with a residual between the filters.
    features: hidden width between layers (num_layers > 1).
    skip: add the input audio (channel 0) to the output.
    r_min, r_max: initial pole radius range.
    f_min_hz, f_max_hz, sample_rate: initial pole frequency range (Hz) and
      the sample rate (Hz) that converts it to angles.
    normalize: scale B by sqrt(1 - |lambda|^2) (LRU paper).
    backend: linear_recurrence backend for calls longer than stream_max_len
      samples: 'associative' (parallel) or 'sequential'.
    stream_backend: backend for calls of at most stream_max_len samples
      (streaming blocks), where a plain loop is cheapest.
    stream_max_len: the block length (samples) up to which stream_backend
      is used. Both backends compute the same recurrence, so the choice
      never changes the output beyond float32 rounding.
    unroll: loop unrolling of the sequential backend.
  """
  state_size: int = 4
  num_layers: int = 1
  features: int = 8
  skip: bool = False
  r_min: float = 0.9
  r_max: float = 0.99999
  f_min_hz: float = 20.
  f_max_hz: float = 20000.
  sample_rate: float = 44100.
  normalize: bool = True
  backend: str = "associative"
  stream_backend: str = "sequential"
  stream_max_len: int = 64
  unroll: int = 1

  @property
  def receptive_field(self):
    return math.inf

  def initial_state(self, batch):
    """One complex64 [batch, state_size] zero state per layer."""
    return tuple(jnp.zeros((batch, self.state_size), jnp.complex64)
                 for _ in range(self.num_layers))

  def _layer(self, index, out_features):
    return LRULayer(
        out_features=out_features, state_size=self.state_size,
        r_min=self.r_min, r_max=self.r_max, f_min_hz=self.f_min_hz,
        f_max_hz=self.f_max_hz, sample_rate=self.sample_rate,
        normalize=self.normalize, name=f"layer_{index}")

  @nn.compact
  def __call__(self, x, state=None):
    """x: [batch, time, channels] -> (y [batch, time, 1], new state)."""
    if self.num_layers < 1:
      raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
    if state is None:
      state = self.initial_state(x.shape[0])
    backend = (self.stream_backend if x.shape[1] <= self.stream_max_len
               else self.backend)
    run = lambda i, width, u: self._layer(i, width)(
        u, state[i], backend, self.unroll)
    last = self.num_layers - 1
    z, h = run(0, 1 if last == 0 else self.features, x)
    new_state = [h]
    for i in range(1, self.num_layers):
      z = z + nn.Dense(self.features, name=f"mix_{i}")(nn.gelu(z))
      z, h = run(i, 1 if i == last else self.features, z)
      new_state.append(h)
    if self.skip:
      z = z + x[..., :1]
    return z, tuple(new_state)

  def frequency_response(self, params, freqs_hz, sample_rate=None,
                         channel=0):
    """The exact transfer function of a one-layer (linear) LRU.

    Args:
      params: the model's variables ({'params': ...}) or their 'params'.
      freqs_hz: [F] frequencies in Hz.
      sample_rate: Hz; defaults to the model's.
      channel: the input channel whose response to return.

    Returns:
      [F] complex128 numpy array, H(e^{jw}) from x[..., channel] to y.
    """
    if self.num_layers != 1:
      raise ValueError("frequency_response needs a linear model "
                       f"(num_layers == 1), got num_layers={self.num_layers}")
    params = params.get("params", params)["layer_0"]
    lam, b, c, d = (np.asarray(v).astype(np.complex128)
                    for v in layer_coefficients(params, self.normalize))
    sample_rate = self.sample_rate if sample_rate is None else sample_rate
    z_inv = np.exp(-2j * np.pi * np.asarray(freqs_hz) / sample_rate)[:, None]
    residue = b[channel] * c[:, 0]  # [N]
    # Re(.) of the readout adds each mode's conjugate at half weight.
    modes = 0.5 * (residue / (1 - lam * z_inv)
                   + residue.conj() / (1 - lam.conj() * z_inv))
    response = d[channel, 0] + modes.sum(axis=-1)
    if self.skip and channel == 0:
      response = response + 1
    return response
