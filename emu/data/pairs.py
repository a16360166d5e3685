"""Containers and slicing: `Pair`, `Dataset`, `segments` and `windows`.

A `Dataset` holds host-side numpy float32 signals `[time]` (train, val1 and
an optional val2) with their sample rate; the trainer moves them to the
device. `segments` cuts a `Pair` into consecutive blocks for truncated
backpropagation through time; `windows` builds the thesis's window mode
(the `window` samples up to t -> the target at t) by index gathering.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


class DataError(ValueError):
  """Bad input audio; the message names the problem and how to fix it."""


@dataclasses.dataclass(frozen=True, eq=False)
class Pair:
  """An input signal and the effect's output, float32.

  input is [time], or [time, 1 + n_knobs] for an effect with knobs:
  channel 0 the audio, then each knob's normalised value in [0, 1]
  (`emu.effects.Knob.normalise`). target is [time].

  context: the first `context` samples are warm-up, played to bring a
  model with memory to the state the audio before them leaves (a
  compressor's gain, a filter's tail) and not scored: a validation set cut
  from the middle of a recording starts there, not from silence.
  """
  input: np.ndarray
  target: np.ndarray
  context: int = 0

  def scored(self) -> 'Pair':
    """The pair without its warm-up: what metrics compare."""
    if not self.context:
      return self
    return Pair(self.input[self.context:], self.target[self.context:])

  def trim(self, output):
    """The scored part of a model's output on `input` ([..., time])."""
    return np.asarray(output)[..., self.context:]


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
    Pair, data_fields=['input', 'target'], meta_fields=['context'])
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
