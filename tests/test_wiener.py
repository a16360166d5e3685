"""emu.models.wiener: the Wiener-Hammerstein grey-box model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from emu import config as config_lib
from emu import train
from emu.data import pairs
from emu.models import ssm_init
from emu.models import wiener

SR = 44100
# Every part present (a residual WaveNet too), at tiny sizes: one model,
# so the contract checks compile once per block length.
TINY = wiener.Wiener(pre_modes=2, post_modes=1, shaper_width=4,
                     residual_channels=2, residual_dilations=(1, 2),
                     dynamics_width=2)


def _noise(shape, seed=0, scale=0.4):
  """Gaussian noise, float32 (numpy: nothing to compile)."""
  rng = np.random.default_rng(seed)
  return jnp.asarray(scale * rng.normal(size=shape), jnp.float32)


def _trained_looking(params, seed=3):
  """params with every leaf moved off its start (gates and shaper output
  nonzero), so the checks below see a model that is not the identity."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda v: jnp.asarray(
      np.asarray(v) + 0.3 * rng.normal(size=np.shape(v)), jnp.float32),
                      params)


def test_contract_streaming_equals_offline(jitted, init):
  model = TINY
  # Given a model away from its start and a signal,
  x = _noise((2, 200, 1))
  params = _trained_looking(init(model, x))
  apply = jitted(model)
  # when it runs offline and in blocks (some past stream_max_len, so both
  # recurrence backends run) with the state carried,
  y, _ = apply(params, x, None)
  state, blocks = model.initial_state(2), []
  for start, stop in ((0, 40), (40, 80), (80, 200)):
    out, state = apply(params, x[:, start:stop], state)
    blocks.append(out)
  # then the shapes follow the contract and the outputs agree.
  assert y.shape == (2, 200, 1) and model.receptive_field == float("inf")
  assert jax.tree.structure(state) == jax.tree.structure(
      model.initial_state(2))
  np.testing.assert_allclose(jnp.concatenate(blocks, axis=1), y, atol=1e-6)
  # Causal: changing the input from sample 120 on leaves y before it.
  y2, _ = apply(params, x.at[:, 120:].set(0.9), None)
  np.testing.assert_array_equal(y2[:, :120], y[:, :120])
  assert not np.allclose(y2[:, 120:], y[:, 120:])


def test_starts_as_the_dry_signal(jitted, init):
  # Given a fresh model (random filter modes, random shaper gains),
  x = _noise((2, 200, 1))
  params = init(TINY, x)
  # then its output is its input through the bounded shaper's linear path
  # alone (the gates and the shaper's units are 0): x to within 0.3%.
  y, _ = jitted(TINY)(params, x, None)
  span = wiener.BOUNDED_SPAN
  np.testing.assert_allclose(y, span * np.tanh(np.asarray(x) / span),
                             atol=1e-6)
  quiet = np.abs(np.asarray(x)) <= 0.7
  np.testing.assert_allclose(np.asarray(y)[quiet], np.asarray(x)[quiet],
                             rtol=3e-3)
  for which in ("pre", "post"):
    np.testing.assert_allclose(
        TINY.block_response(params, which, [100., 5000.]), 1., atol=1e-7)


def test_bounded_shaper_starts_near_identity_and_saturates():
  # Given a bounded shaper at its start,
  shaper = wiener.Shaper(width=3, bounded=True)
  u = jnp.float32([-0.7, -0.1, 0.3, 0.7, 1e3])[:, None]
  params = shaper.init(jax.random.PRNGKey(0), u)
  v = np.asarray(shaper.apply(params, u))[:, 0]
  # then it passes the training levels nearly as they are, and goes flat
  # at its span far beyond them.
  np.testing.assert_allclose(v[:4], np.asarray(u)[:4, 0], rtol=3e-3)
  assert v[4] == pytest.approx(wiener.BOUNDED_SPAN)


def test_refuses_knob_channels(init):
  with pytest.raises(ValueError, match="knob channels"):
    init(TINY, jnp.zeros((1, 8, 2)))


def _as_mode(b, a):
  """One lru mode (its upper pole) and D for a biquad with complex poles,
  or a first-order section (a real pole): lfilter's b / a exactly."""
  r, p, k = scipy.signal.residuez(b, a)
  upper = np.argmax(p.imag)
  # Re(R s) of one mode stands for the pair r/(1-pz) + r*/(1-p*z): R = 2r;
  # a real pole is its own: R = r.
  factor = 2. if abs(p[upper].imag) > 1e-9 else 1.
  return p[upper:upper + 1], factor * r[upper:upper + 1], float(
      np.real(k[0]) if len(k) else 0.)


