"""Datasets: the thesis's synthetic recipes, voice clips and users' WAV pairs.

A `Dataset` holds host-side numpy float32 signals `[time]` (train, val1 and
an optional val2) with their sample rate; the trainer moves them to the
device. `segments` cuts a `Pair` into consecutive blocks for truncated
backpropagation through time; `windows` builds the thesis's window mode
(the `window` samples up to t -> the target at t) by index gathering.

Recipes (thesis section 3.3): 6 generators x 4 envelopes = 24 clips with
random gains, concatenated in random order. 'mini' is 20 s (882,000 samples
at 44.1 kHz), 'big' about 177 s (7,813,000 samples). val1 is more of the
same recipe from an independent key; val2 is recorded voice.

Knob datasets (`knob_dataset`) put an effect's knobs beside the audio:
inputs [time, 1 + n_knobs] (channel 0 the audio, then each knob's
normalised value, constant within clips of about 0.5 s), targets [time];
val1 holds only knob values that training never saw (`knob_grids`), and
`group_by_knobs` finds the samples of each setting for metrics per knob
value. `segments` and `windows` carry the channels along.

Free voice clips: Debian/Ubuntu's alsa-utils package ships short spoken
clips in /usr/share/sounds/alsa/ (Front_Center.wav, ...; Noise.wav is not a
voice, so the default glob leaves it out); see
`DEFAULT_VOICE_GLOB`.
"""

import dataclasses
import functools
import glob
import math
import os
import warnings

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
import scipy.signal
import soundfile

from emu import effects
from emu import signals

# The spoken clips (Front_*, Rear_*, Side_*), not Noise.wav.
DEFAULT_VOICE_GLOB = '/usr/share/sounds/alsa/[FRS]*_*.wav'

# Seconds per clip: 24 clips make the thesis's sample counts at 44.1 kHz.
SIZES = {'mini': 20. / 24., 'big': 7_813_000 / 24 / 44100}

VOICE_PEAK = 0.9
VOICE_GAP_SECONDS = 0.1
FADE_SECONDS = 0.005
CLIP_LEVEL = 0.999
SILENCE_PEAK = 1e-6  # -120 dBFS: below one 16-bit step.


class DataError(ValueError):
  """Bad input audio; the message names the problem and how to fix it."""


