"""The device's repeatability: audio the input plays twice, recorded twice.

`find_repeat` finds the repeated segment by autocorrelation where the
test signal's layout does not say where it is; `repeatability` is the ESR
between the target's two recordings of it, and half of that the best ESR
any model can reach on the data (`esr_floor`, `emu.capture.datareport`).
"""

import math

import numpy as np
import scipy.fft

from emu import metrics

# Repeat detection: lags shorter than this (s) are a signal's own texture.
MIN_REPEAT_SECONDS = 0.1
# Blocks (s) compared between the copies, and the relative difference
# energy under which two blocks count as the same audio.
REPEAT_BLOCK_SECONDS = 0.01
REPEAT_MATCH = 1e-4
# Autocorrelation peaks tried as the repeat's lag.
REPEAT_CANDIDATES = 32


def find_repeat(x, sample_rate, min_seconds=MIN_REPEAT_SECONDS):
  """Finds audio that the input plays twice, by autocorrelation.

  The strongest local peaks of the input's half-whitened autocorrelation
  (the inverse transform of |X|) at lags of at least `min_seconds` are
  candidate periods L; for each, blocks of
  REPEAT_BLOCK_SECONDS where x[t + L] matches x[t] (relative difference
  energy under REPEAT_MATCH) are found and the longest run of them that
  holds sound, not only silence, is the repeat.

  Args:
    x: input [time].
    sample_rate: Hz.
    min_seconds: shortest lag and repeat considered, seconds.

  Returns:
    {"first": [start, end], "second": [start, end]} in samples, or None.
  """
  x = np.asarray(x, np.float64)
  n = len(x)
  min_lag = int(min_seconds * sample_rate)
  if n < 2 * min_lag or not np.any(x):
    return None
  nfft = scipy.fft.next_fast_len(2 * n)
  spectrum = scipy.fft.rfft(x, nfft)
  # |X|, not |X|^2: half-whitened, so a loud tonal passage (whose peaks
  # sit at multiples of its period) does not outrank the exact repeat.
  auto = scipy.fft.irfft(np.abs(spectrum), nfft)[:n]
  auto[:min_lag] = 0.0
  block = max(int(REPEAT_BLOCK_SECONDS * sample_rate), 1)
  floor = 1e-12 * block
  best = None
  # Candidates: its strongest local peaks, each checked by the block match.
  peaks = np.nonzero((auto[1:-1] >= auto[:-2]) & (auto[1:-1] > auto[2:]))[0]
  peaks = peaks + 1
  for lag in peaks[np.argsort(auto[peaks])[::-1][:REPEAT_CANDIDATES]]:
    lag = int(lag)
    if auto[lag] <= 0.0:
      break
    run = _matching_run(x, lag, block, floor)
    if run is None or (run[1] - run[0]) * block < min_lag:
      continue
    # The copies cannot overlap: the first ends where the second starts.
    start = run[0] * block
    end = min(run[1] * block, start + lag)
    # Trim silence at the edges so the ESR is over the sound itself.
    loud = np.nonzero(np.abs(x[start:end]) > 0)[0]
    start, end = start + int(loud[0]), start + int(loud[-1]) + 1
    if best is None or end - start > best["first"][1] - best["first"][0]:
      best = {"first": [start, end], "second": [start + lag, end + lag]}
  return best


def _matching_run(x, lag, block, floor):
  """(first, end) block indices of the longest run of blocks where
  x[t + lag] matches x[t] and that holds some sound; None if there is none."""
  count = (len(x) - lag) // block
  if count < 1:
    return None
  a = x[:count * block].reshape(count, block)
  b = x[lag:lag + count * block].reshape(count, block)
  energy = np.sum(a ** 2, axis=1)
  diff = np.sum((a - b) ** 2, axis=1)
  same = diff <= REPEAT_MATCH * np.maximum(energy, floor)
  run_start, run = None, None
  for i in range(count + 1):
    if i < count and same[i]:
      run_start = i if run_start is None else run_start
      continue
    if run_start is not None:
      sound = np.sum(energy[run_start:i] > floor)
      if sound and (run is None or i - run_start > run[1] - run[0]):
        run = (run_start, i)
      run_start = None
  return run


def repeatability(y, repeat, latency, source):
  """ESR between the target's two recordings of the repeated segment.

  The first recording is the reference. Where it is silent (or not
  finite) the ESR is undefined: "esr", "esr_db" and "esr_floor" are None
  and "undefined" says why, rather than a number that would read as a
  perfectly repeatable device.
  """
  (a0, a1), (b0, b1) = repeat["first"], repeat["second"]
  n = min(a1 - a0, b1 - b0)
  # The device answers `latency` samples later; shift both copies alike.
  shift = max(int(latency), 0)
  n = min(n, len(y) - b0 - shift)
  if n <= 0:
    return None
  ya = y[a0 + shift:a0 + shift + n]
  yb = y[b0 + shift:b0 + shift + n]
  where = {"source": source, "first": [int(a0), int(a0 + n)],
           "second": [int(b0), int(b0 + n)]}
  try:
    value = metrics.esr(yb, ya)
  except ValueError as e:
    return {**where, "esr": None, "esr_db": None, "esr_floor": None,
            "undefined": f"the target's first recording of the repeated "
                         f"segment is no reference ({e})"}
  return {**where, "esr": value,
          "esr_db": 10.0 * math.log10(value) if value > 0 else -math.inf,
          "esr_floor": value / 2.0}


def repeatability_line(rep, sample_rate):
  if not rep:
    return ("  repeatability: no repeated segment in the input "
            "(record emu's test signal: python -m emu.testsignal)")
  seconds = (rep["first"][1] - rep["first"][0]) / sample_rate
  head = f"  repeatability ({rep['source']}, {seconds:.2f} s twice): "
  if rep["esr"] is None:
    return head + f"undefined, {rep['undefined']}"
  return head + (
      f"ESR {rep['esr']:.2e} ({_fmt_db(rep['esr_db'])} dB) between the two "
      f"recordings; best reachable model ESR ~{rep['esr_floor']:.2e}")


def _fmt_db(value):
  return f"{value:.1f}" if isinstance(value, (int, float)) else str(value)
