"""The device beside the model on the test signal: gain, response, harmonics.

`compare(x, device, model, layout, sample_rate, val1_start)` measures the
recorded target (the device) and the model's prediction on the same input
from the test signal's parts (`emu.capture.testsignal`: where each lies
comes from its `*.layout.json`):

  gain                 RMS level in and out of each level step (white,
                       pink and brown noise at their levels, the two
                       sweeps): the level-dependent gain, compression
  frequency_response   |H| in dB at third-octave points, per input level:
                       each sweep deconvolved (the impulse response
                       windowed before the sweep's harmonics arrive, Farina
                       2000), and each white noise level by Welch's H1
  harmonics            the peak amplitude (dBFS) of harmonics 1..ORDERS of
                       each sweep as it passes HARMONIC_HZ, by demodulating
                       the output at k times the input's phase; THD
  error_over_time      the model's error level and ESR in short windows
                       across the whole signal, val1's start, and ESR per
                       part: where in the signal the model misses

`recording(dataset, cfg)` finds the input, target and layout of a run on
dataset 'files', or the one line saying why there is none; `write_plots`
draws the four figures (`emu.report.plots`), device and model on the same
axes. `emu.report.evaluate` calls both; report.json keeps the result under
"device_vs_model" and report.html shows it (`emu.report.run_page`).
"""

import math
import os

import numpy as np
import scipy.fft

from emu import metrics
from emu.capture import testsignal
from emu.data import files as files_lib
from emu.report import plots

KEY = "device_vs_model"
# Each part's edges (s) are left out of levels and noise responses: the
# fades, and the device settling from the part before.
EDGE_S = 0.02
LEVEL_KINDS = ("white", "pink", "brown", "sweep_up", "sweep_down")
SWEEP_KINDS = ("sweep_up", "sweep_down")
# Frequency response: third-octave points from 25 Hz up to this share of
# the sample rate (and 16 kHz); the sweep's impulse response is kept from
# PRE_S before its peak to at most MAX_IR_S after it.
LOWEST_HZ = 25.0
HIGHEST_HZ = 16000.0
TOP_SHARE = 0.4
PRE_S = 0.005
MAX_IR_S = 0.1
NOISE_NPERSEG = 8192
# Harmonics: of each sweep at these fundamentals, orders 1..ORDERS below
# this share of the sample rate, over a Blackman-Harris window this many
# cycles long.
HARMONIC_HZ = (100.0, 1000.0)
ORDERS = 10
HARMONIC_TOP_SHARE = 0.45
CYCLES = 6
# Error over time: at most this many windows, none shorter than
# MIN_WINDOW_S; levels floored at FLOOR_DBFS; a window (or part) whose
# device output lies QUIET_DB below the loudest window has no ESR (None):
# near silence it measures the silence, not the model.
MAX_WINDOWS = 400
MIN_WINDOW_S = 0.05
FLOOR_DBFS = -120.0
QUIET_DB = 60.0
QUIET_KINDS = ("silence", "blip")
PLOT_FILES = {"gain": "device_gain.png",
              "frequency_response": "device_frequency_response.png",
              "harmonics": "device_harmonics.png",
              "error_over_time": "device_error_over_time.png"}


def _db(value):
  return 20.0 * math.log10(value) if value > 0 else -math.inf


def _round(values, digits=2):
  """A list of floats rounded for report.json (None stays None)."""
  return [None if v is None or not math.isfinite(v)
          else round(float(v), digits) for v in values]


def _significant(value, digits=3):
  return None if value is None else float(f"{value:.{digits}g}")


def _rms_db(a):
  a = np.asarray(a, np.float64)
  return _db(float(np.sqrt(np.mean(a ** 2)))) if a.size else -math.inf


def _core(segment, sample_rate):
  """(start, end) of a part less EDGE_S at each side."""
  edge = int(EDGE_S * sample_rate)
  return segment["start"] + edge, segment["end"] - edge


# ---------------------------------------------------------------- finding


