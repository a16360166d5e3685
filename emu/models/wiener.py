"""Wiener-Hammerstein grey-box model: linear filter -> waveshaper -> filter.

Most distortion devices are an EQ, a clipper and another EQ (tone stack,
diodes or a saturating stage, tone control). This model is that chain,
trained end to end:

  u = x + g_pre (Re(C h) + D x)        pre: a one-layer lru (an IIR filter)
  (u = u 10^s, s = smooth(curve(log10 env(|u|))): optionally a compressor
   stage, see Dynamics)
  v = c u + d + sum_k a_k tanh(w_k (u - m_k))        shaper: memoryless
  y = v + g_post (Re(C' h') + D' v)    post: another one-layer lru
  (+ g_res r(x): optionally a small WaveNet on what the chain misses)

(with shaper_bounded, the default, c u is c s tanh(u / s): see Shaper).

Each filter is emu.models.lru's LRU (num_layers=1, `pre_modes` or
`post_modes` complex modes: one mode plus D is any biquad, two any
fourth-order filter), so its frequency response is exact
(`block_response`) and it streams like the lru. The shaper is a one-layer
tanh MLP of the sample with a linear path (`Shaper`): one unit is a tanh
clipper exactly, a few any smooth saturating curve.

Initialisation is (nearly) the dry signal: the gates g_pre, g_post (and
g_res) start at 0 (each filter a pass-through whatever its random modes)
and the shaper at v = u (c = 1, a = 0; with the default shaper_bounded,
v = 8 tanh(u / 8), within 0.3% of u up to |u| = 0.7), so training moves
away from the input, not from a random filter. The shaper's gains w_k start
log-spaced over [1, shaper_max_gain] (a drive of up to 30 dB is then in
reach without the filters growing to supply it), its knees m_k spread
over [-0.5, 0.5].

The state is (pre's lru state, post's, the residual WaveNet's or (), the
dynamics stage's or ()), so
blocks with carried state give one offline call's output. Inputs with
knob channels are refused: the filters and shaper here are fixed.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from emu.models import lru
from emu.models import ssm
from emu.models import wavenet


# The bounded shaper's initial span: its linear path is 8 tanh(u / 8).
BOUNDED_SPAN = 8.
# The dynamics stage's level floor (|u| below it reads as it): -100 dBFS.
LEVEL_FLOOR = 1e-5
# Its initial time constants, seconds: the peak detector's attack and
# release, then the gain smoothing's. Slow at the start, so the stage moves
# the level, not single waveforms (a fast one would first learn to clip,
# the shaper's job); training moves each, in log.
DETECTOR_TAUS = (5e-3, 100e-3)
SMOOTHING_TAUS = (10e-3, 100e-3)
# The time constants are tau = exp(TAU_RATE p): an Adam step on p changes
# log tau TAU_RATE times as fast as one on another parameter, so a 5 ms
# attack can become instantaneous (emu's compressor) in tens of steps.
TAU_RATE = 10.


class Shaper(nn.Module):
  """A memoryless curve v = c u + d + sum_k a_k tanh(w_k (u - m_k)).

  u, v: [..., 1] float32. Starts as v = u (c = 1, d = 0, a = 0), with
  w_k = exp(log_gain_k) log-spaced over [1, max_gain] and m_k uniform in
  [-0.5, 0.5]. The gains are learned in log so that an Adam step changes
  a unit's drive by a ratio, not by an amount.

  Attributes:
    width: tanh units (0: the linear path alone, v = c u + d).
    max_gain: the largest initial w_k.
    bounded: the linear path saturates too, c s tanh(u / s) with a
      learned span s (starting at BOUNDED_SPAN), so the curve goes flat
      beyond the levels training showed instead of growing as c u
      (v = u to within 0.3% for |u| <= 0.7 at the start).
  """
  width: int = 16
  max_gain: float = 32.
  bounded: bool = False

  @nn.compact
  def __call__(self, u):
    linear = self.param("linear", nn.initializers.ones, ())
    bias = self.param("bias", nn.initializers.zeros, ())
    if self.bounded:
      span = jnp.exp(self.param("log_span", nn.initializers.constant(
          math.log(BOUNDED_SPAN)), ()))
      u_lin = span * jnp.tanh(u / span)
    else:
      u_lin = u
    v = linear * u_lin + bias
    if not self.width:
      return v
    log_gain = self.param(
        "log_gain", lambda key, shape: jnp.log(ssm.log_spaced_hz(
            key, shape[0], 1., self.max_gain)), (self.width,))
    knee = self.param("knee", lambda key, shape: jax.random.uniform(
        key, shape, minval=-.5, maxval=.5), (self.width,))
    out = self.param("out", nn.initializers.zeros, (self.width,))
    return v + jnp.tanh(jnp.exp(log_gain) * (u - knee)) @ out[:, None]


def _ballistic(previous, value, attack, release, rising):
  """One step of a one-pole follower: towards value with coefficient
  attack where rising (a bool), release elsewhere."""
  coef = jnp.where(rising, attack, release)
  return value + coef * (previous - value)


class Dynamics(nn.Module):
  """A compressor (or expander) stage: u' = u 10^s, s from u's level.

    env_t = follow(|u_t|)           peak detector: attack while |u| > env
    z_t = curve(log10 env_t)         static gain curve, log10 units
    s_t = follow(z_t)               gain smoothing: attack while z < s

  Each follower is a one-pole filter whose coefficient exp(-1 / (tau
  sample_rate)) takes the attack tau when its input is above it (the
  detector) or the gain is falling (the smoothing), the release tau
  otherwise. The two followers cover both ways a compressor is built:
  smoothing the level before the curve (JUCE's, so pedalboard's) or the
  gain after it (emu.effects.compressor); training can shorten either to
  nothing. The curve is c L + d + sum_k a_k softplus(w_k (L - m_k)) / w_k
  of L = log10 env (hinges at knees m_k over -60..0 dBFS), zero at the
  start: the stage starts as a pass-through.

  Parameters: tau (the four time constants, exp(TAU_RATE tau) seconds:
  detector attack, release, smoothing attack, release), the curve's
  log_gain (log w_k), knee, out (a_k), slope (c) and offset (d). A
  sample-by-sample lax.scan (the branch makes it nonlinear, so no
  associative scan). u: [batch, time, 1]; state: [batch, 2] (env, s).
  """
  width: int = 8
  sample_rate: float = 44100.
  unroll: int = 8

  def initial_state(self, batch):
    return jnp.zeros((batch, 2), jnp.float32)

  @nn.compact
  def __call__(self, u, state):
    tau_p = self.param("tau", lambda key: jnp.log(jnp.asarray(
        DETECTOR_TAUS + SMOOTHING_TAUS, jnp.float32)) / TAU_RATE)
    coef = jnp.exp(-1. / (jnp.exp(TAU_RATE * tau_p) * self.sample_rate))
    log_gain = self.param("log_gain", lambda key, shape: jnp.log(
        ssm.log_spaced_hz(key, shape[0], 2., 50.)), (self.width,))
    knee = self.param("knee", lambda key, shape: jnp.linspace(
        -3., 0., shape[0]), (self.width,))
    out = self.param("out", nn.initializers.zeros, (self.width,))
    slope = self.param("slope", nn.initializers.zeros, ())
    offset = self.param("offset", nn.initializers.zeros, ())
    gain = jnp.exp(log_gain)

    def curve(env):
      level = jnp.log10(jnp.maximum(env, LEVEL_FLOOR))[..., None]
      hinges = jax.nn.softplus(gain * (level - knee)) / gain
      return slope * level[..., 0] + offset + hinges @ out

    def step(carry, magnitude):
      env, s = carry[:, 0], carry[:, 1]
      env = _ballistic(env, magnitude, coef[0], coef[1], magnitude > env)
      z = curve(env)
      s = _ballistic(s, z, coef[2], coef[3], z < s)
      new = jnp.stack([env, s], -1)
      return new, s

    state, s = jax.lax.scan(step, state, jnp.abs(u[..., 0]).T,
                            unroll=self.unroll)
    return u * (10. ** s.T)[..., None], state


class FilterChain(ssm.Recurrence):
  """The linear parts the grey boxes share: a gated lru filter before the
  nonlinear stage, one after it, and an optional residual WaveNet on x
  (Wiener here, emu.models.nss.NSS).

  Attributes:
    pre_modes: complex modes of the filter before the nonlinear stage (0:
      none).
    post_modes: complex modes of the filter after it (0: none).
    residual_channels: > 0 adds a small WaveNet of this many channels on
      x to the output, behind a gate that starts at 0, for what the chain
      cannot say; 0: the chain alone.
    residual_dilations: that WaveNet's dilations.
    sample_rate, f_min_hz, f_max_hz: Hz; the filters' initial poles are
      log-spaced over [f_min_hz, f_max_hz] (emu.models.lru).
    r_min, r_max: the filters' initial pole radii.
    backend ('associative' here), stream_backend, stream_max_len,
      unroll: the filters' recurrence backends (emu.models.ssm.Recurrence).
  """
  pre_modes: int = 2
  post_modes: int = 2
  residual_channels: int = 0
  residual_dilations: tuple = (1, 2, 4, 8, 16, 32, 64, 128)
  sample_rate: float = 44100.
  f_min_hz: float = 20.
  f_max_hz: float = 20000.
  r_min: float = 0.9
  r_max: float = 0.99999
  backend: str = "associative"

  def _filter(self, modes, **kwargs):
    """A one-layer lru of `modes` modes (no skip: the gate adds x)."""
    return lru.LRU(
        state_size=modes, num_layers=1, skip=False, knob_hidden=0,
        sample_rate=self.sample_rate, f_min_hz=self.f_min_hz,
        f_max_hz=self.f_max_hz, r_min=self.r_min, r_max=self.r_max,
        backend=self.backend, stream_backend=self.stream_backend,
        stream_max_len=self.stream_max_len, unroll=self.unroll, **kwargs)

  def _residual(self, **kwargs):
    """The residual WaveNet (plain tanh-gated, no skip)."""
    return wavenet.WaveNet(channels=self.residual_channels,
                           dilations=tuple(self.residual_dilations),
                           **kwargs)

  def _chain_state(self, batch):
    """(pre's lru state, post's, the residual WaveNet's), () where
    absent."""
    def filter_state(modes):
      return (self._filter(modes, parent=None).initial_state(batch)
              if modes else ())
    residual = (self._residual(parent=None).initial_state(batch)
                if self.residual_channels else ())
    return (filter_state(self.pre_modes), filter_state(self.post_modes),
            residual)

  def _gated(self, modes, u, state, name):
    """u + g (the lru of u): a pass-through at g = 0 (the start)."""
    if not modes:
      return u, ()
    z, state = self._filter(modes, name=name)(u, state)
    gate = self.param(f"{name}_gate", nn.initializers.zeros, ())
    return u + gate * z, state

  def _plus_residual(self, x, y, state):
    """(y + g_res r(x), the WaveNet's new state): the residual WaveNet
    behind a gate that starts at 0; y as it is without one."""
    if not self.residual_channels:
      return y, state
    r, state = self._residual(name="residual")(x, state)
    gate = self.param("residual_gate", nn.initializers.zeros, ())
    return y + gate * r, state

  def block_response(self, params, which, freqs_hz):
    """[F] complex128: the exact response of the 'pre' or 'post' filter,
    1 + g H_lru(e^{jw}), at freqs_hz (Hz).

    params: the model's variables ({'params': ...}) or their 'params'.
    """
    if which not in ("pre", "post"):
      raise ValueError(f"which must be 'pre' or 'post', got {which!r}")
    params = params.get("params", params)
    modes = self.pre_modes if which == "pre" else self.post_modes
    if not modes:
      return np.ones(len(np.atleast_1d(freqs_hz)), np.complex128)
    gate = float(params[f"{which}_gate"])
    h = self._filter(modes, parent=None).frequency_response(
        params[which], freqs_hz)
    return 1. + gate * h


class Wiener(FilterChain):
  """Wiener-Hammerstein model under the emu model contract.

  y, state = model.apply(params, x, state), x: [batch, time, 1] float32
  (audio only), y: [batch, time, 1].

  Attributes:
    shaper_width: tanh units of the shaper (0: a linear model).
    shaper_max_gain: the largest initial shaper gain (see Shaper).
    shaper_bounded: the shaper's linear path saturates (Shaper.bounded;
      the default: on pb_overdrive it took held-out voice from ESR 6.3e-4
      to 7.8e-7, benchmarks/README.md).
    dynamics_width: > 0 adds a compressor stage (Dynamics, a gain curve
      of this many hinges) between the pre filter and the shaper; 0: none.
    (the filters, the residual WaveNet and the backends: FilterChain)
  """
  shaper_width: int = 16
  shaper_max_gain: float = 32.
  shaper_bounded: bool = True
  dynamics_width: int = 0

  def _dynamics(self, **kwargs):
    return Dynamics(self.dynamics_width, self.sample_rate, **kwargs)

  def initial_state(self, batch):
    """(pre's lru state, post's, the residual WaveNet's, the dynamics
    stage's), () where absent."""
    dynamics = (self._dynamics(parent=None).initial_state(batch)
                if self.dynamics_width else ())
    return self._chain_state(batch) + (dynamics,)

  def _check(self, x):
    if x.ndim != 3 or x.shape[-1] != 1:
      raise ValueError(
          f"wiener takes audio alone, x of shape [batch, time, 1]; got "
          f"{x.shape} (knob channels are not supported: its filters and "
          "shaper are fixed)")
    for name in ("pre_modes", "post_modes", "shaper_width",
                 "residual_channels", "dynamics_width"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

  @nn.compact
  def __call__(self, x, state=None):
    """x: [batch, time, 1] -> (y [batch, time, 1], new state)."""
    self._check(x)
    if state is None:
      state = self.initial_state(x.shape[0])
    pre_state, post_state, residual_state, dynamics_state = state
    u, pre_state = self._gated(self.pre_modes, x, pre_state, "pre")
    if self.dynamics_width:
      u, dynamics_state = self._dynamics(name="dynamics")(u, dynamics_state)
    v = Shaper(self.shaper_width, self.shaper_max_gain,
               self.shaper_bounded, name="shaper")(u)
    y, post_state = self._gated(self.post_modes, v, post_state, "post")
    y, residual_state = self._plus_residual(x, y, residual_state)
    return y, (pre_state, post_state, residual_state, dynamics_state)

  def shaper_curve(self, params, u):
    """The shaper's v for u (numpy [n]): the learned static curve."""
    params = params.get("params", params)
    shaper = Shaper(self.shaper_width, self.shaper_max_gain,
                    self.shaper_bounded, parent=None)
    u = jnp.asarray(u, jnp.float32)[:, None]
    return np.asarray(shaper.apply({"params": params["shaper"]}, u))[:, 0]
