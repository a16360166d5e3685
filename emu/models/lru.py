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
Wiener-Hammerstein cascade for nonlinear effects (emu.models.ssm.Stack):

  z = layer_0(x)                                   channels -> features
  z = layer_l(z + mix_l(gelu(z)))  l = 1..L-1      features -> features (1)

Knobs (`knob_hidden` > 0). Channels 1: of x (knobs in [0, 1]) then set
every layer's filter per sample instead of entering it as signals: a small
MLP per layer (`ssm.KnobFiLM`, a linear path plus one tanh layer of
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

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from emu.models import scan
from emu.models import ssm

# The least decay rate per sample: |lambda| <= exp(-1e-6), a time constant of
# 1e6 samples (23 s at 44.1 kHz), far from 1 in float32 (whose spacing below
# 1 is 6e-8), where exp(-exp(nu_log)) alone would round to exactly 1.
NU_MIN = 1e-6


class LRULayer(ssm.Layer):
  """One diagonal complex linear recurrence with a real readout.

  Attributes:
    out_features: d_out, the readout width.
    state_size: N, complex modes.
    r_min, r_max: initial pole radii, |lambda| drawn so that |lambda|^2 is
      uniform in [r_min^2, r_max^2] (uniform on the ring).
    normalize: multiply B by gamma = sqrt(1 - |lambda|^2), so each mode's
      white-noise gain starts at |B|^2 whatever its radius.
    f_min_hz, f_max_hz, sample_rate: initial pole angles, log-spaced over
      [f_min_hz, f_max_hz] (ssm.log_spaced_hz).
    knob_hidden, knob_sweep_hz: the knob MLP when the layer is called with
      `knobs` (see the module docstring); with a sweep every mode starts as
      a Butterworth pair at `low` Hz for knob 0 (ssm.FilterFields).
  """
  state_size: int = 4
  r_min: float = 0.9
  r_max: float = 0.99999
  normalize: bool = True

  @nn.compact
  def __call__(self, u, h0, backend="associative", unroll=1, knobs=None):
    """u: [batch, time, d_in] float32; h0: [batch, N] complex64.

    knobs: None (a time-invariant filter) or [batch, time, K] float32
      conditioning values that set the filter per sample.
    backend, unroll: see emu.models.scan.linear_recurrence.
    Returns (y [batch, time, out_features] float32, h_last [batch, N]).
    """
    d_in, n, d_out = u.shape[-1], self.state_size, self.out_features
    sweep = self._sweep(knobs)
    if sweep:
      # A Butterworth pair at sweep[0]: nu = theta = 2 pi f / (sqrt 2 fs).
      sweep_pole_init = nn.initializers.constant(math.log(
          2 * math.pi * sweep[0] / (math.sqrt(2) * self.sample_rate)))
    params = {
        "nu_log": self.param("nu_log", self._nu_log_init if not sweep
                             else sweep_pole_init, (n,)),
        "theta_log": self.param("theta_log", self._theta_log_init
                                if not sweep else sweep_pole_init, (n,)),
        "B_re": self.param("B_re", ssm.normal(1 / math.sqrt(2 * d_in)),
                           (d_in, n)),
        "B_im": self.param("B_im", ssm.normal(1 / math.sqrt(2 * d_in)),
                           (d_in, n)),
        "C_re": self.param("C_re", ssm.normal(1 / math.sqrt(n)), (n, d_out)),
        "C_im": self.param("C_im", ssm.normal(1 / math.sqrt(n)), (n, d_out)),
        "D": self.param("D", ssm.normal(1 / math.sqrt(d_in)), (d_in, d_out)),
    }
    if knobs is None:
      lam, b, c, d = layer_coefficients(params, self.normalize)
      bu = jnp.einsum("btd,dn->btn", u.astype(jnp.complex64), b)
      h, h_last = scan.linear_recurrence(lam, bu, h0, backend, unroll)
      # Re(h @ C) without forming the complex product's imaginary part.
      y = h.real @ c.real - h.imag @ c.imag + u @ d
      return y, h_last
    film = self._film(film_layout(d_in, n, d_out), knobs, 2 * n)
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
    f_hz = ssm.log_spaced_hz(key, shape[0], self.f_min_hz, self.f_max_hz)
    return jnp.log(2 * jnp.pi * f_hz / self.sample_rate)


def layer_coefficients(params, normalize=True, film=None):
  """The filter an LRULayer's parameters describe.

  Args:
    params: the layer's parameters (nu_log, theta_log, B_re, ...).
    normalize: include gamma = sqrt(1 - |lambda|^2) in B.
    film: None, or the knob MLP's offsets (`ssm.KnobFiLM` of `film_layout`),
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
  """The offsets a layer's knob MLP gives, as ssm.KnobFiLM's `layout`."""
  return (("nu_log", (n,)), ("theta_log", (n,)), ("B_rho", (n,)),
          ("B_phi", (n,)), ("C_rho", (n, d_out)), ("C_phi", (n, d_out)),
          ("D", (d_in, d_out)))


class LRU(ssm.Stack):
  """A stack of LRU layers under the emu model contract.

  y, state = model.apply(params, x, state), x: [batch, time, channels]
  float32 (channel 0 audio, the rest conditioning), y: [batch, time, 1].
  Attributes not listed here are ssm.Stack's and ssm.FilterFields'.

  Attributes:
    state_size: complex modes per layer (one mode = one biquad); 4.
    num_layers: 1 is a purely linear filter, y = Re(C h) + D x.
    r_min, r_max: initial pole radius range.
    normalize: scale B by sqrt(1 - |lambda|^2) (LRU paper).
    knob_hidden: 0 by default: knob channels are signals like the audio,
      into B and D of the first layer. > 0: knobs that set each layer's
      filter per sample (see the module docstring).
    knob_sweep_hz: () or (low, high) Hz: an initial guess that the first
      knob sweeps every pole from `low` (knob 0) to `high` (knob 1), log
      (see emu.models.svf.SVF, where it matters more).
    backend: 'associative' by default (emu.models.scan's parallel scan).
    data_init: start training from a least-squares fit of the training
      pair (emu.models.ssm_init: the poles by equation error, then the
      residues and D by output error), not from the random start; a
      one-layer model without knobs only. `init` alone ignores it (it sees
      no data): the trainer applies it (data_init.wrap_initializer).
  """
  state_size: int = 4
  knob_hidden: int = 0
  backend: str = "associative"
  data_init: bool = False
  r_min: float = 0.9
  r_max: float = 0.99999
  normalize: bool = True

  def initial_state(self, batch):
    """One complex64 [batch, state_size] zero state per layer."""
    return tuple(jnp.zeros((batch, self.state_size), jnp.complex64)
                 for _ in range(self.num_layers))

  def _layer(self, index, out_features):
    return LRULayer(
        out_features=out_features, state_size=self.state_size,
        r_min=self.r_min, r_max=self.r_max, normalize=self.normalize,
        **self._layer_fields(), name=f"layer_{index}")

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
    params, film = self._linear_layer(params, knobs, _layout_of)
    if film is not None and channel != 0:
      raise ValueError("a conditioned model's knobs are not signals; "
                       "only channel 0 has a response")
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


def _layout_of(layer_params):
  """film_layout of a trained layer, from its parameters' shapes."""
  return film_layout(*layer_params["B_re"].shape,
                     layer_params["C_re"].shape[1])
