"""The model contract, checked for every model at tiny sizes.

Given a model and random input, when it runs offline, in blocks, perturbed or
jitted repeatedly, then its outputs obey causality, streaming exactness and
the documented shapes, parameter counts and equations.
"""

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emu import models

# Tiny settings, so each case compiles in well under a second.
TINY = {
    "lstm": dict(hidden_size=8, num_layers=2),
    "gru": dict(hidden_size=8, num_layers=2),
    "wavenet": dict(channels=4, kernel_size=3, dilations=(1, 2, 4)),
    "thesis_cnn": dict(window=16, filters=4, kernel_size=4, groups=2),
    # NAM's WaveNet: two layer arrays (the second gated, blended in its last
    # layer), a head rechannel of 2 taps, a post head of one 2-tap block.
    "nam_wavenet": dict(config=json.dumps({
        "layers": [
            dict(input_size=1, condition_size=1, channels=3, head_size=2,
                 kernel_size=2, dilations=[1, 2], activation="Tanh",
                 gated=False, head_bias=False),
            dict(input_size=3, condition_size=1, channels=2, kernel_sizes=[
                2, 3], dilations=[1, 3], activation=["Tanh", "ReLU"],
                 gating_mode=["gated", "blended"],
                 secondary_activation=["Sigmoid", "Sigmoid"],
                 head={"out_channels": 2, "kernel_size": 2, "bias": True},
                 head1x1={"active": True, "out_channels": 2, "groups": 1})],
        "head": {"channels": 2, "activation": "Tanh", "out_channels": 1,
                 "kernel_sizes": [2]},
        "head_scale": 0.5})),
}
NAMES = sorted(TINY)


def make(name, channels=1):
  hparams = dict(TINY[name])
  if name == "thesis_cnn":
    hparams["input_channels"] = channels
  return models.create(name, **hparams)


@functools.lru_cache(maxsize=None)
def built(name, channels=1):
  """(model, params, jitted apply) for the TINY model, shared by the tests so
  that each shape compiles once per session. The parameters are model.init's
  (lazy_init runs only what they need, op by op: the random draws of one
  shape compile once for every model, where a jitted init compiles them all
  again per model)."""
  model = make(name, channels)
  params = model.lazy_init(jax.random.key(1),
                           jax.ShapeDtypeStruct((1, 4, channels), jnp.float32))
  return model, params, jax.jit(model.apply)


def signal(batch, time, channels, seed=0):
  """[batch, time, channels] of uniform noise in [-1, 1)."""
  return jax.random.uniform(jax.random.key(seed), (batch, time, channels),
                            minval=-1.0, maxval=1.0)


def num_params(model, channels=1):
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, 4, channels)))
  return sum(math.prod(a.shape) for a in jax.tree.leaves(shapes))


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_initial_state(name):
  model, params, apply = built(name)
  x = signal(2, 40, 1)

  y, state = apply(params, x, None)
  y_explicit, state_explicit = apply(params, x, model.initial_state(2))

  assert y.shape == (2, 40, 1) and y.dtype == jnp.float32
  # initial_state is a plain method: shapes without params or binding.
  zero = model.initial_state(2)
  assert (jax.tree.map(lambda a: (a.shape, a.dtype), zero)
          == jax.tree.map(lambda a: (a.shape, a.dtype), state))
  assert all(not jnp.any(a) for a in jax.tree.leaves(zero))
  np.testing.assert_array_equal(y, y_explicit)
  jax.tree.map(np.testing.assert_array_equal, state, state_explicit)


