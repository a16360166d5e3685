"""Knob capture: a manifest of recordings at several knob settings, a Dataset.

A manifest is a small JSON file that lists the recordings and the knob
settings each was made at:

  {"knobs": ["drive"],
   "recordings": [{"input": "in.wav", "target": "rec_d0.wav",
                   "knobs": {"drive": 0.0}}, ...],
   "validation": [{"input": "in.wav", "target": "rec_d625.wav",
                   "knobs": {"drive": 0.625}}]}

Paths are relative to the manifest's folder; knob values are normalised to
[0, 1] (the knob's travel: 0 fully counter-clockwise, 1 fully clockwise).
Each recording is read and checked by `emu.data.files.load_pair` and gets
its knob values as constant channels beside the audio, as
`emu.data.knobs.knob_dataset`'s inputs do: [time, 1 + n_knobs]. train is
every recording joined in order; val1 every validation recording, at
settings that no training recording has.
"""

import json
import math
import os

import numpy as np

from emu.data import files
from emu.data import pairs

# Nearer than this (normalised) to a training setting, a validation setting
# counts as seen (as in emu.data.knobs).
_SEEN = 1e-6
_EXAMPLE = ('{"knobs": ["drive"], "recordings": [{"input": "in.wav", '
            '"target": "rec.wav", "knobs": {"drive": 0.0}}, ...], '
            '"validation": [...]}')


def _error(path, what):
  return pairs.DataError(f'{path}: {what}')


def read_manifest(path):
  """The checked contents of a manifest (see the module docstring).

  Returns:
    {'knobs': (names...), 'recordings': [(input path, target path,
    (values...)), ...], 'validation': [...]}: paths resolved against the
    manifest's folder, values float32-exact floats in `knobs` order.

  Raises:
    DataError: the file is missing or not JSON, an entry lacks a field,
      names an unknown knob or misses one, a value is outside [0, 1], or a
      validation setting is also a training one.
  """
  if not os.path.isfile(path):
    raise _error(path, 'manifest not found; check --train_manifest')
  try:
    with open(path) as f:
      data = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as err:
    raise _error(path, f'not valid JSON ({err}); a manifest looks like '
                 f'{_EXAMPLE}') from err
  if not isinstance(data, dict):
    raise _error(path, f'must be a JSON object like {_EXAMPLE}')
  unknown = sorted(set(data) - {'knobs', 'recordings', 'validation'})
  if unknown:
    raise _error(path, f'unknown field(s) {", ".join(unknown)}; a manifest '
                 'has knobs, recordings and validation')
  names = data.get('knobs')
  if (not isinstance(names, list) or not names or
      not all(isinstance(n, str) and n for n in names)):
    raise _error(path, f'"knobs" must list the knob names, e.g. ["drive"], '
                 f'got {names!r}')
  if len(set(names)) != len(names):
    raise _error(path, f'"knobs" names a knob twice: {names!r}')
  folder = os.path.dirname(os.path.abspath(path))
  sets = {}
  for part in ('recordings', 'validation'):
    entries = data.get(part)
    if not isinstance(entries, list) or not entries:
      raise _error(path, f'"{part}" must list at least one recording '
                   '{"input": ..., "target": ..., "knobs": {...}}'
                   + (' at a setting no training recording has'
                      if part == 'validation' else ''))
    sets[part] = [_entry(path, folder, names, f'{part}[{i}]', entry)
                  for i, entry in enumerate(entries)]
  train = np.array([values for *_, values in sets['recordings']])
  for i, (*_, values) in enumerate(sets['validation']):
    if np.min(np.max(np.abs(train - np.array(values)), axis=1)) <= _SEEN:
      raise _error(path, f'validation[{i}] is at a training setting '
                   f'({_setting(names, values)}); validation must hold '
                   'settings never trained on: record the device at '
                   'another setting, or move this entry to "recordings"')
  return {'knobs': tuple(names), **sets}


def _setting(names, values):
  return ', '.join(f'{n}={v:g}' for n, v in zip(names, values))


