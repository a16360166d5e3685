"""Knobs and the registry of effects with knobs.

`KNOB_EFFECTS` names the effects with knobs of `emu.effects` with their
`Knob` ranges as `KnobEffect`s, fn(x, knob_values, sample_rate);
`knob_effect(name)` looks one up. The registered effects' fixed settings
(the knobs vary the rest) are this module's constants `PEAK_KNOB_Q`,
`DISTORTION_TONE_HZ`, `DISTORTION_ASYMMETRY`, `DISTORTION_OVERSAMPLE` and
`COMPRESSOR_RATIO`.
"""

import dataclasses
import math
from typing import Callable

from emu.effects.biquad import _xp
from emu.effects.dynamics import compressor
from emu.effects.nonlinear import diode_clipper
from emu.effects.nonlinear import waveshaper
from emu.effects.svf import highpass_knob
from emu.effects.svf import peaking_knob


@dataclasses.dataclass(frozen=True)
class Knob:
  """A knob: its name, its range in its own units, and its taper.

  `normalise` maps [low, high] onto [0, 1] (the value a model sees as an
  input channel), linearly or, for 'log', linearly in log(value), so a
  frequency knob moves by octaves; `denormalise` inverts it.
  """
  name: str
  low: float
  high: float
  scale: str = 'linear'

  def __post_init__(self):
    if self.scale not in ('linear', 'log'):
      raise ValueError(f'knob {self.name}: scale must be linear or log, '
                       f'got {self.scale!r}')
    if not self.low < self.high:
      raise ValueError(f'knob {self.name}: need low < high, got '
                       f'{self.low}, {self.high}')
    if self.scale == 'log' and self.low <= 0.:
      raise ValueError(f'knob {self.name}: a log knob needs low > 0, got '
                       f'{self.low}')

  def _ends(self, xp):
    if self.scale == 'log':
      return math.log(self.low), math.log(self.high), xp.log, xp.exp
    return self.low, self.high, lambda v: v, lambda v: v

  def normalise(self, value):
    """value (the knob's units; scalar or array) -> [0, 1] on its range."""
    xp = _xp(value)
    low, high, forward, _ = self._ends(xp)
    return (forward(xp.asarray(value)) - low) / (high - low)

  def denormalise(self, u):
    """u in [0, 1] (scalar or array) -> the knob's value in its units."""
    xp = _xp(u)
    low, high, _, back = self._ends(xp)
    return back(low + xp.asarray(u) * (high - low))


@dataclasses.dataclass(frozen=True)
class KnobEffect:
  """An effect and its knobs.

  `fn(x [time], knob_values, sample_rate) -> y [time]`, where knob_values
  holds one value per knob, in `knobs` order and in the knob's own units,
  each a scalar or a per-sample array [time]; traced values are fine.
  """
  fn: Callable
  knobs: tuple

  @property
  def names(self):
    return tuple(knob.name for knob in self.knobs)

  def __call__(self, x, knob_values, sample_rate):
    """y = fn(x, knob_values, sample_rate) after checking the knob count."""
    if len(knob_values) != len(self.knobs):
      raise ValueError(f'expected {len(self.knobs)} knob values '
                       f'({", ".join(self.names)}), got {len(knob_values)}')
    return self.fn(x, tuple(knob_values), sample_rate)

  def normalised(self, x, knob_values, sample_rate):
    """As a call, with each knob value given in [0, 1] (`Knob.normalise`)."""
    if len(knob_values) != len(self.knobs):
      raise ValueError(f'expected {len(self.knobs)} knob values '
                       f'({", ".join(self.names)}), got {len(knob_values)}')
    values = tuple(knob.denormalise(u)
                   for knob, u in zip(self.knobs, knob_values))
    return self.fn(x, values, sample_rate)


# Fixed settings of the registered knob effects (the knobs vary the rest).
PEAK_KNOB_Q = 1.
DISTORTION_TONE_HZ = 5000.
DISTORTION_ASYMMETRY = 0.2
DISTORTION_OVERSAMPLE = 4
COMPRESSOR_RATIO = 4.


def _hpf_knob(x, knob_values, sample_rate):
  cutoff_hz, = knob_values
  return highpass_knob(x, cutoff_hz, sample_rate)


def _peak_knob(x, knob_values, sample_rate):
  f0, gain_db = knob_values
  return peaking_knob(x, f0, gain_db, sample_rate, PEAK_KNOB_Q)


def _distortion(x, knob_values, sample_rate):
  drive_db, = knob_values
  return waveshaper(x, drive_db, sample_rate, tone_hz=DISTORTION_TONE_HZ,
                    asymmetry=DISTORTION_ASYMMETRY,
                    oversample=DISTORTION_OVERSAMPLE)


def _diode_clipper(x, knob_values, sample_rate):
  drive_db, = knob_values
  return diode_clipper(x, drive_db, sample_rate,
                       oversample=DISTORTION_OVERSAMPLE)


def _compressor(x, knob_values, sample_rate):
  threshold_db, = knob_values
  return compressor(x, sample_rate, threshold_db=threshold_db,
                    ratio=COMPRESSOR_RATIO)


KNOB_EFFECTS = {
    # The thesis's "frequency from where the high pass filter is applied".
    'hpf_knob': KnobEffect(_hpf_knob, (Knob('cutoff_hz', 20., 2000., 'log'),)),
    'peak_knob': KnobEffect(_peak_knob, (Knob('f0_hz', 100., 8000., 'log'),
                                         Knob('gain_db', -12., 12.))),
    'distortion': KnobEffect(_distortion, (Knob('drive_db', 0., 30.),)),
    'diode_clipper': KnobEffect(_diode_clipper, (Knob('drive_db', 0., 30.),)),
    'compressor': KnobEffect(_compressor,
                             (Knob('threshold_db', -40., -10.),)),
}


def knob_effect(name):
  """The named `KnobEffect` from `KNOB_EFFECTS`."""
  if name not in KNOB_EFFECTS:
    raise ValueError(f'unknown knob effect {name!r}; valid knob effects: '
                     f'{", ".join(KNOB_EFFECTS)}')
  return KNOB_EFFECTS[name]
