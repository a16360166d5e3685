"""Knob-conditioned state-space models: lru with knob_hidden > 0, and svf."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import emu.models
from emu import effects
from emu import stream
from emu.models import lru
from emu.models import svf

SR = 44100


def _knob_signal(sizes, settings, channels=2, seed=0):
  """Noise [1, sum(sizes), channels] whose knobs are constant per block."""
  rng = np.random.default_rng(seed)
  audio = 0.5 * rng.normal(size=sum(sizes))
  knobs = np.concatenate([np.full((size, channels - 1), s)
                          for size, s in zip(sizes, settings)])
  return jnp.asarray(np.concatenate([audio[:, None], knobs], axis=-1)[None],
                     jnp.float32)


def _conditioned(name, **hparams):
  if name == "lru":
    return lru.LRU(knob_hidden=4, **hparams)
  return svf.SVF(knob_hidden=4, **hparams)


def _randomise_film(params, seed):
  """Non-zero knob MLP outputs (they start at zero), of modest size."""
  rng = np.random.default_rng(seed)

  def perturb(path, leaf):
    names = [getattr(p, "key", "") for p in path]
    if "film" in names and names[-1] == "kernel":
      return leaf + jnp.asarray(0.3 * rng.normal(size=leaf.shape),
                                leaf.dtype)
    return leaf

  return jax.tree_util.tree_map_with_path(perturb, params)


@pytest.mark.parametrize("name", ["lru", "svf"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("channels", [2, 3])
def test_shapes_and_state(name, num_layers, channels):
  # Given a conditioned model and audio with one or two knobs,
  model = _conditioned(name, state_size=3, num_layers=num_layers, features=5)
  x = _knob_signal([30, 20], [0.2, 0.7], channels)
  # when initialised and applied from the default state (traced, not
  # compiled: shapes and dtypes are all this test reads),
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x[:, :8])
  y, state = jax.eval_shape(model.apply, params, x)
  # then y is one channel, the state is initial_state's shape, and every
  # layer has a knob MLP fed by all the knob channels.
  assert y.shape == (1, 50, 1) and y.dtype == jnp.float32
  expected = model.initial_state(1)
  assert len(state) == len(expected) == num_layers
  for got, want in zip(state, expected):
    assert got.shape == want.shape and got.dtype == want.dtype
  for i in range(num_layers):
    film = params["params"][f"layer_{i}"]["film"]
    assert film["linear"]["kernel"].shape[0] == channels - 1
  # The first layer takes the audio alone.
  b = params["params"]["layer_0"]["B_re" if name == "lru" else "B"]
  assert b.shape[0] == 1


def test_registry_and_hyperparameters(init):
  assert isinstance(emu.models.create("svf", state_size=2), svf.SVF)
  for name in ("lru", "svf"):
    names = emu.models.hyperparameters(name)
    assert "knob_hidden" in names and "knob_sweep_hz" in names
  with pytest.raises(ValueError, match="knob_sweep_hz"):
    model = svf.SVF(knob_sweep_hz=(20.,))
    init(model, _knob_signal([8], [0.]))
  with pytest.raises(ValueError, match="knob_hidden"):
    init(lru.LRU(knob_hidden=-1), _knob_signal([8], [0.]))


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lru_with_one_channel_is_unchanged(num_layers, init):
  # Given audio alone (no knob channel),
  x = _knob_signal([200], [0.], channels=1)
  plain = lru.LRU(num_layers=num_layers, features=4)
  knobbed = lru.LRU(num_layers=num_layers, features=4, knob_hidden=8,
                    knob_sweep_hz=(20., 2000.))
  # when both are initialised from one key and applied (in one compiled
  # call),
  params = init(plain, x, seed=3)
  params_knobbed = init(knobbed, x, seed=3)
  both = jax.jit(lambda p: (plain.apply(p, x)[0], knobbed.apply(p, x)[0]))
  # then the parameters and the output are identical: knob_hidden only
  # acts on knob channels.
  assert jax.tree.all(jax.tree.map(
      lambda a, b: bool(jnp.all(a == b)), params, params_knobbed))
  np.testing.assert_array_equal(*both(params))


def test_lru_knob_hidden_zero_keeps_knobs_as_inputs():
  # knob_hidden = 0 (the default) is today's lru: knobs enter B and D.
  x = _knob_signal([20], [0.5])
  params = jax.eval_shape(lru.LRU().init, jax.random.PRNGKey(0), x[:, :8])
  assert params["params"]["layer_0"]["B_re"].shape == (2, 4)
  assert "film" not in params["params"]["layer_0"]


@pytest.mark.parametrize("name", ["lru", "svf"])
def test_fresh_knob_mlp_is_the_unconditioned_filter(name, init, jitted):
  # Given a conditioned model as initialised (its knob MLP outputs zero),
  x = _knob_signal([100, 100], [0.1, 0.9])
  model = _conditioned(name, state_size=2)
  params = init(model, x)
  # when its layer runs without the MLP on the audio alone,
  layer = params["params"]["layer_0"]
  plain_params = {"params": {"layer_0": {
      k: v for k, v in layer.items() if k != "film"}}}
  plain = (lru.LRU(state_size=2) if name == "lru" else
           svf.SVF(state_size=2, knob_hidden=0))
  y_plain, _ = jitted(plain)(plain_params, x[..., :1])
  # then both give the same output at every knob setting.
  y, _ = jitted(model)(params, x)
  np.testing.assert_allclose(y, y_plain, atol=1e-6)


# Streaming blocks: up to 64 samples take the sequential backend, longer
# ones (and the offline call) the default; each distinct size compiles once.
STREAM_SIZES = [65, 1, 1, 65, 1, 65, 65]
STREAM_SETTINGS = [0.0, 0.25, 0.25, 0.9, 0.5, 1.0, 0.3]


@pytest.mark.parametrize("name", ["lru", "svf"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_streaming_with_knob_changes_equals_offline(name, num_layers, init,
                                                    jitted):
  # Given a conditioned model whose knob MLP is not zero, and blocks of
  # audio at changing knob settings (one-sample blocks, which take the
  # sequential backend, and 65-sample ones, the default),
  model = _conditioned(name, num_layers=num_layers, features=3)
  x = _knob_signal(STREAM_SIZES, STREAM_SETTINGS, seed=num_layers)
  params = _randomise_film(init(model, x, seed=num_layers), seed=7)
  offline, _ = jitted(model)(params, x)
  # when they are streamed block by block with the knob passed per block,
  streamer = stream.Streamer(model, params)
  blocks, start = [], 0
  for size, setting in zip(STREAM_SIZES, STREAM_SETTINGS):
    blocks.append(streamer.process(np.asarray(x[0, start:start + size, 0]),
                                   knobs=[setting]))
    start += size
  streamed = np.concatenate(blocks)
  # then the output equals one offline call.
  offline = np.asarray(offline).ravel()
  scale = np.max(np.abs(offline))
  np.testing.assert_allclose(streamed, offline, atol=2e-6 * scale)
  # And the knob matters: the same audio at one fixed setting differs.
  fixed = x.at[..., 1].set(0.5)
  assert np.max(np.abs(jitted(model)(params, fixed)[0].ravel() - offline)) > (
      1e-3 * scale)


@pytest.mark.parametrize("name", ["lru", "svf"])
def test_backends_agree_with_moving_knobs(name, init, jitted):
  x = _knob_signal([500, 700, 800], [0.1, 0.8, 0.4])
  outputs = []
  for backend in ("associative", "sequential"):
    model = _conditioned(name, state_size=2, backend=backend,
                         stream_max_len=0)
    params = _randomise_film(init(model, x), seed=1)
    outputs.append(np.asarray(jitted(model)(params, x)[0]))
  scale = np.max(np.abs(outputs[0]))
  np.testing.assert_allclose(outputs[0], outputs[1], atol=2e-6 * scale)


def test_svf_is_causal(init, jitted):
  # Given the streaming test's two-layer SVF (one compile for both) and a
  # signal changed from sample 200 on,
  model = _conditioned("svf", num_layers=2, features=3)
  x = _knob_signal(STREAM_SIZES, STREAM_SETTINGS, seed=2)
  changed = x.at[:, 200:, 0].add(1.)
  params = _randomise_film(init(model, x), seed=2)
  # when both are processed,
  y = jitted(model)(params, x)[0]
  y_changed = jitted(model)(params, changed)[0]
  # then nothing before sample 200 differs.
  np.testing.assert_array_equal(y[:, :200], y_changed[:, :200])
  assert np.any(y[:, 200:] != y_changed[:, 200:])


def _hpf_svf_params(params):
  """An SVF whose cutoff follows the knob over 20 Hz-2 kHz, exactly."""
  layer = params["params"]["layer_0"]
  layer["g_log"] = jnp.full((1,), math.log(math.tan(math.pi * 20 / SR)))
  layer["damping_log"] = jnp.full((1,), 0.5 * math.log(2.))
  layer["B"] = jnp.ones((1, 1))
  layer["M"] = jnp.asarray([-math.sqrt(2.), -1.]).reshape(2, 1, 1)
  layer["D"] = jnp.ones((1, 1))
  kernel = np.zeros(layer["film"]["linear"]["kernel"].shape, np.float32)
  kernel[0, 0] = math.log(100.)
  layer["film"]["linear"]["kernel"] = jnp.asarray(kernel)
  return params


def test_svf_reproduces_the_knob_highpass(init, jitted):
  # Given an SVF set by hand to log g = log tan(pi 20 / fs) + ln(100) k,
  model = svf.SVF(knob_hidden=2)
  x = _knob_signal([3000] * 5, [0.0, 0.8, 0.3, 1.0, 0.5])
  params = _hpf_svf_params(init(model, x))
  # when it runs over a signal whose knob jumps,
  y = np.asarray(jitted(model)(params, x)[0]).ravel()
  # then it is emu.effects' knob high-pass with that cutoff, transients
  # at the jumps included.
  knob = np.asarray(x[0, :, 1], np.float64)
  cutoff = np.arctan(math.tan(math.pi * 20 / SR) * 100.**knob) * SR / np.pi
  target = np.asarray(effects.highpass_knob(np.asarray(x[0, :, 0]), cutoff,
                                            SR))
  np.testing.assert_allclose(y, target, atol=2e-6)


@pytest.mark.parametrize("name", ["lru", "svf"])
def test_frequency_response_at_a_held_knob(name, init, jitted):
  # Given a one-layer conditioned model with a non-zero knob MLP,
  model = _conditioned(name, state_size=2)
  impulse = jnp.zeros((1, 8192, 2)).at[0, 0, 0].set(1.).at[0, :, 1].set(0.4)
  params = _randomise_film(init(model, impulse, seed=4), seed=5)
  # Poles that decay well within the FFT.
  if name == "lru":
    params["params"]["layer_0"]["nu_log"] = jnp.log(
        -jnp.log(jnp.array([0.99, 0.995])))
  else:
    params["params"]["layer_0"]["g_log"] = jnp.log(
        jnp.tan(jnp.pi * jnp.array([300., 2000.]) / SR))
  # when its analytic response at knob 0.4 meets the FFT of its impulse
  # response with the knob held at 0.4,
  y = np.asarray(jitted(model)(params, impulse)[0][0, :, 0], np.float64)
  freqs = np.fft.rfftfreq(8192, 1 / SR)
  measured = np.fft.rfft(y)
  analytic = model.frequency_response(params, freqs, knobs=[0.4])
  # then they agree,
  np.testing.assert_allclose(analytic, measured,
                             atol=1e-5 * np.max(np.abs(measured)))
  # and a conditioned model needs the knobs to have a response.
  with pytest.raises(ValueError, match="knobs"):
    model.frequency_response(params, freqs)


def test_svf_frequency_response_is_the_cookbook_highpass(init):
  model = svf.SVF(knob_hidden=2)
  params = _hpf_svf_params(init(model, _knob_signal([8], [0.])))
  freqs = np.geomspace(10, 20000, 50)
  for u in (0., 0.37, 1.):
    cutoff = math.atan(math.tan(math.pi * 20 / SR) * 100.**u) * SR / math.pi
    b, a = effects.highpass_coefficients(cutoff, SR)
    np.testing.assert_allclose(
        model.frequency_response(params, freqs, knobs=[u]),
        effects.frequency_response(b, a, freqs, SR), atol=1e-5)


def _fit(params, model, x, target, steps, learning_rate):
  """Full-batch Adam on ESR from `params`; returns the final ESR."""
  optimizer = optax.adam(optax.exponential_decay(
      learning_rate, steps, 0.05))
  opt_state = optimizer.init(params)

  def esr(params):
    y, _ = model.apply(params, x)
    return jnp.sum((y - target)**2) / jnp.sum(target**2)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(esr)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  for _ in range(steps):
    params, opt_state, _ = step(params, opt_state)
  # The ESR of the final parameters, from the compiled step (its update is
  # dropped): no second compile of the model for one evaluation.
  return float(step(params, opt_state)[2])


def test_fits_a_knob_highpass_that_one_filter_cannot(init):
  # Given 0.2 s of noise at each of three cutoffs (knob 0, 0.5, 1 of a
  # 50 Hz-2 kHz log knob), the knob turned between them while playing,
  sizes, settings = [8820] * 3, [0., 1., 0.5]
  x = _knob_signal(sizes, settings, seed=3)
  knob = np.asarray(x[0, :, 1], np.float64)
  target = effects.highpass_knob(np.asarray(x[0, :, 0]),
                                 50. * 40.**knob, SR)[None, :, None]
  # when a conditioned SVF and the same SVF without knobs (one fixed
  # filter: knob_hidden = 0 makes the knob a signal) train alike,
  esrs = []
  for model in (svf.SVF(skip=True, knob_hidden=4, knob_sweep_hz=(20., 2000.)),
                svf.SVF(skip=True, knob_hidden=0)):
    esrs.append(_fit(init(model, x), model, x, target, steps=1000,
                     learning_rate=0.1))
  conditioned, fixed = esrs
  # then the conditioned model fits (5e-5 when written), and no single
  # filter can (6e-2).
  assert conditioned < 3e-4
  assert fixed > 1e-2
