"""Streaming equals offline (knobs turned between blocks), its speed, and
the real-time dispatch switch."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emu import models
from emu import stream
from emu.report import speed


@pytest.mark.parametrize("name, hparams", [
    ("lstm", {"hidden_size": 4}),
    ("gru", {"hidden_size": 4}),
    ("wavenet", {"channels": 3, "dilations": (1, 2, 4)}),
])
def test_knob_turned_between_blocks_matches_offline(name, hparams):
  model = models.create(name, **hparams)
  rng = np.random.default_rng(0)
  blocks = [rng.uniform(-0.5, 0.5, size).astype(np.float32)
            for size in (64, 1, 37, 64, 128)]
  settings = [0.0, 0.25, 0.25, 0.9, 0.5]
  audio = np.concatenate(blocks)
  knob = np.concatenate([np.full(len(b), s, np.float32)
                         for b, s in zip(blocks, settings)])
  x = jnp.asarray(np.stack([audio, knob], axis=-1))[None]
  params = model.init(jax.random.PRNGKey(0), x)
  offline, _ = model.apply(params, x, None)
  streamer = stream.Streamer(model, params)
  streamed = np.concatenate([streamer.process(b, knobs=[s])
                             for b, s in zip(blocks, settings)])
  np.testing.assert_allclose(streamed, np.asarray(offline).ravel(), atol=1e-6)
  # The knob matters: the same audio at one fixed setting differs.
  fixed = jnp.asarray(np.stack([audio, np.zeros_like(knob)], axis=-1))[None]
  assert np.abs(model.apply(params, fixed, None)[0] - offline).max() > 1e-4


@pytest.mark.parametrize("name, hparams", [
    ("lstm", {"hidden_size": 4}),
    ("lru", {"state_size": 4, "features": 3}),  # a complex state
])
def test_state_handed_over_continues_the_offline_run(name, hparams):
  # Given a model run offline over 80 samples, and its state after 50,
  model = models.create(name, **hparams)
  x = jnp.asarray(np.random.default_rng(2).uniform(-0.5, 0.5, (1, 80, 1)),
                  jnp.float32)
  params = model.init(jax.random.PRNGKey(0), x)
  offline, _ = model.apply(params, x, None)
  _, mid_state = model.apply(params, x[:, :50], None)
  # when a streamer is given that state (after a block of other audio),
  streamer = stream.Streamer(model, params)
  streamer.process(np.ones(16, np.float32))
  streamer.state = mid_state
  # then it reads it back unchanged and continues the offline output.
  for got, want in zip(jax.tree.leaves(streamer.state),
                       jax.tree.leaves(mid_state)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  tail = np.concatenate([streamer.process(np.asarray(x[0, a:b, 0]))
                         for a, b in ((50, 66), (66, 80))])
  np.testing.assert_allclose(tail, np.asarray(offline).ravel()[50:],
                             atol=1e-6)
  # and reset() is silence again: the first block as from a fresh streamer.
  streamer.reset()
  np.testing.assert_array_equal(
      streamer.process(np.asarray(x[0, :16, 0])),
      stream.Streamer(model, params).process(np.asarray(x[0, :16, 0])))


def test_state_of_the_wrong_size_is_refused():
  model = models.create("lstm", hidden_size=4)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 1)))
  streamer = stream.Streamer(model, params)
  with pytest.raises(ValueError, match="initial_state"):
    streamer.state = models.create("lstm", hidden_size=5).initial_state(1)


def test_measure_reports_real_time_factor():
  model = models.create("lstm", hidden_size=4)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 1)))
  row = speed.measure(model, params, 32, seconds=0.05)
  assert row["block_size"] == 32 and row["blocks"] >= 1
  assert row["rtf"] > 0 and np.isclose(
      row["us_per_sample"], 1e6 / (44100 * row["rtf"]), rtol=1e-6)


_REALTIME_CHILD = r"""
import warnings
import numpy as np
from emu import stream
assert stream.realtime() is True          # before any JAX computation
from jax._src import xla_bridge
assert xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value is False
import jax, jax.numpy as jnp
from emu import models
model = models.create("lstm", hidden_size=4)
x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 96, 1)).astype(np.float32)
params = model.init(jax.random.PRNGKey(0), jnp.asarray(x))
offline = np.asarray(model.apply(params, jnp.asarray(x), None)[0]).ravel()
s = stream.Streamer(model, params)
assert s._copy is False                   # the host buffer is reused as is
streamed = np.concatenate([s.process(x[0, i:i + 32, 0]) for i in (0, 32, 64)])
np.testing.assert_allclose(streamed, offline, atol=1e-6)
# With a knob turned between blocks of changing size, inline as well.
knob = np.repeat(np.float32([0.1, 0.7, 0.4]), [40, 16, 40])
xk = np.stack([x[0, :, 0], knob], axis=-1)[None]
params = model.init(jax.random.PRNGKey(1), jnp.asarray(xk))
offline = np.asarray(model.apply(params, jnp.asarray(xk), None)[0]).ravel()
s = stream.Streamer(model, params)
streamed = np.concatenate([s.process(x[0, a:b, 0], knobs=[knob[a]])
                           for a, b in ((0, 40), (40, 56), (56, 96))])
np.testing.assert_allclose(streamed, offline, atol=1e-6)
assert stream.realtime() is True          # later calls repeat the answer
print("ok")
"""

_TOO_LATE_CHILD = r"""
import warnings
import jax.numpy as jnp
from emu import stream
jnp.zeros(3).block_until_ready()           # the CPU client exists now
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  assert stream.realtime() is False
assert any("before the first JAX computation" in str(w.message)
           for w in caught)
