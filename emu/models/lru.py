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

Knobs (`knob_hidden` > 0). Channels 1: of x (knobs in [0, 1]) then set
every layer's filter per sample instead of entering it as signals: a small
MLP per layer (`KnobFiLM`, a linear path plus one tanh layer of
`knob_hidden` units, zero at initialisation) maps the knobs at sample t to
offsets of nu_log and theta_log (poles that move in octaves as the knob
turns, the log taper of a frequency knob being linear in them), complex
per-mode scales exp(rho + i phi) of B and C, and an offset of D:

  h_t = lambda(k_t) h_{t-1} + B(k_t) u_t,   y_t = Re(C(k_t) h_t) + D(k_t) u_t

with u the audio alone. The state is carried as it is when a knob moves,
so how the filter answers a knob change depends on what a unit of state
means at each setting, which B(k) and C(k) set separately (only their
product shows at a fixed setting). For emu.effects' `hpf_knob` (an SVF
whose knob is the cutoff at fixed Q, so every setting's state matrix is a
function of one matrix and they share eigenvectors) there is a B(k), C(k)
for which one mode reproduces the SVF's knob-change transients: with each
setting's exact pole and residue, val1 ESR is 1.8e-4 at the modal scale
numpy's eigenvectors happen to give and 1.5e-9 with the best scale per
setting, so transients need not limit a diagonal state. What limits it in
training is the fit itself: the residues move with the cutoff in
magnitude and phase, and 200 s of training on hpf_knob left val1 ESR at
1.1e-3 (val2, with no knob changes, 6.4e-4), where emu.models.svf, whose
high-pass mix is the same at every cutoff, reached 3e-5 (README, issue 7).

