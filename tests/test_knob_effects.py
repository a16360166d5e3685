"""Tests for emu.effects' knob effects: EQs with knobs, distortion, compressor.

Known answers: the fixed-knob filters and their exact responses, harmonic
series of shaped sines, the RC low-pass under the diode clipper, and the
compressor's static curve and time constants.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emu import effects

SR = 44100


@pytest.fixture(scope='module')
def noise():
  """1 s of uniform white noise, float32 [44100]."""
  return np.random.default_rng(0).uniform(-1., 1., SR).astype(np.float32)


def _db(v):
  return 20. * np.log10(np.abs(v))


# EQs with knobs.


@pytest.mark.parametrize('cutoff', [20., 440., 2000.])
def test_highpass_knob_at_a_constant_cutoff_is_highpass(cutoff, noise):
  # Given a fixed cutoff as a number, a per-sample array or a traced value,
  # then the knob filter gives `highpass`'s output.
  want = np.asarray(effects.highpass(noise, cutoff, SR))
  per_sample = np.full(SR, cutoff)
  traced = jax.jit(lambda c: effects.highpass_knob(noise, c, SR))
  for got in (effects.highpass_knob(noise, cutoff, SR),
              effects.highpass_knob(noise, per_sample, SR),
              traced(cutoff),
              traced(jnp.asarray(per_sample, jnp.float32))):
    assert np.max(np.abs(np.asarray(got) - want)) <= 1e-5


def test_peaking_knob_at_constant_knobs_is_peaking(noise):
  want = np.asarray(effects.peaking(noise, 1000., SR, 1., 6.))
  traced = jax.jit(lambda f, g: effects.peaking_knob(noise, f, g, SR, 1.))
  for got in (effects.peaking_knob(noise, 1000., 6., SR, 1.),
              effects.peaking_knob(noise, np.full(SR, 1000.), 6., SR, 1.),
              traced(jnp.full(SR, 1000.), jnp.full(SR, 6.))):
    assert np.max(np.abs(np.asarray(got) - want)) <= 1e-5


@pytest.mark.parametrize('name', sorted(effects.EFFECTS))
def test_biquad_tv_with_constant_taps_is_biquad(name, noise):
  b, a = effects.analytic_coefficients(name, SR)
  got = effects.biquad_tv(noise, np.tile(b, (SR, 1)), np.tile(a, (SR, 1)))
  assert np.max(np.abs(got - effects.biquad(noise, b, a))) <= 2e-6
  x = noise[:1000].reshape(2, 500)
  batch = effects.biquad_tv(x, b, a)
  np.testing.assert_allclose(batch, effects.biquad(x, b, a), atol=2e-6)


def test_a_jumping_cutoff_leaves_no_burst(noise):
  # Given a cutoff jumping between 20 Hz and 2 kHz every 50 ms, then the
  # output stays at the signal's scale: the states are signal levels.
  cutoff = np.where((np.arange(SR) // 2205) % 2 == 0, 20., 2000.)
  y = effects.highpass_knob(noise, cutoff, SR)
  assert np.max(np.abs(y)) < 2.
  b, a = effects.highpass_coefficients(cutoff, SR)
  y = effects.biquad_tv(noise, np.stack(b, -1), np.stack(a, -1))
  assert np.max(np.abs(y)) < 2.


def test_biquad_tv_takes_per_sample_and_shared_taps_together(noise):
  # A per-sample numerator over a fixed denominator: a gain ramp.
  b, a = effects.analytic_coefficients('lpf2k', SR)
  ramp = np.linspace(0., 1., SR)[:, None]
  y = effects.biquad_tv(noise, ramp * b, a)
  want = ramp[:, 0] * effects.biquad(noise, b, a)
  # The numerator only mixes the SVF's outputs: the ramp acts at once.
  assert np.max(np.abs(y - want)) < 2e-6


@pytest.mark.parametrize('first, second', [(100., 1000.), (1000., 100.)])
def test_a_cutoff_switched_halfway_settles_to_each_fixed_filter(
    first, second, noise):
  # Given a cutoff that jumps at the midpoint, then the first half is the
  # first filter exactly and the second half, once the switch's transient
  # has died (0.1 s), the second filter's steady state.
  half, settle = SR // 2, SR // 10
  cutoff = np.where(np.arange(SR) < half, first, second)
  y = np.asarray(effects.highpass_knob(noise, cutoff, SR))
  np.testing.assert_allclose(
      y[:half], effects.highpass(noise, first, SR)[:half], atol=1e-6)
  steady = np.asarray(effects.highpass(noise, second, SR))
  assert np.max(np.abs(y[half + settle:] - steady[half + settle:])) <= 1e-5
  assert np.max(np.abs(y[half:half + 10] - steady[half:half + 10])) > 1e-3


def _measured_response(fn, n=1 << 15):
  """rfft of fn's impulse response [n] and its frequencies (Hz)."""
  impulse = np.zeros(n, np.float32)
  impulse[0] = 1.
  return np.fft.rfft(np.asarray(fn(impulse), np.float64)), np.fft.rfftfreq(
      n, 1. / SR)


