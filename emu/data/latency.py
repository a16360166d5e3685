"""Latency of a recorded target behind its input: `estimate_latency`, and
`latency_or_reason`, which says why when the estimate cannot be trusted."""

import numpy as np
import scipy.fft

# Onset threshold of the effect's estimated impulse response, relative to
# its peak. A causal filter answers at once (a 500 Hz low-pass reaches 0.15
# of its peak by its second sample) while a delayed target stays at the
# noise floor until the delay has passed.
_ONSET_FRACTION = 0.1
# Ridge added to the input power spectrum, relative to its mean, so empty
# bands of a band-limited input do not blow up the deconvolution.
_WHITENING_FLOOR = 1e-3
# When the estimate is trusted (`latency_or_reason`): the share of the
# input's spectrum above the whitening floor (noise, a sweep, voice: 0.27
# and more; a sine: 0.05 and less), the peak of |h| over the largest value
# outside its own lobe (a delayed noise: 100s, voice 3.8, the lobes of a
# sine's response about 1), and the peak over the median |h|.
MIN_BROADBAND = 0.1
MIN_PEAK_OVER_NEXT = 1.5
MIN_PEAK_OVER_MEDIAN = 10.0


def _response(x, y, max_lag):
  """(lags, |h| at those lags, the share of x's spectrum above the floor):
  the effect's impulse response h estimated by whitened cross-correlation.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  nfft = scipy.fft.next_fast_len(x.shape[0] + max_lag)
  spec_x = scipy.fft.rfft(x, nfft)
  power = np.abs(spec_x)**2
  floor = _WHITENING_FLOOR * power.mean()
  cross = scipy.fft.rfft(y, nfft) * np.conj(spec_x)
  response = scipy.fft.irfft(cross / (power + floor), nfft)
  lags = np.arange(-max_lag, max_lag + 1)
  return lags, np.abs(response[lags]), float(np.mean(power > floor))


def _onset(lags, size, peak):
  """The latency the response `size` (peak at index `peak`) says."""
  start = peak
  while start > 0 and size[start - 1] >= _ONSET_FRACTION * size[peak]:
    start -= 1
  onset, peak_lag = int(lags[start]), int(lags[peak])
  if onset >= 2 or peak_lag <= -2:
    return onset
  return 0


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
  a few samples short, and with too little of it (a sine) the number can
  be anything: `latency_or_reason` says when.

  Args:
    x: input, [time].
    y: target, [time] (same length).
    max_lag: largest |latency| searched, samples.

  Returns:
    int latency in samples.
  """
  lags, size, _ = _response(x, y, max_lag)
  return _onset(lags, size, int(np.argmax(size)))


def latency_or_reason(x, y, max_lag):
  """(latency in samples, None) as `estimate_latency` finds it, or (None,
  why it cannot be trusted): too little broadband input, a peak that does
  not stand out of the response, or one at the edge of the searched range.

  x, y: input and target [time] at one sample rate, neither silent.
  """
  lags, size, broadband = _response(x, y, max_lag)
  if broadband < MIN_BROADBAND:
    return None, (
        f"too little broadband content: {100 * broadband:.0f}% of the "
        "input's spectrum carries power (a sine or a narrow band); play "
        "noise, a sweep or emu's test signal (python -m emu.testsignal)")
  peak = int(np.argmax(size))
  lobe_start, lobe_end = peak, peak + 1  # the peak's lobe, down to minima
  while lobe_start > 0 and size[lobe_start - 1] <= size[lobe_start]:
    lobe_start -= 1
  while lobe_end < len(size) and size[lobe_end] <= size[lobe_end - 1]:
    lobe_end += 1
  outside = np.concatenate([size[:lobe_start], size[lobe_end:]])
  next_peak = float(outside.max()) if len(outside) else 0.0
  median = float(np.median(size))
  if (size[peak] < MIN_PEAK_OVER_NEXT * next_peak or
      size[peak] < MIN_PEAK_OVER_MEDIAN * median):
    return None, (
        "the correlation peak does not stand out ("
        f"{size[peak] / max(next_peak, 1e-300):.2g} times the next peak, "
        f"{size[peak] / max(median, 1e-300):.2g} times the median): the "
        "target does not follow the input closely enough to time it")
  if abs(int(lags[peak])) >= max_lag - 1:
    return None, (
        f"the correlation peaks at the edge of the searched range "
        f"({int(lags[peak])} samples): the true latency may be larger, or "
        "the files are not one recording of the other")
  return _onset(lags, size, peak), None
