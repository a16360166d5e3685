"""Evaluation metrics on host arrays (numpy/scipy), returned as Python floats.

Inputs are mono signals `[time]` (a trailing channel axis of 1 is dropped):
`y` the model's output, `t` the target, `x` the effect's input where a
metric needs it. Arithmetic is float64.

Silent targets: ratios against the target's energy (`esr`, `snr_db`,
`spectral_convergence`) are undefined when the target is all zeros; they
raise ValueError, as does `all_metrics`, rather than return inf/NaN that
would slip into a report unnoticed. NaN or inf in any input is also an error.

Reports: `json_safe` writes a tree of these floats as JSON can hold it
(inf and NaN as strings).

Bits: a signal in [-1, 1] quantised to B bits has step 2^-(B-1), so one
16-bit step is 2^-15 and `accuracy_bits(y, t, bits=15)` is the share of
samples within one 16-bit step; the thesis's 12-bit accuracy uses 2^-12.
"""

import math
from typing import Optional

import numpy as np
import scipy.signal

# Power floor for log spectra: well below the quietest bin of real audio in
# [-1, 1], and keeps log10 finite for silent bins.
_POWER_EPS = 1e-20


def _mono(a, name: str = "signal") -> np.ndarray:
  a = np.asarray(a, dtype=np.float64)
  if a.ndim == 2 and a.shape[1] == 1:
    a = a[:, 0]
  if a.ndim != 1:
    raise ValueError(f"{name}: expected a mono signal [time], got shape "
                     f"{a.shape}")
  if a.size == 0:
    raise ValueError(f"{name}: empty signal")
  if not np.all(np.isfinite(a)):
    raise ValueError(f"{name}: contains NaN or inf")
  return a


def _pair(y, t) -> tuple[np.ndarray, np.ndarray]:
  y, t = _mono(y, "output"), _mono(t, "target")
  if y.shape != t.shape:
    raise ValueError(f"output has {y.size} samples, target {t.size}")
  return y, t


def _target_energy(t: np.ndarray, metric: str) -> float:
  energy = float(np.sum(np.square(t)))
  if energy == 0.0:
    raise ValueError(f"{metric} is undefined for a silent (all-zero) target")
  return energy


# Sample-wise.

def mse(y, t) -> float:
  """Mean squared error."""
  y, t = _pair(y, t)
  return float(np.mean(np.square(t - y)))


def mae(y, t) -> float:
  """Mean absolute error."""
  y, t = _pair(y, t)
  return float(np.mean(np.abs(t - y)))


def esr(y, t) -> float:
  """Error-to-signal ratio sum (t - y)^2 / sum t^2 (no eps: see module doc)."""
  y, t = _pair(y, t)
  return float(np.sum(np.square(t - y)) / _target_energy(t, "ESR"))


def snr_db(y, t) -> float:
  """Signal-to-noise ratio 10 log10(sum t^2 / sum (t - y)^2) in dB.

  inf when y == t exactly (json writes it as Infinity).
  """
  y, t = _pair(y, t)
  signal = _target_energy(t, "SNR")
  noise = float(np.sum(np.square(t - y)))
  return math.inf if noise == 0.0 else float(10 * np.log10(signal / noise))


def accuracy_bits(y, t, bits: int = 12) -> float:
  """Share of samples with |y - t| < 2^-bits (bits=15: one 16-bit step)."""
  y, t = _pair(y, t)
  return float(np.mean(np.abs(y - t) < 2.0**-bits))


# Spectral.

