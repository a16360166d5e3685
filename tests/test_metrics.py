"""Tests for emu.metrics: closed-form values and scipy as references."""

import json
import math

import numpy as np
import pytest
import scipy.signal

from emu import metrics

SAMPLE_RATE = 44100


def _noise(n, seed=0):
  return np.random.default_rng(seed).uniform(-0.5, 0.5, n)


def test_esr_of_scaled_target_is_one_percent():
  t = _noise(4096)
  assert metrics.esr(0.9 * t, t) == pytest.approx(0.01, abs=1e-12)


def test_mse_mae_hand_computed():
  y, t = np.array([0.0, 1.0, -2.0]), np.array([0.0, 0.0, 0.0])
  assert metrics.mse(y, t) == pytest.approx(5 / 3)
  assert metrics.mae(y, t) == pytest.approx(1.0)


def test_accuracy_bits_on_known_errors():
  # 2^-12 = 2.44e-4 admits errors 0 and 1e-4; 2^-15 = 3.05e-5 admits only 0.
  t = np.zeros(4)
  y = np.array([0.0, 1e-4, -3e-4, 1e-3])
  assert metrics.accuracy_bits(y, t, bits=12) == 0.5
  assert metrics.accuracy_bits(y, t, bits=15) == 0.25
  assert isinstance(metrics.accuracy_bits(y, t), float)


def test_snr_of_known_error():
  # Signal power 1 (a +-1 square), error power 0.01 -> 20 dB.
  t = np.tile([1.0, -1.0], 500)
  y = t + 0.1 * np.tile([1.0, 1.0, -1.0, -1.0], 250)
  assert metrics.snr_db(y, t) == pytest.approx(20.0, abs=1e-9)
  assert metrics.snr_db(t, t) == math.inf


@pytest.mark.parametrize("metric", [metrics.esr, metrics.snr_db])
def test_silent_target_is_an_error(metric):
  with pytest.raises(ValueError, match="silent"):
    metric(_noise(100), np.zeros(100))


def test_bad_inputs_are_errors():
  with pytest.raises(ValueError, match="samples"):
    metrics.mse(np.zeros(10), np.zeros(11))
  with pytest.raises(ValueError, match="NaN"):
    metrics.mse(np.full(10, np.nan), np.zeros(10))
  with pytest.raises(ValueError, match="mono"):
    metrics.mse(np.zeros((10, 2)), np.zeros((10, 2)))
  # A trailing channel axis of 1 is fine.
  assert metrics.mse(np.ones((10, 1)), np.zeros((10, 1))) == 1.0


def test_log_spectral_distance_of_gain():
  t = _noise(8192, 1)
  assert metrics.log_spectral_distance_db(t, t) == pytest.approx(0.0, abs=1e-9)
  # Power ratio 4 at every bin -> 10 log10 4 = 6.02 dB.
  assert metrics.log_spectral_distance_db(2 * t, t) == pytest.approx(
      10 * np.log10(4), abs=1e-6)


def test_spectral_convergence_of_gain():
  t = _noise(8192, 2)
  assert metrics.spectral_convergence(t, t) == 0.0
  assert metrics.spectral_convergence(0.5 * t, t) == pytest.approx(0.5)
  with pytest.raises(ValueError, match="shorter than n_fft"):
    metrics.spectral_convergence(t[:100], t[:100])


def test_mrstft_distance_matches_the_loss():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from emu import losses  # pylint: disable=g-import-not-at-top
  t, y = _noise(4096, 3), _noise(4096, 4)
  expected = float(losses.mrstft(jnp.asarray(y, jnp.float32)[None],
                                 jnp.asarray(t, jnp.float32)[None]))
  assert metrics.mrstft_distance(y, t) == pytest.approx(expected, rel=1e-3)
  assert metrics.mrstft_distance(t, t) == 0.0


