"""Latency of a recorded target behind its input: `find_latency` (from the
blips of emu's test signal, else by correlation), `estimate_latency`, and
`latency_or_reason`, which says why when the estimate cannot be trusted."""

import numpy as np
import scipy.fft

from emu import config as config_lib

# The largest latency the correlation searches by default, ms: the flag's
# default (`Config.max_latency_ms`), here for the library's callers.
MAX_LATENCY_MS = config_lib.Config.max_latency_ms
# The answer to a blip: the first target sample that rises above twice the
# peak of the target's own noise before it, and at least this far above it
# (NAM's trigger, -70 dBFS: `emu.data.nam_layout.ABS_THRESHOLD`).
BLIP_NOISE_FACTOR = 2.0
BLIP_MIN_RISE = 3e-4
# ... and reaches BLIP_EVENT_RATIO times that level within BLIP_EVENT
# samples (a noise spike does not).
BLIP_EVENT_RATIO = 4.0
BLIP_EVENT = 64
# The reason `latency_or_reason` gives for an input it cannot time at all;
# every other reason means the target does not follow the input as
# searched (unrelated, or lagging further than the search).
NARROWBAND = "too little broadband content"

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
        f"{NARROWBAND}: {100 * broadband:.0f}% of the "
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
        "target does not follow the input within the searched range "
        f"(+-{max_lag} samples): it lags further, or is not a recording of "
        "this input")
  if abs(int(lags[peak])) >= max_lag - 1:
    return None, (
        f"the correlation peaks at the edge of the searched range "
        f"({int(lags[peak])} samples): the true latency may be larger, or "
        "the files are not one recording of the other")
  return _onset(lags, size, peak), None


def first_answer(y, blip):
  """Latency (samples) of y's answer to a lone blip at sample `blip` of an
  input that is silent before it (emu's test signal), or None.

  Nothing the input played comes before the blip, so its answer is the
  first thing the target holds above its own noise, whatever the lag: the
  first sample more than BLIP_NOISE_FACTOR times the noise's peak, and
  BLIP_MIN_RISE, from the noise's median. The noise is read in the first
  half of the silence before the blip, so a target leading by up to half
  that silence is timed too.
  """
  y = np.asarray(y, np.float64)
  lead = blip // 2
  head = y[:blip - lead]
  if not len(head):
    return None
  base = float(np.median(head))
  size = np.abs(y[blip - lead:] - base)
  noise = float(np.max(np.abs(head - base)))
  threshold = max(BLIP_NOISE_FACTOR * noise, noise + BLIP_MIN_RISE)
  at = 0
  for _ in range(64):
    above = np.nonzero(size[at:] > threshold)[0]
    if not len(above):
      return None
    at += int(above[0])
    # An answer stands BLIP_EVENT_RATIO above the threshold within
    # BLIP_EVENT samples; a lone noise spike (noise that starts after a
    # digitally silent head) raises the threshold instead.
    peak = float(np.max(size[at:at + BLIP_EVENT]))
    if peak >= BLIP_EVENT_RATIO * threshold:
      return at - lead
    threshold = BLIP_NOISE_FACTOR * peak
  return None


def find_latency(x, y, max_lag, blip=None):
  """(latency in samples, how, why): the target's latency behind its input.

  With `blip`, the sample of emu's test signal's first blip (the input
  silent before it), the latency is `first_answer`'s, at any lag; where
  the target does not answer the blip, or without one, it is the
  correlation's (`latency_or_reason`, +-max_lag samples). how is "blips"
  or "correlation"; why is None, or why there is no latency (then latency
  is None). max_lag 0 searches nothing: (0, "not searched", None).
  """
  if max_lag <= 0:
    return 0, "not searched", None
  if blip is not None:
    latency = first_answer(y, blip)
    if latency is not None:
      return latency, "blips", None
  latency, why = latency_or_reason(x, y, max_lag)
  return latency, "correlation", why