@pytest.mark.parametrize('cutoff', [20., 100., 440., 2000.])
def test_highpass_knob_response_matches_the_analytic_one(cutoff):
  # Knob values traced through jit, as a knob-conditioned model would see.
  filt = jax.jit(lambda x, c: effects.highpass_knob(x, c, SR))
  got, freqs = _measured_response(lambda x: filt(x, cutoff))
  want = effects.frequency_response(
      *effects.highpass_coefficients(cutoff, SR), freqs, SR)
  # In dB down to -60 dB (below that float32's floor shows), absolutely
  # everywhere.
  band = np.abs(want) > 1e-3
  assert np.max(np.abs(_db(got[band]) - _db(want[band]))) <= 0.01
  assert np.max(np.abs(got - want)) <= 5e-5


@pytest.mark.parametrize('f0, gain_db', [(100., -12.), (1000., 6.),
                                         (8000., 12.), (3000., 0.5)])
def test_peaking_knob_response_matches_the_analytic_one(f0, gain_db):
  filt = jax.jit(lambda x, f, g: effects.peaking_knob(x, f, g, SR, 1.))
  got, freqs = _measured_response(lambda x: filt(x, f0, gain_db))
  want = effects.frequency_response(
      *effects.peaking_coefficients(f0, SR, 1., gain_db), freqs, SR)
  assert np.max(np.abs(_db(got) - _db(want))) <= 0.01
  assert _db(effects.frequency_response(
      *effects.peaking_coefficients(f0, SR, 1., gain_db), [f0], SR)[0]) == (
          pytest.approx(gain_db, abs=1e-6))


def test_a_knob_of_the_wrong_length_is_refused(noise):
  with pytest.raises(ValueError, match=r'per-sample array \[44100\]'):
    effects.highpass_knob(noise, np.full(100, 440.), SR)


# Distortion.


def _sine(freq=1000., amplitude=0.5, seconds=1.):
  t = np.arange(int(seconds * SR)) / SR
  return (amplitude * np.sin(2. * np.pi * freq * t)).astype(np.float32)


