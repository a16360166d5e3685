"""A bank of state-variable filters whose coefficients knobs can set.

Each section is Zavalishin's topology-preserving-transform SVF (Simper's
form, the same recursion as emu.effects' knob filters): a real 2-vector
state s = (ic1, ic2), the trapezoidal integrators of the analogue filter,
with cutoff g = tan(pi f / sample_rate) and damping k = 1 / Q:

  v3 = v0 - ic2
  v1 = a1 ic1 + a2 v3               band-pass,  a1 = 1 / (1 + g (g + k))
  v2 = ic2 + a2 ic1 + a3 v3         low-pass,   a2 = g a1, a3 = g a2
  (ic1, ic2) <- (2 v1 - ic1, 2 v2 - ic2)

One layer maps u [batch, time, d_in] to y [batch, time, d_out]:

  v0 = u B  (one input per section)     y = sum_n (M_bp v1 + M_lp v2) + u D

so one section plus D is any biquad with g, k > 0 (both kept positive as
exp of a parameter, which makes every section stable at any setting): the
high-pass is (M_bp, M_lp, D) = (-k, -1, 1), the low-pass (0, 1, 0).

Why a second model next to `lru` (which takes knobs too, knob_hidden > 0):
the two have the same filters at a fixed setting but not the same state.
Here the state is the signal's band-pass and low-pass levels at every
setting, and the mix that makes a high-pass out of them does not depend on
the cutoff: a cutoff knob moves g alone (log g is linear in a log-taper
knob). The diagonal LRU's state is in modal coordinates whose scale the
knob MLP has to learn, and its residues (B C) move with the cutoff in
magnitude and phase; on hpf_knob it fits far more slowly (README, issue 7
models). A state that differs from the lru's (real [batch, N, 2] rather
than complex [batch, N]) and different parameters make this its own
registered model rather than an lru option.

Knobs (channels 1: of x, in [0, 1]; knob_hidden > 0) set each layer's
coefficients per sample through emu.models.ssm.KnobFiLM: offsets of log g,
log k, log-scales of B, and offsets of M and D. Without knob channels, or
with knob_hidden = 0 (knobs then enter B and D as signals), every section
is time-invariant. Deeper stacks put gelu + Dense mixing between layers,
as in `lru` (both are an emu.models.ssm.Stack).
"""

import math

import flax.linen as nn
from jax import lax
import jax.numpy as jnp
import numpy as np

from emu.models import scan
from emu.models import ssm


def film_layout(d_in, n, d_out):
  """The offsets a layer's knob MLP gives, as ssm.KnobFiLM's `layout`."""
  return (("g_log", (n,)), ("damping_log", (n,)), ("B_rho", (n,)),
          ("M", (2, n, d_out)), ("D", (d_in, d_out)))


def section_coefficients(params, film=None):
  """(g [..., N], k [..., N], B [..., d_in, N], M [..., 2, N, d_out],
  D [..., d_in, d_out]) of a layer, per sample when `film` is given."""
  g_log, damping_log = params["g_log"], params["damping_log"]
  b, m, d = params["B"], params["M"], params["D"]
  if film is not None:
    g_log = g_log + film["g_log"]
    damping_log = damping_log + film["damping_log"]
    b = b * jnp.exp(film["B_rho"])[..., None, :]
    m = m + film["M"]
    d = d + film["D"]
  return jnp.exp(g_log), jnp.exp(damping_log), b, m, d


def transition(g, k):
  """The SVF as s_t = A s_{t-1} + b v0_t, v_t = (s_t + s_{t-1}) / 2.

  g, k: [..., N]. Returns A [..., N, 2, 2] and b [..., N, 2]: v = P s + q
  v0 with P = [[a1, -a2], [a2, 1 - a3]], q = (a2, a3), and s_t = 2 v_t -
  s_{t-1} gives A = 2 P - I, b = 2 q.
  """
  a1 = 1. / (1. + g * (g + k))
  a2 = g * a1
  a3 = g * a2
  a = jnp.stack([jnp.stack([2. * a1 - 1., -2. * a2], -1),
                 jnp.stack([2. * a2, 1. - 2. * a3], -1)], -2)
  return a, jnp.stack([2. * a2, 2. * a3], -1)


