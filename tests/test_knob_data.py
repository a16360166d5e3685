"""Tests for emu.data's knob datasets, slicing with channels, and grouping."""

import jax
import numpy as np
import pytest
import soundfile

from emu import data
from emu import effects

SR = 44100
CLIP = 0.1  # seconds per knob setting: 4410 samples.


@pytest.fixture(scope='module')
def hpf():
  """2.4 s of training audio (24 clips, 4 values) and 1.2 s of val1."""
  return data.knob_dataset(jax.random.key(0), 'hpf_knob', size=2.4,
                           train_values=4, clip_seconds=CLIP,
                           val1_seconds=1.2)


@pytest.fixture(scope='module')
def peak():
  """A two-knob effect (f0 and gain), at hpf's lengths (shared compiles)."""
  return data.knob_dataset(jax.random.key(1), 'peak_knob', size=2.4,
                           train_values=3, clip_seconds=CLIP,
                           val1_seconds=1.2)


def _values(pair, channel=1):
  return np.unique(pair.input[:, channel])


def test_knob_dataset_shapes_and_names(hpf):
  assert hpf.name == 'knob_2.4s_hpf_knob'
  assert hpf.knobs == ('cutoff_hz',) and hpf.sample_rate == SR
  for pair in (hpf.train, hpf.val1):
    assert pair.input.dtype == pair.target.dtype == np.float32
    assert pair.input.ndim == 2 and pair.input.shape[1] == 2
    assert pair.target.shape == pair.input.shape[:1]
  # The audio channel is thesis_dataset's audio for the same key.
  _, k_val = jax.random.split(jax.random.key(0))
  np.testing.assert_array_equal(hpf.val1.input[:, 0],
                                data.recipe(k_val, 1.2 / 24., SR))


def test_knobs_are_normalised_and_constant_within_clips(hpf):
  for pair in (hpf.train, hpf.val1):
    knob = pair.input[:, 1]
    assert knob.min() >= 0. and knob.max() <= 1.
    changes = np.flatnonzero(np.diff(knob)) + 1
    clip = len(knob) / round(len(knob) / (CLIP * SR))
    # Borders fall on clip boundaries only (round(i * time / clips)).
    np.testing.assert_allclose(changes / clip, np.round(changes / clip),
                               atol=1e-3)


def test_train_and_val_knob_values_follow_the_grids(hpf):
  np.testing.assert_allclose(_values(hpf.train), [0., 1 / 3, 2 / 3, 1.],
                             atol=1e-7)
  # val1: the midpoints, never a training value.
  np.testing.assert_allclose(_values(hpf.val1), [1 / 6, 1 / 2, 5 / 6],
                             atol=1e-7)
  assert not set(_values(hpf.train)) & set(_values(hpf.val1))
  # Each value equally often.
  for pair in (hpf.train, hpf.val1):
    counts = [len(i) for _, i in data.group_by_knobs(pair)]
    assert max(counts) - min(counts) <= len(counts)


def test_two_knobs_are_balanced_and_val_settings_unseen(peak):
  assert peak.knobs == ('f0_hz', 'gain_db')
  assert peak.train.input.shape[1] == 3
  for channel in (1, 2):
    assert not set(_values(peak.train, channel)) & set(
        _values(peak.val1, channel))
    counts = [len(i) for _, i in data.group_by_knobs(peak.train,
                                                     knob=channel - 1)]
    assert len(counts) == 3 and max(counts) == min(counts)


def test_target_is_the_effect_at_each_clips_knob_value(hpf):
  knob = effects.knob_effect('hpf_knob').knobs[0]
  x, u = hpf.train.input[:, 0], hpf.train.input[:, 1]
  # The whole signal with its per-sample cutoff: exactly the target.
  cutoff = knob.denormalise(u.astype(np.float64))
  np.testing.assert_array_equal(
      effects.highpass_knob(x, cutoff, SR), hpf.train.target)
  # Each clip, once the previous clip's setting has died away (50 ms;
  # the 20 Hz setting takes longer, so it is left out), is the fixed
  # filter at that clip's cutoff.
  checked = 0
  for values, indices in data.group_by_knobs(hpf.train):
    if values[0] < 0.3:
      continue
    fixed = np.asarray(effects.highpass(x, knob.denormalise(values[0]), SR))
    starts = indices[np.r_[True, np.diff(indices) > 1]]
    for start in starts:
      late = slice(start + 2205, start + 4410)
      assert np.max(np.abs(hpf.train.target[late] - fixed[late])) < 1e-4
      checked += 1
  assert checked >= 6


def test_knob_datasets_are_deterministic_by_key(hpf):
  again = data.knob_dataset(jax.random.key(0), 'hpf_knob', size=2.4,
                            train_values=4, clip_seconds=CLIP,
                            val1_seconds=1.2)
  np.testing.assert_array_equal(again.train.input, hpf.train.input)
  np.testing.assert_array_equal(again.val1.target, hpf.val1.target)
  other = data.knob_dataset(jax.random.key(2), 'hpf_knob', size=2.4,
                            train_values=4, clip_seconds=CLIP,
                            val1_seconds=1.2)
  assert not np.array_equal(other.train.input[:, 1], hpf.train.input[:, 1])