@pytest.mark.parametrize("name, hparams, channels, expected", [
    # 4*32*(1+32) w_ih, w_hh + 4*32 bias + 32 + 1 head.
    ("lstm", dict(hidden_size=32), 1, 4385),
    # layer 0: 4*8*(2+8) + 32 = 352; layer 1: 4*8*(8+8) + 32 = 544; head 9.
    ("lstm", dict(hidden_size=8, num_layers=2, skip=False), 2, 905),
    # 3*8*(1+8) w_ih, w_hh + 2*3*8 b_ih, b_hh + 8 + 1 head.
    ("gru", dict(hidden_size=8), 1, 273),
    # 3*32*33 + 2*96 + 33.
    ("gru", dict(hidden_size=32), 1, 3393),
    # input (1+1)*4 = 8; per layer conv 3*4*8 + 8 = 104 and skip 4*4 + 4 =
    # 20; residual 20 for the first two layers; head 4 + 1.
    # 8 + 3*104 + 3*20 + 2*20 + 5 = 425.
    ("wavenet", dict(channels=4, dilations=(1, 2, 4)), 1, 425),
    # ungated: conv 3*4*4 + 4 = 52; 8 + 2*52 + 2*20 + 20 + 5 = 177.
    ("wavenet", dict(channels=4, dilations=(1, 2), gated=False), 1, 177),
    # default: 32 + 20*(1568 + 272) + 19*272 + 17.
    ("wavenet", {}, 1, 42017),
    # group 1: 4*1*4+4 = 20, 4*4*4+4 = 68, lengths 16; group 2 (2 filters,
    # kernel 2, stride 2): 2*4*2+2 = 18, 2*2*2+2 = 10, length 16 -> 8 -> 8
    # -> pool 4; dense 8*8+8 = 72, 8*4+4 = 36, 4*2+2 = 10, 2+1 = 3.
    ("thesis_cnn", dict(window=16, filters=4, kernel_size=4, groups=2), 1,
     237),
    # the thesis's setting (see the ThesisCNN docstring): 1024 -> 1 x 16.
    ("thesis_cnn", {}, 1, 3011225),
    # NAM's standard WaveNet (16 then 8 channels, 10 layers each): NAM's
    # parameter count less head_scale, which is not trained.
    ("nam_wavenet", {}, 1, 13801),
])
def test_parameter_count(name, hparams, channels, expected):
  if name == "thesis_cnn":
    hparams = dict(hparams, input_channels=channels)
  assert num_params(models.create(name, **hparams), channels) == expected


@pytest.mark.parametrize("name", NAMES)
def test_causal(name):
  _, params, apply = built(name)
  x = signal(2, 40, 1)
  t = 25
  x_changed = x.at[:, t:].set(signal(2, 40 - t, 1, seed=7))

  y, _ = apply(params, x, None)
  y_changed, _ = apply(params, x_changed, None)

  np.testing.assert_array_equal(y[:, :t], y_changed[:, :t])
  assert not np.allclose(y[:, t:], y_changed[:, t:])


@pytest.mark.parametrize("name", ["wavenet", "thesis_cnn", "nam_wavenet"])
def test_receptive_field_is_exact(name):
  model, params, apply = built(name)
  rf = model.receptive_field
  x = signal(2, 40, 1)
  assert rf < 40

  y, _ = apply(params, x, None)
  y_changed, _ = apply(params, x.at[:, 0].add(0.5), None)

  assert y[0, rf - 1, 0] != y_changed[0, rf - 1, 0]
  np.testing.assert_array_equal(y[:, rf:], y_changed[:, rf:])


