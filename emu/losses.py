"""Training losses: pure `jnp`, jittable and differentiable.

Every loss takes a prediction `y` and a target `t` of the same shape,
`[batch, time, channels]`, `[batch, time]` or `[time]`, and returns a scalar.
Time is axis 1 (axis 0 for a 1-D signal); channels are treated as extra
sequences, so `[batch, time, 1]` and `[batch, time]` give the same value.

Batch reduction: the energy ratios (`esr`, `esr_pre`, the spectral
convergence inside `mrstft`) sum over the whole batch before dividing, as in
Wright et al. This is the energy-weighted mean of per-example ratios, so a
near-silent segment cannot blow the loss up the way a per-example mean would.
The one exception is `esr_level`, the level-balanced ESR: the mean of
per-sequence ratios, each sequence's energy floored at `LEVEL_FLOOR` of
the batch's mean, so quiet segments weigh as much as loud ones down to
that floor (for training at random levels, `gain_low_db`).

`combined({'mse': 1.0, 'esr_pre': 1.0, 'mrstft': 2e-4})` builds the weighted
sum a config asks for.
"""

import functools
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal

# Squared-magnitude floor inside the STFT magnitude: keeps d|X|/dX finite at
# X == 0 (sqrt has an infinite slope at 0) and bounds log|X| from below.
_MAG_EPS = 1e-8


def _time_major(x: jnp.ndarray) -> jnp.ndarray:
  """[batch, time, ch] | [batch, time] | [time] -> [sequences, time]."""
  if x.ndim == 1:
    return x[None, :]
  if x.ndim == 2:
    return x
  if x.ndim == 3:
    return jnp.moveaxis(x, 2, 1).reshape(-1, x.shape[1])
  raise ValueError(
      f"expected [batch, time, channels], [batch, time] or [time], got shape "
      f"{x.shape}")


def _check_pair(y: jnp.ndarray, t: jnp.ndarray) -> None:
  if y.shape != t.shape:
    raise ValueError(f"prediction shape {y.shape} != target shape {t.shape}")
  if not 1 <= y.ndim <= 3:
    raise ValueError(f"expected [batch, time, channels], [batch, time] or "
                     f"[time], got shape {y.shape}")
  if y.shape[0 if y.ndim == 1 else 1] < 1:
    raise ValueError(f"need at least one time step, got shape {y.shape}")


