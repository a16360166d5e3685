"""Tests for emu.effects against scipy.signal and the cookbook's formulas."""

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from emu import effects

SR = 44100


@pytest.fixture(scope='module')
def noise():
  """1 s of uniform white noise, float32 [44100]."""
  return np.random.default_rng(0).uniform(-1., 1., SR).astype(np.float32)


def cookbook(kind, f0, fs, q, gain_db=0.):
  """RBJ cookbook coefficients written out scalar by scalar, as in the text."""
  w0 = 2. * math.pi * f0 / fs
  cos, alpha = math.cos(w0), math.sin(w0) / (2. * q)
  amp = 10.**(gain_db / 40.)
  root = 2. * math.sqrt(amp) * alpha
  if kind == 'lowpass':
    b = [(1 - cos) / 2, 1 - cos, (1 - cos) / 2]
    a = [1 + alpha, -2 * cos, 1 - alpha]
  elif kind == 'highpass':
    b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
    a = [1 + alpha, -2 * cos, 1 - alpha]
  elif kind == 'bandpass':
    b = [alpha, 0., -alpha]
    a = [1 + alpha, -2 * cos, 1 - alpha]
  elif kind == 'peaking':
    b = [1 + alpha * amp, -2 * cos, 1 - alpha * amp]
    a = [1 + alpha / amp, -2 * cos, 1 - alpha / amp]
  elif kind == 'low_shelf':
    b = [amp * ((amp + 1) - (amp - 1) * cos + root),
         2 * amp * ((amp - 1) - (amp + 1) * cos),
         amp * ((amp + 1) - (amp - 1) * cos - root)]
    a = [(amp + 1) + (amp - 1) * cos + root,
         -2 * ((amp - 1) + (amp + 1) * cos),
         (amp + 1) + (amp - 1) * cos - root]
  elif kind == 'high_shelf':
    b = [amp * ((amp + 1) + (amp - 1) * cos + root),
         -2 * amp * ((amp - 1) + (amp + 1) * cos),
         amp * ((amp + 1) + (amp - 1) * cos - root)]
    a = [(amp + 1) - (amp - 1) * cos + root,
         2 * ((amp - 1) - (amp + 1) * cos),
         (amp + 1) - (amp - 1) * cos - root]
  return np.array(b) / a[0], np.array(a) / a[0]


# (kind, filter function, its arguments after x and sample_rate).
CASES = [
    ('highpass', effects.highpass, (440., 1. / math.sqrt(2.))),
    ('highpass', effects.highpass, (60., 2.)),
    ('lowpass', effects.lowpass, (2000., 1. / math.sqrt(2.))),
    ('lowpass', effects.lowpass, (15000., 0.5)),
    ('bandpass', effects.bandpass, (1000., 3.)),
    ('peaking', effects.peaking, (1000., 1., 6.)),
    ('peaking', effects.peaking, (100., 4., -12.)),
    ('low_shelf', effects.low_shelf, (200., 1. / math.sqrt(2.), 6.)),
    ('high_shelf', effects.high_shelf, (5000., 1. / math.sqrt(2.), -9.)),
]


def _call(fn, x, args):
  f0, rest = args[0], args[1:]
  return fn(x, f0, SR, *rest)


@pytest.mark.parametrize('kind, fn, args', CASES)
def test_filter_matches_lfilter_with_cookbook_coefficients(
    kind, fn, args, noise):
  # Given 1 s of white noise, when filtered in float32 JAX, then it is
  # within 1e-5 of float64 scipy.signal.lfilter with the cookbook taps.
  b, a = cookbook(kind, args[0], SR, *args[1:])
  expected = scipy.signal.lfilter(b, a, noise.astype(np.float64))
  got = np.asarray(_call(fn, noise, args))
  assert got.dtype == np.float32
  assert np.max(np.abs(got - expected)) <= 1e-5


