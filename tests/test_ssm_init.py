"""emu.models.ssm_init and svf_init: the least-squares start (data_init)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from emu.data import knobs as knob_data
from emu.data import pairs
from emu.models import lru
from emu.models import data_init
from emu.models import ssm_init
from emu.models import svf
from emu.models import svf_init


def _pair(b, a, n=6000, seed=1):
  """White noise through b / a: (x, t) float32, as any training pair."""
  x = 0.5 * np.random.default_rng(seed).normal(size=n).astype(np.float32)
  return x, scipy.signal.lfilter(b, a, x.astype(np.float64)).astype(
      np.float32)


def _esr(y, t):
  return float(np.sum((np.asarray(y) - t)**2) / np.sum(t**2))


def _fitted(model, x, t, channels=1):
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, channels)))
  return data_init.with_fitted_layer(params, data_init.fit_layer(
      model, params["params"]["layer_0"], x, t))


@pytest.mark.parametrize("skip", [False, True])
def test_lru_fit_is_the_biquad_of_the_signals(skip, jitted):
  # Given a high-pass biquad's input and output (not its coefficients),
  b, a = scipy.signal.butter(2, 440, "highpass", fs=44100)
  x, t = _pair(b, a)
  # when a one-mode lru is set from the fit,
  model = lru.LRU(state_size=1, skip=skip, data_init=True)
  params = _fitted(model, x, t)
  # then it is that filter, under its own parameters.
  freqs = np.geomspace(20, 20000, 200)
  want = scipy.signal.freqz(b, a, worN=freqs, fs=44100)[1]
  got = model.frequency_response(params, freqs)
  assert np.max(np.abs(got - want)) < 1e-4  # |H| is 1 in the pass band
  y = jitted(model)(params, jnp.asarray(x)[None, :, None])[0][0, :, 0]
  assert _esr(y, t) < 1e-9


def test_lru_fit_of_real_poles_with_spare_modes(jitted):
  # Given two real poles and three modes (float32 signals: the fit must
  # not take rounding for two more poles), then all is finite and close.
  b, a = np.polymul([1., 0.], [1., 0.3]), np.polymul([1., -0.9], [1., -0.5])
  x, t = _pair(b, a)
  model = lru.LRU(state_size=3, data_init=True)
  params = _fitted(model, x, t)
  assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(params))
  y = jitted(model)(params, jnp.asarray(x)[None, :, None])[0][0, :, 0]
  assert _esr(y, t) < 1e-6


def test_biquad_to_svf_is_the_same_filter():
  # Given a peaking biquad, then the SVF section written from it has its
  # frequency response.
  w0, gain, q = 2 * np.pi * 1000 / 44100, 10**(6 / 40), 1.5
  alpha = np.sin(w0) / (2 * q)
  b = [1 + alpha * gain, -2 * np.cos(w0), 1 - alpha * gain]
  a = [1 + alpha / gain, -2 * np.cos(w0), 1 - alpha / gain]
  g, k, m_bp, m_lp, d = svf_init.biquad_to_svf(b, a)
  model = svf.SVF(state_size=1, knob_hidden=0)
  params = {"layer_0": {
      "g_log": np.log([g]), "damping_log": np.log([k]), "B": np.ones((1, 1)),
      "M": np.array([m_bp, m_lp]).reshape(2, 1, 1), "D": np.array([[d]])}}
  freqs = np.geomspace(20, 20000, 100)
  want = scipy.signal.freqz(b, a, worN=freqs, fs=44100)[1]
  # (float32 coefficients inside frequency_response)
  np.testing.assert_allclose(model.frequency_response(params, freqs), want,
                             rtol=1e-5, atol=1e-6)


def test_svf_fit_follows_the_knob_between_settings(jitted):
  # Given the knob high-pass at four settings, 0.1 s each (its state
  # carried across the changes),
  settings = np.repeat([0., 1 / 3, 2 / 3, 1.], 4410)[:, None]
  audio = np.random.default_rng(2).normal(size=len(settings)) * 0.3
  train = knob_data.knob_pair("hpf_knob", audio, settings, 44100)
  model = svf.SVF(state_size=1, knob_hidden=4, skip=True, data_init=True)
  params = _fitted(model, train.input, train.target, channels=2)
  # then the fitted model matches the effect at an unseen setting too.
  test = knob_data.knob_pair("hpf_knob", audio[:4410],
                             np.full((4410, 1), 0.5), 44100)
  y = jitted(model)(params, jnp.asarray(test.input)[None])[0][0, :, 0]
  assert _esr(y, test.target) < 1e-4
  y = jitted(model)(params, jnp.asarray(train.input)[None])[0][0, :, 0]
  assert _esr(y, train.target) < 1e-8


def test_wraps_only_a_model_that_asks_for_it():
  x, t = _pair(*scipy.signal.butter(2, 1000, fs=44100))
  train = pairs.Pair(x, t)

  class State:  # a TrainState's one field the wrapper touches
    def __init__(self, params):
      self.params = params

    def replace(self, params):
      return State(params)

  model = lru.LRU(state_size=1)
  # Two members stacked (an ensemble's parameters) broadcast the fit.
  init = lambda: State(jax.vmap(lambda k: model.init(
      k, jnp.zeros((1, 8, 1))))(jax.random.split(jax.random.PRNGKey(0), 2)))
  assert data_init.wrap_initializer(init, model, train) is init
  fitted = data_init.wrap_initializer(init, model.clone(data_init=True),
                                     train)()
  layer = fitted.params["params"]["layer_0"]
  assert layer["D"].shape == (2, 1, 1)
  np.testing.assert_array_equal(layer["nu_log"][0], layer["nu_log"][1])
  with pytest.raises(ValueError, match="num_layers"):
    ssm_init.fit_lru(lru.LRU(num_layers=2), x, t)
  with pytest.raises(ValueError, match="channels"):
    ssm_init.fit_lru(model, np.zeros((100, 2)), np.zeros(100))