def matrix_recurrence(a, b, s0, backend="sequential", unroll=1):
  """s_t = a_t s_{t-1} + b_t along axis 1, with 2x2 (or any) matrices.

  a: [batch, time, N, 2, 2] or [N, 2, 2] (time-invariant); b: [batch,
  time, N, 2]; s0: [batch, N, 2]. Returns (s [batch, time, N, 2], s_last).
  """
  scan.check_backend(backend)
  if b.shape[1] == 0:
    return b, s0
  mv = lambda m, v: jnp.einsum("...ij,...j->...i", m, v)
  if backend == "sequential":
    b_t = jnp.moveaxis(b, 1, 0)
    if a.ndim == 3:
      step = lambda s, b_now: (mv(a, s) + b_now,) * 2
      _, s = lax.scan(step, s0, b_t, unroll=unroll)
    else:
      step = lambda s, ab: (mv(ab[0], s) + ab[1],) * 2
      _, s = lax.scan(step, s0, (jnp.moveaxis(a, 1, 0), b_t), unroll=unroll)
    s = jnp.moveaxis(s, 0, 1)
  else:
    a = jnp.broadcast_to(a, b.shape[:2] + a.shape[-3:])
    b = b.at[:, 0].add(mv(a[:, 0], s0))

    def compose(earlier, later):
      a1, b1 = earlier
      a2, b2 = later
      return jnp.einsum("...ij,...jk->...ik", a2, a1), mv(a2, b1) + b2

    s = lax.associative_scan(compose, (a, b), axis=1)[1]
  return s, s[:, -1]


class SVFLayer(ssm.Layer):
  """N parallel TPT state-variable filters with a shared readout.

  Attributes:
    out_features: d_out.
    sections: N, 2-state filters (one = one biquad).
    f_min_hz, f_max_hz, sample_rate: initial cutoffs, log-spaced over
      [f_min_hz, f_max_hz] (ssm.log_spaced_hz).
    knob_hidden, knob_sweep_hz: the knob MLP when the layer is called with
      `knobs`; with a sweep every cutoff starts at `low` Hz for knob 0
      (ssm.FilterFields).
  """
  sections: int = 1

  @nn.compact
  def __call__(self, u, s0, backend="sequential", unroll=1, knobs=None):
    """u: [batch, time, d_in]; s0: [batch, N, 2] float32; knobs: None or
    [batch, time, K]. Returns (y [batch, time, d_out], s_last)."""
    d_in, n, d_out = u.shape[-1], self.sections, self.out_features
    sweep = self._sweep(knobs)
    g_init = self._g_log_init
    if sweep:
      g_init = nn.initializers.constant(
          math.log(math.tan(math.pi * sweep[0] / self.sample_rate)))
    params = {
        "g_log": self.param("g_log", g_init, (n,)),
        # k = sqrt(2): Butterworth sections to start with.
        "damping_log": self.param(
            "damping_log", nn.initializers.constant(0.5 * math.log(2.)),
            (n,)),
        "B": self.param("B", nn.initializers.ones, (d_in, n)),
        "M": self.param("M", ssm.normal(1 / math.sqrt(n)), (2, n, d_out)),
        "D": self.param("D", ssm.normal(1 / math.sqrt(d_in)),
                        (d_in, d_out)),
    }
    film = None
    if knobs is not None:
      film = self._film(film_layout(d_in, n, d_out), knobs, n)
    g, k, b, m, d = section_coefficients(params, film)
    a, q = transition(g, k)
    if knobs is None:
      v0 = u @ b
      du = u @ d
    else:
      v0 = jnp.einsum("btd,btdn->btn", u, b)
      du = jnp.einsum("btd,btdo->bto", u, d)
    s, s_last = matrix_recurrence(a, q * v0[..., None], s0, backend, unroll)
    s_prev = jnp.concatenate([s0[:, None], s[:, :-1]], axis=1)
    v = 0.5 * (s + s_prev)  # [batch, time, N, 2]: band-pass, low-pass
    if knobs is None:
      y = jnp.einsum("btnj,jno->bto", v, m)
    else:
      y = jnp.einsum("btnj,btjno->bto", v, m)
    return y + du, s_last

  def _g_log_init(self, key, shape):
    f_hz = ssm.log_spaced_hz(key, shape[0], self.f_min_hz, self.f_max_hz)
    # Below Nyquist, where tan is finite.
    return jnp.log(jnp.tan(jnp.pi * jnp.minimum(
        f_hz / self.sample_rate, 0.49)))