def mse(y: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
  """Mean squared error over every sample in the batch."""
  _check_pair(y, t)
  return jnp.mean(jnp.square(t - y))


def esr(y: jnp.ndarray, t: jnp.ndarray, eps: float = 1e-10) -> jnp.ndarray:
  """Error-to-signal ratio sum (t - y)^2 / (sum t^2 + eps), summed over batch.

  `y = 0.9 t` gives 0.01; `y = 0` gives ~1.
  """
  _check_pair(y, t)
  return jnp.sum(jnp.square(t - y)) / (jnp.sum(jnp.square(t)) + eps)


# esr_level's floor on a sequence's energy, relative to the batch's mean
# sequence energy: 1e-8 is -80 dB, below the quietest training gain
# (gain_low_db >= -60 dB in the recipes) and above float32 round-off.
LEVEL_FLOOR = 1e-8


def esr_level(y: jnp.ndarray, t: jnp.ndarray, eps: float = 1e-10
              ) -> jnp.ndarray:
  """Level-balanced ESR: the mean over sequences of sum (t - y)^2 /
  (sum t^2 + LEVEL_FLOOR * mean energy + eps).

  A segment at -60 dB counts as much as one at 0 dB (`esr` weighs it 1e-6
  as much), so a model trained at random levels learns quiet passages too;
  a silent segment counts against the floor and cannot blow the loss up.
  Equal to `esr` for a batch of one sequence (up to the floor).
  """
  _check_pair(y, t)
  y, t = _time_major(y), _time_major(t)
  energy = jnp.sum(jnp.square(t), axis=1)
  floor = LEVEL_FLOOR * jnp.mean(energy) + eps
  return jnp.mean(jnp.sum(jnp.square(t - y), axis=1) / (energy + floor))


# level_scale's floor on a sequence's energy, relative to the batch's mean:
# -120 dB, far below the quietest training gain (-60 dB, against segments
# up to +24 dB) so that it does not discount it, and there only so that a
# silent sequence (the trainer drops them) scales by a finite number.
SCALE_FLOOR = 1e-12


def level_scale(x: jnp.ndarray, t: jnp.ndarray) -> jnp.ndarray:
  """[batch, 1, 1]: 1 / the RMS of each sequence's audio input and target
  together, its energy floored at SCALE_FLOOR of the batch's mean
  (Config's level_balance multiplies output and target by it before the
  loss).

  Scaled so, every sequence is scored at one level: a sequence played at
  gain g (x and t both times g) scales by 1 / g, so the ESR of a batch is
  what it would be were every sequence at the same level. Unlike
  `esr_level`, which divides by the target's energy alone, a sequence the
  effect makes near-silent (a high-pass's stopband) is not magnified into
  the loss, and one whose input is silent (a reverb's tail) still has its
  target's level.
  x: [batch, time, channels] (channel 0 the audio), t: [batch, time, 1]
  over the same (scored) samples.
  """
  energy = (jnp.mean(jnp.square(x[..., :1]), axis=(1, 2)) +
            jnp.mean(jnp.square(t), axis=(1, 2)))
  energy = energy + SCALE_FLOOR * jnp.mean(energy) + 1e-30
  return jax.lax.rsqrt(energy)[:, None, None]


def pre_emphasis(x: jnp.ndarray, coefficient: float = 0.85) -> jnp.ndarray:
  """First-order high-pass FIR x[n] - c x[n-1] along time; x[0] kept as is.

  Same as `scipy.signal.lfilter([1, -c], [1], x)` (zero initial state).
  Emphasises the high frequencies the ear hears and that MSE underweights.

  Args:
    x: [batch, time, ch], [batch, time] or [time].
    coefficient: c; 0.85 as in Wright et al.

  Returns:
    Same shape as `x`.
  """
  axis = 0 if x.ndim == 1 else 1
  head = jnp.take(x, jnp.arange(1), axis=axis)
  current = jnp.take(x, jnp.arange(1, x.shape[axis]), axis=axis)
  previous = jnp.take(x, jnp.arange(x.shape[axis] - 1), axis=axis)
  return jnp.concatenate([head, current - coefficient * previous], axis=axis)


def esr_pre(y: jnp.ndarray, t: jnp.ndarray,
            coefficient: float = 0.85) -> jnp.ndarray:
  """ESR of the pre-emphasised prediction and target."""
  _check_pair(y, t)
  return esr(pre_emphasis(y, coefficient), pre_emphasis(t, coefficient))


def dc(y: jnp.ndarray, t: jnp.ndarray, eps: float = 1e-10) -> jnp.ndarray:
  """DC error (mean_time(t - y))^2 / (mean t^2 + eps) (Wright et al.).

  The offset is taken per sequence (so opposite offsets in two examples do
  not cancel), squared and averaged over the batch; the energy is the mean
  over the whole batch.
  """
  _check_pair(y, t)
  offset = jnp.mean(_time_major(t - y), axis=1)
  return jnp.mean(jnp.square(offset)) / (jnp.mean(jnp.square(t)) + eps)


def _safe_norm(x: jnp.ndarray) -> jnp.ndarray:
  """Frobenius norm whose gradient at x == 0 is 0 rather than NaN."""
  squared = jnp.sum(jnp.square(x))
  positive = squared > 0
  # Double `where`: the untaken sqrt branch must not see 0 either, or its NaN
  # gradient leaks through the select.
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def _window(name: str, size: int) -> np.ndarray:
  # Periodic (DFT-even) window, a constant at trace time.
  return scipy.signal.get_window(name, size, fftbins=True).astype(np.float32)


def stft_magnitude(x: jnp.ndarray, fft_size: int, hop: int,
                   window: str = "hann") -> jnp.ndarray:
  """Magnitude STFT of [sequences, time] without padding.

  Returns:
    [sequences, frames, fft_size // 2 + 1], frames = 1 + (time - fft_size)
    // hop; sqrt(|X|^2 + 1e-8) so the gradient is finite at X == 0.
  """
  frames = 1 + (x.shape[-1] - fft_size) // hop
  index = (np.arange(frames)[:, None] * hop + np.arange(fft_size)[None, :])
  spectrum = jnp.fft.rfft(x[:, index] * _window(window, fft_size), axis=-1)
  power = jnp.square(spectrum.real) + jnp.square(spectrum.imag)
  return jnp.sqrt(power + _MAG_EPS)


def mrstft(y: jnp.ndarray, t: jnp.ndarray,
           fft_sizes: Sequence[int] = (2048, 1024, 512, 256, 128, 64),
           hop_ratio: float = 0.25, window: str = "hann",
           eps: float = 1e-7) -> jnp.ndarray:
  """Multi-resolution STFT loss, averaged over the resolutions that fit.

  Per resolution: spectral convergence ||(|T| - |Y|)||_F / ||T||_F (over the
  whole batch) plus mean |log(|T| + eps) - log(|Y| + eps)|. Frames start at
  sample 0 with hop = fft_size * hop_ratio and no padding; resolutions whose
  fft_size exceeds the signal are skipped.

  Raises:
    ValueError: if the signal is shorter than the smallest fft_size.
  """
  _check_pair(y, t)
  y, t = _time_major(y), _time_major(t)
  length = t.shape[-1]
  sizes = tuple(int(n) for n in fft_sizes if n <= length)
  if not sizes:
    raise ValueError(
        f"mrstft: signal of {length} samples is shorter than every fft size "
        f"{tuple(fft_sizes)}; use longer segments or smaller fft_sizes")
  return _mrstft(y, t, sizes, float(hop_ratio), window, float(eps))


# Jitted so that eager calls (tests, evaluation) compile once rather than op
# by op; inside an outer jit it is simply inlined.
@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _mrstft(y, t, sizes, hop_ratio, window, eps):
  total = 0.0
  for size in sizes:
    hop = max(1, int(size * hop_ratio))
    mag_y = stft_magnitude(y, size, hop, window)
    mag_t = stft_magnitude(t, size, hop, window)
    convergence = _safe_norm(mag_t - mag_y) / (_safe_norm(mag_t) + eps)
    log_distance = jnp.mean(
        jnp.abs(jnp.log(mag_t + eps) - jnp.log(mag_y + eps)))
    total = total + convergence + log_distance
  return total / len(sizes)


LOSSES: dict[str, Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]] = {
    "mse": mse,
    "esr": esr,
    "esr_level": esr_level,
    "esr_pre": esr_pre,
    "dc": dc,
    "mrstft": mrstft,
}


def combined(weights: Mapping[str, float]):
  """A weighted sum of named losses.

  Args:
    weights: loss name -> weight, e.g. {'mse': 1.0, 'esr_pre': 1.0,
      'mrstft': 2e-4}. Names are keys of `LOSSES`.

  Returns:
    fn(y, t) -> (total, parts): `total` = sum of weight * loss, `parts` maps
    each name to its unweighted value (for logging).

  Raises:
    ValueError: on an empty mapping or an unknown name.
  """
  if not weights:
    raise ValueError(f"no losses chosen; valid names: {sorted(LOSSES)}")
  unknown = sorted(set(weights) - set(LOSSES))
  if unknown:
    raise ValueError(f"unknown loss name(s) {unknown}; valid names: "
                     f"{sorted(LOSSES)}")
  chosen = {name: float(w) for name, w in weights.items()}

  def loss_fn(y, t):
    parts = {name: LOSSES[name](y, t) for name in chosen}
    total = sum(chosen[name] * value for name, value in parts.items())
    return total, parts

  return loss_fn
