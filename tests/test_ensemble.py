"""Ensembles: E LSTM members in one scan equal the members run alone.

Given an Ensemble of one-layer LSTMs, when it runs (forward, backward,
a training step, streaming), then every member's numbers equal those of
the same member run by itself, to float tolerance.
"""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emu import config as config_lib
from emu import data as data_lib
from emu import losses
from emu import models
from emu import train
from emu.models import ensemble as ensemble_lib
from emu.models import lstm_members
from emu.models import recurrent

MEMBERS = 3


def member_and_params(channels=1, hidden=5, skip=True, members=MEMBERS,
                      silent_rest=False):
  model = models.create("lstm", hidden_size=hidden, skip=skip,
                        silent_rest=silent_rest)
  keys = jax.random.split(jax.random.key(0), members)
  example = jnp.zeros((1, 8, channels))
  params = jax.vmap(lambda k: model.init(k, example))(keys)
  # Away from the initialisation, so every gate and the head matter.
  params = jax.tree.map(
      lambda p, k: p + 0.3 * jax.random.normal(k, p.shape),
      params, jax.tree.unflatten(
          jax.tree.structure(params),
          list(jax.random.split(jax.random.key(1),
                                len(jax.tree.leaves(params))))))
  return model, params


def random_state(model, batch, members=MEMBERS):
  state = model.initial_state(batch)
  keys = iter(jax.random.split(jax.random.key(2), 8))
  return jax.tree.map(
      lambda s: 0.3 * jax.random.normal(next(keys), (members,) + s.shape),
      state)


@pytest.mark.parametrize("channels, skip, silent_rest",
                         [(1, True, False), (2, False, False),
                          (1, True, True)])