def test_equals_filter_curve_filter_reference(jitted, init):
  # Given known filters (an RBJ-like peaking biquad, then a first-order
  # low-pass) and a known curve v = 0.1 u + 0.5 tanh(3 (u - 0.05)),
  b_pre, a_pre = scipy.signal.iirpeak(800., 2., fs=SR)
  b_pre, a_pre = 1.5 * b_pre + 0.2 * a_pre, a_pre
  b_post, a_post = scipy.signal.butter(1, 3000., fs=SR)
  model = wiener.Wiener(pre_modes=1, post_modes=1, shaper_width=1,
                        shaper_bounded=False)
  x = _noise((1, 3000, 1), seed=5, scale=0.6)
  params = init(model, x)
  inner = dict(params["params"])
  for name, (b, a) in (("pre", (b_pre, a_pre)), ("post", (b_post, a_post))):
    lam, residues, d = _as_mode(b, a)
    # The gate adds the pass-through: the lru carries the filter minus 1.
    inner[name] = {"layer_0": ssm_init.lru_params(lam, residues, d - 1.)}
    inner[f"{name}_gate"] = jnp.float32(1.)
  inner["shaper"] = {"linear": jnp.float32(.1), "bias": jnp.float32(0.),
                     "log_gain": jnp.log(jnp.float32([3.])),
                     "knee": jnp.float32([.05]), "out": jnp.float32([.5])}
  # when the model runs,
  y, _ = jitted(model)({"params": inner}, x, None)
  # then it is scipy's filter -> numpy's curve -> scipy's filter.
  u = scipy.signal.lfilter(b_pre, a_pre, np.asarray(x[0, :, 0], np.float64))
  v = 0.1 * u + 0.5 * np.tanh(3. * (u - 0.05))
  t = scipy.signal.lfilter(b_post, a_post, v)
  np.testing.assert_allclose(np.asarray(y[0, :, 0]), t, atol=2e-5)
  assert np.max(np.abs(t)) > 0.2
  f = np.array([100., 800., 6000.])
  np.testing.assert_allclose(
      model.block_response({"params": inner}, "pre", f),
      scipy.signal.freqz(b_pre, a_pre, worN=f, fs=SR)[1], atol=2e-4)
  np.testing.assert_allclose(
      model.shaper_curve({"params": inner}, [-.5, 0., .7]),
      0.1 * np.float32([-.5, 0., .7]) + 0.5 * np.tanh(
          3. * (np.float32([-.5, 0., .7]) - 0.05)), atol=1e-6)


def test_dynamics_is_pedalboards_compressor():
  # Given pedalboard's Compressor (JUCE's dsp::Compressor: a peak
  # ballistics filter on |x| with coefficients exp(-2 pi 1000 / (ms
  # rate)), then a hard-knee gain (env / threshold)^(1 / ratio - 1)), on
  # noise whose level steps every 50 ms over 50 dB,
  pedalboard = pytest.importorskip("pedalboard")
  rng = np.random.default_rng(0)
  level = np.repeat(10. ** rng.uniform(-2.5, 0., 20), SR // 20)
  x = (0.3 * level * rng.normal(size=level.size)).astype(np.float32)
  target = pedalboard.Compressor(threshold_db=-20., ratio=4., attack_ms=20.,
                                 release_ms=200.)(x[None], SR)[0]
  # and the dynamics stage set to those equations (detector taus ms / (2
  # pi 1000), no gain smoothing, one sharp hinge at log10 0.1 of slope
  # 1/4 - 1),
  stage = wiener.Dynamics(width=1, sample_rate=SR)
  tau = lambda ms: ms / (2. * np.pi * 1000.)
  params = {"tau": jnp.log(jnp.float32([tau(20.), tau(200.), 1e-9, 1e-9]))
                   / wiener.TAU_RATE,
            "log_gain": jnp.log(jnp.float32([1e4])),
            "knee": jnp.float32([-1.]), "out": jnp.float32([1. / 4. - 1.]),
            "slope": jnp.float32(0.), "offset": jnp.float32(0.)}
  y, _ = jax.jit(stage.apply)({"params": params}, jnp.asarray(x)[None, :,
                                                                 None],
                               stage.initial_state(1))
  # then it is pedalboard's output (the hinge's softplus rounds the knee by
  # ln 2 / 1e4 of a decade at most).
  assert np.max(np.abs(np.asarray(y)[0, :, 0] - target)) <= 2e-5
  assert np.mean((x - target) ** 2) > 0.3 * np.mean(target ** 2)


def test_fit_lowers_the_loss_on_a_tanh_chain(tmp_path):
  # Given a low-pass -> tanh clipper -> low-pass pair,
  rng = np.random.default_rng(0)
  b1, a1 = scipy.signal.butter(2, 2000., fs=SR)
  b2, a2 = scipy.signal.butter(1, 5000., fs=SR)

  def pair(n):
    x = (0.5 * rng.normal(size=n)).astype(np.float32)
    t = scipy.signal.lfilter(b2, a2, np.tanh(4. * scipy.signal.lfilter(
        b1, a1, x)))
    return pairs.Pair(x, (0.5 * t).astype(np.float32))

  data = pairs.Dataset("tanh_chain", SR, pair(16384), pair(2048))
  cfg = config_lib.Config(
      model="wiener", model_kwargs=dict(pre_modes=1, post_modes=1,
                                        shaper_width=4),
      segment_length=256, warmup=32, batch_size=2, max_epochs=4,
      learning_rate=2e-2, checkpoint_every_s=1e6, stream_blocks=(64,))
  # when the trainer fits the model for a few epochs,
  result = train.fit(cfg, str(tmp_path), dataset=data)
  # then val1 ESR falls well below the dry start's.
  history = [row["val1_esr"] for row in result.history]
  dry = float(np.sum((data.val1.input - data.val1.target)**2)
              / np.sum(data.val1.target**2))
  assert min(history) < 0.5 * min(dry, history[0]), (dry, history)
  assert result.epochs == 4