@dataclasses.dataclass(frozen=True, eq=False)
class Pair:
  """An input signal and the effect's output, float32.

  input is [time], or [time, 1 + n_knobs] for an effect with knobs:
  channel 0 the audio, then each knob's normalised value in [0, 1]
  (`emu.effects.Knob.normalise`). target is [time].
  """
  input: np.ndarray
  target: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Named train / validation pairs at one sample rate (Hz).

  `knobs` names the knob channels of the inputs in order (channel 1 is
  knobs[0]); empty for an effect without knobs.
  """
  name: str
  sample_rate: int
  train: Pair
  val1: Pair
  val2: Pair | None = None
  knobs: tuple = ()


# Pytrees, so `jax.device_put(dataset)` moves every array in one call.
jax.tree_util.register_dataclass(
    Pair, data_fields=['input', 'target'], meta_fields=[])
jax.tree_util.register_dataclass(
    Dataset, data_fields=['train', 'val1', 'val2'],
    meta_fields=['name', 'sample_rate', 'knobs'])


def _arrays(pair):
  if isinstance(pair, Pair):
    return pair.input, pair.target
  x, y = pair
  return x, y


def _xp(*arrays):
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def segments(pair, length, hop=None):
  """Cuts a pair into blocks of `length` samples, in order.

  Args:
    pair: a `Pair` or (input, target): input [time] or [time, channels],
      target [time].
    length: samples per segment.
    hop: samples between segment starts; `length` (no overlap) by default.

  Returns:
    (x, y): x [n, length, channels] (channels = 1 for a [time] input), y
    [n, length, 1], n = (time - length) // hop + 1; the incomplete tail is
    dropped.

  Raises:
    ValueError: if the signal is shorter than one segment.
  """
  x, y = _arrays(pair)
  hop = length if hop is None else hop
  if length < 1 or hop < 1:
    raise ValueError(f'length and hop must be >= 1, got {length}, {hop}')
  if x.shape[0] < length:
    raise ValueError(f'a signal of {x.shape[0]} samples is shorter than '
                     f'one segment of {length}; use a shorter length')
  xp = _xp(x, y)
  count = (x.shape[0] - length) // hop + 1
  index = xp.arange(count)[:, None] * hop + xp.arange(length)[None, :]
  blocks = x[index]
  if x.ndim == 1:
    blocks = blocks[..., None]
  return blocks, y[index][..., None]


def windows(pair, window, indices):
  """The thesis's window mode: the `window` samples ending at t -> y[t].

  Gathers with an [n, window] index grid, so memory is n * window, never
  window copies of the signal. Samples before 0 read as zeros. Works on
  numpy or jnp arrays, inside `jax.jit` too (a pure gather; out-of-range
  indices are only checked for numpy input).

  Args:
    pair: a `Pair` or (input, target): input [time] or [time, channels],
      target [time].
    window: samples per window (the thesis's input size, e.g. 1024).
    indices: [n] int times t (samples) of the targets.

  Returns:
    (x [n, window, channels], y [n, 1]); x[i, -1, 0] is the audio at
    indices[i] (channels = 1 for a [time] input).
  """
  x, y = _arrays(pair)
  xp = _xp(x, y, indices)
  indices = xp.asarray(indices)
  if xp is np and indices.size and (
      indices.min() < 0 or indices.max() >= x.shape[0]):
    raise IndexError(f'indices must lie in [0, {x.shape[0]}), got '
                     f'[{indices.min()}, {indices.max()}]')
  index = indices[:, None] - (window - 1) + xp.arange(window)[None, :]
  values = xp.take(x, xp.maximum(index, 0), axis=0)
  if x.ndim == 1:
    values = values[..., None]
  values = xp.where((index >= 0)[..., None], values,
                    xp.zeros((), values.dtype))
  return values, xp.take(y, indices)[:, None]


def _edge_fades(n, sample_rate):
  """[n] gain with raised-cosine ramps of 5 ms at both ends (no clicks)."""
  ramp = min(int(round(FADE_SECONDS * sample_rate)), n // 2)
  gain = np.ones(n, np.float32)
  if ramp:
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    gain[:ramp] = rise
    gain[n - ramp:] = rise[::-1]
  return jnp.asarray(gain)


def _log_uniform(key, shape, low, high):
  u = jax.random.uniform(key, shape)
  return jnp.exp(math.log(low) + u * (math.log(high) - math.log(low)))


# One program per (n, sample_rate), run once per dataset, so compile time
# is what counts: XLA's backend optimisation level 0 halves it on CPU
# (about 2.5 s -> 1.1 s for the mini recipe) for a program that still runs
# in a fraction of a second.
@functools.partial(jax.jit, static_argnums=(1, 2),
                   compiler_options={'xla_backend_optimization_level': 0})
def _recipe_clips(key, n, sample_rate):
  """[24, n] clips: GENERATORS x ENVELOPES, scaled and faded, in that order."""
  k_noise, k_gain, k_start, k_end = jax.random.split(key, 4)
  count = len(signals.ENVELOPES)
  keys = jax.random.split(k_noise, (4, count))
  envelopes = jnp.stack([signals.envelope(e, n) for e in signals.ENVELOPES])
  # Rising sweeps go from `lows` to `highs`, falling ones the other way.
  top = min(20000., 0.45 * sample_rate)
  lows = _log_uniform(k_start, (2 * count,), 20., 200.)
  highs = _log_uniform(k_end, (2 * count,), min(5000., top / 2.), top)
  starts = jnp.concatenate([lows[:count], highs[count:]])
  ends = jnp.concatenate([highs[:count], lows[count:]])
  sweeps = jax.vmap(lambda f0, f1: signals.sweep(n, sample_rate, f0, f1))(
      starts, ends)
  batches = {
      'white': jax.vmap(lambda k: signals.white(k, n))(keys[0]),
      'pink': jax.vmap(lambda k: signals.pink(k, n, sample_rate))(keys[1]),
      'gaussian': jax.vmap(lambda k: signals.gaussian(k, n))(keys[2]),
      'brown': jax.vmap(lambda k: signals.brown(k, n, sample_rate))(keys[3]),
      'sweep_up': sweeps[:count],
      'sweep_down': sweeps[count:],
  }
  clips = jnp.concatenate(
      [batches[name] * envelopes for name in signals.GENERATORS])
  gains = jax.random.uniform(k_gain, (clips.shape[0], 1), jnp.float32, 0.1,
                             0.9)
  return clips * gains * _edge_fades(n, sample_rate)


def recipe(key, seconds_per_clip, sample_rate=44100):
  """The thesis's synthetic training audio (section 3.3).

  Six generators (white, pink, gaussian, brown, rising and falling log
  sweeps) times four envelopes (flat, fade in, fade out, in-out) make 24
  clips. Each has a random peak gain in [0.1, 0.9], sweeps random endpoints
  (20-200 Hz to 5-20 kHz, capped at 0.45 * sample_rate), and 5 ms
  raised-cosine fades at its ends; the clips are concatenated in a random
  order. Everything random comes from `key`.

  Args:
    key: a `jax.random` key.
    seconds_per_clip: clip length in seconds (rounded to whole samples).
    sample_rate: Hz.

  Returns:
    numpy float32 [24 * round(seconds_per_clip * sample_rate)].
  """
  n = int(round(seconds_per_clip * sample_rate))
  if n < 1:
    raise ValueError(f'seconds_per_clip={seconds_per_clip} is under one '
                     f'sample at {sample_rate} Hz')
  k_clips, k_order = jax.random.split(key)
  clips = _recipe_clips(k_clips, n, sample_rate)
  order = jax.random.permutation(k_order, clips.shape[0])
  return np.asarray(clips[order].reshape(-1), np.float32)


def _resolve_effect(effect):
  """(name, callable(x, sample_rate)) from an effect name or callable."""
  if isinstance(effect, str):
    return effect, effects.effect(effect)
  if callable(effect):
    return getattr(effect, '__name__', 'custom'), effect
  raise TypeError(f'effect must be a name in {sorted(effects.EFFECTS)} or '
                  f'a callable(x, sample_rate), got {effect!r}')


def apply_effect(effect, x, sample_rate):
  """A Pair of `x` [time] and effect(x) as numpy float32."""
  _, fn = _resolve_effect(effect)
  x = np.asarray(x, np.float32)
  return Pair(x, np.asarray(fn(jnp.asarray(x), sample_rate), np.float32))


def thesis_dataset(key, size='mini', effect='hpf440', sample_rate=44100,
                   val1_seconds=6., val2=None):
  """The thesis's dataset: recipe audio and its effected targets.

  Args:
    key: a `jax.random` key; train and val1 use independent keys split
      from it.
    size: 'mini' (24 clips of 20/24 s = 20 s) or 'big' (24 clips of about
      7.38 s, 7,813,000 samples at 44.1 kHz).
    effect: a name in `emu.effects.EFFECTS` or callable(x, sample_rate).
    sample_rate: Hz.
    val1_seconds: total length of val1 (24 new clips), seconds.
    val2: None, a ready `Pair`, or WAV paths (a list, or one glob pattern
      such as `DEFAULT_VOICE_GLOB`) loaded with `load_voice` and passed
      through the same effect.

  Returns:
    A `Dataset` named like 'thesis_mini_hpf440'. Inputs peak at 0.9 or
    less; targets are not clipped, so a high-pass or a boost can take them
    above 1 (hpf440 on the mini recipe peaks near 1.2), out of reach of a
    tanh output layer.
  """
  if size not in SIZES:
    raise ValueError(f'unknown size {size!r}; valid sizes: {", ".join(SIZES)}')
  effect_name, _ = _resolve_effect(effect)
  k_train, k_val = jax.random.split(key)
  train = apply_effect(effect, recipe(k_train, SIZES[size], sample_rate),
                       sample_rate)
  val1 = apply_effect(effect, recipe(k_val, val1_seconds / 24., sample_rate),
                      sample_rate)
  if val2 is not None and not isinstance(val2, Pair):
    val2 = apply_effect(effect, load_voice(val2, sample_rate), sample_rate)
  return Dataset(f'thesis_{size}_{effect_name}', sample_rate, train, val1,
                 val2)


# Knob datasets.

# Seconds of audio per knob setting: 40 clips in the mini recipe's 20 s.
KNOB_CLIP_SECONDS = 0.5
# Nearer than this (normalised) to a training value, a validation value
# counts as seen.
_SEEN = 1e-6


def _resolve_knob_effect(effect):
  """(name, KnobEffect) from a name in KNOB_EFFECTS or a KnobEffect."""
  if isinstance(effect, str):
    return effect, effects.knob_effect(effect)
  if isinstance(effect, effects.KnobEffect):
    return getattr(effect.fn, '__name__', 'custom').lstrip('_'), effect
  raise TypeError(f'effect must be a name in {sorted(effects.KNOB_EFFECTS)} '
                  f'or an emu.effects.KnobEffect, got {effect!r}')


def _grid(values, what):
  """Sorted unique normalised values in [0, 1], float64 [k]."""
  grid = np.unique(np.asarray(values, np.float64).reshape(-1))
  if not grid.size or grid.min() < 0. or grid.max() > 1.:
    raise ValueError(f'{what} must be normalised values in [0, 1], got '
                     f'{values!r}')
  return grid


def knob_grids(train_values=8, val_values=None):
  """The normalised knob values of training and of validation.

  Training: `train_values` evenly spaced values i / (train_values - 1)
  over [0, 1], both ends included, so validation never extrapolates
  (8 -> 0, 1/7, ..., 1). Validation: by default the midpoints between
  neighbouring training values (7 values, (i + 1/2) / 7), the settings
  farthest from everything trained on; an int n gives (i + 1/2) / n;
  either may also be a sequence of values in [0, 1]. All values are on
  float32's grid (they travel as float32 input channels).

  Returns:
    (train, val): float64 [k] each, sorted.

  Raises:
    ValueError: fewer than 2 training values, or a validation value that
      is also a training value.
  """
  if isinstance(train_values, int):
    if train_values < 2:
      raise ValueError(f'train_values must be >= 2 (both ends of the '
                       f'range), got {train_values}')
    train = np.linspace(0., 1., train_values)
  else:
    train = _grid(train_values, 'train_values')
  if val_values is None:
    if train.size < 2:
      raise ValueError('midpoint validation values need >= 2 training '
                       'values; pass val_values')
    val = (train[1:] + train[:-1]) / 2.
  elif isinstance(val_values, int):
    if val_values < 1:
      raise ValueError(f'val_values must be >= 1, got {val_values}')
    val = (np.arange(val_values) + 0.5) / val_values
  else:
    val = _grid(val_values, 'val_values')
  train = np.float32(train).astype(np.float64)
  val = np.float32(val).astype(np.float64)
  seen = np.min(np.abs(val[:, None] - train[None, :]), axis=1) <= _SEEN
  if seen.any():
    raise ValueError(
        f'validation knob values {val[seen].tolist()} are also training '
        f'values {train.tolist()}; validation must hold unseen settings '
        '(leave val_values=None for the midpoints)')
  return train, val


def knob_pair(effect, audio, knobs, sample_rate):
  """A Pair of audio with knob channels and the effect's output.

  The effect runs once over the whole signal with per-sample knob values,
  its state carried across changes of setting (as if the knob were
  turned while playing), not reset per clip.

  Args:
    effect: a name in `emu.effects.KNOB_EFFECTS` or a `KnobEffect`.
    audio: [time] input audio.
    knobs: [time, n_knobs] normalised knob values in [0, 1].
    sample_rate: Hz.

  Returns:
    Pair(input [time, 1 + n_knobs] float32, target [time] float32).
  """
  _, effect = _resolve_knob_effect(effect)
  audio = np.asarray(audio, np.float32)
  knobs = np.asarray(knobs, np.float32).reshape(audio.shape[0], -1)
  if knobs.shape[1] != len(effect.knobs):
    raise ValueError(f'{knobs.shape[1]} knob channels for an effect with '
                     f'{len(effect.knobs)} knobs ({", ".join(effect.names)})')
  if knobs.size and (knobs.min() < 0. or knobs.max() > 1.):
    raise ValueError('knob values must be normalised to [0, 1], got '
                     f'[{knobs.min()}, {knobs.max()}]')
  # Denormalised from the float32 channels, so the target is exactly the
  # effect of what the input says.
  values = tuple(knob.denormalise(knobs[:, i].astype(np.float64))
                 for i, knob in enumerate(effect.knobs))
  target = effect(jnp.asarray(audio), values, sample_rate)
  return Pair(np.concatenate([audio[:, None], knobs], axis=1),
              np.asarray(target, np.float32))


def _clip_bounds(total, clip_samples, settings):
  """Clip starts [n + 1]: n about total / clip_samples, a multiple of
  `settings` so each setting gets the same number of clips."""
  per = max(1, round(total / (clip_samples * settings)))
  count = min(settings * per, total)
  return np.round(np.arange(count + 1) * total / count).astype(int)


def _clip_knobs(key, grid, n_knobs, bounds):
  """[time, n_knobs] per-sample values: per clip, each knob's values are
  the grid tiled (each value equally often) in an order drawn from key."""
  clips = len(bounds) - 1
  tiled = np.tile(grid, -(-clips // len(grid)))
  columns = []
  for k in jax.random.split(key, n_knobs):
    order = np.asarray(jax.random.permutation(k, len(tiled)))
    columns.append(tiled[order][:clips])
  per_clip = np.stack(columns, axis=1) if columns else np.zeros((clips, 0))
  return np.repeat(per_clip, np.diff(bounds), axis=0)


def knob_dataset(key, effect='hpf_knob', size='mini', sample_rate=44100,
                 train_values=8, val_values=None,
                 clip_seconds=KNOB_CLIP_SECONDS, val1_seconds=6.,
                 val2=None):
  """The thesis recipe through an effect whose knobs change clip by clip.

  The audio is `thesis_dataset`'s for the same key (train and val1 from
  the same recipe and keys). It is cut into clips of about `clip_seconds`
  (the count rounded to a multiple of the number of knob values, so every
  value gets the same share of audio; val1's clips come out 0.43 s for
  the defaults), and each clip gets one setting per knob, constant within
  it. Training clips use the `knob_grids` training values, each equally
  often, in an order drawn from the key, independently per knob (so with
  two knobs the pairs of values are random). val1 uses the validation
  values, which no training clip has: by default the midpoints between
  the training values (train 0, 1/7, ..., 1; val 1/14, 3/14, ..., 13/14,
  normalised; see `knob_grids`). The effect runs over each whole signal
  with per-sample knob values, its state carried across clip borders
  (a knob turned while playing); the few ms after each border hold that
  change's transient.

  val2 (voice) is the voice once per validation setting, joined by 0.1 s
  of silence: setting i sets knob j to val[perm_j[i]] with perm_0 the
  identity (ascending) and the other knobs' orders drawn from the key, so
  each knob takes each validation value once.

  Args:
    key: a `jax.random` key.
    effect: a name in `emu.effects.KNOB_EFFECTS` or a `KnobEffect`.
    size: 'mini' (20 s of training audio), 'big' (177 s), or seconds.
    sample_rate: Hz.
    train_values, val_values: see `knob_grids`.
    clip_seconds: seconds per knob setting (about).
    val1_seconds: total length of val1, seconds.
    val2: None, a ready `Pair` (with knob channels), or voice WAV paths
      (a list or one glob such as `DEFAULT_VOICE_GLOB`).

  Returns:
    A `Dataset` named like 'knob_mini_hpf_knob' whose inputs are
    [time, 1 + n_knobs] float32 (channel 0 the audio, then the
    normalised knob values in `knobs` order) and targets [time].
  """
  name, knob_effect = _resolve_knob_effect(effect)
  if isinstance(size, str):
    if size not in SIZES:
      raise ValueError(f'unknown size {size!r}; valid sizes: '
                       f'{", ".join(SIZES)}, or seconds')
    seconds_per_clip, size_name = SIZES[size], size
  else:
    seconds_per_clip, size_name = float(size) / 24., f'{float(size):g}s'
  train_grid, val_grid = knob_grids(train_values, val_values)
  n_knobs = len(knob_effect.knobs)
  clip_samples = max(1, int(round(clip_seconds * sample_rate)))
  k_train, k_val = jax.random.split(key)
  k_train_knobs, k_val_knobs, k_voice_knobs = jax.random.split(
      jax.random.fold_in(key, 1), 3)

  def build(audio, grid, k):
    bounds = _clip_bounds(len(audio), clip_samples, len(grid))
    return knob_pair(knob_effect, audio,
                     _clip_knobs(k, grid, n_knobs, bounds), sample_rate)

  train = build(recipe(k_train, seconds_per_clip, sample_rate), train_grid,
                k_train_knobs)
  val1 = build(recipe(k_val, val1_seconds / 24., sample_rate), val_grid,
               k_val_knobs)
  if val2 is not None and not isinstance(val2, Pair):
    val2 = _voice_at_settings(knob_effect, load_voice(val2, sample_rate),
                              val_grid, k_voice_knobs, sample_rate)
  return Dataset(f'knob_{size_name}_{name}', sample_rate, train, val1, val2,
                 knobs=knob_effect.names)


def _voice_at_settings(knob_effect, voice, grid, key, sample_rate):
  """The voice once per validation setting (see `knob_dataset`)."""
  settings = len(grid)
  orders = [np.arange(settings)] + [
      np.asarray(jax.random.permutation(k, settings))
      for k in jax.random.split(key, max(len(knob_effect.knobs) - 1, 1))]
  per_setting = np.stack(
      [grid[orders[j]] for j in range(len(knob_effect.knobs))], axis=1)
  gap = np.zeros(int(round(VOICE_GAP_SECONDS * sample_rate)), np.float32)
  take = np.concatenate([voice, gap])
  audio = np.tile(take, settings)
  knobs = np.repeat(per_setting, len(take), axis=0)
  return knob_pair(knob_effect, audio, knobs, sample_rate)


def group_by_knobs(pair, knob=None):
  """The samples of each knob setting, for metrics per setting.

  Args:
    pair: a `Pair` or (input, target) with input [time, 1 + n_knobs]
      (channel 0 audio, then normalised knob values); a [time] or
      [time, 1] input is one group with no knobs.
    knob: None to group by the values of all knobs together, or an index
      into the knobs (0 = input channel 1) to group by that knob alone,
      pooling the other knobs' values.

  Returns:
    A list of (values, indices), sorted by values: values is a tuple of
    the setting's normalised knob values (floats; one for `knob`, () for
    no knobs), indices int64 [m] the samples with that setting, in time
    order (several clips may share a setting): y[indices] picks them.
  """
  x, _ = _arrays(pair)
  x = np.asarray(x)
  if x.ndim == 1 or x.shape[1] == 1:
    return [((), np.arange(x.shape[0]))]
  settings = x[:, 1:] if knob is None else x[:, 1 + knob][:, None]
  # Runs of equal rows first: clips are long, so np.unique sees few rows.
  starts = np.flatnonzero(np.concatenate(
      [[True], np.any(settings[1:] != settings[:-1], axis=1)]))
  ends = np.append(starts[1:], x.shape[0])
  rows, which = np.unique(settings[starts], axis=0, return_inverse=True)
  groups = []
  for i, row in enumerate(rows):
    runs = np.flatnonzero(which.reshape(-1) == i)
    indices = np.concatenate(
        [np.arange(starts[r], ends[r]) for r in runs])
    groups.append((tuple(float(v) for v in row), indices))
  return groups


def _read(path):
  """(float32 [time, channels], sample rate) or DataError naming `path`."""
  if not os.path.isfile(path):
    raise DataError(f'{path}: file not found; check the path')
  try:
    audio, rate = soundfile.read(path, dtype='float32', always_2d=True)
  except (RuntimeError, soundfile.SoundFileError) as err:
    raise DataError(
        f'{path}: cannot read it as audio ({err}); soundfile reads WAV, '
        'FLAC, OGG and AIFF: convert it first, e.g. ffmpeg -i in.mp3 '
        'out.wav') from err
  return audio, rate


def load_voice(paths, sample_rate=44100):
  """Loads voice clips as one mono signal for validation.

  Each file is mixed to mono, resampled to `sample_rate` with
  scipy.signal.resample_poly if its rate differs (logged), peak-normalised
  to 0.9, and the clips are joined with 0.1 s of silence between them.

  Args:
    paths: a list of paths, or one path or glob pattern (e.g.
      `DEFAULT_VOICE_GLOB`, from Debian's alsa-utils package).
    sample_rate: Hz of the result.

  Returns:
    numpy float32 [time].

  Raises:
    DataError: no file matches, a file is missing, unreadable or silent.
  """
  if isinstance(paths, (str, os.PathLike)):
    pattern = os.fspath(paths)
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [
        pattern]
  else:
    pattern = None
  if not paths and pattern:
    raise DataError(
        f'no files match {pattern}; pass your own WAV paths, or install '
        "Debian's alsa-utils for /usr/share/sounds/alsa/*.wav")
  if not paths:
    raise DataError('no voice files given; pass a list of WAV paths')
  gap = np.zeros(int(round(VOICE_GAP_SECONDS * sample_rate)), np.float32)
  clips = []
  for path in paths:
    audio, rate = _read(os.fspath(path))
    if audio.shape[1] > 1:
      logging.info('%s: mixing %d channels to mono', path, audio.shape[1])
    clip = audio.mean(axis=1)
    if rate != sample_rate:
      logging.info('%s: resampling %d Hz -> %d Hz', path, rate, sample_rate)
      g = math.gcd(rate, sample_rate)
      clip = scipy.signal.resample_poly(clip, sample_rate // g, rate // g)
    peak = np.max(np.abs(clip), initial=0.)
    if peak <= SILENCE_PEAK:
      raise DataError(f'{path} is silent (peak {peak:.1e}); pick another '
                      'clip')
    clips += [gap, (clip * (VOICE_PEAK / peak)).astype(np.float32)]
  return np.concatenate(clips[1:])


def _pick_channel(audio, path, channel):
  channels = audio.shape[1]
  if channels == 1:
    return audio[:, 0]
  if channel is None:
    raise DataError(
        f'{path} has {channels} channels; pass channel=0..{channels - 1} '
        'to pick one (or mix the file down to mono first)')
  if not 0 <= channel < channels:
    raise DataError(f'channel={channel} but {path} has {channels} channels '
                    f'(0..{channels - 1})')
  return audio[:, channel]


def _check_samples(audio, path, sample_rate):
  bad = ~np.isfinite(audio)
  if bad.any():
    first = int(np.argmax(bad))
    raise DataError(
        f'{path} has {int(bad.sum())} NaN/inf samples (first at sample '
        f'{first}, {first / sample_rate:.3f} s); re-render or repair it')
  peak = float(np.max(np.abs(audio), initial=0.))
  if peak <= SILENCE_PEAK:
    raise DataError(f'{path} is silent (peak {peak:.1e}); check that the '
                    'right file and channel were exported')
  clipped = int(np.sum(np.abs(audio) >= CLIP_LEVEL))
  if clipped:
    warnings.warn(
        f'{path}: {clipped} samples at or above {CLIP_LEVEL} of full scale '
        '(clipped?); a model will learn the clipping too', stacklevel=3)


# Onset threshold of the effect's estimated impulse response, relative to
# its peak. A causal filter answers at once (a 500 Hz low-pass reaches 0.15
# of its peak by its second sample) while a delayed target stays at the
# noise floor until the delay has passed.
_ONSET_FRACTION = 0.1
# Ridge added to the input power spectrum, relative to its mean, so empty
# bands of a band-limited input do not blow up the deconvolution.
_WHITENING_FLOOR = 1e-3


def estimate_latency(x, y, max_lag):
  """Latency of `y` behind `x` in samples: 0 when aligned, < 0 if it leads.

  The cross-correlation of y with x is computed by FFT after whitening by
  the input's power spectrum, which turns it into an estimate of the
  effect's impulse response h[lag] (a plain cross-correlation smears a
  coloured input such as voice by its autocorrelation). A filter's own
  group delay moves the peak of h but not its start: a 2 kHz low-pass
  peaks 4 samples late yet answers from lag 0. So the latency is the lag
  where h first reaches a tenth of its peak (walking back from the peak);
  starts within one sample of zero count as aligned. Exact for broadband
  inputs (noise, sweeps); with band-limited input a true latency may read
  a few samples short.

  Args:
    x: input, [time].
    y: target, [time] (same length).
    max_lag: largest |latency| searched, samples.

  Returns:
    int latency in samples.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  nfft = scipy.fft.next_fast_len(x.shape[0] + max_lag)
  spec_x = scipy.fft.rfft(x, nfft)
  power = np.abs(spec_x)**2
  cross = scipy.fft.rfft(y, nfft) * np.conj(spec_x)
  response = scipy.fft.irfft(
      cross / (power + _WHITENING_FLOOR * power.mean()), nfft)
  lags = np.arange(-max_lag, max_lag + 1)
  size = np.abs(response[lags])
  peak = int(np.argmax(size))
  start = peak
  while start > 0 and size[start - 1] >= _ONSET_FRACTION * size[peak]:
    start -= 1
  onset, peak_lag = int(lags[start]), int(lags[peak])
  if onset >= 2 or peak_lag <= -2:
    return onset
  return 0


