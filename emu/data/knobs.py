"""Knob datasets: an effect's knob settings as input channels beside the audio.

Knob datasets (`knob_dataset`) put an effect's knobs beside the audio:
inputs [time, 1 + n_knobs] (channel 0 the audio, then each knob's
normalised value, constant within clips of about 0.5 s), targets [time];
val1 holds only knob values that training never saw (`knob_grids`), and
`group_by_knobs` finds the samples of each setting for metrics per knob
value. `segments` and `windows` (`emu.data.pairs`) carry the channels along.
"""

import jax
import jax.numpy as jnp
import numpy as np

from emu import effects
from emu.data import files
from emu.data import pairs
from emu.data import recipes

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
  return pairs.Pair(np.concatenate([audio[:, None], knobs], axis=1),
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
    if size not in recipes.SIZES:
      raise ValueError(f'unknown size {size!r}; valid sizes: '
                       f'{", ".join(recipes.SIZES)}, or seconds')
    seconds_per_clip, size_name = recipes.SIZES[size], size
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

  train = build(recipes.recipe(k_train, seconds_per_clip, sample_rate),
                train_grid, k_train_knobs)
  val1 = build(recipes.recipe(k_val, val1_seconds / 24., sample_rate),
               val_grid, k_val_knobs)
  if val2 is not None and not isinstance(val2, pairs.Pair):
    val2 = _voice_at_settings(knob_effect, files.load_voice(val2, sample_rate),
                              val_grid, k_voice_knobs, sample_rate)
  return pairs.Dataset(f'knob_{size_name}_{name}', sample_rate, train, val1,
                       val2, knobs=knob_effect.names)


def _voice_at_settings(knob_effect, voice, grid, key, sample_rate):
  """The voice once per validation setting (see `knob_dataset`)."""
  settings = len(grid)
  orders = [np.arange(settings)] + [
      np.asarray(jax.random.permutation(k, settings))
      for k in jax.random.split(key, max(len(knob_effect.knobs) - 1, 1))]
  per_setting = np.stack(
      [grid[orders[j]] for j in range(len(knob_effect.knobs))], axis=1)
  gap = np.zeros(int(round(files.VOICE_GAP_SECONDS * sample_rate)),
                 np.float32)
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
  x, _ = pairs._arrays(pair)  # pylint: disable=protected-access
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
