"""Tests for emu.data: slicing, recipes, voice clips and user WAV pairs."""

import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import soundfile

from emu import data
from emu import effects
from emu import signals

SR = 44100


def ramp_pair(n=10):
  x = np.arange(1, n + 1, dtype=np.float32)
  return data.Pair(x, -x)


# Slicing.


def test_segments_are_consecutive_and_drop_the_tail():
  x, y = data.segments(ramp_pair(10), 4)
  assert x.shape == y.shape == (2, 4, 1)
  np.testing.assert_array_equal(x[..., 0], [[1, 2, 3, 4], [5, 6, 7, 8]])
  np.testing.assert_array_equal(y, -x)


def test_segments_with_hop_overlap():
  x, _ = data.segments(ramp_pair(10), 4, hop=3)
  np.testing.assert_array_equal(x[:, 0, 0], [1, 4, 7])


def test_segments_of_a_short_signal_raise():
  with pytest.raises(ValueError, match='shorter than one segment'):
    data.segments(ramp_pair(3), 4)


def test_windows_end_at_t_with_left_zero_padding():
  x, y = data.windows(ramp_pair(10), 4, np.array([0, 2, 9]))
  assert x.shape == (3, 4, 1) and y.shape == (3, 1)
  np.testing.assert_array_equal(
      x[..., 0], [[0, 0, 0, 1], [0, 1, 2, 3], [7, 8, 9, 10]])
  np.testing.assert_array_equal(y[:, 0], [-1, -3, -10])


def test_windows_gather_inside_jit_from_device_arrays():
  pair = jax.device_put(ramp_pair(10))  # a Pair is a pytree.
  gather = jax.jit(lambda p, i: data.windows(p, 4, i))
  x, y = gather(pair, jnp.array([1, 5]))
  want_x, want_y = data.windows(ramp_pair(10), 4, np.array([1, 5]))
  np.testing.assert_array_equal(x, want_x)
  np.testing.assert_array_equal(y, want_y)


def test_windows_reject_out_of_range_indices():
  with pytest.raises(IndexError, match=r'\[0, 10\)'):
    data.windows(ramp_pair(10), 4, np.array([3, 10]))


# Recipes.

CLIP = 0.05  # seconds per clip: 2205 samples, 24 clips.


@pytest.fixture(scope='module')
def short_recipe():
  return data.recipe(jax.random.key(0), CLIP, SR)


def test_recipe_is_24_clips_with_gains_and_quiet_boundaries(short_recipe):
  n = int(round(CLIP * SR))
  x = short_recipe
  assert x.dtype == np.float32 and x.shape == (24 * n,)
  clips = x.reshape(24, n)
  peaks = np.max(np.abs(clips), axis=1)
  assert np.all(peaks <= 0.9 + 1e-6)
  assert np.all(peaks >= 0.02)  # the quietest gain (0.1) times a fade.
  # 5 ms raised-cosine fades: every clip starts and ends near zero.
  assert np.max(np.abs(clips[:, [0, -1]])) < 0.01


def test_recipe_is_a_pure_function_of_the_key(short_recipe):
  np.testing.assert_array_equal(
      short_recipe, data.recipe(jax.random.key(0), CLIP, SR))
  assert not np.allclose(short_recipe,
                         data.recipe(jax.random.key(1), CLIP, SR))


def test_thesis_sizes_match_the_sample_counts():
  mini = 24 * int(round(data.SIZES['mini'] * SR))
  big = 24 * int(round(data.SIZES['big'] * SR))
  assert mini == 882_000
  assert abs(big - 7_813_000) <= 24