def _harmonics(y, freq=1000.):
  """Amplitudes of the harmonics of `freq` below Nyquist in y's last 0.5 s.

  Half a second holds a whole number of cycles of 1 kHz at 44.1 kHz, so
  each harmonic falls on one FFT bin (2 Hz apart) and no window is needed.
  Also returns the largest other (inharmonic, above 10 Hz) component.
  """
  tail = np.asarray(y, np.float64)[-SR // 2:]
  spectrum = np.abs(np.fft.rfft(tail)) * 2. / len(tail)
  count = int(SR / 2. // freq)
  bins = (np.arange(1, count + 1) * freq / 2.).astype(int)
  others = np.ones(len(spectrum), bool)
  others[bins] = False
  others[:5] = False
  return spectrum[bins], spectrum[others].max()


def _thd(harmonics):
  return np.sqrt(np.sum(harmonics[1:]**2)) / harmonics[0]


def test_a_symmetric_shaper_makes_odd_harmonics_only():
  h, _ = _harmonics(effects.waveshaper(_sine(), 20., SR))
  assert _db(h[2] / h[0]) > -20.  # a strong third harmonic,
  assert np.max(_db(h[1::2] / h[0])) < -60.  # no even ones.


def test_an_asymmetric_shaper_adds_even_harmonics():
  h, _ = _harmonics(effects.waveshaper(_sine(), 12., SR, asymmetry=0.3))
  assert _db(h[1] / h[0]) > -30.


def test_thd_grows_with_drive():
  thd = [_thd(_harmonics(effects.waveshaper(_sine(), drive, SR,
                                            asymmetry=0.2))[0])
         for drive in (0., 6., 12., 18., 24., 30.)]
  assert np.all(np.diff(thd) > 0.), thd
  assert thd[0] < 0.06 and thd[-1] > 0.4


def test_the_shaper_peaks_at_one_for_a_full_scale_input():
  ramp = np.linspace(-1., 1., 1001, dtype=np.float32)
  for drive, asymmetry in ((0., 0.), (30., 0.), (10., 0.5)):
    y = effects.waveshaper(ramp, drive, SR, asymmetry=asymmetry,
                           dc_block_hz=None)
    assert np.max(np.abs(y)) == pytest.approx(1., abs=1e-6)
    assert np.all(np.diff(np.asarray(y)) >= -1e-6)  # monotonic


def test_the_dc_blocker_removes_the_asymmetric_shapers_offset():
  x = _sine(amplitude=0.5)
  raw = effects.waveshaper(x, 20., SR, asymmetry=0.3, dc_block_hz=None)
  blocked = effects.waveshaper(x, 20., SR, asymmetry=0.3)
  assert abs(np.mean(raw[SR // 2:])) > 0.1
  assert abs(np.mean(blocked[SR // 2:])) < 1e-4
  # 10 Hz corner: the 1 kHz fundamental passes.
  assert _harmonics(blocked)[0][0] == pytest.approx(
      _harmonics(raw)[0][0], rel=1e-3)


def test_oversampling_removes_aliases():
  # At 30 dB drive the harmonics of 1 kHz run past Nyquist and fold back
  # between the harmonics; at 4x they are filtered out before folding.
  x = _sine()
  for fn in (lambda o: effects.waveshaper(x, 30., SR, tone_hz=5000.,
                                          oversample=o),
             lambda o: effects.diode_clipper(x, 30., SR, oversample=o)):
    h1, alias1 = _harmonics(fn(1))
    h4, alias4 = _harmonics(fn(4))
    assert _db(alias1 / h1[0]) > -60.
    assert _db(alias4 / h4[0]) < -80.
    # The strong harmonics under 5 kHz (1, 3, 5) hardly change.
    np.testing.assert_allclose(_db(h4[:5:2]), _db(h1[:5:2]), atol=0.5)


# The diode clipper.


def _gain_db(y, x_amplitude, freq):
  """Gain (dB) of the `freq` component of y's last half second."""
  tail = np.asarray(y, np.float64)[-SR // 2:]
  t = np.arange(len(y))[-SR // 2:] / SR
  basis = np.stack([np.sin(2. * np.pi * freq * t),
                    np.cos(2. * np.pi * freq * t)], axis=1)
  coefficients = np.linalg.lstsq(basis, tail, rcond=None)[0]
  return _db(np.hypot(*coefficients) / x_amplitude)


def test_a_small_signal_passes_the_diode_clipper_as_the_rc_lowpass():
  # 1 mV: the diodes conduct nothing, leaving the bilinear RC low-pass.
  fc = 1. / (2. * math.pi * effects.DIODE_R_OHM * effects.DIODE_C_FARAD)
  k = 1. / (SR * effects.DIODE_R_OHM * effects.DIODE_C_FARAD)
  for freq in (100., fc, 5000.):
    z = np.exp(-2j * np.pi * freq / SR)
    exact = _db(k / 2. * (1. + z) / ((1. + k / 2.) - (1. - k / 2.) * z))
    got = _gain_db(effects.diode_clipper(_sine(freq, 1e-3), 0., SR), 1e-3,
                   freq)
    assert got == pytest.approx(exact, abs=0.01)
    if freq == 100.:
      assert got == pytest.approx(0., abs=0.02)
    if freq == fc:
      assert got == pytest.approx(-3., abs=0.1)


def test_a_large_signal_is_clipped_near_the_diode_voltage():
  for drive, low, high in ((0., 0.45, 0.6), (30., 0.65, 0.75)):
    y = np.asarray(effects.diode_clipper(_sine(1000., 1.), drive, SR))
    assert low < np.max(y[-SR // 2:]) < high
    assert low < -np.min(y[-SR // 2:]) < high


def test_the_diode_clipper_stays_finite_and_bounded_at_max_drive(noise):
  square = np.tile(np.array([1., -1.], np.float32), SR // 2)
  for x in (noise, square):
    y = np.asarray(effects.diode_clipper(x, 30., SR))
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) < 0.8


def test_the_newton_solution_satisfies_the_discretised_equation(noise):
  # Every sample, float64 residual of (1 + k/2) V + d sinh(V / Vt) = r.
  drive = 30.
  v = np.asarray(effects.diode_clipper(noise, drive, SR), np.float64)
  u = noise.astype(np.float64) * 10.**(drive / 20.)
  k = 1. / (SR * effects.DIODE_R_OHM * effects.DIODE_C_FARAD)
  d = 2. * effects.DIODE_IS_AMP / (SR * effects.DIODE_C_FARAD)
  vt = effects.DIODE_VT_VOLT
  v_prev, u_prev = np.concatenate([[0.], v[:-1]]), np.concatenate(
      [[0.], u[:-1]])
  r = (1. - k / 2.) * v_prev + k / 2. * (u + u_prev)
  residual = (1. + k / 2.) * v + d * np.sinh(v / vt) - r
  slope = (1. + k / 2.) + d / vt * np.cosh(v / vt)
  # As a voltage error: within a few float32 steps of the true root.
  assert np.max(np.abs(residual / slope)) < 1e-6


# The compressor.


def test_static_curve_below_above_and_in_the_knee():
  level = np.linspace(-80., 0., 8001)
  out = effects.static_curve(level, -20., 4., 6.)
  below = level < -23.
  np.testing.assert_allclose(out[below], level[below])
  above = level > -17.
  np.testing.assert_allclose(out[above], -20. + (level[above] + 20.) / 4.)
  # Soft knee: continuous with a continuous slope, below the line y = x.
  assert np.max(np.abs(np.diff(out))) <= 0.01 + 1e-9
  assert np.max(np.abs(np.diff(np.diff(out)))) < 1e-4
  assert np.all(out <= level + 1e-12)
  hard = effects.static_curve(level, -20., 4., 0.)
  np.testing.assert_allclose(
      hard, np.where(level > -20., -20. + (level + 20.) / 4., level))


def _level_step(low=0.01, seconds=(0.2, 0.5, 1.6)):
  """A DC level stepping -40 -> 0 -> -40 dBFS; returns x and step times."""
  first, second, total = (int(s * SR) for s in seconds)
  x = np.full(total, low, np.float32)
  x[first:second] = 1.
  return x, first, second


def _crossing_ms(series, start, fraction, final):
  """ms after `start` until series covers `fraction` of its way to final."""
  origin = series[start - 1]
  done = (series[start:] - origin) / (final - origin) >= fraction
  return 1000. * np.argmax(done) / SR


@pytest.mark.parametrize('attack_ms, release_ms', [(5., 50.), (1., 200.)])
def test_compressor_attack_and_release_time_constants(attack_ms, release_ms):
  x, up, down = _level_step()
  y = np.asarray(effects.compressor(
      x, SR, threshold_db=-20., ratio=4., attack_ms=attack_ms,
      release_ms=release_ms, knee_db=6.))
  gain_db = _db(y / x)
  # At 0 dBFS the static curve asks for -20 + 20 / 4 = -15 dB.
  final = -15.
  assert gain_db[up - 1] == pytest.approx(0., abs=1e-5)
  assert gain_db[down - 1] == pytest.approx(final, abs=1e-3)
  assert _crossing_ms(gain_db, up, 1. - 1. / math.e, final) == pytest.approx(
      attack_ms, rel=0.2)
  assert _crossing_ms(gain_db, down, 1. - 1. / math.e, 0.) == pytest.approx(
      release_ms, rel=0.2)
  assert gain_db[-1] == pytest.approx(0., abs=0.1)


def test_compressor_makeup_and_a_threshold_knob_over_time():
  x = np.full(SR // 2, 0.5, np.float32)
  y = effects.compressor(x, SR, threshold_db=-12., ratio=2., attack_ms=0.,
                         knee_db=0., makeup_db=3.)
  level = _db(0.5)
  assert _db(y[-1]) == pytest.approx(-12. + (level + 12.) / 2. + 3., abs=1e-4)
  threshold = np.where(np.arange(SR // 2) < SR // 4, -30., 0.)
  y = effects.compressor(x, SR, threshold_db=threshold, ratio=2.,
                         attack_ms=0., release_ms=0., knee_db=0.)
  assert _db(y[SR // 4 - 1]) == pytest.approx(-30. + (level + 30.) / 2.,
                                              abs=1e-4)
  assert _db(y[-1]) == pytest.approx(level, abs=1e-4)


# Knobs and the registry.


def test_knobs_normalise_and_back():
  cutoff = effects.Knob('cutoff_hz', 20., 2000., 'log')
  assert cutoff.normalise(20.) == pytest.approx(0.)
  assert cutoff.normalise(200.) == pytest.approx(0.5)
  assert cutoff.denormalise(1.) == pytest.approx(2000.)
  drive = effects.Knob('drive_db', 0., 30.)
  u = np.linspace(0., 1., 7)
  np.testing.assert_allclose(drive.normalise(drive.denormalise(u)), u,
                             atol=1e-12)
  assert float(jax.jit(cutoff.denormalise)(0.5)) == pytest.approx(200.,
                                                                   rel=1e-5)
  with pytest.raises(ValueError, match='low > 0'):
    effects.Knob('f', 0., 1., 'log')
  with pytest.raises(ValueError, match='linear or log'):
    effects.Knob('f', 1., 2., 'exp')


def test_knob_effect_lookup_lists_the_names():
  assert effects.knob_effect('hpf_knob').names == ('cutoff_hz',)
  with pytest.raises(ValueError, match='hpf_knob.*compressor'):
    effects.knob_effect('fuzz')
  with pytest.raises(ValueError, match='expected 2 knob values'):
    effects.knob_effect('peak_knob')(np.zeros(10), (1000.,), SR)


@pytest.mark.parametrize('name', sorted(effects.KNOB_EFFECTS))
def test_every_knob_effect_runs_over_its_range(name, noise):
  # Both ends of every knob, constant and swept over the signal, and
  # traced under jit: finite, the input's length, and not all zeros.
  effect = effects.knob_effect(name)
  x = 0.9 * noise[:SR // 10]
  ramp = np.linspace(0., 1., len(x))
  for u in (0., 1., ramp):
    y = np.asarray(effect.normalised(x, (u,) * len(effect.knobs), SR))
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert 0.01 < np.max(np.abs(y)) < 4.  # +12 dB peaks reach 3.
  values = tuple(k.denormalise(0.5) for k in effect.knobs)
  traced = jax.jit(lambda v: effect(x, v, SR))(values)
  np.testing.assert_allclose(traced, effect(x, values, SR), atol=1e-5)