def recording(dataset, cfg):
  """(input, target, layout, val1_start) of a run on emu's test signal,
  the layout's samples counted from the dataset's first; or a string
  saying why there is none; or None for a run not on dataset 'files'.

  The whole recording is train then val1's scored part (`files_dataset`);
  latency compensation trims |lag| samples off its start or its end, so
  the layout moves by what the input WAV shows was trimmed.
  """
  if cfg is None or cfg.dataset != "files" or not (
      cfg.train_input or cfg.train_manifest):
    return None
  if cfg.train_manifest:
    return ("knob recordings (a manifest): no device-vs-model section "
            "(it compares one recording of emu's test signal)")
  try:
    layout = files_lib.read_layout(cfg.train_input)
  except (ValueError, OSError) as err:
    return f"no device-vs-model section: {err}"
  if layout is None:
    sidecar = os.path.basename(files_lib.layout_path(cfg.train_input))
    return (f"{os.path.basename(cfg.train_input)} has no test-signal layout "
            f"beside it ({sidecar}): not emu's test signal, so no "
            "device-vs-model section")
  x = np.concatenate([dataset.train.input, dataset.val1.scored().input])
  y = np.concatenate([dataset.train.target, dataset.val1.scored().target])
  if x.ndim != 1 or layout.get("sample_rate") != dataset.sample_rate:
    return ("the test signal's layout does not fit the recording (its "
            "sample rate or channels): no device-vs-model section")
  offset = _offset(x, layout, cfg)
  if offset is None:
    return ("the input is not the test signal its layout describes (its "
            "length differs): no device-vs-model section")
  segments = [dict(s, start=s["start"] - offset, end=s["end"] - offset)
              for s in layout["segments"]]
  layout = dict(layout, segments=[s for s in segments
                                  if s["start"] >= 0 and s["end"] <= len(x)])
  return x, y, layout, len(dataset.train.input)


def _offset(x, layout, cfg):
  """Samples trimmed off the input's start: 0 when nothing was trimmed,
  else read from the input WAV (None when it holds not x)."""
  samples = int(layout.get("samples", -1))
  if samples == len(x):
    return 0
  if samples < len(x):
    return None
  wav, _ = files_lib.read_mono(cfg.train_input,
                               None if cfg.channel < 0 else cfg.channel)
  if len(wav) != samples:
    return None
  for offset in (0, samples - len(x)):
    if np.array_equal(wav[offset:offset + len(x)], x):
      return offset
  return None


# -------------------------------------------------------------- measuring


def gain(x, outputs, segments, sample_rate):
  """The RMS level (dBFS) in and out of each level step (LEVEL_KINDS),
  each output's ("device", "model") under "<output>_rms_dbfs"."""
  rows = [s for s in segments if s["kind"] in LEVEL_KINDS]
  out = {"parts": [s["name"] for s in rows],
         "kinds": [s["kind"] for s in rows], "input_rms_dbfs": []}
  out.update({f"{side}_rms_dbfs": [] for side in outputs})
  for s in rows:
    start, end = _core(s, sample_rate)
    out["input_rms_dbfs"].append(_rms_db(x[start:end]))
    for side, y in outputs.items():
      out[f"{side}_rms_dbfs"].append(_rms_db(y[start:end]))
  return {k: v if k in ("parts", "kinds") else _round(v)
          for k, v in out.items()}


def response_freqs(sample_rate):
  """The third-octave points (Hz) responses are reported at."""
  top = min(HIGHEST_HZ, TOP_SHARE * sample_rate)
  count = int(math.floor(3 * math.log2(top / LOWEST_HZ))) + 1
  return LOWEST_HZ * 2.0 ** (np.arange(count) / 3.0)