def load_pair(input_path, target_path, channel=None,
              compensate_latency=False, max_latency_ms=50.):
  """Loads a user's recorded (input, target) pair and checks it.

  Nothing is resampled. Checks, each failing with a `DataError` that names
  the fix: both files readable, equal sample rates, one channel (or
  `channel`), equal lengths, no NaN/inf, not silent, and target aligned
  with input (see `estimate_latency`). Clipped samples (|x| >= 0.999) only
  warn (UserWarning).

  Args:
    input_path: WAV (or FLAC, ...) of the dry input.
    target_path: the effect's output, recorded from that input.
    channel: which channel to use from multi-channel files.
    compensate_latency: if the target lags (or leads), shift it to align
      and trim both to the common part instead of raising.
    max_latency_ms: largest latency searched, ms; 0 skips the check.

  Returns:
    (Pair, sample_rate in Hz).
  """
  audio_in, rate_in = _read(input_path)
  audio_out, rate_out = _read(target_path)
  if rate_in != rate_out:
    raise DataError(
        f'{input_path} is at {rate_in} Hz but {target_path} is at '
        f'{rate_out} Hz; resample one of them (e.g. with '
        'scipy.signal.resample_poly or sox) so both match')
  x = _pick_channel(audio_in, input_path, channel)
  y = _pick_channel(audio_out, target_path, channel)
  if x.shape[0] != y.shape[0]:
    longer = target_path if y.shape[0] > x.shape[0] else input_path
    diff = abs(y.shape[0] - x.shape[0])
    raise DataError(
        f'{input_path} has {x.shape[0]} samples, {target_path} has '
        f'{y.shape[0]}: {longer} is longer by {diff} samples '
        f'({1000. * diff / rate_in:.1f} ms); trim it so both files start '
        'together and have the same length')
  _check_samples(x, input_path, rate_in)
  _check_samples(y, target_path, rate_in)
  max_lag = min(int(round(max_latency_ms * rate_in / 1000.)), x.shape[0] - 1)
  latency = estimate_latency(x, y, max_lag) if max_lag > 0 else 0
  if latency:
    ms = 1000. * latency / rate_in
    if not compensate_latency:
      how = 'lags' if latency > 0 else 'leads'
      raise DataError(
          f'{target_path} {how} {input_path} by {abs(latency)} samples '
          f'({abs(ms):.2f} ms at {rate_in} Hz, from their '
          'cross-correlation); pass compensate_latency=True to shift the '
          'target and trim both, or align the files in an editor. If the '
          'effect itself is a slow filter with no real latency, pass '
          'max_latency_ms=0 to skip this check')
    logging.info('%s: compensating %d samples (%.2f ms) of latency',
                 target_path, latency, ms)
    if latency > 0:
      x, y = x[:-latency], y[latency:]
    else:
      x, y = x[-latency:], y[:latency]
  return Pair(np.ascontiguousarray(x), np.ascontiguousarray(y)), rate_in


