"""emu.models.lru.LRU under the model contract, and as an exact linear filter."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.signal

import emu.models
from emu.models import lru


def _audio(shape, seed=0):
  return jnp.asarray(
      0.5 * np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _param_shapes(model, x):
  """model.init's parameters as shapes, traced but not compiled."""
  return jax.eval_shape(model.init, jax.random.PRNGKey(0), x[:, :8])


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("channels", [1, 2])
def test_output_and_state_shapes(channels, num_layers):
  # Given a model and a batch of audio (+ a knob),
  model = lru.LRU(state_size=3, num_layers=num_layers, features=5)
  x = _audio((2, 50, channels))
  params = _param_shapes(model, x)
  # when applied from the default (None) state (traced, not compiled:
  # shapes and dtypes are all this test reads),
  y, state = jax.eval_shape(model.apply, params, x)
  # then y is one channel and the state is what initial_state describes.
  assert y.shape == (2, 50, 1) and y.dtype == jnp.float32
  expected = model.initial_state(2)
  assert len(state) == len(expected) == num_layers
  for got, want in zip(state, expected):
    assert got.shape == want.shape == (2, 3)
    assert got.dtype == want.dtype == jnp.complex64


def test_initial_state_needs_no_parameters():
  # Given an unbound module, then initial_state is zeros shaped by
  # hyperparameters only, and the receptive field is infinite (IIR).
  model = lru.LRU(state_size=6, num_layers=3)
  state = model.initial_state(4)
  assert [s.shape for s in state] == [(4, 6)] * 3
  assert all(not np.any(s) for s in state)
  assert model.receptive_field == math.inf


def test_registry_creates_it():
  model = emu.models.create("lru", state_size=2, skip=True)
  assert isinstance(model, lru.LRU) and model.state_size == 2
  assert "stream_backend" in emu.models.hyperparameters("lru")


@pytest.mark.parametrize("nu_log", [-1e4, -50., -20., 0., 5., 50.])
def test_poles_stay_inside_the_unit_circle(nu_log):
  # Given extreme decay parameters (exp(nu_log) underflowing or huge),
  params = {"nu_log": jnp.full((3,), nu_log),
            "theta_log": jnp.array([-30., 0., 1.]),
            "B_re": jnp.ones((1, 3)), "B_im": jnp.ones((1, 3)),
            "C_re": jnp.ones((3, 1)), "C_im": jnp.ones((3, 1)),
            "D": jnp.ones((1, 1))}
  # when the filter coefficients are formed in float32,
  lam, b, _, _ = lru.layer_coefficients(params)
  # then every pole is strictly inside the unit circle and finite.
  assert np.all(np.abs(np.asarray(lam, np.complex128)) < 1)
  assert np.all(np.isfinite(np.asarray(b)))


# Streaming blocks: one sample (up to 64 take the sequential backend) and 65
# (the associative one); each size compiles once.
STREAM_SIZES = [1, 1, 65, 1, 65, 65, 1, 65, 1, 1]


def test_causal(init, jitted):
  # Given the streaming test's two-layer model (one compile for both), and a
  # signal and a copy changed from sample 200 on,
  model = lru.LRU(num_layers=2, features=4)
  x = _audio((2, sum(STREAM_SIZES), 1))
  changed = x.at[:, 200:].add(1.)
  params = init(model, x)
  # when both are processed,
  y, _ = jitted(model)(params, x)
  y_changed, _ = jitted(model)(params, changed)
  # then nothing before sample 200 differs.
  np.testing.assert_array_equal(y[:, :200], y_changed[:, :200])
  assert np.any(y[:, 200:] != y_changed[:, 200:])


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("channels", [1, 2])
def test_streaming_equals_offline(channels, num_layers, init, jitted):
  # Given a model with poles up to |lambda| = 0.99999 (initial range),
  model = lru.LRU(num_layers=num_layers, features=4)
  # when a signal goes through in blocks (1 sample included; up to 64
  # samples take the sequential backend, longer ones the associative),
  # from the initial state, and at once from the default (None) one,
  x = _audio((2, sum(STREAM_SIZES), channels), seed=channels)
  params = init(model, x, seed=num_layers)
  apply = jitted(model)
  state, blocks, start = model.initial_state(2), [], 0
  for size in STREAM_SIZES:
    y_block, state = apply(params, x[:, start:start + size], state)
    blocks.append(y_block)
    start += size
  streamed = jnp.concatenate(blocks, axis=1)
  y, final_state = apply(params, x)
  # then the blocks equal one call, to 1e-6 of the output's scale.
  scale = float(jnp.max(jnp.abs(y)))
  assert float(jnp.max(jnp.abs(streamed - y))) < 1e-6 * scale
  for got, want in zip(state, final_state):
    np.testing.assert_allclose(got, want, atol=1e-6 * np.max(np.abs(want)))


