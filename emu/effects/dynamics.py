"""Dynamics: a feed-forward compressor and its gain computer.

`compressor` takes each parameter as a scalar or a per-sample array
[time], concrete or traced; `static_curve` is its static gain curve and
`_smooth_gain` smooths the gain change it asks for in the log domain.
Input levels are floored at `LEVEL_FLOOR_DB`.
"""

import jax
import jax.numpy as jnp

from emu.effects.biquad import _xp
from emu.effects.svf import _check_knobs


def static_curve(level_db, threshold_db, ratio, knee_db):
  """A compressor's gain computer: output level (dB) for an input level.

  Giannoulis, Massberg and Reiss, "Digital dynamic range compressor
  design - a tutorial and analysis" (JAES 2012), eq. 4: unchanged more
  than knee_db / 2 below the threshold, threshold + (level - threshold) /
  ratio above it, and a quadratic between that meets both with equal
  slope (knee_db = 0 is a hard knee).

  Args:
    level_db, threshold_db: dB; any broadcastable shapes.
    ratio: >= 1 (1 leaves the level alone).
    knee_db: knee width, dB, >= 0.

  Returns:
    output level in dB, the broadcast shape (numpy for concrete input).
  """
  xp = _xp(level_db, threshold_db, ratio, knee_db)
  level, threshold, ratio, knee = (
      xp.asarray(v) for v in (level_db, threshold_db, ratio, knee_db))
  over = level - threshold
  safe_knee = xp.where(knee > 0., knee, 1.)
  soft = level + (1. / ratio - 1.) * (over + knee / 2.)**2 / (2. * safe_knee)
  hard = threshold + over / ratio
  in_knee = (2. * xp.abs(over) <= knee) & (knee > 0.)
  return xp.where(2. * over > knee, hard, xp.where(in_knee, soft, level))


# Input levels are measured no lower than this (dB): -120 dBFS, the floor
# under silence, where log10(0) would be -inf.
LEVEL_FLOOR_DB = -120.


@jax.jit
def _smooth_gain(target, attack, release):
  """One-pole smoothing of target [time, ...] with branching coefficients."""

  def step(gain, inputs):
    want, up, down = inputs
    # The gain falls (more reduction) at the attack rate, rises at release.
    coef = jnp.where(want < gain, up, down)
    gain = coef * gain + (1. - coef) * want
    return gain, gain

  _, gain = jax.lax.scan(step, jnp.zeros(target.shape[1:], target.dtype),
                         (target, attack, release))
  return gain


def compressor(x, sample_rate, threshold_db=-20., ratio=4., attack_ms=5.,
               release_ms=50., knee_db=6., makeup_db=0.):
  """Feed-forward compressor with a peak detector and log-domain smoothing.

  The level of each sample, 20 log10 |x| (floored at -120 dB), goes
  through `static_curve`; the gain change it asks for (dB, <= 0) is
  smoothed by a one-pole filter, g[t] = c g[t-1] + (1 - c) want[t], with
  c = exp(-1 / (tau sample_rate)) and tau = attack_ms while the gain
  reduction grows, release_ms while it shrinks (the "smooth branching"
  detector of Giannoulis et al. 2012). So after a step in level the
  reduction covers 1 - 1/e (63 %) of its way in attack_ms, and recovers
  63 % in release_ms. y = x 10^((g + makeup_db) / 20).

  Args:
    x: [..., time] signal.
    sample_rate: Hz.
    threshold_db: dBFS; each parameter is a scalar or [time].
    ratio: >= 1.
    attack_ms, release_ms: time constants, ms (0 is instantaneous).
    knee_db: soft knee width, dB.
    makeup_db: gain after compression, dB.

  Returns:
    [..., time] float32.
  """
  x = jnp.asarray(x, jnp.float32)
  params = dict(threshold_db=threshold_db, ratio=ratio, attack_ms=attack_ms,
                release_ms=release_ms, knee_db=knee_db, makeup_db=makeup_db)
  _check_knobs(x, **params)
  return _compress(x, sample_rate, *params.values())


@jax.jit
def _compress(x, sample_rate, threshold, ratio, attack_ms, release_ms, knee,
              makeup):
  level = 20. * jnp.log10(
      jnp.maximum(jnp.abs(x), 10.**(LEVEL_FLOOR_DB / 20.)))
  want = static_curve(level, threshold, ratio, knee) - level
  coef = lambda ms: jnp.exp(-1000. / (jnp.maximum(ms, 1e-9) * sample_rate))
  time_first = lambda v: jnp.moveaxis(
      jnp.broadcast_to(v, x.shape).astype(jnp.float32), -1, 0)
  gain = _smooth_gain(time_first(want), time_first(coef(attack_ms)),
                      time_first(coef(release_ms)))
  return x * 10.**((jnp.moveaxis(gain, 0, -1) + makeup) / 20.)