print("ok")
"""


@pytest.mark.parametrize("child", [_REALTIME_CHILD, _TOO_LATE_CHILD],
                         ids=["before", "too_late"])
def test_realtime_dispatch(child):
  # A fresh process each: the setting only counts before JAX's CPU client
  # exists, which in this test process it already does.
  result = subprocess.run([sys.executable, "-c", child], capture_output=True,
                          text=True, timeout=300, check=False,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize("time_steps", [1, 64, 4096])
def test_lstm_one_stream_path_equals_the_batched_path(time_steps):
  # Given an LSTM and one stream of up to 4096 samples, which takes the
  # one-stream loop (vectors, gate scale folded into the weights, head after
  # the loop);
  model = models.create("lstm", hidden_size=8)
  rng = np.random.default_rng(time_steps)
  x = jnp.asarray(rng.uniform(-0.5, 0.5, (1, time_steps, 2)), jnp.float32)
  params = model.init(jax.random.PRNGKey(0), x)
  state = jax.tree.map(
      lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), s.dtype),
      model.initial_state(1))
  one, one_state = model.apply(params, x, state)
  # when the same stream runs as row 0 of a batch of two (the batched loop),
  other = jnp.asarray(rng.uniform(-0.5, 0.5, x.shape), jnp.float32)
  two_state = jax.tree.map(lambda s: jnp.concatenate([s, s]), state)
  two, two_state = model.apply(params, jnp.concatenate([x, other]), two_state)
  # then output and state agree to float rounding.
  np.testing.assert_allclose(one[0], two[0], atol=2e-6)
  for a, b in zip(jax.tree.leaves(one_state), jax.tree.leaves(two_state)):
    np.testing.assert_allclose(a[0], b[0], atol=2e-6)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
  """A run folder holding an LSTM-4's config and best checkpoint, as
  emu.train.fit leaves one (no training: only what load_params reads)."""
  from emu import config as config_lib  # pylint: disable=g-import-not-at-top
  from emu import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from emu.train import checkpoints as checkpoints_lib
  workdir = str(tmp_path_factory.mktemp("saved_run"))
  cfg = config_lib.Config(model="lstm", model_kwargs={"hidden_size": 4})
  workdir_lib.prepare(cfg, workdir, overwrite=False)
  workdir_lib.write_json(workdir, workdir_lib.DATASET, {
      "name": "noise", "sample_rate": 44100, "train_samples": 100,
      "channels": 1})
  model = models.build_model(cfg)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 1)))
  checkpoints_lib.Checkpoints(workdir).save("best", {"params": params})
  return workdir, model, params


def test_measure_in_child_runs_as_a_real_time_host(saved_run):
  # Given a run folder, when its streaming speed is measured in a child
  # (a few blocks: a check of the path, not of the speed),
  workdir, _, params = saved_run
  measured = speed.measure_in_child(workdir, (1, 16), seconds=0.01,
                                     max_blocks=20, repeats=2)
  # then the child says how it ran: one pinned core, one XLA thread,
  # inline dispatch, on the CPU;
  assert measured["method"] == speed.CHILD_METHOD
  settings = measured["settings"]
  assert settings["one_xla_thread"] and settings["inline_dispatch"]
  assert settings["xla_flags"] == speed.ONE_THREAD_XLA_FLAGS
  assert settings["backend"] == "cpu"
  if hasattr(os, "sched_setaffinity"):
    assert len(settings["pinned_cpus"]) == 1
  # and it measured the run's model at each block size.
  assert measured["parameters"] == sum(
      p.size for p in jax.tree.leaves(params))
  assert [r["block_size"] for r in measured["rows"]] == [1, 16]
  for row in measured["rows"]:
    assert row["repeats"] == 2 and 1 <= row["blocks"] <= 20
    for key in ("rtf", "us_per_sample", "block_ms_mean", "block_ms_p99"):
      assert np.isfinite(row[key]) and row[key] > 0, key


def test_measure_in_child_of_a_folder_without_a_run_is_an_error(tmp_path):
  with pytest.raises(RuntimeError, match="no run"):
    speed.measure_in_child(str(tmp_path), (16,), seconds=0.01,
                            max_blocks=5, repeats=1)


def test_measure_best_keeps_the_fastest_run_and_stops_at_its_budget():
  model = models.create("lstm", hidden_size=4)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 1)))
  row = speed.measure_best(model, params, 16, seconds=0.01, max_blocks=10,
                            repeats=3)
  assert row["repeats"] == 3 and row["blocks"] == 10 and row["rtf"] > 0
  # A budget the first run already spends: one run, however many repeats.
  row = speed.measure_best(model, params, 16, seconds=0.01, max_blocks=10,
                            repeats=3, budget_s=1e-9)
  assert row["repeats"] == 1


def test_the_benchmark_measures_streaming_as_the_report_does(monkeypatch):
  # One home for how streaming speed is measured: bench's one-thread flags,
  # sizes and measurement are emu.stream's.
  from benchmarks import bench_options  # pylint: disable=g-import-not-at-top
  from benchmarks import bench_timing  # pylint: disable=g-import-not-at-top
  assert bench_options.ONE_THREAD == speed.ONE_THREAD_XLA_FLAGS
  opts = bench_options.Options()
  assert (opts.stream_seconds, opts.repeats) == (speed.SECONDS,
                                                 speed.REPEATS)
  calls = []
  monkeypatch.setattr(speed, "measure_best",
                      lambda *args, **kwargs: calls.append(kwargs) or {})
  bench_timing.best_stream(None, None, 64, 2.0, 4000, 3)
  assert calls == [{"seconds": 2.0, "max_blocks": 4000, "repeats": 3}]