def _stft_power(a: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
  """|STFT|^2 of [time] -> [frames, n_fft // 2 + 1]; hann, no padding."""
  if a.size < n_fft:
    raise ValueError(f"signal of {a.size} samples is shorter than n_fft="
                     f"{n_fft}")
  frames = np.lib.stride_tricks.sliding_window_view(a, n_fft)[::hop]
  window = scipy.signal.get_window("hann", n_fft)
  spectrum = np.fft.rfft(frames * window, axis=-1)
  return np.square(spectrum.real) + np.square(spectrum.imag)


def log_spectral_distance_db(y, t, n_fft: int = 2048) -> float:
  """Log-spectral distance in dB, averaged over frames.

  Per frame: sqrt(mean over frequency of (10 log10(P_t / P_y))^2), with
  P the hann-windowed power spectrum (hop n_fft / 4). A gain error g gives
  20 log10 g at every bin, so y = 2 t gives 6.02 dB.
  """
  y, t = _pair(y, t)
  hop = max(1, n_fft // 4)
  power_y = _stft_power(y, n_fft, hop) + _POWER_EPS
  power_t = _stft_power(t, n_fft, hop) + _POWER_EPS
  difference_db = 10 * np.log10(power_t / power_y)
  return float(np.mean(np.sqrt(np.mean(np.square(difference_db), axis=-1))))


def spectral_convergence(y, t, n_fft: int = 2048) -> float:
  """||(|T| - |Y|)||_F / ||T||_F of hann STFT magnitudes (hop n_fft / 4)."""
  y, t = _pair(y, t)
  hop = max(1, n_fft // 4)
  mag_y = np.sqrt(_stft_power(y, n_fft, hop))
  mag_t = np.sqrt(_stft_power(t, n_fft, hop))
  norm_t = np.linalg.norm(mag_t)
  if norm_t == 0.0:
    raise ValueError("spectral convergence is undefined for a silent target")
  return float(np.linalg.norm(mag_t - mag_y) / norm_t)


def mrstft_distance(y, t, fft_sizes=(2048, 1024, 512, 256, 128, 64),
                    hop_ratio: float = 0.25, eps: float = 1e-7) -> float:
  """Numpy twin of `emu.losses.mrstft` (same framing, window and floors)."""
  y, t = _pair(y, t)
  sizes = [n for n in fft_sizes if n <= t.size]
  if not sizes:
    raise ValueError(f"signal of {t.size} samples is shorter than every fft "
                     f"size {tuple(fft_sizes)}")
  total = 0.0
  for size in sizes:
    hop = max(1, int(size * hop_ratio))
    # 1e-8 matches the magnitude floor in emu.losses.
    mag_y = np.sqrt(_stft_power(y, size, hop) + 1e-8)
    mag_t = np.sqrt(_stft_power(t, size, hop) + 1e-8)
    total += np.linalg.norm(mag_t - mag_y) / (np.linalg.norm(mag_t) + eps)
    total += np.mean(np.abs(np.log(mag_t + eps) - np.log(mag_y + eps)))
  return float(total / len(sizes))


# Frequency response.

def frequency_response(x, y, sample_rate: float, nperseg: int = 8192
                       ) -> tuple[np.ndarray, np.ndarray]:
  """Transfer function estimated from an input/output pair (Welch, H1).

  H = Pxy / Pxx with hann segments of `nperseg` samples and 50% overlap;
  exact for a linear time-invariant system driven by broadband noise, up to
  the leakage of impulse responses longer than a segment.

  Args:
    x: effect input [time].
    y: effect (or model) output [time].
    sample_rate: Hz.
    nperseg: samples per segment; sets the resolution sample_rate / nperseg.

  Returns:
    (freqs [nperseg // 2 + 1] in Hz, H complex [nperseg // 2 + 1]).
  """
  x, y = _mono(x, "input"), _mono(y, "output")
  if x.shape != y.shape:
    raise ValueError(f"input has {x.size} samples, output {y.size}")
  if x.size < nperseg:
    raise ValueError(f"signal of {x.size} samples is shorter than nperseg="
                     f"{nperseg}")
  if not np.any(x):
    raise ValueError("frequency response needs a non-silent input")
  freqs, p_xy = scipy.signal.csd(x, y, fs=sample_rate, nperseg=nperseg)
  _, p_xx = scipy.signal.welch(x, fs=sample_rate, nperseg=nperseg)
  # scipy's csd is conj(X) Y, so Pxy / Pxx estimates Y / X.
  return freqs, p_xy / np.maximum(p_xx, np.finfo(np.float64).tiny)


def _db(h: np.ndarray) -> np.ndarray:
  # Floored at -240 dB: exact zeros (a high-pass at DC) compare as equal.
  return 20 * np.log10(np.maximum(np.abs(h), 1e-12))


def response_deviation_db(x, y_model, y_target, sample_rate: float,
                          f_lo: float = 20.0, f_hi: float = 20000.0,
                          nperseg: int = 8192) -> dict:
  """Deviation of the model's estimated magnitude response from the target's.

  Both responses are estimated from the same input `x`, so estimation error
  largely cancels. The band is [f_lo, min(f_hi, Nyquist)] Hz.

  Returns:
    {'max_db', 'mean_db'}: max and mean of |dB_model - dB_target| in band.
  """
  freqs, h_model = frequency_response(x, y_model, sample_rate, nperseg)
  _, h_target = frequency_response(x, y_target, sample_rate, nperseg)
  band = (freqs >= f_lo) & (freqs <= min(f_hi, sample_rate / 2))
  if not np.any(band):
    raise ValueError(f"no frequency bins in [{f_lo}, {f_hi}] Hz at "
                     f"{sample_rate} Hz with nperseg={nperseg}")
  deviation = np.abs(_db(h_model[band]) - _db(h_target[band]))
  return {"max_db": float(np.max(deviation)),
          "mean_db": float(np.mean(deviation))}


def analytic_response_error(h_model, h_true) -> dict:
  """Error between two complex responses on the same frequency grid.

  For effects with a known response (e.g. a biquad's `freqz`).

  Returns:
    {'max_db', 'mean_db'} of |dB difference| and {'max_phase_deg',
    'mean_phase_deg'} of |phase difference| wrapped to [0, 180] degrees.
  """
  h_model = np.asarray(h_model, dtype=np.complex128)
  h_true = np.asarray(h_true, dtype=np.complex128)
  if h_model.shape != h_true.shape or h_model.size == 0:
    raise ValueError(f"responses must share a non-empty grid, got shapes "
                     f"{h_model.shape} and {h_true.shape}")
  magnitude = np.abs(_db(h_model) - _db(h_true))
  difference = np.degrees(np.angle(h_model) - np.angle(h_true))
  phase = np.abs((difference + 180.0) % 360.0 - 180.0)
  return {"max_db": float(np.max(magnitude)),
          "mean_db": float(np.mean(magnitude)),
          "max_phase_deg": float(np.max(phase)),
          "mean_phase_deg": float(np.mean(phase))}


# Neural Amp Modeler's verdicts on a validation ESR, in its words
# (nam/train/core.py, `_plot`, NAM 0.13): (upper bound, verdict).
NAM_VERDICTS = ((0.01, "Great!"), (0.035, "Not bad!"),
                (0.1, "...This *might* sound ok!"),
                (0.3, "...This probably won't sound great :("),
                (math.inf, "...Something seems to have gone wrong."))


def nam_verdict(esr_value: float) -> str:
  """What NAM's trainer would say of this validation ESR (NAM_VERDICTS:
  the first whose bound the ESR is below)."""
  return next(words for bound, words in NAM_VERDICTS if esr_value < bound)


def _fitting_power_of_two(length: int, wanted: int) -> int:
  return min(wanted, 2 ** int(math.log2(length)))


def all_metrics(y, t, x: Optional[np.ndarray] = None,
                sample_rate: float = 44100) -> dict:
  """Every metric above as a flat dict of Python floats.

  Keys: mse, mae, esr, snr_db, acc12, acc16 (within one 16-bit step,
  bits=15), lsd_db, spectral_convergence, mrstft, nam_verdict (a string:
  `nam_verdict` of esr); with `x` also
  response_max_db and response_mean_db (20 Hz-20 kHz). FFT and segment sizes
  shrink to fit short signals. Values are finite except snr_db of an exact
  match (inf).

  Raises:
    ValueError: on a silent target, NaN, or mismatched lengths.
  """
  y, t = _pair(y, t)
  n_fft = _fitting_power_of_two(t.size, 2048)
  result = {
      "mse": mse(y, t),
      "mae": mae(y, t),
      "esr": esr(y, t),
      "snr_db": snr_db(y, t),
      "acc12": accuracy_bits(y, t, bits=12),
      "acc16": accuracy_bits(y, t, bits=15),
      "lsd_db": log_spectral_distance_db(y, t, n_fft),
      "spectral_convergence": spectral_convergence(y, t, n_fft),
      "mrstft": mrstft_distance(y, t),
  }
  result["nam_verdict"] = nam_verdict(result["esr"])
  if x is not None:
    deviation = response_deviation_db(
        x, y, t, sample_rate, nperseg=_fitting_power_of_two(t.size, 8192))
    result["response_max_db"] = deviation["max_db"]
    result["response_mean_db"] = deviation["mean_db"]
  return result


def json_safe(tree):
  """A copy of a tree of dicts, lists and floats that JSON can hold.

  Non-finite floats (an exact match's SNR, a silent side's dBFS) become the
  strings 'inf', '-inf' and 'nan': standard JSON has no Infinity, and a
  report read back keeps saying what the number was.
  """
  if isinstance(tree, dict):
    return {k: json_safe(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [json_safe(v) for v in tree]
  if isinstance(tree, float) and not math.isfinite(tree):
    return str(tree)
  return tree
