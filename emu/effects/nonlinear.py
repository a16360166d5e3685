"""Nonlinear effects: the tanh waveshaper and the diode clipper.

`waveshaper` (static tanh distortion) and `diode_clipper` (an RC low-pass
clipped by diodes, solved by Newton's method every sample, with the
circuit constants `DIODE_*`) take their knobs as a scalar or a per-sample
array [time], concrete or traced. Their building blocks live here too:
`dc_block` (a first-order DC blocker) and `_oversampled`, which runs an
effect at a multiple of the rate through the causal `_RESAMPLING_FILTER`.
"""

import functools

import jax
import jax.numpy as jnp
import scipy.signal

from emu.effects.biquad import _xp
from emu.effects.biquad import biquad
from emu.effects.svf import _check_knobs
from emu.effects.svf import lowpass_knob


DC_BLOCK_HZ = 10.


def dc_block(x, sample_rate, cutoff_hz=DC_BLOCK_HZ):
  """First-order high-pass (bilinear; -3 dB at `cutoff_hz`) that removes DC.

  H(z) = (1 - z^-1) / (1 + k) / (1 + (k - 1) / (k + 1) z^-1), k =
  tan(pi cutoff / sample_rate): zero gain at DC, 0 dB at Nyquist.

  Args:
    x: [..., time] signal.
    sample_rate: Hz.
    cutoff_hz: Hz (scalar).

  Returns:
    [..., time] float32.
  """
  xp = _xp(cutoff_hz, sample_rate)
  k = xp.tan(xp.pi * xp.asarray(cutoff_hz) / sample_rate)
  zero = 0. * k
  b = xp.stack([1. / (1. + k), -1. / (1. + k), zero])
  a = xp.stack([1. + zero, (k - 1.) / (k + 1.), zero])
  return biquad(x, b, a)


# Anti-imaging and anti-aliasing filter for `oversample`: elliptic, 10th
# order, 0.05 dB ripple up to 0.45 x the base rate (19.8 kHz at 44.1 kHz),
# 100 dB down from 0.55 x. Causal (no pre-ringing, no look-ahead), so the
# pair adds about 4.4 base-rate samples of group delay at low frequencies
# (4x), more near 20 kHz. At 30 dB drive on a 1 kHz sine, 4x takes the
# strongest alias from -51 dB to -104 dB (`waveshaper` with its 5 kHz tone)
# and from -41 dB to -84 dB (`diode_clipper`).
_RESAMPLING_FILTER = dict(N=10, rp=0.05, rs=100., band=0.45)


@functools.lru_cache(maxsize=None)
def _resampling_sections(factor, sample_rate):
  """[sections, 6] float64 SOS of the resampling low-pass at factor x rate."""
  spec = _RESAMPLING_FILTER
  return scipy.signal.ellip(spec['N'], spec['rp'], spec['rs'],
                            spec['band'] * sample_rate,
                            fs=factor * sample_rate, output='sos')


def _cascade(x, sections):
  for section in sections:
    x = biquad(x, section[:3], section[3:])
  return x


def _oversampled(fn, x, knobs, sample_rate, factor):
  """fn(x, knobs, rate) run at `factor` x the rate, causally resampled.

  Zero-stuffing (times `factor`) and the low-pass `_RESAMPLING_FILTER`
  go up; the same low-pass and every factor-th sample come down. Scalar
  knobs pass as they are, per-sample ones [time] repeat `factor` times.
  `sample_rate` must be concrete here (the filter is designed by scipy).
  """
  if factor == 1:
    return fn(x, knobs, sample_rate)
  if not isinstance(factor, int) or factor < 1:
    raise ValueError(f'oversample must be a positive int, got {factor!r}')
  sections = _resampling_sections(factor, float(sample_rate))
  n = x.shape[-1]
  up = jnp.zeros(x.shape + (factor,), x.dtype).at[..., 0].set(factor * x)
  up = _cascade(up.reshape(x.shape[:-1] + (n * factor,)), sections)
  knobs = tuple(
      jnp.repeat(jnp.asarray(k), factor, axis=-1, total_repeat_length=n *
                 factor) if jnp.ndim(k) else k for k in knobs)
  y = fn(up, knobs, factor * sample_rate)
  return _cascade(y, sections)[..., ::factor]


