"""Time-varying biquads as state-variable filters: the knob filters.

Effects with knobs (the thesis's "future research": parameters as inputs,
harder effects) take each knob as a scalar or a per-sample array [time],
concrete or traced, so a knob may turn while the signal plays (`_check_knobs`
checks the shapes for every knob effect of `emu.effects`). Concrete knobs
compute their coefficients in float64 numpy, traced ones in float32 jnp.

Here: `highpass_knob`, `lowpass_knob`, `peaking_knob` and `biquad_tv`
(biquads as state-variable filters, which take a moving knob without
bursts).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from emu.effects.biquad import BUTTERWORTH_Q
from emu.effects.biquad import _xp


def _check_knobs(x, **knobs):
  """Raises ValueError unless each knob is a scalar or [time] like `x`."""
  n = x.shape[-1]
  for name, value in knobs.items():
    shape = jnp.shape(value)
    if shape not in ((), (n,)):
      raise ValueError(
          f'{name} must be a scalar or a per-sample array [{n}] (the '
          f'length of x), got shape {shape}')


def _svf_coefficients(kind, f0, sample_rate, q, gain_db=0.):
  """(g, k, m0, m1, m2) [..., 5] of the state-variable form of an RBJ filter.

  g = tan(pi f0 / sample_rate) is the pre-warped integrator gain and k =
  1 / Q the damping; the output mixes input, band-pass and low-pass as
  m0 v0 + m1 v1 + m2 v2 (Simper, "Linear trapezoidal integrated SVF",
  2013): high-pass (1, -k, -1), low-pass (0, 0, 1), and the peaking bell
  (1, k (A^2 - 1), 0) with k = 1 / (Q A), A = 10^(gain_db / 40). These are
  the cookbook's bilinear transfer functions exactly, with no small
  difference to lose to float32 when a knob is traced.

  Args:
    kind: 'highpass', 'lowpass' or 'peaking'.
    f0: Hz; scalar or [time].
    sample_rate: Hz.
    q: quality factor; scalar or [time].
    gain_db: dB ('peaking' only); scalar or [time].

  Returns:
    float32 [5] for scalar knobs, [time, 5] when any knob is per-sample.
  """
  xp = _xp(f0, sample_rate, q, gain_db)
  if xp is np:
    f0, q, gain_db = (np.asarray(v, np.float64) for v in (f0, q, gain_db))
  g = xp.tan(xp.pi * f0 / sample_rate)
  one, zero = xp.ones_like(g), xp.zeros_like(g)
  if kind == 'highpass':
    k = 1. / q
    mix = (one, -k, -one)
  elif kind == 'lowpass':
    k = 1. / q
    mix = (zero, zero, one)
  elif kind == 'peaking':
    log_amp = gain_db * (math.log(10.) / 40.)
    k = 1. / (q * xp.exp(log_amp))
    # A^2 - 1 = expm1(2 ln A) keeps its precision near 0 dB.
    mix = (one, k * xp.expm1(2. * log_amp), zero)
  else:
    raise ValueError(f'unknown kind {kind!r}')
  coefficients = xp.stack(xp.broadcast_arrays(g, k, *mix), axis=-1)
  return jnp.asarray(coefficients, jnp.float32)


@jax.jit
def _svf(x, coefficients):
  """`x` [..., time] through the TPT state-variable filter.

  coefficients: (g, k, m0, m1, m2), [5] for all samples or [time, 5] per
  sample. Zavalishin's topology-preserving transform of the analogue SVF
  (trapezoidal integrators, Simper's form): its two states are the
  integrators' outputs, band-pass and low-pass levels of the signal,
  whatever the cutoff, so a knob that jumps from 20 Hz to 2 kHz leaves a
  transient the size of the signal (the delta form of `biquad`, whose
  states scale with the coefficients, answers such a jump with 200 times
  the signal). With constant coefficients it is within 1e-6 of float64
  `scipy.signal.lfilter` on white noise (`biquad`: 2e-7).
  """
  flat = x.reshape((-1, x.shape[-1])).T
  g, k, m0, m1, m2 = (coefficients[..., i] for i in range(5))
  a1 = 1. / (1. + g * (g + k))
  a2 = g * a1
  a3 = g * a2
  per_sample = jnp.stack([a1, a2, a3, m0, m1, m2], axis=-1)

  def step(state, inputs):
    ic1, ic2 = state
    v0, taps = inputs if per_sample.ndim == 2 else (inputs, per_sample)
    b1, b2, b3, w0, w1, w2 = (taps[i] for i in range(6))
    v3 = v0 - ic2
    v1 = b1 * ic1 + b2 * v3
    v2 = ic2 + b2 * ic1 + b3 * v3
    return (2. * v1 - ic1, 2. * v2 - ic2), w0 * v0 + w1 * v1 + w2 * v2

  zero = jnp.zeros(flat.shape[1:], flat.dtype)
  xs = (flat, per_sample) if per_sample.ndim == 2 else flat
  _, y = jax.lax.scan(step, (zero, zero), xs)
  return y.T.reshape(x.shape)


def _run_svf(x, coefficients):
  if coefficients.ndim == 2 and coefficients.shape[0] != x.shape[-1]:
    raise ValueError(f'per-sample coefficients cover '
                     f'{coefficients.shape[0]} samples but x has '
                     f'{x.shape[-1]}')
  return _svf(x, coefficients)


def _svf_from_biquad(b, a):
  """(g, k, m0, m1, m2) [..., 5] with the transfer function b(z) / a(z).

  The SVF's denominator is d0 + 2 (g^2 - 1) z^-1 + (1 - g k + g^2) z^-2
  with d0 = 1 + g k + g^2; matching a(z) at z = +-1 and in a2 gives g and
  k, and the numerator is matched by the mix of input, band-pass
  g (1 - z^-2) and low-pass g^2 (1 + z^-1)^2: m0 from z = -1, m2 from
  z = 1, m1 from b0 - b2. Needs a stable biquad (|poles| < 1).
  """
  xp = _xp(b, a)
  b, a = xp.asarray(b), xp.asarray(a)
  b, a = b / a[..., :1], a / a[..., :1]
  a1, a2 = a[..., 1], a[..., 2]
  at_minus = 1. - a1 + a2
  g = xp.sqrt((1. + a1 + a2) / at_minus)
  d0 = 4. / at_minus
  k = (1. - a2) * d0 / (2. * g)
  m0 = (b[..., 0] - b[..., 1] + b[..., 2]) * d0 / 4.
  m2 = (b[..., 0] + b[..., 1] + b[..., 2]) * d0 / (4. * g**2) - m0
  m1 = ((b[..., 0] - b[..., 2]) * d0 - 2. * g * k * m0) / (2. * g)
  coefficients = xp.stack(xp.broadcast_arrays(g, k, m0, m1, m2), axis=-1)
  return jnp.asarray(coefficients, jnp.float32)


def biquad_tv(x, b, a):
  """A biquad whose coefficients may change every sample, from zero state.

  Sample t uses (b[t], a[t]), realised as the state-variable filter of
  `_svf` with that transfer function: with constant taps it is `biquad`'s
  filter (within 1e-6), and while the taps move its states stay at the
  signal's scale (see `_svf`), where a direct or delta form would
  answer a jump with a burst. Concrete taps are converted in float64;
  traced [time, 3] taps convert in float32, which at very low cutoffs
  (poles at z ~ 1) costs precision. For knobs prefer `highpass_knob`,
  `lowpass_knob` and `peaking_knob`, which build the SVF coefficients
  directly.

  Args:
    x: [..., time] signal (cast to float32).
    b: [time, 3] (or [3]) numerator taps per sample; numpy or jnp.
    a: [time, 3] (or [3]) denominator taps per sample (a stable biquad).

  Returns:
    [..., time] float32.
  """
  x = jnp.asarray(x, jnp.float32)
  return _run_svf(x, _svf_from_biquad(b, a))


def highpass_knob(x, cutoff_hz, sample_rate, q=BUTTERWORTH_Q):
  """High-pass biquad with a cutoff knob (Hz) that may move every sample.

  The cookbook's high-pass (`highpass`, to within 1e-6 for a constant
  cutoff) as a state-variable filter that takes the knob moving in its
  stride (see `_svf`). The thesis suggests cutoffs of 20 Hz - 2 kHz as
  the knob's range (`KNOB_EFFECTS['hpf_knob']`).

  Args:
    x: [..., time] signal.
    cutoff_hz: Hz; a scalar or [time], concrete or traced.
    sample_rate: Hz.
    q: quality factor; scalar or [time].

  Returns:
    [..., time] float32.
  """
  x = jnp.asarray(x, jnp.float32)
  _check_knobs(x, cutoff_hz=cutoff_hz, q=q)
  return _run_svf(x, _svf_coefficients('highpass', cutoff_hz, sample_rate,
                                       q))


def lowpass_knob(x, cutoff_hz, sample_rate, q=BUTTERWORTH_Q):
  """Low-pass biquad with a cutoff knob (Hz, scalar or [time]); see above."""
  x = jnp.asarray(x, jnp.float32)
  _check_knobs(x, cutoff_hz=cutoff_hz, q=q)
  return _run_svf(x, _svf_coefficients('lowpass', cutoff_hz, sample_rate,
                                       q))


def peaking_knob(x, f0, gain_db, sample_rate, q=BUTTERWORTH_Q):
  """Peaking EQ with centre (`f0`, Hz) and gain (`gain_db`, dB) knobs.

  The cookbook's `peaking` (to within 1e-6 for constant knobs) as a
  state-variable filter (see `_svf`).

  Args:
    x: [..., time] signal.
    f0: Hz; a scalar or [time], concrete or traced.
    gain_db: dB at f0; a scalar or [time].
    sample_rate: Hz.
    q: quality factor; scalar or [time].

  Returns:
    [..., time] float32.
  """
  x = jnp.asarray(x, jnp.float32)
  _check_knobs(x, f0=f0, gain_db=gain_db, q=q)
  return _run_svf(x, _svf_coefficients('peaking', f0, sample_rate, q,
                                       gain_db))