def test_receptive_fields():
  assert make("lstm").receptive_field == math.inf
  assert make("gru").receptive_field == math.inf
  assert make("wavenet").receptive_field == 1 + 2 * (1 + 2 + 4)
  assert models.create("wavenet").receptive_field == 1 + 2 * 2 * 1023
  assert make("thesis_cnn").receptive_field == 16
  # (2-1)(1+2), head 1 tap; (2-1)1 + (3-1)3 + (2-1) head; post head 1.
  assert make("nam_wavenet").receptive_field == 1 + 3 + 8 + 1
  assert models.create("nam_wavenet").receptive_field == 1 + 2 * 2 * 1023


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_streaming_matches_offline(name, channels):
  model, params, apply = built(name, channels)  # a compile per block size
  x = signal(2, 40, channels)
  # One-sample blocks, shorter than every state, and 12-sample ones, longer
  # than every WaveNet layer's (kernel 3: 2, 4 and 8 samples).
  sizes = np.random.default_rng(0).permutation([1, 1, 1, 1, 12, 12, 12])
  assert sizes.sum() == x.shape[1]

  y_offline, state_offline = apply(params, x, None)
  state, blocks, start = model.initial_state(2), [], 0
  for size in sizes:
    y, state = apply(params, x[:, start:start + size], state)
    blocks.append(y)
    start += size

  np.testing.assert_allclose(jnp.concatenate(blocks, axis=1), y_offline,
                             atol=1e-6, rtol=0)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               state, state_offline)


@pytest.mark.parametrize("name", NAMES)
def test_repeated_block_size_does_not_retrace(name):
  model, params, _ = built(name)
  x = signal(1, 8, 1)
  traces = []

  @jax.jit
  def process(params, block, state):
    traces.append(None)  # runs only while tracing
    return model.apply(params, block, state)

  state = model.initial_state(1)
  for _ in range(3):
    _, state = process(params, x, state)

  assert len(traces) == 1


@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite(name):
  model, params, _ = built(name)
  x = signal(2, 40, 1)

  grads = jax.jit(jax.grad(lambda p: jnp.mean(model.apply(p, x)[0] ** 2)))(
      params)

  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  assert any(np.abs(g).sum() > 0 for g in jax.tree.leaves(grads))


def test_create_rejects_unknown_names():
  with pytest.raises(ValueError, match="lstm"):
    models.create("lstmm")
  with pytest.raises(ValueError, match="hidden_size"):
    models.create("lstm", hiden_size=32)


def test_thesis_cnn_errors_name_what_to_change():
  too_deep = models.create("thesis_cnn", window=64, filters=8, kernel_size=4,
                           groups=4)
  with pytest.raises(ValueError, match="kernel_size"):
    too_deep.init(jax.random.key(0), jnp.zeros((1, 4, 1)))
  mono = make("thesis_cnn")
  with pytest.raises(ValueError, match="input_channels=2"):
    mono.init(jax.random.key(0), jnp.zeros((1, 4, 2)))


def test_output_at_last_lstm():
  model, params, apply = built("lstm")
  windows = signal(2, 40, 1)

  np.testing.assert_array_equal(models.output_at_last(model, params, windows),
                                apply(params, windows, None)[0][:, -1])


def test_thesis_cnn_predict_last_is_last_output():
  model, params, apply = built("thesis_cnn", channels=2)
  windows = signal(3, model.window, 2)

  last = jax.jit(lambda p, w: models.output_at_last(model, p, w))(
      params, windows)

  assert last.shape == (3, 1)
  np.testing.assert_allclose(last, apply(params, windows, None)[0][:, -1],
                             atol=1e-6, rtol=0)


def _sigmoid(v):
  return 1.0 / (1.0 + np.exp(-v))


def _numpy_lstm(p, x, num_layers):
  """PyTorch's LSTM equations, gate order i, f, g, o; x [batch, time, in]."""
  seq = np.asarray(x, np.float64)
  for k in range(num_layers):
    w_ih, w_hh, bias = (np.asarray(p[f"{n}_{k}"], np.float64)
                        for n in ("w_ih", "w_hh", "bias"))
    hsz = w_hh.shape[0]
    h = np.zeros((seq.shape[0], hsz))
    c = np.zeros_like(h)
    out = []
    for t in range(seq.shape[1]):
      gates = seq[:, t] @ w_ih + h @ w_hh + bias
      i, f, g, o = np.split(gates, 4, axis=-1)
      c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
      h = _sigmoid(o) * np.tanh(c)
      out.append(h)
    seq = np.stack(out, axis=1)
  return seq @ np.asarray(p["w_out"]) + np.asarray(p["b_out"])


