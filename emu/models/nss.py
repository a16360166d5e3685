"""Neural state-space grey box: filter -> nonlinear state-space core -> filter.

For circuits whose nonlinearity has memory: a Tube Screamer's diodes sit
in an op-amp's feedback loop with a capacitor, a diode clipper's across
one, so the clipped voltage is a state (a capacitor's charge), not a
curve of the input, which the wiener's memoryless shaper cannot say.
Between the wiener's two filters (emu.models.wiener.FilterChain: gated
one-layer lrus, an optional residual WaveNet) this model puts a few
states updated by a small network of the state and the input, as the
neural state-space models of diode clippers (Parker, Esqueda, Bergner,
DAFx 2019: s[n+1] = s[n] + f(s[n], u[n]), y[n] = g(s[n], u[n])) and
their neural-ODE counterparts (Wilczek et al., DAFx 2022):

  u = x + g_pre (Re(C h) + D x)                  pre: a one-layer lru
  z_n = [s_n, u_n]                                [state_size + 1]
  m_n = tanh(e^a (W z_n + b)) - tanh(e^a b)       [core_width] hidden
  s_{n+1} = S tanh((s_n + k (A s_n - s_n + B u_n + V m_n)) / S)
  v_n = d u_n + c . s_n + w . m_n                 readout
  y = v + g_post (Re(C' h') + D' v)              post: another lru
  (+ g_res r(x): optionally the wiener's residual WaveNet)

k in (0, 1) per state (a sigmoid) is the learned step: with A = 0,
V = 0 each state is a leaky integrator s += k (B u - s), a one-pole
low-pass (an RC), whose cutoffs start log-spaced over CORE_HZ; the
network V m adds what a diode adds to that RC's current. The linear part
alone is stable for any k; S = STATE_SPAN bounds every state, so no
parameter value can make the recurrence blow up (and within |s| <= 0.7
the bound changes s by at most 0.3%). The hidden gains e^a start
log-spaced over [1, core_max_gain] (learned in log, as the wiener's
shaper's).

Initialisation is exactly the dry signal: the filters' gates start at 0,
and d = 1, c = 0, w = 0 make the core's output its input (y = x). The
subtracted tanh(e^a b) makes f(0, 0) = 0 and g(0, 0) = 0: from the
initial state (all zeros) silence in gives exact silence out, whatever
the parameters.

A nonlinear recurrence has no associative scan: the core is one lax.scan
over time (unrolled `unroll` steps), time-major; the filters keep their
backends. The state is (pre's lru state, post's, the residual WaveNet's
or (), the core's [batch, state_size] float32), so blocks with carried
state give one call's output. Audio only: no knob channels.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from emu.models import ssm
from emu.models import wiener

# The core's initial leaky-integrator cutoffs, Hz (log-spaced): from a
# Tube Screamer's 720 Hz gain corner down and its 5.7 kHz feedback
# capacitor's corner up.
CORE_HZ = (100., 10000.)
# The bound on every core state (s = S tanh(s / S)).
STATE_SPAN = 8.


class Core(nn.Module):
  """The nonlinear state-space core: u [batch, time, 1] and the state
  s [batch, state_size] -> (v [batch, time, 1], the last state).

  See the module docstring for the equations. Parameters: `in` (W,
  [state_size + 1, width], the state's rows first), `bias` (b), `log_gain`
  (a), `state_mix` (A, [state_size, state_size], zeros), `drive` (B,
  ones), `step` (the logit of k), `hidden_out` (V, [width, state_size],
  zeros), `direct` (d, one), `readout` (c, zeros), `out` (w, zeros).

  Attributes:
    state_size: states (a diode clipper has one; 2-4 here).
    width: tanh units of the hidden layer.
    max_gain: the largest initial hidden gain e^a.
    sample_rate: Hz, which sets the initial steps k from CORE_HZ.
    unroll: lax.scan unrolling.
  """
  state_size: int = 3
  width: int = 12
  max_gain: float = 32.
  sample_rate: float = 44100.
  unroll: int = 8

  def initial_state(self, batch):
    return jnp.zeros((batch, self.state_size), jnp.float32)

  def _step_init(self, key, shape):
    """logit(k) of a one-pole low-pass at log-spaced CORE_HZ cutoffs."""
    hz = ssm.log_spaced_hz(key, shape[0], *CORE_HZ)
    k = 1. - jnp.exp(-2. * math.pi * hz / self.sample_rate)
    return jnp.log(k) - jnp.log1p(-k)

  @nn.compact
  def __call__(self, u, state):
    n, width = self.state_size, self.width
    w_in = self.param("in", ssm.normal(1. / math.sqrt(n + 1)),
                      (n + 1, width))
    bias = self.param("bias", lambda key, shape: jax.random.uniform(
        key, shape, minval=-.5, maxval=.5), (width,))
    gain = jnp.exp(self.param("log_gain", lambda key, shape: jnp.log(
        ssm.log_spaced_hz(key, shape[0], 1., self.max_gain)), (width,)))
    state_mix = self.param("state_mix", nn.initializers.zeros, (n, n))
    drive = self.param("drive", nn.initializers.ones, (n,))
    k = jax.nn.sigmoid(self.param("step", self._step_init, (n,)))
    hidden_out = self.param("hidden_out", nn.initializers.zeros, (width, n))
    direct = self.param("direct", nn.initializers.ones, ())
    readout = self.param("readout", nn.initializers.zeros, (n,))
    out = self.param("out", nn.initializers.zeros, (width,))
    rest = jnp.tanh(gain * bias)
    # What depends on u alone, for every sample at once: [time, batch, .].
    u_t = u[..., 0].T
    from_u = gain * (u_t[..., None] * w_in[n] + bias)
    driven = u_t[..., None] * drive

    def step(s, inputs):
      pre, push = inputs
      m = jnp.tanh(gain * (s @ w_in[:n]) + pre) - rest
      v = s @ readout + m @ out
      s = s + k * (s @ state_mix - s + push + m @ hidden_out)
      return STATE_SPAN * jnp.tanh(s / STATE_SPAN), v

    state, v = jax.lax.scan(step, state, (from_u, driven),
                            unroll=self.unroll)
    return (direct * u_t + v).T[..., None], state


class NSS(wiener.FilterChain):
  """Filter -> nonlinear state-space core -> filter, under the emu model
  contract.

  y, state = model.apply(params, x, state), x: [batch, time, 1] float32
  (audio only), y: [batch, time, 1].

  Attributes:
    state_size: states of the core (Core.state_size).
    core_width: tanh units of the core's network (Core.width).
    core_max_gain: the largest initial gain of those units.
    unroll: the core's lax.scan unrolling (and the filters' sequential
      backend's).
    (the filters, the residual WaveNet and the backends:
      emu.models.wiener.FilterChain)
  """
  state_size: int = 3
  core_width: int = 12
  core_max_gain: float = 32.
  unroll: int = 8

  def _core(self, **kwargs):
    return Core(self.state_size, self.core_width, self.core_max_gain,
                self.sample_rate, self.unroll, **kwargs)

  def initial_state(self, batch):
    """(pre's lru state, post's, the residual WaveNet's or (), the core's
    [batch, state_size])."""
    return self._chain_state(batch) + (
        self._core(parent=None).initial_state(batch),)

  def _check(self, x):
    if x.ndim != 3 or x.shape[-1] != 1:
      raise ValueError(
          f"nss takes audio alone, x of shape [batch, time, 1]; got "
          f"{x.shape} (knob channels are not supported: its filters and "
          "core are fixed)")
    for name, least in (("pre_modes", 0), ("post_modes", 0),
                        ("residual_channels", 0), ("state_size", 1),
                        ("core_width", 1)):
      if getattr(self, name) < least:
        raise ValueError(f"--{name} must be >= {least}, got "
                         f"{getattr(self, name)}")

  @nn.compact
  def __call__(self, x, state=None):
    """x: [batch, time, 1] -> (y [batch, time, 1], new state)."""
    self._check(x)
    if state is None:
      state = self.initial_state(x.shape[0])
    pre_state, post_state, residual_state, core_state = state
    u, pre_state = self._gated(self.pre_modes, x, pre_state, "pre")
    v, core_state = self._core(name="core")(u, core_state)
    y, post_state = self._gated(self.post_modes, v, post_state, "post")
    y, residual_state = self._plus_residual(x, y, residual_state)
    return y, (pre_state, post_state, residual_state, core_state)