def test_thesis_mini_dataset(tmp_path):
  voice = tmp_path / 'voice.wav'
  burst = 0.5 * np.sin(2 * np.pi * 300 * np.arange(SR // 4) / SR)
  soundfile.write(voice, burst, SR, subtype='FLOAT')
  start = time.perf_counter()
  ds = data.thesis_dataset(jax.random.key(0), 'mini', val2=[voice])
  print(f'thesis mini dataset: {time.perf_counter() - start:.2f} s')
  assert ds.name == 'thesis_mini_hpf440' and ds.sample_rate == SR
  assert ds.train.input.shape == ds.train.target.shape == (882_000,)
  assert ds.val1.input.shape == (6 * SR,)
  assert ds.train.input.dtype == ds.train.target.dtype == np.float32
  b, a = effects.analytic_coefficients('hpf440', SR)
  for pair in (ds.train, ds.val1, ds.val2):
    want = scipy.signal.lfilter(b, a, pair.input[:SR].astype(np.float64))
    assert np.max(np.abs(pair.target[:SR] - want)) <= 1e-5
  # val1 comes from an independent key: not a copy of the training audio.
  assert not np.allclose(ds.val1.input[:1000], ds.train.input[:1000])


def test_thesis_dataset_takes_a_callable_effect():
  def halve(x, sample_rate):
    del sample_rate
    return 0.5 * x

  ds = data.thesis_dataset(jax.random.key(0), 'mini', effect=halve,
                           val1_seconds=24 * CLIP)
  assert ds.name == 'thesis_mini_halve'
  np.testing.assert_allclose(ds.val1.target, 0.5 * ds.val1.input)


def test_thesis_dataset_rejects_unknown_names():
  with pytest.raises(ValueError, match='mini, big'):
    data.thesis_dataset(jax.random.key(0), 'huge')
  with pytest.raises(ValueError, match='hpf440'):
    data.thesis_dataset(jax.random.key(0), effect='fuzz')


# Voice clips.


def write(path, audio, sample_rate=SR):
  soundfile.write(path, np.asarray(audio, np.float32), sample_rate,
                  subtype='FLOAT')
  return str(path)


def tone(seconds, sample_rate=SR, freq=440., amplitude=0.5):
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  return amplitude * np.sin(2 * np.pi * freq * t)


def test_load_voice_resamples_normalises_and_joins(tmp_path, caplog):
  a = write(tmp_path / 'a.wav', tone(0.2, 22050), 22050)
  b = write(tmp_path / 'b.wav', tone(0.3, amplitude=0.2))
  with caplog.at_level(logging.INFO):
    voice = data.load_voice([a, b], SR)
  assert 'resampling 22050 Hz -> 44100 Hz' in caplog.text
  gap = int(0.1 * SR)
  assert voice.dtype == np.float32
  assert voice.shape == (int(0.2 * SR) + gap + int(0.3 * SR),)
  first, second = voice[:int(0.2 * SR)], voice[-int(0.3 * SR):]
  assert np.max(np.abs(first)) == pytest.approx(0.9, abs=1e-3)
  assert np.max(np.abs(second)) == pytest.approx(0.9, abs=1e-6)
  np.testing.assert_array_equal(voice[int(0.2 * SR):][:gap], 0.)
  # A glob pattern finds the same files in sorted order.
  np.testing.assert_array_equal(data.load_voice(str(tmp_path / '*.wav')),
                                voice)


def test_load_voice_errors(tmp_path):
  with pytest.raises(data.DataError, match='no files match'):
    data.load_voice(str(tmp_path / '*.wav'))
  with pytest.raises(data.DataError, match='missing.wav: file not found'):
    data.load_voice([tmp_path / 'missing.wav'])
  silent = write(tmp_path / 'silent.wav', np.zeros(1000))
  with pytest.raises(data.DataError, match='silent'):
    data.load_voice([silent])


# User pairs.


@pytest.fixture()
def noise():
  """1 s of white noise at half scale, float32."""
  rng = np.random.default_rng(0)
  return (0.5 * rng.uniform(-1., 1., SR)).astype(np.float32)


def write_pair(tmp_path, x, y, rate_x=SR, rate_y=SR):
  return (write(tmp_path / 'in.wav', x, rate_x),
          write(tmp_path / 'out.wav', y, rate_y))


def test_load_pair_reads_an_aligned_pair(tmp_path, noise):
  target = np.asarray(effects.highpass(noise, 440., SR))
  pair, rate = data.load_pair(*write_pair(tmp_path, noise, target))
  assert rate == SR
  np.testing.assert_array_equal(pair.input, noise)
  np.testing.assert_array_equal(pair.target, target)


@pytest.mark.parametrize('name', sorted(effects.EFFECTS))
def test_a_filters_own_group_delay_is_not_latency(tmp_path, noise, name):
  # A 2 kHz low-pass peaks 4 samples late but starts at once.
  target = np.asarray(effects.effect(name)(noise, SR)) * 0.5
  data.load_pair(*write_pair(tmp_path, noise, target))


def delayed(signal, samples):
  out = np.zeros_like(signal)
  if samples >= 0:
    out[samples:] = signal[:len(signal) - samples]
  else:
    out[:samples] = signal[-samples:]
  return out


@pytest.mark.parametrize('shift, word', [(10, 'lags'), (-10, 'leads')])
def test_latency_is_reported_or_compensated(tmp_path, noise, shift, word):
  target = delayed(np.asarray(effects.highpass(noise, 440., SR)), shift)
  paths = write_pair(tmp_path, noise, target)
  with pytest.raises(data.DataError,
                     match=f'{word} .* by 10 samples \\(0.23 ms.*'
                     'compensate_latency=True'):
    data.load_pair(*paths)
  pair, _ = data.load_pair(*paths, compensate_latency=True)
  assert pair.input.shape == pair.target.shape == (SR - 10,)
  # After shifting, the target is the effect of the input again.
  want = np.asarray(effects.highpass(pair.input, 440., SR))
  settled = slice(1000, None)  # past the filter's start-up transient.
  np.testing.assert_allclose(pair.target[settled], want[settled], atol=1e-3)


@pytest.mark.parametrize('colour', ['pink', 'brown'])
def test_latency_estimate_on_coloured_input(colour):
  # Whitening keeps the estimate sharp when the input is not white.
  x = 0.5 * np.asarray(getattr(signals, colour)(jax.random.key(0), SR))
  for name in sorted(effects.EFFECTS):
    y = np.asarray(effects.effect(name)(x, SR))
    assert data.estimate_latency(x, y, 2205) == 0
    assert abs(data.estimate_latency(x, delayed(y, 10), 2205) - 10) <= 1
    assert abs(data.estimate_latency(x, delayed(y, -10), 2205) + 10) <= 1


def test_latency_check_can_be_skipped(tmp_path, noise):
  paths = write_pair(tmp_path, noise, delayed(noise, 10))
  pair, _ = data.load_pair(*paths, max_latency_ms=0.)
  assert pair.input.shape == (SR,)


def test_missing_and_unreadable_files_are_named(tmp_path, noise):
  x_path, _ = write_pair(tmp_path, noise, noise)
  with pytest.raises(data.DataError, match='nope.wav: file not found'):
    data.load_pair(x_path, str(tmp_path / 'nope.wav'))
  junk = tmp_path / 'junk.wav'
  junk.write_bytes(b'this is not audio')
  with pytest.raises(data.DataError, match='junk.wav: cannot read'):
    data.load_pair(x_path, str(junk))


def test_different_sample_rates_are_named(tmp_path, noise):
  paths = write_pair(tmp_path, noise, noise, SR, 48000)
  with pytest.raises(data.DataError, match='44100 Hz.*48000 Hz'):
    data.load_pair(*paths)


def test_different_lengths_say_which_is_longer(tmp_path, noise):
  paths = write_pair(tmp_path, noise, noise[:-7])
  with pytest.raises(data.DataError, match='in.wav is longer by 7 samples'):
    data.load_pair(*paths)


def test_stereo_needs_a_channel(tmp_path, noise):
  stereo = np.stack([noise, 0.5 * noise], axis=1)
  paths = write_pair(tmp_path, stereo, stereo)
  with pytest.raises(data.DataError,
                     match='2 channels; training reads one: pass --channel=0..1'):
    data.load_pair(*paths)
  pair, _ = data.load_pair(*paths, channel=1)
  np.testing.assert_array_equal(pair.input, 0.5 * noise)
  with pytest.raises(data.DataError, match='--channel=2 but .* 2 channels'):
    data.load_pair(*paths, channel=2)


def test_the_channel_flag_picks_the_channel_a_run_trains_on(tmp_path, noise):
  # Given a stereo pair, when a run's config names --channel=1, then its
  # dataset is that channel (the advice the stereo error gives works).
  from emu import cli  # pylint: disable=g-import-not-at-top
  from emu.train import batches  # pylint: disable=g-import-not-at-top
  stereo = np.stack([noise, 0.5 * noise], axis=1)
  paths = write_pair(tmp_path, stereo, stereo)
  flagfile = tmp_path / "files.flags"
  flagfile.write_text(f"--dataset=files\n--train_input={paths[0]}\n"
                      f"--train_target={paths[1]}\n--channel=1\n")
  cfg = cli.config_from_flagfile(str(flagfile))
  dataset = batches.build_dataset(cfg)
  whole = np.concatenate([dataset.train.input,
                          dataset.val1.scored().input])
  np.testing.assert_array_equal(whole, 0.5 * noise)
  with pytest.raises(data.DataError, match='--channel=0..1'):
    batches.build_dataset(cfg.replace(channel=-1))


def test_nan_samples_are_counted(tmp_path, noise):
  bad = noise.copy()
  bad[[100, 200, 300]] = np.nan
  with pytest.raises(data.DataError,
                     match='out.wav has 3 NaN/inf samples .first at sample '
                     '100'):
    data.load_pair(*write_pair(tmp_path, noise, bad))


def test_silent_files_are_refused(tmp_path, noise):
  with pytest.raises(data.DataError, match='out.wav is silent'):
    data.load_pair(*write_pair(tmp_path, noise, np.zeros_like(noise)))


def test_clipping_warns_with_a_count(tmp_path, noise):
  clipped = noise.copy()
  clipped[:5] = 1.
  with pytest.warns(UserWarning, match='in.wav: 5 samples at or above'):
    data.load_pair(*write_pair(tmp_path, clipped, noise))


def test_files_dataset_holds_out_the_tail(tmp_path, noise):
  target = np.asarray(effects.highpass(noise, 440., SR))
  ds = data.files_dataset(*write_pair(tmp_path, noise, target),
                          val_fraction=0.25)
  assert ds.name == 'files_in' and ds.sample_rate == SR and ds.val2 is None
  assert ds.train.input.shape == (3 * SR // 4,)
  np.testing.assert_array_equal(ds.val1.scored().target,
                                target[3 * SR // 4:])
  # val1 is played after the audio before it (up to VAL1_CONTEXT_S, here
  # the whole train part), which is not scored.
  assert ds.val1.context == 3 * SR // 4
  np.testing.assert_array_equal(ds.val1.input, noise)
  np.testing.assert_array_equal(ds.val1.trim(np.arange(SR)),
                                np.arange(3 * SR // 4, SR))
  with pytest.raises(data.DataError, match='val2 voice clips need targets'):
    data.files_dataset(*write_pair(tmp_path, noise, target),
                       val2_files=['voice.wav'])
