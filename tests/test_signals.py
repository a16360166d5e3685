"""Tests for emu.signals: the physics of each generator, and purity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from emu import signals

SR = 44100
N = 3 * SR  # long enough for a Welch PSD down to 50 Hz.
NOISES = {
    'white': signals.white,
    'gaussian': signals.gaussian,
    'pink': signals.pink,
    'brown': signals.brown,
}


def spectral_slope(x, sample_rate=SR, low=50., high=10000.):
  """Least-squares slope of the Welch PSD, dB per octave, in [low, high]."""
  freqs, power = scipy.signal.welch(x, sample_rate, nperseg=8192)
  band = (freqs >= low) & (freqs <= high)
  slope, _ = np.polyfit(np.log2(freqs[band]), 10. * np.log10(power[band]), 1)
  return slope


def instantaneous_frequency(x, sample_rate=SR):
  """Hz per sample, from the phase derivative of the analytic signal."""
  phase = np.unwrap(np.angle(scipy.signal.hilbert(np.float64(x))))
  return np.diff(phase) * sample_rate / (2. * np.pi)


@pytest.mark.parametrize('name, expected, tolerance', [
    ('white', 0., 0.5),
    ('gaussian', 0., 0.5),
    ('pink', -3., 0.5),
    ('brown', -6., 0.75),
])
def test_noise_has_expected_spectral_slope(name, expected, tolerance):
  # Given a few seconds of noise at 44.1 kHz, when we fit its PSD in dB
  # against log2(frequency), then the slope is the noise's colour.
  x = np.asarray(NOISES[name](jax.random.key(0), N))
  assert abs(spectral_slope(x) - expected) <= tolerance


@pytest.mark.parametrize('name', sorted(NOISES))
def test_noise_is_float32_peak_one_and_zero_mean(name):
  x = NOISES[name](jax.random.key(1), N)
  assert x.dtype == jnp.float32
  assert x.shape == (N,)
  np.testing.assert_allclose(float(jnp.max(jnp.abs(x))), 1., rtol=1e-6)
  # Brown noise must not wander off to a DC offset.
  assert abs(float(jnp.mean(x))) < 0.01


@pytest.mark.parametrize('name', sorted(NOISES))
def test_noise_is_a_pure_function_of_the_key(name):
  fn = NOISES[name]
  a = fn(jax.random.key(7), N)
  b = fn(jax.random.key(7), N)
  c = fn(jax.random.key(8), N)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


@pytest.mark.parametrize('name', sorted(NOISES))
def test_noise_vmaps_over_keys(name):
  fn = NOISES[name]
  keys = jax.random.split(jax.random.key(3), 3)
  batch = jax.vmap(lambda k: fn(k, 4096))(keys)
  assert batch.shape == (3, 4096)
  np.testing.assert_allclose(batch[1], fn(keys[1], 4096), atol=1e-6)


@pytest.mark.parametrize('f_start, f_end', [(100., 10000.), (10000., 100.)])
def test_sweep_follows_the_exponential_law(f_start, f_end):
  # Given a 1 s log sweep, when we read its instantaneous frequency,
  # then it matches f_start * (f_end / f_start)^(t / T) within 2 %.
  n = SR
  x = np.asarray(signals.sweep(n, SR, f_start, f_end))
  freq = instantaneous_frequency(x)
  for fraction in (0.1, 0.5, 0.9):
    i = int(fraction * n)
    expected = f_start * (f_end / f_start)**fraction
    measured = np.median(freq[i - 100:i + 100])
    np.testing.assert_allclose(measured, expected, rtol=0.02)
  trend = np.median(freq[-5000:-1000]) - np.median(freq[1000:5000])
  assert (trend > 0) == (f_end > f_start)


def test_sweep_with_equal_endpoints_is_a_sine():
  # 1 kHz for 1 s has 2000 zero crossings (phase starts at 0).
  x = np.asarray(signals.sweep(SR, SR, 1000., 1000.))
  crossings = np.sum(np.signbit(x[1:]) != np.signbit(x[:-1]))
  assert abs(crossings - 2000) <= 1
  assert x.dtype == np.float32
  np.testing.assert_allclose(np.max(np.abs(x)), 1., rtol=1e-6)


def test_sweep_stays_in_phase_over_a_long_signal():
  # float32 phase accumulation must not drift: the frequency 20 s into a
  # 20 Hz -> 20 kHz sweep is still right to 0.5 %.
  n = 20 * SR
  x = np.asarray(signals.sweep(n, SR, 20., 20000.))
  freq = instantaneous_frequency(x[-SR:])
  i = SR // 2
  expected = 20. * 1000.**((n - SR + i) / n)
  np.testing.assert_allclose(np.median(freq[i - 200:i + 200]), expected,
                             rtol=0.005)


def test_sweep_takes_traced_endpoints_and_vmaps():
  starts = jnp.array([100., 200.])
  batch = jax.vmap(lambda f: signals.sweep(4096, SR, f, 5000.))(starts)
  np.testing.assert_allclose(batch[1], signals.sweep(4096, SR, 200., 5000.),
                             atol=1e-5)


@pytest.mark.parametrize('kind, first, last', [
    ('flat', 1., 1.),
    ('fade_in', 0., 1.),
    ('fade_out', 1., 0.),
    ('in_out', 0., 0.),
])
def test_envelope_endpoints(kind, first, last):
  env = np.asarray(signals.envelope(kind, 1001))
  assert env.dtype == np.float32 and env.shape == (1001,)
  assert env[0] == pytest.approx(first) and env[-1] == pytest.approx(last)
  assert env.min() >= 0. and env.max() == pytest.approx(1.)
  if kind == 'in_out':
    assert env[500] == pytest.approx(1.)


def test_unknown_envelope_lists_valid_kinds():
  with pytest.raises(ValueError, match='fade_in.*in_out'):
    signals.envelope('ramp', 10)


def test_names():
  assert signals.GENERATORS == ('white', 'pink', 'gaussian', 'brown',
                                'sweep_up', 'sweep_down')
  assert signals.ENVELOPES == ('flat', 'fade_in', 'fade_out', 'in_out')
