"""The stateless training loop: steps, early stopping, checkpoints, resume."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emu import config as config_lib
from emu import data as data_lib
from emu import losses
from emu import models
from emu import metrics
from emu import stream
from emu import train
from emu import workdir
from emu.train import restore

SAMPLE_RATE = 44100


def tiny_dataset(seconds=1.0, val_seconds=0.25, seed=0):
  """White-ish noise through a one-pole low-pass: a quick, learnable effect."""
  rng = np.random.default_rng(seed)

  def pair(n):
    x = rng.uniform(-0.5, 0.5, n).astype(np.float32)
    t = np.zeros_like(x)
    acc = 0.0
    for i, v in enumerate(x):  # y[n] = 0.5 x[n] + 0.5 y[n-1]
      acc = 0.5 * v + 0.5 * acc
      t[i] = acc
    return data_lib.Pair(x, t)

  return data_lib.Dataset(
      name="tiny", sample_rate=SAMPLE_RATE,
      train=pair(int(seconds * SAMPLE_RATE)),
      val1=pair(int(val_seconds * SAMPLE_RATE)), val2=None)


def tiny_config(**changes):
  base = dict(model="lstm", model_kwargs={"hidden_size": 4},
              segment_length=1024, warmup=128, batch_size=4,
              loss={"esr": 1.0}, learning_rate=1e-2, max_epochs=3,
              stream_blocks=(64,))
  base.update(changes)
  return config_lib.Config(**base)


class TestEarlyStopping:

  def test_given_values_when_no_improvement_for_patience_then_stop(self):
    stopper = train.EarlyStopping(patience=2)
    for epoch, value in enumerate([1.0, 0.5, 0.6, 0.55], start=1):
      stopper = stopper.update(value, epoch)
    assert stopper.best == 0.5 and stopper.best_epoch == 2
    assert stopper.bad_epochs == 2 and stopper.should_stop

  def test_given_improvement_then_counter_resets(self):
    stopper = train.EarlyStopping(patience=2).update(1.0, 1).update(2.0, 2)
    stopper = stopper.update(0.9, 3)
    assert stopper.improved and stopper.bad_epochs == 0
    assert not stopper.should_stop

  def test_min_delta_is_relative(self):
    stopper = train.EarlyStopping(patience=5, min_delta=0.1).update(1.0, 1)
    assert not stopper.update(0.95, 2).improved  # 5% < 10%
    assert stopper.update(0.85, 2).improved

  def test_update_returns_new_value(self):
    stopper = train.EarlyStopping(patience=3)
    stopper.update(1.0, 1)
    assert stopper.best == math.inf


class TestTrainStep:

  def test_seq2seq_tbptt_output_equals_full_run(self):
    """Truncation cuts gradients, not the carried state: same forward pass."""
    model = models.create("lstm", hidden_size=4)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 512, 1), minval=-1)
    params = model.init(jax.random.PRNGKey(0), x)
    full = train.seq2seq_predict(model, params, x, warmup=128, tbptt=0)
    chunked = train.seq2seq_predict(model, params, x, warmup=128, tbptt=64)
    np.testing.assert_allclose(chunked, full, atol=1e-6)
    reference, _ = model.apply(params, x, None)
    np.testing.assert_allclose(full, reference[:, 128:], atol=1e-6)

  def test_step_lowers_loss_and_does_not_retrace(self):
    cfg = tiny_config()
    model = models.create(cfg.model, **cfg.model_kwargs)
    tx = train.make_optimizer(cfg, steps_per_epoch=10)
    step = jax.jit(train.make_train_step(model, tx, losses.combined(cfg.loss),
                                         cfg), donate_argnums=0)
    data = tiny_dataset()
    state = train.create_train_state(model, tx, jax.random.PRNGKey(0),
                                     jnp.zeros((1, 64, 1)))
    batches = list(train.epoch_batches(cfg, data.train, jax.random.PRNGKey(3)))
    first = None
    for _ in range(5):
      for batch in batches:
        state, metrics = step(state, batch)
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < first
    assert step._cache_size() == 1  # pylint: disable=protected-access
    assert int(state.step) == 5 * len(batches)

  def test_window_mode_batches_and_step(self):
    cfg = tiny_config(mode="window", window=32, windows_per_epoch=64,
                      batch_size=16)
    data = tiny_dataset()
    batches = list(train.epoch_batches(cfg, data.train, jax.random.PRNGKey(0)))
    assert len(batches) == 4
    x, t = batches[0]
    assert x.shape == (16, 32, 1) and t.shape == (16, 1)
    model = models.create("lstm", hidden_size=4)
    tx = train.make_optimizer(cfg, 4)
    step = jax.jit(train.make_train_step(model, tx, losses.combined(cfg.loss),
                                         cfg))
    state = train.create_train_state(model, tx, jax.random.PRNGKey(0), x)
    state, metrics = step(state, batches[0])
    assert np.isfinite(float(metrics["loss"]))

  def test_epoch_batches_cover_segments_without_overlap(self):
    cfg = tiny_config(segment_length=1000, batch_size=2)
    n = 10_500
    pair = data_lib.Pair(np.arange(n, dtype=np.float32),
                         np.arange(n, dtype=np.float32))
    starts = []
    for x, _ in train.epoch_batches(cfg, pair, jax.random.PRNGKey(7)):
      starts.extend(int(seg[0, 0]) for seg in x)
    assert len(starts) == 10 and len(set(starts)) == 10
    offsets = {s % 1000 for s in starts}
    assert len(offsets) == 1 and offsets.pop() <= 500


  def test_epoch_batches_leave_out_silent_segments(self):
    # Given a recording whose third and sixth 1000-sample segments are
    # silent where they are scored (after the warm-up), and one that is
    # 50 dB down (quiet, not silent),
    cfg = tiny_config(segment_length=1000, batch_size=1, warmup=100)
    rng = np.random.default_rng(0)
    t = rng.normal(size=6000).astype(np.float32)
    t[2100:3000] = 0.
    t[5100:6000] = 1e-5 * t[5100:6000]
    t[3000:4000] *= 10 ** (-50 / 20)
    pair = data_lib.Pair(t.copy(), t)
    # the epoch trains on the other four, whatever the order.
    firsts = [float(x[0, 0, 0]) for x, _ in
              train.epoch_batches(cfg, pair, jax.random.PRNGKey(1))]
    assert sorted(firsts) == sorted(float(t[s]) for s in (0, 1000, 3000,
                                                           4000))


class TestFit:

  def test_loss_falls_and_files_written(self, tmp_path):
    cfg = tiny_config(max_epochs=4)
    result = train.fit(cfg, str(tmp_path), dataset=tiny_dataset())
    assert result.epochs == 4 and result.stop_reason == "max_epochs"
    history = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["val1_esr"] < 0.5 * history[0]["val1_esr"]
    assert (tmp_path / "checkpoints" / "best").is_dir()
    assert (tmp_path / "checkpoints" / "last").is_dir()
    model, params, loaded = restore.load_params(str(tmp_path))
    assert loaded == cfg
    y, _ = model.apply(params, jnp.asarray(
        result.dataset.val1.input).reshape(1, -1, 1), None)
    assert metrics.esr(np.asarray(y).ravel(), result.dataset.val1.target) == (
        pytest.approx(min(r["val1_esr"] for r in history), rel=1e-5))

  def test_resume_equals_uninterrupted(self, tmp_path):
    cfg = tiny_config(max_epochs=4)
    data = tiny_dataset()
    full = train.fit(cfg, str(tmp_path / "full"), dataset=data)
    train.fit(cfg, str(tmp_path / "cut"), dataset=data, stop_after_epochs=2)
    resumed = train.fit(cfg, str(tmp_path / "cut"), dataset=data)
    keys = ("train_loss", "val1_esr")
    assert [[r[k] for k in keys] for r in resumed.history] == (
        [[r[k] for k in keys] for r in full.history])
    for a, b in zip(jax.tree.leaves(full.params),
                    jax.tree.leaves(resumed.params)):
      np.testing.assert_array_equal(a, b)

  def test_nan_loss_stops_and_keeps_last_good_checkpoint(self, tmp_path):
    cfg = tiny_config(max_epochs=5)
    data = tiny_dataset()
    train.fit(cfg, str(tmp_path), dataset=data, stop_after_epochs=1)
    poisoned = data.train.target.copy()
    poisoned[:] = np.nan
    bad = dataclasses.replace(data, train=data_lib.Pair(data.train.input,
                                                        poisoned))
    result = train.fit(cfg, str(tmp_path), dataset=bad)
    assert result.stop_reason == "diverged" and result.epochs == 1
    assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(result.params))
    rows = open(tmp_path / "metrics.jsonl").read().strip().splitlines()
    assert len(rows) == 1

  def test_early_stopping_ends_run(self, tmp_path):
    # lr 0 never improves after epoch 1.
    cfg = tiny_config(max_epochs=20, patience=2, learning_rate=0.0)
    result = train.fit(cfg, str(tmp_path), dataset=tiny_dataset())
    assert result.stop_reason == "early_stopping"
    assert result.epochs == 3 and result.best_epoch == 1

  def test_a_time_limit_stops_an_epoch_between_steps(self, tmp_path):
    data = tiny_dataset(seconds=20.0)
    # A budget shorter than any step: the first epoch is still whole, and
    # the run stops after it.
    cut = train.fit(tiny_config(max_epochs=5, time_budget_s=1e-3),
                    str(tmp_path / "budget"), dataset=data)
    assert cut.stop_reason == "time_budget" and cut.epochs == 1
    steps = cut.history[0]["steps"]
    assert steps > 100
    # fit's stop_after_seconds (the audition's rounds) cuts a later epoch
    # between steps, counting from the end of the call's first step (its
    # compilation): 0.3 s of training after it
    cfg = tiny_config(max_epochs=3)
    folder = str(tmp_path / "round")
    first = train.fit(cfg, folder, dataset=data, stop_after_seconds=1e-3)
    assert first.epochs == 1 and first.history[0]["steps"] == steps
    limit = first.train_seconds + 0.3
    second = train.fit(cfg, folder, dataset=data, stop_after_seconds=limit)
    row = second.history[1]
    assert second.stop_reason == "interrupted" and second.epochs == 2
    assert 1 < row["steps"] < steps
    assert row["elapsed_s"] >= limit + row["first_step_s"]
    # and the run resumes from the cut epoch with a fresh, whole pass
    resumed = train.fit(cfg, folder, dataset=data)
    assert resumed.stop_reason == "max_epochs"
    assert resumed.history[:2] == second.history
    assert resumed.history[2]["steps"] == steps

  def test_workdir_with_other_config_is_refused(self, tmp_path):
    data = tiny_dataset()
    train.fit(tiny_config(max_epochs=1), str(tmp_path), dataset=data)
    with pytest.raises(workdir.WorkdirConflict, match="learning_rate"):
      train.fit(tiny_config(max_epochs=1, learning_rate=0.02), str(tmp_path),
                dataset=data)
    result = train.fit(tiny_config(max_epochs=1, learning_rate=0.02),
                       str(tmp_path), dataset=data, overwrite=True)
    assert result.epochs == 1


class TestEnsemble:

  def test_vmapped_step_equals_members_stepped_alone(self):
    cfg = tiny_config()
    model = models.create("lstm", hidden_size=4)
    tx = train.make_optimizer(cfg, 10)
    step = train.make_train_step(model, tx, losses.combined(cfg.loss), cfg)
    example = jnp.zeros((1, 64, 1))
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    stacked = jax.vmap(
        lambda k: train.create_train_state(model, tx, k, example))(keys)
    batch = next(train.epoch_batches(cfg, tiny_dataset().train,
                                     jax.random.PRNGKey(1)))
    together, _ = jax.jit(jax.vmap(step, in_axes=(0, None)))(stacked, batch)
    for i, key in enumerate(keys):
      alone, _ = jax.jit(step)(
          train.create_train_state(model, tx, key, example), batch)
      for a, b in zip(jax.tree.leaves(alone.params),
                      jax.tree.leaves(together.params)):
        np.testing.assert_allclose(b[i], a, atol=1e-6)

  def test_fit_ensemble_reports_members_and_mean(self, tmp_path):
    cfg = tiny_config(max_epochs=2, ensemble=3)
    data = tiny_dataset()
    result = train.fit(cfg, str(tmp_path), dataset=data)
    row = result.history[-1]
    assert len(row["val1_esr_members"]) == 3
    members = np.asarray(row["val1_esr_members"])
    assert len(set(members.round(8))) == 3  # different seeds
    y, _ = result.model.apply(result.params, stream.as_batch(data.val1.input))
    ys, _ = result.model.apply(result.params, stream.as_batch(data.val1.input),
                               method="member_outputs")
    np.testing.assert_allclose(y, ys.mean(axis=0), atol=1e-6)
    assert metrics.esr(np.asarray(y).ravel(), data.val1.target) == (
        pytest.approx(row["val1_esr"], rel=1e-5))
    model, params, _ = restore.load_params(str(tmp_path))
    again, _ = model.apply(params, stream.as_batch(data.val1.input))
    np.testing.assert_allclose(again, y, atol=1e-6)


def test_gain_augmentation_scales_input_and_target_alike():
  cfg = tiny_config(segment_length=1000, batch_size=2, gain_db=6.0)
  n = 10_000
  ramp = np.linspace(0.1, 0.9, n).astype(np.float32)
  pair = data_lib.Pair(ramp, 2 * ramp)
  plain = tiny_config(segment_length=1000, batch_size=2)
  batches = list(train.epoch_batches(cfg, pair, jax.random.PRNGKey(7)))
  reference = list(train.epoch_batches(plain, pair, jax.random.PRNGKey(7)))
  ratios = []
  for (x, t), (x0, _) in zip(batches, reference):
    np.testing.assert_allclose(t, 2 * x, rtol=1e-6)  # the pair stays exact
    ratio = x[:, 0, 0] / x0[:, 0, 0]
    np.testing.assert_allclose(x[:, :, 0] / x0[:, :, 0], ratio[:, None] *
                               np.ones_like(x0[:, :, 0]), rtol=1e-5)
    ratios.extend(ratio)
  db = 20 * np.log10(ratios)
  assert np.all(np.abs(db) <= 6.0 + 1e-4) and np.ptp(db) > 1.0


def test_gain_low_db_reaches_quiet_levels_and_keeps_the_pair_exact():
  # Given gain_db=6 and gain_low_db=-60, when batches are drawn, then each
  # segment is one exact scaling of its input and target, uniform in dB
  # over [-60, +6].
  cfg = tiny_config(segment_length=100, warmup=10, batch_size=10,
                    gain_db=6.0, gain_low_db=-60.0)
  assert cfg.gain_range_db == (-60.0, 6.0)
  assert tiny_config(gain_db=24.0).gain_range_db == (-24.0, 24.0)
  n = 20_000
  ramp = np.linspace(0.1, 0.9, n).astype(np.float32)
  pair = data_lib.Pair(ramp, 2 * ramp)
  plain = tiny_config(segment_length=100, warmup=10, batch_size=10)
  db = []
  for (x, t), (x0, _) in zip(
      train.epoch_batches(cfg, pair, jax.random.PRNGKey(7)),
      train.epoch_batches(plain, pair, jax.random.PRNGKey(7))):
    np.testing.assert_allclose(t, 2 * x, rtol=1e-6)
    ratio = x[:, :, 0] / x0[:, :, 0]
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio),
                               rtol=1e-5)
    db.extend(20 * np.log10(ratio[:, 0]))
  db = np.asarray(db)
  assert len(db) == 200
  assert db.min() >= -60.0 - 1e-3 and db.max() <= 6.0 + 1e-3
  assert db.min() < -50.0 and db.max() > -4.0  # the range is covered
  assert np.mean(db < -27.0) == pytest.approx(0.5, abs=0.15)  # uniform in dB


def test_gain_low_db_must_be_a_cut():
  with pytest.raises(ValueError, match="gain_low_db"):
    tiny_config(gain_low_db=6.0)



def test_level_balance_scores_a_quiet_segment_as_if_loud():
  # Given a linear model (lru: y(g x) = g y(x)) and two segments with
  # different targets (0.5 x and -0.5 x: the model is far off on one),
  # when the second is played 60 dB down, the level-balanced step's loss
  # is the one with both loud, where the plain ESR all but ignores the
  # quiet segment and scores the first alone (as a batch of it twice).
  model = models.create("lru", state_size=2, num_layers=1)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 512, 1), minval=-1)
  t = x * jnp.array([0.5, -0.5])[:, None, None]
  gain = jnp.array([1.0, 1e-3])[:, None, None]
  scores = {}
  for balance in (True, False):
    cfg = tiny_config(model="lru", model_kwargs={"state_size": 2},
                      level_balance=balance)
    tx = train.make_optimizer(cfg, steps_per_epoch=1)
    step = jax.jit(train.make_train_step(model, tx,
                                         losses.combined(cfg.loss), cfg))
    state = train.create_train_state(model, tx, jax.random.PRNGKey(0),
                                     jnp.zeros((1, 64, 1)))
    if balance:  # the premise: the model is linear
      y, _ = jax.jit(model.apply)(state.params,
                                  jnp.concatenate([gain * x, x]))
      np.testing.assert_allclose(y[:2], gain * y[2:], rtol=1e-3, atol=1e-9)
    scores[balance] = [float(step(state, batch)[1]["loss"])
                       for batch in ((x, t), (gain * x, gain * t),
                                     (x[:1].repeat(2, 0),
                                      t[:1].repeat(2, 0)))]
  both_loud, one_quiet, first_alone = scores[True]
  assert one_quiet == pytest.approx(both_loud, rel=1e-4)
  assert abs(both_loud - first_alone) > 0.1 * first_alone
  both_loud, one_quiet, first_alone = scores[False]
  assert one_quiet == pytest.approx(first_alone, rel=1e-3)