def files_dataset(input_path, target_path, val_fraction=0.1, val2_files=(),
                  channel=None, compensate_latency=False):
  """A Dataset from one recorded (input, target) pair, checked by `load_pair`.

  The last `val_fraction` of the recording becomes val1 (kept in time
  order, so no training audio leaks into it); the rest is train.

  Args:
    input_path, target_path: the dry input and the effect's output.
    val_fraction: share of the recording held out for val1, in (0, 1).
    val2_files: must be empty: a voice clip needs the effect's output too,
      which only the user's own recording can give.
    channel, compensate_latency: as for `load_pair`.

  Returns:
    A `Dataset` named 'files_<input file name>'.
  """
  if val2_files:
    raise DataError(
        'val2 voice clips need targets, and with your own files the effect '
        'is unknown: record the voice through the effect, append it to '
        'your input/target pair, and leave val2_files empty')
  if not 0. < val_fraction < 1.:
    raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}')
  pair, rate = load_pair(input_path, target_path, channel=channel,
                         compensate_latency=compensate_latency)
  split = int(round(len(pair.input) * (1. - val_fraction)))
  train = Pair(pair.input[:split], pair.target[:split])
  val1 = Pair(pair.input[split:], pair.target[split:])
  name = os.path.splitext(os.path.basename(input_path))[0]
  return Dataset(f'files_{name}', rate, train, val1)