This is an extension of `lru` rather than a new model: with
knob_hidden = 0, or with no knob channels, the parameters and the output
are exactly today's, and the state is the same complex [batch, N] per
layer, so streaming, the scan backends and the readout are shared.
"""

import math
from typing import Callable

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
    knob_hidden: hidden width of the knob MLP when the layer is called
      with `knobs` (see the module docstring).
    knob_sweep_hz: () or (low, high): with knobs, start every mode as a
      Butterworth pair at `low` Hz for knob 0 moving log-linearly to
      `high` Hz at knob 1 (the first knob).
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
  knob_hidden: int = 16
  knob_sweep_hz: tuple = ()

  @nn.compact
  def __call__(self, u, h0, backend="associative", unroll=1, knobs=None):
    """u: [batch, time, d_in] float32; h0: [batch, N] complex64.

    knobs: None (a time-invariant filter) or [batch, time, K] float32
      conditioning values that set the filter per sample.
    Returns (y [batch, time, out_features] float32, h_last [batch, N]).
    """
    d_in, n, d_out = u.shape[-1], self.state_size, self.out_features
    sweep = self.knob_sweep_hz if knobs is not None else ()
    if sweep:
      # A Butterworth pair at sweep[0]: nu = theta = 2 pi f / (sqrt 2 fs).
      sweep_pole_init = nn.initializers.constant(math.log(
          2 * math.pi * sweep[0] / (math.sqrt(2) * self.sample_rate)))
    params = {
        "nu_log": self.param("nu_log", self._nu_log_init if not sweep
                             else sweep_pole_init, (n,)),
        "theta_log": self.param("theta_log", self._theta_log_init
                                if not sweep else sweep_pole_init, (n,)),
        "B_re": self.param("B_re", _normal(1 / math.sqrt(2 * d_in)),
                           (d_in, n)),
        "B_im": self.param("B_im", _normal(1 / math.sqrt(2 * d_in)),
                           (d_in, n)),
        "C_re": self.param("C_re", _normal(1 / math.sqrt(n)), (n, d_out)),
        "C_im": self.param("C_im", _normal(1 / math.sqrt(n)), (n, d_out)),
        "D": self.param("D", _normal(1 / math.sqrt(d_in)), (d_in, d_out)),
    }
    if knobs is None:
      lam, b, c, d = layer_coefficients(params, self.normalize)
      bu = jnp.einsum("btd,dn->btn", u.astype(jnp.complex64), b)
      h, h_last = scan.linear_recurrence(lam, bu, h0, backend, unroll)
      # Re(h @ C) without forming the complex product's imaginary part.
      y = h.real @ c.real - h.imag @ c.imag + u @ d
      return y, h_last
    film = KnobFiLM(film_layout(d_in, n, d_out), self.knob_hidden,
                    linear_init=sweep_init(sweep, 2 * n), name="film")(knobs)
    lam, b, c, d = layer_coefficients(params, self.normalize, film)
    bu = jnp.einsum("btd,btdn->btn", u.astype(jnp.complex64), b)
    h, h_last = scan.linear_recurrence(lam, bu, h0, backend, unroll)
    y = (jnp.einsum("btn,btno->bto", h.real, c.real)
         - jnp.einsum("btn,btno->bto", h.imag, c.imag)
         + jnp.einsum("btd,btdo->bto", u, d))
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


def layer_coefficients(params, normalize=True, film=None):
  """The filter an LRULayer's parameters describe.

  Args:
    params: the layer's parameters (nu_log, theta_log, B_re, ...).
    normalize: include gamma = sqrt(1 - |lambda|^2) in B.
    film: None, or the knob MLP's offsets (`KnobFiLM` of `film_layout`),
      each with leading dimensions [...] (e.g. [batch, time]).

  Returns (lambda [N] complex64, B [d_in, N] complex64 including gamma,
  C [N, d_out] complex64, D [d_in, d_out] float32), each with the leading
  dimensions [...] of `film` when given.
  """
  nu_log, theta_log = params["nu_log"], params["theta_log"]
  b = jax.lax.complex(params["B_re"], params["B_im"])
  c = jax.lax.complex(params["C_re"], params["C_im"])
  d = params["D"]
  if film is not None:
    nu_log = nu_log + film["nu_log"]
    theta_log = theta_log + film["theta_log"]
    # One complex scale per mode (B) and per mode and output (C): the
    # state's unit at this setting, and the readout's.
    b = b * jnp.exp(jax.lax.complex(film["B_rho"], film["B_phi"]))[
        ..., None, :]
    c = c * jnp.exp(jax.lax.complex(film["C_rho"], film["C_phi"]))
    d = d + film["D"]
  nu = jnp.exp(nu_log) + NU_MIN
  theta = jnp.exp(theta_log)
  lam = jnp.exp(jax.lax.complex(-nu, theta))
  if normalize:
    # sqrt(1 - |lambda|^2) = sqrt(-expm1(-2 nu)), exact even as |lambda| -> 1.
    b = b * jnp.sqrt(-jnp.expm1(-2 * nu))[..., None, :]
  return lam, b, c, d


def film_layout(d_in, n, d_out):
  """The offsets a layer's knob MLP gives, as KnobFiLM's `layout`."""
  return (("nu_log", (n,)), ("theta_log", (n,)), ("B_rho", (n,)),
          ("B_phi", (n,)), ("C_rho", (n, d_out)), ("C_phi", (n, d_out)),
          ("D", (d_in, d_out)))


def sweep_init(sweep, rows):
  """KnobFiLM's linear kernel init: zeros, or with `sweep` = (low, high)
  the first knob adding log(high / low) to the first `rows` offsets (the
  log-frequencies), so that the knob sweeps them from low to high."""
  if not sweep:
    return nn.initializers.zeros

  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.zeros(shape, dtype).at[0, :rows].set(
        math.log(sweep[1] / sweep[0]))
  return init


def check_sweep(sweep):
  """Raises ValueError unless `sweep` is () or (low, high) with both > 0."""
  if len(sweep) not in (0, 2) or any(f <= 0 for f in sweep):
    raise ValueError(f"knob_sweep_hz must be empty or (low, high) in Hz, "
                     f"both > 0; got {tuple(sweep)}")


class KnobFiLM(nn.Module):
  """knobs [..., K] in [0, 1] -> {name: offsets [..., *shape]} for each
  (name, shape) of `layout`, all zero at init.

  offsets = W_lin k + W_out tanh(W_hid (2k - 1) + b_hid) / hidden: a
  linear path (a log-taper frequency knob moves log-frequencies linearly)
  plus one tanh layer of `hidden` units for the rest (0: the linear path
  alone). Both output kernels start at zero, so a fresh conditioned layer
  is the unconditioned filter at every setting. No output bias: the
  layer's own parameters are the offsets' bias. The 1 / hidden keeps an
  Adam step (which moves every weight by about the learning rate) from
  moving an offset by `hidden` times as much as it moves the layer's own
  parameters; at 16 units without it, a rate of 0.03 never settled.
  """
  layout: tuple
  hidden: int = 16
  linear_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, knobs):
    zeros = nn.initializers.zeros
    features = sum(math.prod(shape) for _, shape in self.layout)
    out = nn.Dense(features, use_bias=False,
                   kernel_init=self.linear_init, name="linear")(knobs)
    if self.hidden:
      z = nn.Dense(self.hidden, bias_init=nn.initializers.normal(1.),
                   name="hidden")(2. * knobs - 1.)
      out = out + nn.Dense(features, use_bias=False, kernel_init=zeros,
                           name="out")(jnp.tanh(z) / self.hidden)
    offsets, start = {}, 0
    for name, shape in self.layout:
      size = math.prod(shape)
      offsets[name] = out[..., start:start + size].reshape(
          out.shape[:-1] + shape)
      start += size
    return offsets

  @classmethod
  def at(cls, layer_params, layout, hidden, knobs):
    """The offsets of a trained layer's MLP (`layer_params['film']`) at
    knob values `knobs` [K] (for frequency responses)."""
    return cls(layout, hidden, parent=None).apply(
        {"params": layer_params["film"]}, jnp.asarray(knobs, jnp.float32))


def conditioned_layer(layer_params, knobs):
  """Whether a one-layer model's parameters have a knob MLP; raises
  ValueError unless `knobs` is given exactly when they do."""
  conditioned = "film" in layer_params
  if conditioned != (knobs is not None):
    raise ValueError("knobs are needed by, and only by, a conditioned "
                     "model (one trained with knob_hidden > 0 on knobs)")
  return conditioned


def run_stack(module, x, state, make_layer):
  """The stack both LRU and SVF are: checks, then layer_0 on the audio (the
  knobs set the filters) or on every channel (knobs as signals), gelu +
  Dense mixing with a residual between layers, the optional input skip.

  module: the LRU or SVF being called (its num_layers, features, skip,
  knob_hidden, knob_sweep_hz, backends, unroll, initial_state);
  make_layer(index, out_features) -> the layer module.
  Returns (y [batch, time, 1], new state).
  """
  if module.num_layers < 1:
    raise ValueError(f"num_layers must be >= 1, got {module.num_layers}")
  if module.knob_hidden < 0:
    raise ValueError(f"knob_hidden must be >= 0, got {module.knob_hidden}")
  check_sweep(module.knob_sweep_hz)
  if state is None:
    state = module.initial_state(x.shape[0])
  backend = (module.stream_backend if x.shape[1] <= module.stream_max_len
             else module.backend)
  knobs = x[..., 1:] if module.knob_hidden and x.shape[-1] > 1 else None
  run = lambda i, width, u: make_layer(i, width)(
      u, state[i], backend, module.unroll, knobs)
  last = module.num_layers - 1
  z, h = run(0, 1 if last == 0 else module.features,
             x if knobs is None else x[..., :1])
  new_state = [h]
  for i in range(1, module.num_layers):
    z = z + nn.Dense(module.features, name=f"mix_{i}")(nn.gelu(z))
    z, h = run(i, 1 if i == last else module.features, z)
    new_state.append(h)
  if module.skip:
    z = z + x[..., :1]
  return z, tuple(new_state)


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
    knob_hidden: 0 (default): knob channels are signals like the audio,
      into B and D of the first layer, and every filter is time-invariant.
      > 0: channels 1: are knobs that set each layer's filter per sample
      through an MLP with this many tanh units (see the module docstring);
      the first layer's input is then the audio alone. A one-channel input
      is the same either way.
    knob_sweep_hz: () or (low, high) Hz: an initial guess that the first
      knob sweeps every pole from `low` (knob 0) to `high` (knob 1), log
      (see emu.models.svf.SVF, where it matters more).
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
  knob_hidden: int = 0
  knob_sweep_hz: tuple = ()
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
        normalize=self.normalize, knob_hidden=self.knob_hidden,
        knob_sweep_hz=tuple(self.knob_sweep_hz), name=f"layer_{index}")

  @nn.compact
  def __call__(self, x, state=None):
    """x: [batch, time, channels] -> (y [batch, time, 1], new state)."""
    return run_stack(self, x, state, self._layer)

  def frequency_response(self, params, freqs_hz, sample_rate=None,
                         channel=0, knobs=None):
    """The exact transfer function of a one-layer (linear) LRU.

    Args:
      params: the model's variables ({'params': ...}) or their 'params'.
      freqs_hz: [F] frequencies in Hz.
      sample_rate: Hz; defaults to the model's.
      channel: the input channel whose response to return.
      knobs: [K] knob values (in [0, 1]) of a conditioned model
        (knob_hidden > 0): the response with the knobs held there.

    Returns:
      [F] complex128 numpy array, H(e^{jw}) from x[..., channel] to y.
    """
    if self.num_layers != 1:
      raise ValueError("frequency_response needs a linear model "
                       f"(num_layers == 1), got num_layers={self.num_layers}")
    params = params.get("params", params)["layer_0"]
    film = None
    if conditioned_layer(params, knobs):
      if channel != 0:
        raise ValueError("a conditioned model's knobs are not signals; "
                         "only channel 0 has a response")
      layout = film_layout(*params["B_re"].shape, params["C_re"].shape[1])
      film = KnobFiLM.at(params, layout, self.knob_hidden, knobs)
    lam, b, c, d = (np.asarray(v).astype(np.complex128)
                    for v in layer_coefficients(params, self.normalize, film))
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