def _entry(path, folder, names, where, entry):
  """(input path, target path, values) of one recording entry."""
  if not isinstance(entry, dict):
    raise _error(path, f'{where} must be an object with input, target and '
                 'knobs')
  unknown = sorted(set(entry) - {'input', 'target', 'knobs'})
  if unknown:
    raise _error(path, f'{where} has unknown field(s) {", ".join(unknown)}; '
                 'an entry has input, target and knobs')
  for field in ('input', 'target'):
    if not isinstance(entry.get(field), str) or not entry[field]:
      raise _error(path, f'{where} needs "{field}", a WAV path relative to '
                   'the manifest')
  knobs = entry.get('knobs')
  if not isinstance(knobs, dict):
    raise _error(path, f'{where} needs "knobs", e.g. {{"{names[0]}": 0.5}}')
  unknown = sorted(set(knobs) - set(names))
  if unknown:
    raise _error(path, f'{where} sets unknown knob(s) {", ".join(unknown)}; '
                 f'the manifest\'s "knobs" are {", ".join(names)}: fix the '
                 'name or add it there')
  missing = [n for n in names if n not in knobs]
  if missing:
    raise _error(path, f'{where} does not set knob(s) {", ".join(missing)}; '
                 'every recording gives every knob\'s value')
  values = []
  for name in names:
    value = knobs[name]
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or
        not math.isfinite(value) or not 0. <= value <= 1.):
      raise _error(path, f'{where}: knob {name}={value!r} is outside [0, 1]; '
                   'give knob positions normalised to [0, 1] (0 = the '
                   'knob\'s minimum, 1 its maximum)')
    values.append(float(np.float32(value)))  # they travel as float32
  return (os.path.join(folder, entry['input']),
          os.path.join(folder, entry['target']), tuple(values))


def knob_names(path):
  """The knob names a manifest lists, in channel order."""
  return read_manifest(path)['knobs']


def _with_knobs(pair, values):
  columns = np.broadcast_to(np.asarray(values, np.float32),
                            (len(pair.input), len(values)))
  return pairs.Pair(
      np.concatenate([pair.input[:, None], columns], axis=1).astype(
          np.float32), pair.target.astype(np.float32))


def _join(path, entries, channel, compensate_latency, max_latency_ms):
  """(one Pair of the entries joined in order, sample rate)."""
  parts, rates = [], set()
  for input_path, target_path, values in entries:
    pair, rate = files.load_pair(input_path, target_path, channel=channel,
                                 compensate_latency=compensate_latency,
                                 max_latency_ms=max_latency_ms)
    rates.add(rate)
    if len(rates) > 1:
      raise _error(path, f'{target_path} is at {rate} Hz but earlier '
                   f'recordings are at {min(rates - {rate})} Hz; record (or '
                   'resample) every entry at one rate')
    parts.append(_with_knobs(pair, values))
  return (pairs.Pair(np.concatenate([p.input for p in parts]),
                     np.concatenate([p.target for p in parts])),
          rates.pop())


def manifest_dataset(path, val2_files=(), channel=None,
                     compensate_latency=False, max_latency_ms=None):
  """A knob Dataset from a manifest of recordings (see the module docstring).

  Args:
    path: the manifest JSON.
    val2_files: must be empty (a voice clip needs the device's output at
      each setting: record it and list it under "validation").
    channel, compensate_latency, max_latency_ms: as for
      `emu.data.files.load_pair`, for
      every recording.

  Returns:
    A `Dataset` named 'manifest_<file name>' with inputs [time, 1 +
    n_knobs] float32 (channel 0 the audio, then each knob's normalised
    value, constant per recording), `knobs` the manifest's names; train
    the recordings joined in order, val1 the validation recordings.
  """
  if val2_files:
    raise pairs.DataError(
        'val2 voice clips need targets at each knob setting: record them '
        'through the device, list them under "validation" in the manifest, '
        'and leave val2_files empty')
  contents = read_manifest(path)
  train, rate = _join(path, contents['recordings'], channel,
                      compensate_latency, max_latency_ms)
  val1, val_rate = _join(path, contents['validation'], channel,
                         compensate_latency, max_latency_ms)
  if val_rate != rate:
    raise _error(path, f'the validation recordings are at {val_rate} Hz, '
                 f'the training ones at {rate} Hz; use one rate')
  name = os.path.splitext(os.path.basename(path))[0]
  return pairs.Dataset(f'manifest_{name}', rate, train, val1,
                       knobs=contents['knobs'])