def waveshaper(x, drive_db, sample_rate, tone_hz=None, asymmetry=0.,
               dc_block_hz=DC_BLOCK_HZ, oversample=1):
  """Static distortion: drive, a (biased) tanh, a tone low-pass, DC block.

  s = tanh(g x + asymmetry) - tanh(asymmetry), g = 10^(drive_db / 20), then
  s / max(|s(1)|, |s(-1)|): the curve is monotonic, so an input in [-1, 1]
  comes out in [-1, 1] with its full-scale peak at exactly 1 whatever the
  drive, and the level stays comparable across drive settings. With
  asymmetry = 0 the curve is odd (odd harmonics only); a bias makes it
  asymmetric, which adds even harmonics and a DC offset that tracks the
  signal level, hence the DC blocker. Harmonics above Nyquist alias: at 30
  dB drive a 1 kHz sine (amplitude 0.5) grows inharmonic partials at -34
  dB (-51 dB after a 5 kHz tone filter); `oversample=4` takes them to -77
  dB (-104 dB with the tone filter) at the price of the resampling
  filter's causal group delay (about 4 samples; see
  `_RESAMPLING_FILTER`) and its ringing: band-limited, a hard-clipped
  signal overshoots (white noise at 30 dB peaks at 2.4, or 0.96 through a
  5 kHz tone filter). The DC blocker overshoots too, on clipped slow
  waves (an AC-coupled square): the registered 'distortion' on the mini
  recipe peaks at 1.55.

  Args:
    x: [..., time] signal in [-1, 1].
    drive_db: input gain, dB; scalar or [time].
    sample_rate: Hz.
    tone_hz: None, or the cutoff (Hz; scalar or [time]) of a Butterworth
      low-pass after the shaper.
    asymmetry: bias added at the shaper's input (its units: 0.2 moves
      the operating point to tanh(0.2) = 0.197); scalar or [time].
    dc_block_hz: None, or the cutoff (Hz) of `dc_block` at the end.
    oversample: run everything at this many times the rate (int).

  Returns:
    [..., time] float32.
  """
  x = jnp.asarray(x, jnp.float32)
  _check_knobs(x, drive_db=drive_db, asymmetry=asymmetry)
  if tone_hz is not None:
    _check_knobs(x, tone_hz=tone_hz)
  shape = functools.partial(_waveshaper, tone=tone_hz is not None,
                            dc_block_hz=dc_block_hz)
  return _oversampled(shape, x, (drive_db, asymmetry, tone_hz), sample_rate,
                      oversample)


def _waveshaper(x, knobs, sample_rate, tone, dc_block_hz):
  """`waveshaper` at one rate; knobs = (drive_db, asymmetry, tone_hz)."""
  drive_db, asymmetry, tone_hz = knobs
  gain = 10.**(jnp.asarray(drive_db, jnp.float32) / 20.)
  bias = jnp.asarray(asymmetry, jnp.float32)
  offset = jnp.tanh(bias)
  peak = jnp.maximum(jnp.tanh(gain + bias) - offset,
                     jnp.tanh(gain - bias) + offset)
  y = (jnp.tanh(gain * x + bias) - offset) / peak
  if tone:
    y = lowpass_knob(y, tone_hz, sample_rate)
  if dc_block_hz is not None:
    y = dc_block(y, sample_rate, dc_block_hz)
  return y


# A 1N4148-like diode pair (Yeh, "Digital implementation of musical
# distortion circuits", 2009) after R = 2.2 kOhm, C = 33 nF: the RC corner
# 1 / (2 pi R C) is 2.19 kHz.
DIODE_R_OHM = 2.2e3
DIODE_C_FARAD = 33e-9
DIODE_IS_AMP = 2.52e-9
# Thermal voltage (25.85 mV) times the emission coefficient (1.752).
DIODE_VT_VOLT = 0.02585 * 1.752