@pytest.fixture(scope="module")
def highpass_pair():
  """24 s of white noise through a 2nd-order 440 Hz Butterworth high-pass.

  Long, because Welch's estimate is noisiest where the filter attenuates
  (~100 Hz here): window leakage from the loud passband lands there.
  """
  b, a = scipy.signal.butter(2, 440, "highpass", fs=SAMPLE_RATE)
  x = np.random.default_rng(5).standard_normal(2**20) * 0.25
  return b, a, x, scipy.signal.lfilter(b, a, x)


def test_frequency_response_matches_freqz(highpass_pair):
  b, a, x, y = highpass_pair
  freqs, h = metrics.frequency_response(x, y, SAMPLE_RATE)
  _, h_true = scipy.signal.freqz(b, a, worN=freqs, fs=SAMPLE_RATE)
  band = (freqs >= 100) & (freqs <= 15000)
  error = metrics.analytic_response_error(h[band], h_true[band])
  assert error["max_db"] < 0.1
  assert error["max_phase_deg"] < 1.0


def test_response_deviation(highpass_pair):
  _, _, x, y = highpass_pair
  same = metrics.response_deviation_db(x, y, y, SAMPLE_RATE)
  assert same == {"max_db": 0.0, "mean_db": 0.0}
  louder = metrics.response_deviation_db(x, 10**(1 / 20) * y, y, SAMPLE_RATE)
  assert louder["max_db"] == pytest.approx(1.0, abs=1e-6)
  assert louder["mean_db"] == pytest.approx(1.0, abs=1e-6)


def test_analytic_response_error():
  _, h = scipy.signal.freqz(*scipy.signal.butter(2, 0.1, "highpass"))
  h = h[1:]  # A high-pass is exactly 0 at DC, where dB is undefined.
  assert metrics.analytic_response_error(h, h) == {
      "max_db": 0.0, "mean_db": 0.0, "max_phase_deg": 0.0,
      "mean_phase_deg": 0.0}
  louder = metrics.analytic_response_error(10**(1 / 20) * h, h)
  assert louder["max_db"] == pytest.approx(1.0)
  assert louder["mean_db"] == pytest.approx(1.0)
  assert louder["max_phase_deg"] == pytest.approx(0.0, abs=1e-9)
  # A sign flip is 180 degrees off at every bin, however the angles wrap.
  assert metrics.analytic_response_error(-h, h)["mean_phase_deg"] == (
      pytest.approx(180.0))


def test_all_metrics_keys_and_json(highpass_pair):
  _, _, x, t = highpass_pair
  x, t = x[:2**14], t[:2**14]
  y = 0.99 * t
  report = metrics.all_metrics(y, t, x=x, sample_rate=SAMPLE_RATE)
  assert set(report) == {
      "mse", "mae", "esr", "snr_db", "acc12", "acc16", "lsd_db",
      "spectral_convergence", "mrstft", "response_max_db", "response_mean_db",
      "nam_verdict"}
  assert report.pop("nam_verdict") == "Great!"
  assert all(type(v) is float and math.isfinite(v) for v in report.values())
  assert report["esr"] == pytest.approx(1e-4)
  assert report["response_max_db"] == pytest.approx(-20 * np.log10(0.99))
  json.dumps(report, allow_nan=False)
  assert "response_max_db" not in metrics.all_metrics(y, t)


def test_all_metrics_short_signal_and_silent_target():
  t = _noise(300, 6)
  assert metrics.all_metrics(0.9 * t, t)["esr"] == pytest.approx(0.01)
  with pytest.raises(ValueError, match="silent"):
    metrics.all_metrics(t, np.zeros_like(t))


@pytest.mark.parametrize("esr, words", [
    (0.0, "Great!"), (0.00999, "Great!"), (0.01, "Not bad!"),
    (0.0349, "Not bad!"), (0.035, "*might* sound ok"), (0.0999, "*might* sound"),
    (0.1, "probably won't sound great"), (0.3, "gone wrong"),
    (1e6, "gone wrong")])
def test_nam_verdict_at_nams_thresholds(esr, words):
  # NAM 0.13's nam/train/core.py: < 0.01, < 0.035, < 0.1, < 0.3, the rest.
  assert words in metrics.nam_verdict(esr)
