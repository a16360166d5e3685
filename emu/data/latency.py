"""Latency of a recorded target behind its input: `estimate_latency`."""

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
  a few samples short.

  Args:
    x: input, [time].
    y: target, [time] (same length).
    max_lag: largest |latency| searched, samples.

  Returns:
    int latency in samples.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  nfft = scipy.fft.next_fast_len(x.shape[0] + max_lag)
  spec_x = scipy.fft.rfft(x, nfft)
  power = np.abs(spec_x)**2
  cross = scipy.fft.rfft(y, nfft) * np.conj(spec_x)
  response = scipy.fft.irfft(
      cross / (power + _WHITENING_FLOOR * power.mean()), nfft)
  lags = np.arange(-max_lag, max_lag + 1)
  size = np.abs(response[lags])
  peak = int(np.argmax(size))
  start = peak
  while start > 0 and size[start - 1] >= _ONSET_FRACTION * size[peak]:
    start -= 1
  onset, peak_lag = int(lags[start]), int(lags[peak])
  if onset >= 2 or peak_lag <= -2:
    return onset
  return 0