def test_knob_grids_rules_and_errors():
  train, val = data.knob_grids(8)
  np.testing.assert_allclose(train, np.arange(8) / 7, atol=1e-7)
  np.testing.assert_allclose(val, (np.arange(7) + 0.5) / 7, atol=1e-7)
  _, val = data.knob_grids(3, 2)
  np.testing.assert_allclose(val, [0.25, 0.75])
  with pytest.raises(ValueError, match='also training values'):
    data.knob_grids(3, 3)  # 0.5 would be seen in training.
  with pytest.raises(ValueError, match='>= 2'):
    data.knob_grids(1)
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    data.knob_grids([0., 2.])


def test_knob_pair_checks_its_knobs():
  audio = np.zeros(100, np.float32)
  with pytest.raises(ValueError, match='2 knobs'):
    data.knob_pair('peak_knob', audio, np.zeros((100, 1)), SR)
  with pytest.raises(ValueError, match='normalised'):
    data.knob_pair('hpf_knob', audio, np.full((100, 1), 2.), SR)
  with pytest.raises(ValueError, match='hpf_knob'):
    data.knob_dataset(jax.random.key(0), 'fuzz')


def test_val2_voice_at_each_validation_setting(tmp_path, hpf):
  voice = (0.5 * np.sin(np.arange(2205) / 5.)).astype(np.float32)
  path = tmp_path / 'voice.wav'
  soundfile.write(path, voice, SR, subtype='FLOAT')
  # The fixture's lengths: no new recipe to compile.
  dataset = data.knob_dataset(jax.random.key(0), 'hpf_knob', size=2.4,
                              train_values=4, clip_seconds=CLIP,
                              val1_seconds=1.2, val2=[str(path)])
  gap = int(data.VOICE_GAP_SECONDS * SR)
  pair = dataset.val2
  assert pair.input.shape == (3 * (2205 + gap), 2)
  # One copy per validation value, in ascending order for the first knob.
  np.testing.assert_allclose(pair.input[::2205 + gap, 1], _values(hpf.val1))
  np.testing.assert_allclose(pair.input[:2205, 0], voice / 0.5 * 0.9,
                             atol=1e-6)
  assert dataset.val1.input.shape == hpf.val1.input.shape
  ready = data.knob_dataset(jax.random.key(0), 'hpf_knob', size=2.4,
                            train_values=4, clip_seconds=CLIP,
                            val1_seconds=1.2, val2=pair)
  assert ready.val2 is pair


# Slicing with channels.


def channel_pair(n=10):
  x = np.arange(1, n + 1, dtype=np.float32)
  return data.Pair(np.stack([x, x / 100.], axis=1), -x)


def test_segments_keep_the_input_channels():
  x, y = data.segments(channel_pair(10), 4)
  assert x.shape == (2, 4, 2) and y.shape == (2, 4, 1)
  np.testing.assert_array_equal(x[..., 0], [[1, 2, 3, 4], [5, 6, 7, 8]])
  np.testing.assert_array_equal(x[..., 1], x[..., 0] / 100.)
  np.testing.assert_array_equal(y[..., 0], -x[..., 0])


def test_windows_keep_the_input_channels_and_zero_pad():
  pair = channel_pair(10)
  x, y = data.windows(pair, 4, np.array([0, 9]))
  assert x.shape == (2, 4, 2) and y.shape == (2, 1)
  np.testing.assert_array_equal(x[0, :, 0], [0, 0, 0, 1])
  np.testing.assert_allclose(x[0, :, 1], [0, 0, 0, 0.01])
  np.testing.assert_array_equal(x[1, :, 0], [7, 8, 9, 10])
  np.testing.assert_array_equal(y[:, 0], [-1, -10])
  jitted = jax.jit(lambda p, i: data.windows(p, 4, i))(
      jax.device_put(pair), np.array([0, 9]))
  np.testing.assert_array_equal(jitted[0], x)


# Grouping.


def test_group_by_knobs_covers_every_sample_once(hpf, peak):
  for pair in (hpf.train, peak.val1):
    groups = data.group_by_knobs(pair)
    indices = np.concatenate([i for _, i in groups])
    np.testing.assert_array_equal(np.sort(indices),
                                  np.arange(len(pair.target)))
    for values, index in groups:
      np.testing.assert_array_equal(pair.input[index, 1:],
                                    np.broadcast_to(values, (len(index),
                                                             len(values))))
    assert [v for v, _ in groups] == sorted(v for v, _ in groups)
  by_gain = data.group_by_knobs(peak.val1, knob=1)
  assert all(len(v) == 1 for v, _ in by_gain) and len(by_gain) == 2


def test_group_by_knobs_of_a_plain_pair_is_one_group():
  pair = data.Pair(np.zeros(5, np.float32), np.zeros(5, np.float32))
  (values, indices), = data.group_by_knobs(pair)
  assert values == () and list(indices) == [0, 1, 2, 3, 4]


def test_dataset_knobs_default_and_pytree():
  pair = data.Pair(np.zeros(5, np.float32), np.zeros(5, np.float32))
  assert data.Dataset('plain', SR, pair, pair).knobs == ()
  dataset = data.Dataset('k', SR, pair, pair, None, ('cutoff_hz',))
  moved = jax.device_put(dataset)
  assert moved.knobs == ('cutoff_hz',) and moved.val2 is None