def _numpy_gru(p, x, num_layers):
  """PyTorch's GRU equations (reset after), gate order r, z, n."""
  seq = np.asarray(x, np.float64)
  for k in range(num_layers):
    w_ih, w_hh, b_ih, b_hh = (np.asarray(p[f"{n}_{k}"], np.float64)
                              for n in ("w_ih", "w_hh", "b_ih", "b_hh"))
    h = np.zeros((seq.shape[0], w_hh.shape[0]))
    out = []
    for t in range(seq.shape[1]):
      xr, xz, xn = np.split(seq[:, t] @ w_ih + b_ih, 3, axis=-1)
      hr, hz, hn = np.split(h @ w_hh + b_hh, 3, axis=-1)
      r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
      n = np.tanh(xn + r * hn)
      h = (1 - z) * n + z * h
      out.append(h)
    seq = np.stack(out, axis=1)
  return seq @ np.asarray(p["w_out"]) + np.asarray(p["b_out"])


@pytest.mark.parametrize("name, reference", [("lstm", _numpy_lstm),
                                             ("gru", _numpy_gru)])
def test_recurrent_matches_numpy_equations(name, reference):
  model, params, apply = built(name, channels=2)  # 2 layers of 8, skip
  x = signal(2, 40, 2)
  # Larger weights than the init, so that the gates leave their linear range.
  params = jax.tree.map(lambda a: 2.0 * a, params)

  y, _ = apply(params, x, None)

  expected = reference(params["params"], x, num_layers=2) + np.asarray(
      x[..., :1])
  np.testing.assert_allclose(y, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_silent_rest_keeps_silence_silent_and_its_biases_at_zero(name):
  """silent_rest: silence in gives exactly 0 out after any training, as
  the numpy equations do with those biases at 0; without it the rest is
  not silent (so the check can fail)."""
  x = signal(2, 40, 1)
  silence = jnp.zeros((2, 300, 1))
  model = models.create(name, hidden_size=8, num_layers=2, skip=True,
                        silent_rest=True)
  params = model.init(jax.random.PRNGKey(0), x)
  # Gradients of a loss on non-silent audio: the held biases get none.
  grads = jax.grad(lambda p: jnp.sum(model.apply(p, x)[0] ** 2))(params)
  hsz = 8
  held = (["bias_0", "bias_1"] if name == "lstm" else
          ["b_ih_0", "b_hh_0", "b_ih_1", "b_hh_1"])
  block = slice(2 * hsz, 3 * hsz)  # the candidate: g (lstm), n (gru)
  for key in held:
    np.testing.assert_array_equal(params["params"][key][block], 0.0)
    np.testing.assert_array_equal(grads["params"][key][block], 0.0)
    assert np.all(np.asarray(grads["params"][key][:2 * hsz]) != 0.0)
  np.testing.assert_array_equal(grads["params"]["b_out"], 0.0)
  # Any weights (as after training, b_out moved by hand): still silent.
  trained = jax.tree.map(lambda a: a + 0.3, params)
  y, _ = model.apply(trained, silence)
  np.testing.assert_array_equal(y, 0.0)
  reference = {"lstm": _numpy_lstm, "gru": _numpy_gru}[name]
  zeroed = {k: np.asarray(v).copy() for k, v in trained["params"].items()}
  for key in held:
    zeroed[key][block] = 0.0
  zeroed["b_out"][:] = 0.0
  np.testing.assert_allclose(model.apply(trained, x)[0],
                             reference(zeroed, x, num_layers=2)
                             + np.asarray(x), atol=1e-5, rtol=0)
  loud = models.create(name, hidden_size=8, num_layers=2, skip=True)
  y, _ = loud.apply(trained, silence)
  assert float(jnp.max(jnp.abs(y))) > 1e-3