def test_given_members_when_run_together_then_each_equals_itself_alone(
    channels, skip, silent_rest):
  # silent_rest: the held biases are moved away from 0 (member_and_params),
  # so both paths must zero them alike.
  model, params = member_and_params(channels, skip=skip,
                                    silent_rest=silent_rest)
  x = jax.random.normal(jax.random.key(3), (2, 37, channels))
  state = random_state(model, 2)
  y, (hc,) = lstm_members.lstm_members(model, params["params"], x, state)
  for e in range(MEMBERS):
    member = jax.tree.map(lambda a, e=e: a[e], (params, state))
    want_y, (want_hc,) = model.apply(member[0], x, member[1])
    np.testing.assert_allclose(y[e], want_y, rtol=1e-5, atol=1e-6)
    for got, want in zip(hc, want_hc):
      np.testing.assert_allclose(got[e], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("time, chunk", [(37, 8), (32, 8), (5, 8), (9, 1)])
def test_given_a_loss_when_differentiated_then_gradients_match_autodiff(
    time, chunk):
  """Chunked recompute with and without a leading remainder, one chunk."""
  hidden, batch, channels = 4, 3, 2
  _, params = member_and_params(channels, hidden)
  p = params["params"]
  layer = (p["w_ih_0"], p["w_hh_0"], p["bias_0"])
  x = jax.random.normal(jax.random.key(4), (time, batch, channels))
  h0, c0 = (0.3 * jax.random.normal(k, (MEMBERS, batch, hidden))
            for k in jax.random.split(jax.random.key(5)))
  args = (layer, p["w_out"], p["b_out"], x, h0, c0)

  def value(sequence):
    def loss(layer, w_out, b_out, x, h0, c0):
      y, h, c = sequence(layer, w_out, b_out, x, h0, c0)
      weights = jnp.arange(1, MEMBERS + 1, dtype=jnp.float32)
      return (jnp.sum(jnp.sin(3 * y) * weights[:, None, None])
              + jnp.sum(1.3 * h) + jnp.sum(c ** 2))
    return jax.grad(loss, argnums=tuple(range(6)))(*args)

  def members_alone(layer, w_out, b_out, x, h0, c0):
    y, h, c = jax.vmap(
        functools.partial(recurrent._lstm_forward, 1),  # pylint: disable=protected-access
        in_axes=(0, 0, 0, None, 0, 0), out_axes=(1, 0, 0))(
            layer, w_out, b_out, x, h0, c0)
    return y, h, c

  together = functools.partial(lstm_members._members_sequence, 1, chunk)  # pylint: disable=protected-access
  want, got = value(members_alone), value(together)
  for w, g in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def ensemble(size=MEMBERS, hidden=4, **kwargs):
  return ensemble_lib.Ensemble(
      member="lstm",
      member_kwargs=tuple(sorted(dict(hidden_size=hidden, **kwargs).items())),
      size=size)


def test_given_an_lstm_ensemble_then_its_native_path_equals_nn_vmap():
  model = ensemble()
  assert model.native
  x = jax.random.normal(jax.random.key(6), (2, 50, 1))
  params = model.init(jax.random.key(7), x)
  ys, state = model.apply(params, x, method="member_outputs")
  # The same module through flax's vmap: the path other families take.
  vmapped = model.apply(params, x, model.initial_state(2),
                        method=lambda m, x, s: m.members(x, s))
  np.testing.assert_allclose(ys, vmapped[0], rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(vmapped[1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  y, _ = model.apply(params, x)
  np.testing.assert_allclose(y, ys.mean(axis=0), rtol=1e-6, atol=1e-7)


def test_given_an_ensemble_when_streamed_in_blocks_then_it_equals_one_call():
  model = ensemble()
  x = jax.random.normal(jax.random.key(8), (1, 96, 1))
  params = model.init(jax.random.key(9), x)
  whole, _ = model.apply(params, x)
  state, blocks = model.initial_state(1), []
  for start in range(0, 96, 32):
    y, state = model.apply(params, x[:, start:start + 32], state)
    blocks.append(y)
  np.testing.assert_allclose(jnp.concatenate(blocks, axis=1), whole,
                             rtol=1e-5, atol=1e-6)


def test_given_a_gru_ensemble_then_it_takes_the_vmap_path():
  model = ensemble_lib.Ensemble(member="gru",
                                member_kwargs=(("hidden_size", 4),), size=2)
  assert not model.native
  x = jnp.ones((1, 20, 1))
  params = model.init(jax.random.key(0), x)
  assert model.apply(params, x)[0].shape == (1, 20, 1)


def tiny_pair(n=8192):
  key_x, _ = jax.random.split(jax.random.key(10))
  x = np.asarray(jax.random.normal(key_x, (n,)) * 0.3, np.float32)
  t = np.convolve(x, [0.6, -0.3, 0.1])[:n].astype(np.float32)
  return data_lib.Pair(x, t)


@pytest.mark.parametrize("tbptt", [0, 112])
def test_given_members_when_stepped_together_then_each_equals_itself_alone(
    tbptt):
  cfg = config_lib.Config(model="lstm", model_kwargs={"hidden_size": 4},
                          segment_length=512, warmup=64, batch_size=4,
                          tbptt=tbptt, loss={"esr": 1.0, "mse": 0.5},
                          learning_rate=1e-2, grad_clip=0.5,
                          ensemble=MEMBERS)
  member = models.build_model(cfg.replace(ensemble=1))
  full = models.build_model(cfg)
  tx = train.make_optimizer(cfg, 10)
  loss_fn = losses.combined(cfg.loss)
  example = jnp.zeros((1, 64, 1))
  keys = jax.random.split(jax.random.PRNGKey(11), MEMBERS)  # as fit's
  stacked = jax.vmap(
      lambda k: train.create_train_state(member, tx, k, example))(keys)
  batches = list(train.epoch_batches(cfg, tiny_pair(), jax.random.key(12)))
  step = jax.jit(train.make_ensemble_train_step(full, tx, loss_fn, cfg))
  alone = jax.jit(train.make_train_step(member, tx, loss_fn, cfg))
  states = [jax.tree.map(lambda a, e=e: a[e], stacked)
            for e in range(MEMBERS)]
  together = stacked
  for batch in batches[:2]:
    together, metrics = step(together, batch)
    for e in range(MEMBERS):
      states[e], want = alone(states[e], batch)
      for name in want:
        np.testing.assert_allclose(metrics[name][e], want[name], rtol=1e-4)
  for e in range(MEMBERS):
    for a, b in zip(jax.tree.leaves(states[e]), jax.tree.leaves(together)):
      np.testing.assert_allclose(b[e], a, rtol=1e-4, atol=1e-6)


def test_given_tiny_sizes_when_the_ensemble_bench_runs_then_it_writes_its_part(
    tmp_path):
  """benchmarks/bench.py --ensemble_only keeps running (no time asserted)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = tmp_path / "bench.json"
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  result = subprocess.run(
      [sys.executable, os.path.join(root, "benchmarks", "bench.py"),
       "--tiny", "--ensemble_only", "--ensemble=2", "--repeats=1",
       f"--out={out}"],
      cwd=root, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Ensemble of 2 lstm32" in result.stdout
  ens = json.loads(out.read_text())["ensemble"]
  assert ens["members"] == 2
  for times in (ens["train_ms"], ens["train_cpu_ms"]):
    assert set(times) == {"one_member", "ensemble", "vmapped", "separate"}
    assert times["separate"] == pytest.approx(2 * times["one_member"])
  assert ens["offline_rtf"]["ensemble"] > 0
  assert ens["stream64_rtf"]["ensemble"] > 0
  # and the 2-device part: both placements of one member and of the
  # ensemble, with the ratios the closing note quotes.
  dev = json.loads(out.read_text())["ensemble_devices"]
  ms = dev["train_ms"]
  assert set(ms) == {"one_member_1dev", "one_member_2dev", "ensemble_1dev",
                     "ensemble_2dev_members_split"}
  assert dev["split_over_one_1dev"] == pytest.approx(
      ms["ensemble_2dev_members_split"] / ms["one_member_1dev"])
  assert "split over 2 devices" in result.stdout
