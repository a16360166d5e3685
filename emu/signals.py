"""Test signals: coloured noises, logarithmic sine sweeps and envelopes.

Every generator is a pure function of a `jax.random` key (sweeps need none)
and returns a float32 `[n]` signal peak-normalised to 1. `n` is a static
Python int, so each distinct length compiles once; all of them jit and vmap
over keys:

  keys = jax.random.split(jax.random.key(0), 4)
  batch = jax.vmap(lambda k: pink(k, 44100))(keys)   # [4, 44100]

Coloured noises are shaped in the frequency domain (rfft -> gain -> irfft).
That gives the exact slope at every frequency, costs one FFT, and makes a
stationary signal: the same statistics as the thesis's "random offset added
to the previous sample" (brown) walk, without its drift.
"""

import functools

import jax
import jax.numpy as jnp

GENERATORS = ('white', 'pink', 'gaussian', 'brown', 'sweep_up', 'sweep_down')
ENVELOPES = ('flat', 'fade_in', 'fade_out', 'in_out')

# Below this frequency pink and brown flatten out (like a leaky integrator):
# with a pure 1/f^k law, a few seconds of noise would spend much of its
# power under 20 Hz, which nobody hears and a 440 Hz high-pass removes.
DEFAULT_LOW_HZ = 20.0


def peak_normalize(x):
  """Scales `x` [..., n] so that max |x| along the last axis is 1."""
  peak = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
  return x / jnp.maximum(peak, jnp.finfo(x.dtype).tiny)


@functools.partial(jax.jit, static_argnums=1)
def white(key, n):
  """Uniform white noise, float32 [n] in [-1, 1], peak 1."""
  return peak_normalize(jax.random.uniform(key, (n,), jnp.float32, -1., 1.))


@functools.partial(jax.jit, static_argnums=1)
def gaussian(key, n):
  """Gaussian white noise, float32 [n], peak 1."""
  return peak_normalize(jax.random.normal(key, (n,), jnp.float32))


def _coloured(key, n, exponent, sample_rate, low_hz):
  """Gaussian noise whose power falls as f^-exponent above `low_hz`.

  The amplitude gain is (f^2 + low_hz^2)^(-exponent/4): a power slope of
  -3 dB/octave per unit of `exponent` above `low_hz`, flat below it, and
  zero at DC so the signal has no offset.
  """
  spectrum = jnp.fft.rfft(jax.random.normal(key, (n,), jnp.float32))
  freqs = jnp.fft.rfftfreq(n, 1. / sample_rate)
  gain = (freqs**2 + low_hz**2)**(-exponent / 4.)
  gain = gain.at[0].set(0.)
  x = jnp.fft.irfft(spectrum * gain, n)
  return peak_normalize(x.astype(jnp.float32))


@functools.partial(jax.jit, static_argnums=1)
def pink(key, n, sample_rate=44100., low_hz=DEFAULT_LOW_HZ):
  """Pink noise: power falls 3 dB/octave (equal power per octave).

  Args:
    key: a `jax.random` key.
    n: length in samples (static).
    sample_rate: Hz; only places `low_hz` on the frequency axis.
    low_hz: below this frequency (Hz) the spectrum is flat, not rising.

  Returns:
    float32 [n], zero mean, peak 1.
  """
  return _coloured(key, n, 1., sample_rate, low_hz)


@functools.partial(jax.jit, static_argnums=1)
def brown(key, n, sample_rate=44100., low_hz=DEFAULT_LOW_HZ):
  """Brown (red) noise: power falls 6 dB/octave, like a random walk.

  The spectrum of a leaky integrator of white noise with its corner at
  `low_hz`, so the walk never drifts off to a DC offset; the mean is zero.
  Arguments and result as `pink`'s.
  """
  return _coloured(key, n, 2., sample_rate, low_hz)


# Phase is summed in blocks: a float32 running sum of 10^5 cycles keeps only
# ~0.01 cycle of precision, so each block sums at most `_SWEEP_BLOCK` steps
# and the block start phases are wrapped to [0, 1) cycles before summing.
_SWEEP_BLOCK = 1024


@functools.partial(jax.jit, static_argnums=0)
def sweep(n, sample_rate, f_start, f_end):
  """Logarithmic (exponential) sine sweep, phase-continuous.

  The instantaneous frequency at time i (samples) is
  f_start * (f_end / f_start)^(i / n): rising when f_start < f_end, falling
  otherwise, constant when equal.

  Args:
    n: length in samples (static).
    sample_rate: Hz.
    f_start: frequency at sample 0, Hz (> 0; may be traced).
    f_end: frequency at sample n, Hz (> 0; may be traced).

  Returns:
    float32 [n] sine starting at phase 0, peak 1.
  """
  f_start = jnp.asarray(f_start, jnp.float32)
  rate = jnp.log(jnp.asarray(f_end, jnp.float32) / f_start) / n
  # Exact phase advance (cycles) of the continuous sweep over [i, i + 1):
  # (f_start / sample_rate) * exp(rate * i) * expm1(rate) / rate.
  safe = jnp.where(rate == 0., 1., rate)
  step_gain = jnp.where(rate == 0., 1., jnp.expm1(safe) / safe)
  blocks = -(-n // _SWEEP_BLOCK)
  i = jnp.arange(blocks * _SWEEP_BLOCK, dtype=jnp.float32)
  steps = (f_start / sample_rate) * step_gain * jnp.exp(rate * i)
  within = jnp.cumsum(steps.reshape(blocks, _SWEEP_BLOCK), axis=1)
  starts = jnp.cumsum(jnp.mod(within[:, -1], 1.))
  # Exclusive sums: the phase at sample i excludes step i.
  starts = jnp.concatenate([jnp.zeros((1,)), jnp.mod(starts[:-1], 1.)])
  within = jnp.concatenate([jnp.zeros((blocks, 1)), within[:, :-1]], axis=1)
  cycles = (starts[:, None] + within).reshape(-1)[:n]
  return peak_normalize(jnp.sin(2. * jnp.pi * cycles))


def envelope(kind, n):
  """Amplitude envelope, float32 [n] in [0, 1].

  Args:
    kind: 'flat' (all ones), 'fade_in' (linear 0 -> 1), 'fade_out' (1 -> 0)
      or 'in_out' (0 -> 1 -> 0, a triangle peaking mid-way).
    n: length in samples.

  Returns:
    float32 [n].

  Raises:
    ValueError: for an unknown `kind`.
  """
  if kind == 'flat':
    return jnp.ones((n,), jnp.float32)
  if kind == 'fade_in':
    return jnp.linspace(0., 1., n, dtype=jnp.float32)
  if kind == 'fade_out':
    return jnp.linspace(1., 0., n, dtype=jnp.float32)
  if kind == 'in_out':
    ramp = jnp.linspace(-1., 1., n, dtype=jnp.float32)
    return 1. - jnp.abs(ramp)
  raise ValueError(
      f'unknown envelope kind {kind!r}; valid kinds: {", ".join(ENVELOPES)}')