class SVF(ssm.Stack):
  """A stack of SVF banks under the emu model contract.

  y, state = model.apply(params, x, state), x: [batch, time, channels]
  float32 (channel 0 audio, the rest knobs in [0, 1]), y: [batch, time, 1].
  Attributes not listed here, and their defaults, are ssm.Stack's and
  ssm.FilterFields'.

  Attributes:
    state_size: 2-state SVF sections per layer (one = one biquad); 1.
    knob_hidden: 16 by default: channels 1: are knobs that set every
      section's coefficients per sample through an MLP with this many
      tanh units; 0: knob channels enter B and D as signals.
    backend: 'sequential' by default (lax.scan; the faster on a CPU, and
      quick to compile), or 'associative' (lax.associative_scan over 2x2
      affine maps).
    data_init: start training from least-squares fits of the training
      pair (emu.models.svf_init: a biquad per knob setting, written as
      the SVF, and the knob MLP fitted across the settings); one layer,
      one section. `init` alone ignores it (it sees no data): the
      trainer applies it (data_init.wrap_initializer).
  """
  data_init: bool = False

  def initial_state(self, batch):
    """One float32 [batch, state_size, 2] zero state per layer."""
    return tuple(jnp.zeros((batch, self.state_size, 2), jnp.float32)
                 for _ in range(self.num_layers))

  def _layer(self, index, out_features):
    return SVFLayer(out_features=out_features, sections=self.state_size,
                    **self._layer_fields(), name=f"layer_{index}")

  def frequency_response(self, params, freqs_hz, sample_rate=None,
                         knobs=None):
    """The exact transfer function (audio -> y) of a one-layer SVF.

    Args:
      params: the model's variables ({'params': ...}) or their 'params'.
      freqs_hz: [F] frequencies in Hz.
      sample_rate: Hz; defaults to the model's.
      knobs: [K] knob values in [0, 1] of a conditioned model: the
        response with the knobs held there.

    Returns:
      [F] complex128 numpy array, H(e^{jw}).
    """
    params, film = self._linear_layer(
        params, knobs,
        lambda p: film_layout(*p["B"].shape, p["D"].shape[1]))
    g, k, b, m, d = (np.asarray(v, np.float64)
                     for v in section_coefficients(params, film))
    a, q = (np.asarray(v, np.float64) for v in transition(g, k))
    sample_rate = self.sample_rate if sample_rate is None else sample_rate
    z = np.exp(2j * np.pi * np.asarray(freqs_hz, np.float64) / sample_rate)
    # S = (zI - A)^-1 q V0 z (state after the sample), V = (S + S/z) / 2.
    eye = np.eye(2)
    zi_a = z[:, None, None, None] * eye - a  # [F, N, 2, 2]
    s = np.linalg.solve(zi_a, np.broadcast_to(q[..., None], zi_a.shape[:-1]
                                               + (1,)))[..., 0]
    s = s * z[:, None, None]
    v = 0.5 * (s + s / z[:, None, None])  # [F, N, 2] per unit v0
    gain = np.einsum("fnj,jn,n->f", v, m[..., 0], b[0])
    response = d[0, 0] + gain
    if self.skip:
      response = response + 1
    return response
