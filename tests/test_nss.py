"""emu.models.nss: the neural state-space grey box."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from emu import models
from emu.models import nss
from emu.plugins import export

SR = 44100
# Every part present (a residual WaveNet too), at tiny sizes.
TINY = nss.NSS(pre_modes=1, post_modes=1, state_size=2, core_width=4,
               residual_channels=2, residual_dilations=(1, 2))
BARE = nss.NSS(pre_modes=1, post_modes=1, state_size=2, core_width=4)


def _noise(shape, seed=0, scale=0.4):
  rng = np.random.default_rng(seed)
  return jnp.asarray(scale * rng.normal(size=shape), jnp.float32)


def _trained_looking(params, seed=3):
  """params with every leaf moved off its start, so the model is not the
  identity and its core's state matters."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda v: jnp.asarray(
      np.asarray(v) + 0.3 * rng.normal(size=np.shape(v)), jnp.float32),
                      params)


def test_contract_streaming_equals_offline(jitted, init):
  # Given a model away from its start and a signal,
  x = _noise((2, 200, 1))
  params = _trained_looking(init(TINY, x))
  apply = jitted(TINY)
  # when it runs offline and in blocks with the state carried (some blocks
  # past stream_max_len, so both filter backends run),
  y, _ = apply(params, x, None)
  state, blocks = TINY.initial_state(2), []
  for start, stop in ((0, 40), (40, 80), (80, 200)):
    out, state = apply(params, x[:, start:stop], state)
    blocks.append(out)
  # then the shapes follow the contract and the outputs agree,
  assert y.shape == (2, 200, 1) and TINY.receptive_field == float("inf")
  assert TINY.initial_state(2)[3].shape == (2, 2)
  assert jax.tree.structure(state) == jax.tree.structure(
      TINY.initial_state(2))
  np.testing.assert_allclose(jnp.concatenate(blocks, axis=1), y, atol=1e-6)
  # each row of the batch is its own signal,
  alone, _ = apply(params, x[1:], None)
  np.testing.assert_allclose(alone, y[1:], atol=1e-6)
  # and it is causal.
  y2, _ = apply(params, x.at[:, 120:].set(0.9), None)
  np.testing.assert_array_equal(y2[:, :120], y[:, :120])
  assert not np.allclose(y2[:, 120:], y[:, 120:])


def test_starts_as_the_dry_signal_and_rests_in_silence(jitted, init):
  x = _noise((2, 100, 1))
  params = init(BARE, x)
  # A fresh model is exactly the dry signal (gates 0, core y = u),
  y, _ = jitted(BARE)(params, x, None)
  np.testing.assert_array_equal(y, x)
  # and, whatever its parameters, silence from the initial state gives
  # exact silence (f(0, 0) = g(0, 0) = 0). The residual WaveNet's biases
  # would not: with one, silence gives its constant.
  y, state = jitted(BARE)(_trained_looking(params), jnp.zeros_like(x), None)
  assert not np.any(np.asarray(y)) and not np.any(np.asarray(state[3]))


def test_the_state_stays_bounded_for_any_parameters(jitted, init):
  x = _noise((1, 300, 1), scale=3.)
  wild = jax.tree.map(lambda v: 30. * v, _trained_looking(init(BARE, x)))
  y, state = jitted(BARE)(wild, x, None)
  assert np.all(np.isfinite(y))
  assert np.max(np.abs(state[3])) <= nss.STATE_SPAN


@pytest.mark.parametrize("kwargs, words", [
    ({"state_size": 0}, "--state_size must be a whole number >= 1"),
    ({"core_width": 0}, "--core_width must be a whole number >= 1"),
    ({"core_max_gain": -1.}, "--core_max_gain must be a positive number"),
    ({"residual_channels": -1}, "--residual_channels must be a whole"),
])
def test_create_names_the_flag(kwargs, words):
  with pytest.raises(ValueError, match=words):
    models.create("nss", **kwargs)


def test_refuses_knob_channels(init):
  with pytest.raises(ValueError, match="knob channels"):
    init(BARE, jnp.zeros((1, 8, 2)))


def test_export_refuses_it_naming_the_plugin_recipe():
  for model, stages in ((models.create("nss"), "filters and nonlinear "
                         "state-space core are"),
                        (TINY, "core and residual WaveNet are")):
    for fmt in ("nam", "rtneural", "guitarml"):
      with pytest.raises(export.ExportError, match=f"grey-box nss .*{stages}"
                         ".*capture_plugin.flags"):
        export.export(model, None, fmt, 48000)


def _diode_clipper(x, sample_rate, oversample=8):
  """An RC low-pass (2.2 kOhm, 47 nF: 1.5 kHz) with antiparallel 1N914s
  across the capacitor, x in volts: C dv/dt = (x - v) / R - 2 Is
  sinh(v / (n Vt)), integrated by implicit Euler (Newton) at
  `oversample` steps per sample, x held between samples. Independent of
  emu.effects."""
  r, c, i_s, n_vt = 2.2e3, 47e-9, 2.52e-9, 1.752 * 0.02585
  h = 1. / (sample_rate * oversample)
  v, out = 0., np.empty(len(x))
  for i, u in enumerate(np.asarray(x, np.float64)):
    for _ in range(oversample):
      start = v
      for _ in range(4):
        f = v - start - h / c * ((u - v) / r - 2 * i_s * np.sinh(v / n_vt))
        df = 1. + h / c * (1. / r + 2 * i_s / n_vt * np.cosh(v / n_vt))
        v -= f / df
    out[i] = v
  return out


def _fit(model, x, t, steps, learning_rate=1e-2):
  """(ESR at the start, the least ESR over `steps` Adam steps) of model
  on the pair x, t [1, time, 1], warm-up: the first 256 samples."""
  params = model.init(jax.random.PRNGKey(0), x[:, :8])
  opt = optax.adam(learning_rate)

  def esr(p):
    y, _ = model.apply(p, x, None)
    return jnp.sum((y - t)[:, 256:]**2) / jnp.sum(t[:, 256:]**2)

  @jax.jit
  def step(p, o):
    loss, g = jax.value_and_grad(esr)(p)
    updates, o = opt.update(g, o, p)
    return optax.apply_updates(p, updates), o, loss

  state, losses = opt.init(params), []
  for _ in range(steps):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  return losses[0], min(losses)


def test_learns_a_diode_clipper_better_than_a_filter():
  # Given noise at guitar levels through a numerically simulated diode
  # clipper with memory (its capacitor),
  rng = np.random.default_rng(0)
  x = 1.5 * rng.normal(size=1024) * np.repeat(
      rng.uniform(0.1, 1., 4), 256)
  t = _diode_clipper(x, SR)
  as_batch = lambda a: jnp.asarray(a, jnp.float32)[None, :, None]
  x, t = as_batch(x), as_batch(t)
  # when nss and a plain lru filter train for the same steps,
  start, best = _fit(nss.NSS(pre_modes=1, post_modes=1, state_size=2,
                             core_width=8), x, t, 40)
  _, filter_best = _fit(models.create("lru", state_size=2), x, t, 40)
  # then nss falls far below its start (ESR 6.7: the dry signal is 2.6x
  # the clipped one) and below the filter (measured: 0.066 against 0.59).
  assert best < 0.02 * start and best < 0.5 * filter_best, (
      start, best, filter_best)
