"""The thesis's synthetic recipe: `recipe` audio and `thesis_dataset`.

Recipes (thesis section 3.3): 6 generators x 4 envelopes = 24 clips with
random gains, concatenated in random order. 'mini' is 20 s (882,000 samples
at 44.1 kHz), 'big' about 177 s (7,813,000 samples). val1 is more of the
same recipe from an independent key; val2 is recorded voice.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from emu import effects
from emu import signals
from emu.data import files
from emu.data import pairs

# Seconds per clip: 24 clips make the thesis's sample counts at 44.1 kHz.
SIZES = {'mini': 20. / 24., 'big': 7_813_000 / 24 / 44100}

FADE_SECONDS = 0.005


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
  return pairs.Pair(
      x, np.asarray(fn(jnp.asarray(x), sample_rate), np.float32))


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
  if val2 is not None and not isinstance(val2, pairs.Pair):
    val2 = apply_effect(effect, files.load_voice(val2, sample_rate),
                        sample_rate)
  return pairs.Dataset(f'thesis_{size}_{effect_name}', sample_rate, train,
                       val1, val2)