def sweep_response(x, y, sample_rate, freqs, harmonic_lag_s):
  """|H(freqs)| of a sweep x and the output y (same length): y
  deconvolved by x, the impulse response kept from PRE_S before 0 to
  MAX_IR_S after (at most half of harmonic_lag_s either side: the lag at
  which the second harmonic's response appears), tapered, transformed.
  Both means are left out: an offset the output holds is no response."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  x, y = x - np.mean(x), y - np.mean(y)
  n = scipy.fft.next_fast_len(2 * len(x))
  spectrum_x = np.fft.rfft(x, n)
  power = np.abs(spectrum_x) ** 2
  h = np.fft.irfft(np.fft.rfft(y, n) * np.conj(spectrum_x) /
                   (power + 1e-8 * power.max()), n)
  pre = max(1, int(min(PRE_S, harmonic_lag_s / 2) * sample_rate))
  post = max(2, int(min(MAX_IR_S, harmonic_lag_s / 2) * sample_rate))
  taper = lambda m: 0.5 + 0.5 * np.cos(np.pi * np.arange(m) / m)
  window = np.concatenate([taper(pre)[::-1], np.ones(post - post // 2),
                           taper(post // 2)])
  kept = np.concatenate([h[-pre:], h[:post]]) * window
  lags = np.arange(-pre, post) / sample_rate
  response = np.exp(-2j * np.pi * np.outer(freqs, lags)) @ kept
  return 20.0 * np.log10(np.maximum(np.abs(response), 1e-12))


def noise_response(x, y, sample_rate, freqs):
  """|H(freqs)| in dB from noise by Welch's H1 (`emu.metrics`), the dB
  averaged over each point's third octave (a mean of powers would lean to
  the band's louder edge on a steep slope)."""
  nperseg = min(NOISE_NPERSEG, 1 << int(math.log2(max(len(x) // 4, 16))))
  grid, h = metrics.frequency_response(x, y, sample_rate, nperseg=nperseg)
  db = 20.0 * np.log10(np.maximum(np.abs(h), 1e-12))
  out = []
  for f in freqs:
    band = (grid >= f * 2 ** (-1 / 6)) & (grid < f * 2 ** (1 / 6))
    out.append(np.mean(db[band]) if band.any() else np.interp(f, grid, db))
  return np.array(out)


def sweep_band(sample_rate):
  """(lowest, highest) Hz of the test signal's sweeps at this rate."""
  return testsignal.SWEEP_LOW_HZ, min(20000.0, 0.45 * sample_rate)


def sweep_cycles(kind, n, sample_rate):
  """The phase (cycles) at each of n samples of the test signal's sweep of
  this kind (`emu.signals.sweep`: f_start (f_end / f_start)^(i / n) Hz at
  sample i, cycles f_start (e^(r i) - 1) / (r rate), r = ln(f_end /
  f_start) / n), and the rate r."""
  low, high = sweep_band(sample_rate)
  start, end = (low, high) if kind == "sweep_up" else (high, low)
  r = math.log(end / start) / n
  return start * np.expm1(r * np.arange(n)) / (r * sample_rate), r, start


def _harmonic_lag_s(segment, sample_rate):
  """Where a log sweep's second harmonic deconvolves to (s from 0)."""
  low, high = sweep_band(sample_rate)
  seconds = (segment["end"] - segment["start"]) / sample_rate
  return seconds * math.log(2.0) / math.log(high / low)


def frequency_responses(x, outputs, segments, sample_rate):
  """Each sweep's and each white noise's response, device and model."""
  freqs = response_freqs(sample_rate)
  curves = []
  for s in segments:
    if s["kind"] in SWEEP_KINDS:
      method, (start, end) = "sweep", (s["start"], s["end"])
      lag = _harmonic_lag_s(s, sample_rate)
    elif s["kind"] == "white":
      method, (start, end) = "noise", _core(s, sample_rate)
    else:
      continue
    curve = {"part": s["name"], "method": method, "peak_dbfs": s["peak_dbfs"]}
    for side, y in outputs.items():
      if method == "sweep":
        db = sweep_response(x[start:end], y[start:end], sample_rate, freqs,
                            lag)
      else:
        db = noise_response(x[start:end], y[start:end], sample_rate, freqs)
      curve[f"{side}_db"] = _round(db)
    curves.append(curve)
  return {"freqs_hz": _round(freqs, 1), "curves": curves}


# The 4-term Blackman-Harris window's coefficients (sidelobes at -92 dB).
_BLACKMAN_HARRIS = (0.35875, -0.48829, 0.14128, -0.01168)


def harmonic_amplitudes(x, y, kind, sample_rate, f0, orders=ORDERS):
  """(input amplitude, [amplitude of harmonic k of y, k = 1..orders]) as
  the sweep x (the whole part, of `kind`) passes f0: y demodulated at k
  times the sweep's phase (`sweep_cycles`) under a Blackman-Harris window
  CYCLES cycles of that phase long. The window and the sum run over the
  phase, not time (each sample weighed by the frequency it sweeps at), so
  harmonic m demodulated at k is a pure tone m - k cycles per cycle that
  the window rejects as it rejects a steady sine's, however fast the
  sweep. None where k f0 passes HARMONIC_TOP_SHARE of the rate, or (all)
  where the window does not fit inside the sweep."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  cycles, r, start = sweep_cycles(kind, len(x), sample_rate)
  centre = (f0 - start) / (r * sample_rate)  # the cycles at f0
  where = (cycles - centre) / CYCLES + 0.5  # 0..1 across the window
  span = np.nonzero((where > 0) & (where < 1))[0]
  if not span.size or span[0] == 0 or span[-1] == len(x) - 1:
    return None, [None] * orders
  window = sum(a * np.cos(2 * np.pi * i * where[span])
               for i, a in enumerate(_BLACKMAN_HARRIS))
  weights = window * start * np.exp(r * span)  # Hz at each sample
  # sin(2 pi c) = Re(exp(j (2 pi c - pi / 2))): harmonic k turns at k c.
  phase = 2 * np.pi * cycles[span] - np.pi / 2

  def amplitude(signal, k):
    return float(abs(2.0 * np.sum(weights * signal[span] *
                                  np.exp(-1j * k * phase)) / weights.sum()))

  return amplitude(x, 1), [
      amplitude(y, k) if k * f0 < HARMONIC_TOP_SHARE * sample_rate else None
      for k in range(1, orders + 1)]


def _thd(amplitudes):
  """sqrt(sum of harmonics 2.. squared) / harmonic 1, in percent."""
  present = [a for a in amplitudes[1:] if a is not None]
  if not amplitudes or not amplitudes[0] or not present:
    return None
  return 100.0 * math.sqrt(sum(a * a for a in present)) / amplitudes[0]


def harmonics(x, outputs, segments, sample_rate):
  """Harmonics 1..ORDERS of each sweep at each HARMONIC_HZ, and THD."""
  rows = []
  for s in segments:
    if s["kind"] not in SWEEP_KINDS:
      continue
    for f0 in HARMONIC_HZ:
      row = {"part": s["name"], "peak_dbfs": s["peak_dbfs"], "f0_hz": f0}
      for side, y in outputs.items():
        level, amplitudes = harmonic_amplitudes(
            x[s["start"]:s["end"]], y[s["start"]:s["end"]], s["kind"],
            sample_rate, f0)
        if level is None:
          break
        row["input_dbfs"] = round(_db(level), 2)
        row[f"{side}_dbfs"] = _round(
            [None if a is None else _db(a) for a in amplitudes])
        row[f"{side}_thd_pct"] = _significant(_thd(amplitudes))
      else:
        rows.append(row)
  return {"orders": list(range(1, ORDERS + 1)), "rows": rows}


def _esr_or_none(error, target, quiet_dbfs):
  energy = float(np.sum(np.square(target)))
  if not target.size or _db(math.sqrt(energy / target.size)) < quiet_dbfs:
    return None
  return float(np.sum(np.square(error))) / energy


def _levels_dbfs(windows):
  return _round([max(_rms_db(w), FLOOR_DBFS) for w in windows], 1)


def error_over_time(device, model, segments, sample_rate, val1_start):
  """The model's error level and ESR in consecutive windows, and per
  part (with the set it lies in: train, val1 or both)."""
  device = np.asarray(device, np.float64)
  error = np.asarray(model, np.float64) - device
  window = max(int(MIN_WINDOW_S * sample_rate),
               -(-len(device) // MAX_WINDOWS))
  count = len(device) // window
  pieces = lambda a: a[:count * window].reshape(count, window)
  parts = []
  device_dbfs = _levels_dbfs(pieces(device))
  quiet = max(device_dbfs, default=FLOOR_DBFS) - QUIET_DB
  for s in segments:
    if s["kind"] in QUIET_KINDS:
      continue
    where = ("train" if s["end"] <= val1_start else
             "val1" if s["start"] >= val1_start else "both")
    span = slice(s["start"], s["end"])
    parts.append({"part": s["name"], "set": where,
                  "start_s": round(s["start"] / sample_rate, 3),
                  "end_s": round(s["end"] / sample_rate, 3),
                  "esr": _significant(_esr_or_none(error[span],
                                                   device[span], quiet))})
  return {
      "window_s": round(window / sample_rate, 4),
      "val1_start_s": round(val1_start / sample_rate, 3),
      "device_dbfs": device_dbfs,
      "error_dbfs": _levels_dbfs(pieces(error)),
      "esr": [_significant(_esr_or_none(e, d, quiet))
              for e, d in zip(pieces(error), pieces(device))],
      "parts": parts,
  }


def compare(x, device, model, layout, sample_rate, val1_start) -> dict:
  """report.json's "device_vs_model": the four measurements above.

  Args:
    x: the test signal as played [time]; device: its recording (the
      target); model: the model's output on x from rest.
    layout: the test signal's layout, its segments counted from x[0].
    sample_rate: Hz.
    val1_start: the sample where val1 (held out) starts.
  """
  x = np.asarray(x, np.float64)
  outputs = {"device": np.asarray(device, np.float64),
             "model": np.asarray(model, np.float64)}
  segments = layout["segments"]
  return {
      "signal": (f"emu test signal ({layout.get('file', 'input')}, "
                 f"{len(x) / sample_rate:.1f} s)"),
      "gain": gain(x, outputs, segments, sample_rate),
      "frequency_response": frequency_responses(x, outputs, segments,
                                                sample_rate),
      "harmonics": harmonics(x, outputs, segments, sample_rate),
      "error_over_time": error_over_time(outputs["device"], outputs["model"],
                                         segments, sample_rate, val1_start),
  }


def summary(result) -> str:
  """One line: the largest gain difference, the loudest sweep's THD at
  the highest fundamental measured, and the part the model misses most."""
  said = []
  gain_ = result["gain"]
  gaps = [(abs(m - d), part) for part, d, m in zip(
      gain_["parts"], gain_["device_rms_dbfs"], gain_["model_rms_dbfs"])
          if d is not None and m is not None]
  if gaps:
    gap, part = max(gaps)
    said.append(f"the model's gain differs from the device's by up to "
                f"{gap:.2f} dB over the level steps (at {part})")
  rows = [r for r in result["harmonics"]["rows"]
          if r.get("device_thd_pct") is not None]
  if rows:
    row = max(rows, key=lambda r: (r["peak_dbfs"], r["f0_hz"]))
    model_thd = row.get("model_thd_pct")
    said.append(f"THD at {row['f0_hz']:g} Hz, {row['peak_dbfs']:g} dBFS: "
                f"device {row['device_thd_pct']:.3g}%, model "
                + ("-" if model_thd is None else f"{model_thd:.3g}%"))
  parts = [p for p in result["error_over_time"]["parts"]
           if p["esr"] is not None]
  if parts:
    worst = max(parts, key=lambda p: p["esr"])
    said.append(f"the model misses most on {worst['part']} "
                f"({worst['set']}, ESR {worst['esr']:.3g})")
  return "; ".join(said) or "nothing measured"


def write_plots(result, plot_dir) -> list:
  """The four figures of a `compare` result into plot_dir (PLOT_FILES)."""
  drawers = {"gain": plots.level_gain,
             "frequency_response": plots.level_responses,
             "harmonics": plots.harmonic_amplitudes,
             "error_over_time": plots.error_over_time}
  return [drawers[key](result[key], os.path.join(plot_dir, name))
          for key, name in PLOT_FILES.items()]