@functools.partial(jax.jit, static_argnames='iterations')
def _diode_scan(u, k, d, vt, iterations):
  """Solves the discretised clipper for `u` [time, batch] (see below)."""
  lin = 1. + k / 2.

  def step(carry, u_now):
    v_prev, u_prev = carry
    r = (1. - k / 2.) * v_prev + (k / 2.) * (u_now + u_prev)
    # g(v) = lin v + d sinh(v / vt) - r is increasing and convex on r's
    # side of 0, and either term alone reaching r bounds |v|: Newton from
    # that bound falls monotonically onto the root without overshooting
    # (and without overflowing the sinh), whatever the input's jump.
    size = jnp.abs(r)
    v = jnp.sign(r) * jnp.minimum(size / lin, vt * jnp.arcsinh(size / d))
    for _ in range(iterations):
      e = jnp.exp(v / vt)
      g = lin * v + (d / 2.) * (e - 1. / e) - r
      slope = lin + (d / (2. * vt)) * (e + 1. / e)
      v = v - g / slope
    return (v, u_now), v

  zero = jnp.zeros(u.shape[1:], u.dtype)
  _, v = jax.lax.scan(step, (zero, zero), u)
  return v


def diode_clipper(x, drive_db, sample_rate, r_ohm=DIODE_R_OHM,
                  c_farad=DIODE_C_FARAD, is_amp=DIODE_IS_AMP,
                  vt_volt=DIODE_VT_VOLT, iterations=5, oversample=1):
  """An RC low-pass clipped by anti-parallel diodes: a stateful distortion.

  The capacitor voltage V (volts) obeys
    dV/dt = (u - V) / (R C) - (2 Is / C) sinh(V / Vt),
  with u = 10^(drive_db / 20) x volts (x = 1 is 1 V at 0 dB). The RC term
  is integrated with the trapezoidal rule (for small signals the diodes
  conduct nothing and this is the bilinear RC low-pass, -3 dB at 2.17 kHz
  for the defaults) and the diode term with backward Euler: when the
  diodes conduct the equation is stiff (the local time constant is 0.2
  samples at 0.7 V), and a trapezoidal diode term would ring at Nyquist
  with a factor of -0.98 per sample, where backward Euler damps it. Each
  sample solves (1 + k/2) V + d sinh(V / Vt) = r (k = T / RC, d = 2 Is T
  / C) with `iterations` Newton steps from a bracketing start; 5 reach
  float32 precision for every r up to 100 V. The output is V itself: it
  follows a small input and saturates near +-0.7 V (0.70 V at 30 dB
  drive; with `oversample`, the band-limited output of hard clipping
  overshoots, to 1.6 on white noise at 30 dB).

  Args:
    x: [..., time] signal.
    drive_db: input gain, dB; scalar or [time].
    sample_rate: Hz.
    r_ohm, c_farad: the series resistor and the capacitor (scalars).
    is_amp, vt_volt: diode saturation current and n * thermal voltage.
    iterations: Newton steps per sample (static).
    oversample: run at this many times the rate (int); see `waveshaper`.
      At 30 dB drive, 4x takes the aliases of a 1 kHz sine from -41 dB
      to -84 dB.

  Returns:
    [..., time] float32, volts.
  """
  x = jnp.asarray(x, jnp.float32)
  _check_knobs(x, drive_db=drive_db)
  circuit = (r_ohm, c_farad, is_amp, vt_volt)
  clip = functools.partial(_diode_clipper_at, circuit=circuit,
                           iterations=iterations)
  return _oversampled(clip, x, (drive_db,), sample_rate, oversample)


def _diode_clipper_at(x, knobs, sample_rate, circuit, iterations):
  """`diode_clipper` at one rate; knobs = (drive_db,)."""
  drive_db, = knobs
  r_ohm, c_farad, is_amp, vt_volt = circuit
  u = x * 10.**(jnp.asarray(drive_db, jnp.float32) / 20.)
  period = 1. / sample_rate
  k = jnp.float32(period / (r_ohm * c_farad))
  d = jnp.float32(2. * is_amp * period / c_farad)
  flat = jnp.moveaxis(u.reshape((-1, u.shape[-1])), -1, 0)
  v = _diode_scan(flat, k, d, jnp.float32(vt_volt), iterations)
  return jnp.moveaxis(v, 0, -1).reshape(x.shape)
