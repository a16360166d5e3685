"""Tests for emu.losses: hand-computed values and scipy as references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from emu import config as config_lib
from emu import losses


def _noise(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(-0.5, 0.5, shape),
                     jnp.float32)


@pytest.mark.parametrize("shape", [(2, 1000, 1), (2, 1000), (1000,)])
def test_esr_of_scaled_target_is_one_percent(shape):
  # Given y = 0.9 t, then (t - y)^2 / t^2 = 0.1^2 everywhere.
  t = _noise(shape)
  assert float(losses.esr(0.9 * t, t)) == pytest.approx(0.01, abs=1e-6)


def test_esr_sums_over_batch_not_mean_of_ratios():
  # Given a loud example with no error and a quiet one that is all error,
  # the summed ratio is small; a per-example mean would be 0.5.
  t = jnp.stack([jnp.ones(10), 0.01 * jnp.ones(10)])
  y = jnp.stack([jnp.ones(10), jnp.zeros(10)])
  expected = (10 * 0.01**2) / (10 + 10 * 0.01**2)
  assert float(losses.esr(y, t)) == pytest.approx(expected, rel=1e-5)


def test_mse_hand_computed():
  y = jnp.array([[0.0, 1.0, 2.0, 3.0]])
  t = jnp.array([[0.0, 0.0, 0.0, 1.0]])
  assert float(losses.mse(y, t)) == pytest.approx((0 + 1 + 4 + 4) / 4)


@pytest.mark.parametrize("coefficient", [0.85, 0.95, -0.5])
def test_pre_emphasis_matches_scipy_lfilter(coefficient):
  x = np.asarray(_noise((3, 257, 1), seed=1))
  expected = scipy.signal.lfilter([1.0, -coefficient], [1.0], x, axis=1)
  got = losses.pre_emphasis(jnp.asarray(x), coefficient)
  assert got.shape == x.shape
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)
  got_1d = losses.pre_emphasis(jnp.asarray(x[0, :, 0]), coefficient)
  np.testing.assert_allclose(np.asarray(got_1d), expected[0, :, 0], atol=1e-6)


def test_esr_pre_is_esr_of_pre_emphasised():
  t, y = _noise((2, 500, 1), 2), _noise((2, 500, 1), 3)
  expected = losses.esr(losses.pre_emphasis(y), losses.pre_emphasis(t))
  assert float(losses.esr_pre(y, t)) == pytest.approx(float(expected))
  assert float(losses.esr_pre(0.9 * t, t)) == pytest.approx(0.01, abs=1e-6)


def test_dc_of_constant_offset():
  # Given y = t + 0.1, the DC error is 0.1^2 / mean(t^2).
  t = _noise((2, 1000, 1), 4)
  expected = 0.01 / float(jnp.mean(t**2))
  assert float(losses.dc(t + 0.1, t)) == pytest.approx(expected, rel=1e-4)
  # A zero-mean error carries no DC.
  wiggle = jnp.tile(jnp.array([0.1, -0.1]), 500)[None, :, None]
  assert float(losses.dc(t + wiggle, t)) == pytest.approx(0.0, abs=1e-10)


def test_dc_offsets_in_different_examples_do_not_cancel():
  t = _noise((2, 100), 5)
  y = t + jnp.array([[0.1], [-0.1]])
  assert float(losses.dc(y, t)) > 0.01 / float(jnp.mean(t**2)) * 0.99


SMALL_FFTS = (256, 128, 64)


def test_mrstft_zero_when_equal_positive_otherwise():
  t = _noise((2, 512, 1), 6)
  assert float(losses.mrstft(t, t)) == 0.0
  assert float(losses.mrstft(0.5 * t, t)) > 0.0


def test_mrstft_decreases_as_prediction_approaches_target():
  t, noise = _noise((2, 512, 1), 7), _noise((2, 512, 1), 8)
  values = [float(losses.mrstft(t + a * noise, t, SMALL_FFTS))
            for a in (1.0, 0.3, 0.1, 0.01)]
  assert all(a > b for a, b in zip(values, values[1:])), values


@pytest.mark.parametrize("scale", [1.0, 0.9])
def test_mrstft_gradient_finite_including_at_equality(scale):
  t = _noise((2, 512, 1), 9)
  grad = jax.grad(lambda y: losses.mrstft(y, t, SMALL_FFTS))(scale * t)
  assert bool(jnp.all(jnp.isfinite(grad)))


def test_mrstft_gradient_finite_for_silent_prediction():
  t = _noise((2, 512, 1), 10)
  grad = jax.grad(lambda y: losses.mrstft(y, t, SMALL_FFTS))(jnp.zeros_like(t))
  assert bool(jnp.all(jnp.isfinite(grad)))


def test_mrstft_skips_long_resolutions_and_rejects_short_signals():
  t = _noise((2, 512, 1), 11)
  # Of the defaults only 512, 256, 128 and 64 fit in 512 samples.
  assert float(losses.mrstft(0.5 * t, t)) == pytest.approx(
      float(losses.mrstft(0.5 * t, t, (512,) + SMALL_FFTS)))
  with pytest.raises(ValueError, match="shorter than every fft size"):
    losses.mrstft(t[:, :32], t[:, :32])


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match="shape"):
    losses.mse(jnp.zeros((1, 10)), jnp.zeros((1, 11)))


def test_combined_weights_add_up_under_jit():
  # Given every loss, when combined and jitted, then each part equals the
  # eager loss and the total is the weighted sum.
  t, y = _noise((2, 512, 1), 14), _noise((2, 512, 1), 15)
  weights = {"mse": 1.0, "esr": 0.3, "esr_level": 0.7, "esr_pre": 0.5, "dc": 2.0,
             "mrstft": 2e-4}
  assert set(weights) == set(losses.LOSSES)
  total, parts = jax.jit(losses.combined(weights))(y, t)
  assert set(parts) == set(weights)
  for name in weights:
    assert float(parts[name]) == pytest.approx(
        float(losses.LOSSES[name](y, t)), rel=1e-5), name
  expected = sum(w * float(parts[n]) for n, w in weights.items())
  assert float(total) == pytest.approx(expected, rel=1e-5)


def test_combined_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="unknown loss.*'esr_pre'"):
    losses.combined({"mse": 1.0, "esrpre": 1.0})
  with pytest.raises(ValueError, match="valid names"):
    losses.combined({})


def test_esr_level_weighs_a_quiet_segment_as_much_as_a_loud_one():
  # Given two segments at 0 dB and -60 dB, each with 10% amplitude error,
  rng = np.random.default_rng(0)
  t = rng.normal(size=(2, 500)).astype(np.float32)
  t[1] *= 1e-3
  y = 0.9 * t
  # then the level-balanced ESR is each segment's 0.01 (the quiet one's
  # energy floored at LEVEL_FLOOR of the mean: 0.5% less);
  energy = np.sum(t.astype(np.float64)**2, axis=1)
  floor = losses.LEVEL_FLOOR * energy.mean() + 1e-10
  want = np.mean(0.01 * energy / (energy + floor))
  assert float(losses.esr_level(y, t)) == pytest.approx(want, rel=1e-4)
  assert want == pytest.approx(0.01, rel=1e-2)
  # with the error on the quiet segment only, the batch ESR barely sees
  # it (1e-6 of the energy) and esr_level sees half of it.
  y = t.copy()
  y[1] = 0.9 * t[1]
  assert float(losses.esr(y, t)) < 1e-7
  assert float(losses.esr_level(y, t)) == pytest.approx(
      0.005 * energy[1] / (energy[1] + floor), rel=1e-4)


def test_esr_level_floors_a_silent_segment():
  # A silent target segment counts against LEVEL_FLOOR of the mean energy:
  # finite, and the hand-computed value.
  t = np.zeros((2, 100), np.float32)
  t[0] = 1.0
  y = np.zeros_like(t)
  y[1] = 1e-3
  energy_floor = losses.LEVEL_FLOOR * 50.0 + 1e-10
  want = 0.5 * (100.0 / (100.0 + energy_floor) + 100 * 1e-6 / energy_floor)
  assert float(losses.esr_level(y, t)) == pytest.approx(want, rel=1e-4)
  grad = jax.grad(lambda y: losses.esr_level(y, jnp.asarray(t)))(
      jnp.asarray(y))
  assert np.all(np.isfinite(np.asarray(grad)))


def test_level_scale_scores_every_segment_at_one_level():
  # Given three segments of one pair, the second played 60 dB down and the
  # third a stopband (input loud, target near silent), each with output
  # error 10% of its target,
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 400, 1))
  t = 0.5 * x
  x[1], t[1] = 1e-3 * x[0], 1e-3 * t[0]
  t[2] = 1e-4 * x[2]
  y = 0.9 * t
  # then the scale is 1 / the RMS of input and target together, by hand;
  energy = np.mean(x[..., 0] ** 2 + t[..., 0] ** 2, axis=1)
  energy += losses.SCALE_FLOOR * energy.mean() + 1e-30
  scale = np.asarray(losses.level_scale(jnp.asarray(x, jnp.float32),
                                        jnp.asarray(t, jnp.float32)))
  np.testing.assert_allclose(scale[:, 0, 0], energy ** -0.5, rtol=1e-5)
  # the quiet segment scores as the loud one it copies (the batch ESR
  # sees it at 1e-6 of the loud one's weight unscaled);
  ys, ts = scale * y, scale * t
  np.testing.assert_allclose(ys[1], ys[0], rtol=1e-4)
  assert float(losses.esr(jnp.asarray(ys[:2]), jnp.asarray(ts[:2]))
               ) == pytest.approx(0.01, rel=1e-3)
  assert float(losses.esr(jnp.asarray(y[1:2]), jnp.asarray(t[1:2]))) == (
      pytest.approx(0.01, rel=1e-3))
  # the stopband is not magnified: its scaled target is ~1e-4 of its
  # input's level, where dividing by the target alone (esr_level) would
  # make its 10% error count as much as a passband segment's.
  assert np.sqrt(np.mean((scale[2] * t[2]) ** 2)) == pytest.approx(
      1e-4, rel=1e-3)


def test_level_balance_needs_seq2seq():
  with pytest.raises(ValueError, match="level_balance.*--mode=seq2seq"):
    config_lib.Config(mode="window", level_balance=True)