@pytest.mark.parametrize('kind, fn, args', CASES)
def test_coefficient_functions_match_the_cookbook(kind, fn, args):
  del fn
  coefficients = getattr(effects, f'{kind}_coefficients')
  b, a = coefficients(args[0], SR, *args[1:])
  want_b, want_a = cookbook(kind, args[0], SR, *args[1:])
  np.testing.assert_allclose(b, want_b, rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(a, want_a, rtol=1e-12, atol=1e-15)


def test_thesis_highpass_is_a_second_order_butterworth(noise):
  b, a = effects.analytic_coefficients('hpf440', SR)
  want_b, want_a = scipy.signal.butter(2, 440., 'highpass', fs=SR)
  np.testing.assert_allclose(b, want_b, rtol=1e-12)
  np.testing.assert_allclose(a, want_a, rtol=1e-12)
  expected = scipy.signal.lfilter(want_b, want_a, noise.astype(np.float64))
  got = np.asarray(effects.EFFECTS['hpf440'](noise, SR))
  assert np.max(np.abs(got - expected)) <= 1e-5


FREQS = np.geomspace(30., 20000., 10)


@pytest.mark.parametrize('kind, fn, args', CASES)
def test_frequency_response_matches_freqz(kind, fn, args):
  del fn
  b, a = getattr(effects, f'{kind}_coefficients')(args[0], SR, *args[1:])
  _, want = scipy.signal.freqz(b, a, worN=FREQS, fs=SR)
  got = effects.frequency_response(b, a, FREQS, SR)
  np.testing.assert_allclose(got, want, rtol=1e-10)


def _db(h):
  return 20. * np.log10(np.abs(h))


def test_butterworth_magnitudes_follow_the_analogue_prototype():
  # Bilinear transform: |H|^2 = 1 / (1 + (W_c / W)^4), W = tan(pi f / fs).
  warp = np.tan(np.pi * FREQS / SR)
  for cutoff in (440., 2000.):
    ratio = warp / math.tan(math.pi * cutoff / SR)
    hp = effects.frequency_response(
        *effects.highpass_coefficients(cutoff, SR), FREQS, SR)
    lp = effects.frequency_response(
        *effects.lowpass_coefficients(cutoff, SR), FREQS, SR)
    np.testing.assert_allclose(np.abs(hp)**2, 1. / (1. + ratio**-4.),
                               rtol=1e-9)
    np.testing.assert_allclose(np.abs(lp)**2, 1. / (1. + ratio**4.),
                               rtol=1e-9)
    at_cutoff = effects.frequency_response(
        *effects.highpass_coefficients(cutoff, SR), [cutoff], SR)
    np.testing.assert_allclose(_db(at_cutoff), -3.0103, atol=1e-4)


@pytest.mark.parametrize('gain_db', [-12., 6.])
def test_gains_at_the_characteristic_frequencies(gain_db):
  f0, nyquist = 1000., SR / 2.
  at = lambda coefficients, f: _db(effects.frequency_response(
      *coefficients, [f], SR))[0]
  assert at(effects.peaking_coefficients(f0, SR, 1., gain_db), f0) == (
      pytest.approx(gain_db, abs=1e-9))
  assert at(effects.bandpass_coefficients(f0, SR, 2.), f0) == pytest.approx(
      0., abs=1e-9)
  low = effects.low_shelf_coefficients(f0, SR, gain_db=gain_db)
  high = effects.high_shelf_coefficients(f0, SR, gain_db=gain_db)
  # Shelves: the full gain on their side, half of it (in dB) at f0.
  assert at(low, 0.) == pytest.approx(gain_db, abs=1e-9)
  assert at(low, nyquist) == pytest.approx(0., abs=1e-9)
  assert at(low, f0) == pytest.approx(gain_db / 2., abs=1e-9)
  assert at(high, nyquist) == pytest.approx(gain_db, abs=1e-9)
  assert at(high, 0.) == pytest.approx(0., abs=1e-9)
  assert at(high, f0) == pytest.approx(gain_db / 2., abs=1e-9)


def test_coefficients_and_filters_take_traced_knobs(noise):
  # A knob may be a traced value: jit over the cutoff and differentiate.
  traced = jax.jit(lambda c: effects.highpass_coefficients(c, SR))(440.)
  for got, want in zip(traced, effects.highpass_coefficients(440., SR)):
    np.testing.assert_allclose(got, want, rtol=1e-6)
  x = jnp.asarray(noise[:4096])
  energy = lambda cutoff: jnp.sum(effects.highpass(x, cutoff, SR)**2)
  slope = jax.grad(energy)(1000.)
  # A higher cutoff removes more of the noise.
  assert np.isfinite(slope) and slope < 0.
  response = jax.jit(lambda g: effects.frequency_response(
      *effects.peaking_coefficients(1000., SR, 1., g), jnp.array([1000.]),
      SR))(6.)
  np.testing.assert_allclose(_db(np.asarray(response)), 6., atol=1e-3)


def test_biquad_filters_the_last_axis_of_a_batch(noise):
  b, a = effects.analytic_coefficients('peak1k', SR)
  x = noise[:3000].reshape(2, 3, 500)
  y = np.asarray(effects.biquad(x, b, a))
  assert y.shape == x.shape
  for row, out in zip(x.reshape(6, 500), y.reshape(6, 500)):
    np.testing.assert_allclose(out, scipy.signal.lfilter(b, a, row),
                               atol=1e-6)


def test_biquad_normalises_by_a0(noise):
  b, a = effects.analytic_coefficients('lpf2k', SR)
  np.testing.assert_allclose(effects.biquad(noise, 3. * b, 3. * a),
                             effects.biquad(noise, b, a), atol=1e-7)


@pytest.mark.parametrize('name', sorted(effects.EFFECTS))
def test_named_effects_apply_their_analytic_coefficients(name, noise):
  b, a = effects.analytic_coefficients(name, SR)
  expected = scipy.signal.lfilter(b, a, noise.astype(np.float64))
  got = np.asarray(effects.effect(name)(noise, SR))
  assert np.max(np.abs(got - expected)) <= 1e-5


def test_named_effects_and_lookup_errors():
  assert set(effects.EFFECTS) == {'hpf440', 'lpf2k', 'peak1k', 'lowshelf'}
  with pytest.raises(ValueError, match='hpf440'):
    effects.effect('hpf441')
  with pytest.raises(ValueError, match='lowshelf'):
    effects.analytic_coefficients('fuzz', SR)


def test_ten_seconds_filter_quickly():
  # A sanity print, not an assertion: CI machines vary.
  x = np.random.default_rng(1).uniform(-1., 1., 10 * SR).astype(np.float32)
  effects.highpass(x, 440., SR).block_until_ready()
  start = time.perf_counter()
  effects.highpass(x, 440., SR).block_until_ready()
  print(f'highpass of 10 s at 44.1 kHz: '
        f'{1000. * (time.perf_counter() - start):.1f} ms after compile')