def test_backends_give_the_same_output(init, jitted):
  x = _audio((1, 3000, 1))
  outputs = []
  for backend in ("associative", "sequential"):
    model = lru.LRU(backend=backend, stream_max_len=0)
    y, _ = jitted(model)(init(model, x), x)
    outputs.append(y)
  scale = float(jnp.max(jnp.abs(outputs[0])))
  assert float(jnp.max(jnp.abs(outputs[0] - outputs[1]))) < 1e-6 * scale


def test_parameter_count():
  # Given 2 input channels, state_size N = 3, features 4, two layers:
  #   layer_0 (2 -> 4): nu_log 3 + theta_log 3 + B 2*2*3 + C 2*3*4 + D 2*4
  #                     = 3 + 3 + 12 + 24 + 8 = 50
  #   mix_1 (Dense 4 -> 4): 16 + 4 = 20
  #   layer_1 (4 -> 1): 3 + 3 + B 2*4*3 + C 2*3*1 + D 4*1 = 3+3+24+6+4 = 40
  model = lru.LRU(state_size=3, num_layers=2, features=4)
  params = _param_shapes(model, _audio((1, 8, 2)))
  assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 110
  # and the linear default (1 channel, N = 4): 4 + 4 + 8 + 8 + 1 = 25.
  model = lru.LRU()
  params = _param_shapes(model, _audio((1, 8, 1)))
  assert sum(p.size for p in jax.tree_util.tree_leaves(params)) == 25


def test_skip_adds_the_input(init, jitted):
  x = _audio((1, 50, 2))
  params = init(lru.LRU(), x)
  y, _ = jitted(lru.LRU())(params, x)
  y_skip, _ = jitted(lru.LRU(skip=True))(params, x)
  np.testing.assert_allclose(y_skip - y, x[..., :1], atol=1e-6)


@pytest.mark.parametrize("skip", [False, True])
def test_frequency_response_is_the_fft_of_the_impulse_response(skip, init,
                                                             jitted):
  # Given a linear model whose poles decay within the FFT length,
  model = lru.LRU(state_size=4, skip=skip)
  impulse = jnp.zeros((1, 8192, 2)).at[0, 0, 0].set(1.)
  params = init(model, impulse, seed=3)
  radii = jnp.array([0.9, 0.95, 0.99, 0.995])
  params["params"]["layer_0"]["nu_log"] = jnp.log(-jnp.log(radii) - lru.NU_MIN)
  # when the analytic response is compared with the measured one,
  apply = jitted(model)
  y, _ = apply(params, impulse)
  freqs = np.fft.rfftfreq(8192, 1 / 44100)
  measured = np.fft.rfft(np.asarray(y[0, :, 0], np.float64))
  analytic = model.frequency_response(params, freqs)
  # then they agree, and the knob channel's response is its own.
  assert analytic.shape == freqs.shape
  np.testing.assert_allclose(analytic, measured,
                             atol=1e-5 * np.max(np.abs(measured)))
  knob_impulse = jnp.roll(impulse, 1, axis=-1)
  y_knob, _ = apply(params, knob_impulse)
  measured_knob = np.fft.rfft(np.asarray(y_knob[0, :, 0], np.float64))
  np.testing.assert_allclose(
      model.frequency_response(params, freqs, channel=1), measured_knob,
      atol=1e-5 * np.max(np.abs(measured_knob)))


def test_frequency_response_needs_a_linear_model(init):
  model = lru.LRU(num_layers=2, features=4)
  params = init(model, _audio((1, 8, 1)))
  with pytest.raises(ValueError, match="num_layers == 1"):
    model.frequency_response(params, [100.])


def test_fits_a_one_pole_lowpass(init):
  # Given 0.1 s of noise through a one-pole low-pass (pole 0.9, ~740 Hz),
  x = np.random.default_rng(0).normal(size=4410).astype(np.float32) * 0.3
  target = scipy.signal.lfilter([0.1], [1, -0.9], x).astype(np.float32)
  x, target = jnp.asarray(x)[None, :, None], jnp.asarray(target)[None, :, None]
  model = lru.LRU(state_size=2, backend="sequential")
  params = init(model, x)
  optimizer = optax.adam(optax.cosine_decay_schedule(0.05, 400))
  opt_state = optimizer.init(params)

  def esr(params):
    y, _ = model.apply(params, x)
    return jnp.sum((y - target)**2) / jnp.sum(target**2)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(esr)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  # when a few hundred Adam steps fit it,
  for _ in range(400):
    params, opt_state, _ = step(params, opt_state)
  # then the error-to-signal ratio is small (the step's loss is the ESR of
  # the parameters it is given: no second compile for one evaluation).
  assert float(step(params, opt_state)[2]) < 1e-3
