"""What a recorded (input, target) pair holds, before training on it.

  python -m emu.datareport INPUT.wav TARGET.wav

  report = data_report(("input.wav", "recorded.wav"))
  print(format_report(report))

reports the duration and sample rate; peak and RMS level (dBFS) and clipped
samples of each side; the latency of the target (samples and ms, as
training finds it, `emu.data.latency.find_latency`: from the first blip,
at any lag, when the input is emu's test signal, else by correlation
within `max_latency_ms`; and at each blip, so clock drift shows); the
device's noise floor in the test signal's silences; and,
when the input plays a segment twice, the device's repeatability: the ESR
between the two recorded repetitions. A model predicts one deterministic
output, so against a target that carries independent noise n its ESR cannot
go below E[n^2] / E[y^2], half the ESR between two recordings: that half is
reported as `esr_floor`, the best ESR any model can reach on this data.
Where the target is silent in the first repetition that ESR is undefined
(`emu.metrics.esr`), as is the latency of a silent side, of files at two
sample rates, or of a pair whose correlation peak cannot be trusted (too
little broadband input, a peak that does not stand out or lies at the edge
of the search: `emu.data.latency.latency_or_reason`): the report gives None
and says why, not a number.

The repeated segment comes from the test signal's layout (`emu.capture.testsignal`:
its sidecar next to the input WAV is found by itself) or is detected by
cross-correlating the input with itself.

The report never refuses a pair it can read: unequal lengths, rates or
channels become `warnings` (training itself, in `emu.data.load_pair`, still
refuses them).
"""

import math
import os
import sys

from absl import logging
import numpy as np

from emu import cli
from emu import data as data_lib
from emu import metrics
from emu import workdir as workdir_lib
from emu.capture import repeat as repeat_lib
from emu.capture import testsignal
from emu.data import files as files_lib
from emu.data import latency as latency_lib
from emu.data import nam_layout

# Below this peak level (dBFS) a side is too quiet to train on well.
QUIET_PEAK_DBFS = -30.0


def _db(value):
  """Amplitude in dB, -inf for silence (a report shows it, never floors it;
  unlike `emu.metrics`'s floored response dB)."""
  return 20.0 * math.log10(value) if value > 0 else -math.inf


def _levels(x):
  """Peak and RMS (dBFS; RMS of a full-scale square = 0 dBFS) and clips."""
  x = np.asarray(x, np.float64)
  return {"peak_dbfs": _db(float(np.max(np.abs(x), initial=0.0))),
          "rms_dbfs": _db(float(np.sqrt(np.mean(x ** 2)))) if len(x) else
                      -math.inf,
          "clipped_samples": int(np.sum(np.abs(x) >= data_lib.CLIP_LEVEL)),
          "dc_offset": float(np.mean(x)) if len(x) else 0.0}


def _read_mono(path, channel, warnings_):
  audio, rate = files_lib.read_audio(path)  # as training reads it
  # As training refuses it (load_pair): no level or latency means anything.
  files_lib.check_finite(audio, path, rate)
  if audio.shape[1] > 1:
    pick = 0 if channel is None else channel
    warnings_.append(f"{path} has {audio.shape[1]} channels; reporting "
                     f"channel {pick} (training reads one: pass "
                     f"--channel={pick} to run.py, or mix it down)")
    return audio[:, pick], rate
  return audio[:, 0], rate


def _onset(y, start, stop):
  """Where in y[start:stop] an answer to a blip starts (samples from
  start): the first sample at a tenth of the window's peak, as
  `emu.data.estimate_latency` reads an impulse response; None when the
  window is silent or lies past the recording's end."""
  window = np.abs(np.asarray(y[max(start, 0):max(stop, 0)], np.float64))
  if len(window) == 0 or window.max() <= data_lib.SILENCE_PEAK:
    return None
  return int(np.nonzero(window >= 0.1 * window.max())[0][0])


# How far a later blip's answer may drift from the first's, seconds.
BLIP_DRIFT_S = 0.01


def _blip_latencies(x, y, blips, first, sample_rate, max_lag):
  """The latency (samples, or None) of the target's answer to each blip.

  first: the first blip's latency when `find_latency` read it from the
  blips, else None. Each later blip's answer is looked for within
  BLIP_DRIFT_S of where the first's latency puts it; without one, within
  max_lag after the blip, up to the next sound of the input.
  """
  out = []
  drift = int(BLIP_DRIFT_S * sample_rate)
  for i, position in enumerate(blips):
    if i == 0 and first is not None:
      out.append(first)
      continue
    if first is not None:
      start = position + first - drift
      onset = _onset(y, start, position + first + drift + 1)
      out.append(None if onset is None else start + onset - position)
      continue
    loud = np.nonzero(np.abs(x[position + 1:position + max_lag + 1]) >
                      data_lib.SILENCE_PEAK)[0]
    stop = position + 1 + (int(loud[0]) if len(loud) else max_lag)
    out.append(_onset(y, position, stop))
  return out


def _read_pair(pair_or_paths, sample_rate, layout, channel, warnings_):
  """(x, y, sample_rate, paths or None, layout, untimed) of two files or
  arrays.

  x and y are float32 [time] cut to their common length; the layout is a
  dict (a files' input sidecar when none is given), or None when there is
  none or it does not fit this input; untimed: why y cannot be timed
  against x sample by sample (files at two rates), or None.
  """
  paths = untimed = None
  if (isinstance(pair_or_paths, (tuple, list)) and
      all(isinstance(p, (str, os.PathLike)) for p in pair_or_paths)):
    paths = [os.fspath(p) for p in pair_or_paths]
    x, rate_x = _read_mono(paths[0], channel, warnings_)
    y, rate_y = _read_mono(paths[1], channel, warnings_)
    if rate_x != rate_y:
      untimed = f"the input is at {rate_x} Hz, the target at {rate_y} Hz"
      warnings_.append(f"{untimed}: resample one so they match")
    if sample_rate is not None and sample_rate != rate_x:
      warnings_.append(f"expected {sample_rate} Hz, the files are at "
                       f"{rate_x} Hz")
    sample_rate = rate_x
    if layout is None:
      # emu's test-signal sidecar, else NAM's v3 reamp input by its shape.
      layout = (testsignal.read_layout(paths[0]) or
                nam_layout.report_layout(len(x), rate_x))
  else:
    if sample_rate is None:
      raise ValueError("pass sample_rate (Hz) with arrays")
    x, y = (pair_or_paths.input, pair_or_paths.target) if hasattr(
        pair_or_paths, "target") else pair_or_paths
  x = np.asarray(x, np.float32).reshape(-1)
  y = np.asarray(y, np.float32).reshape(-1)
  if isinstance(layout, (str, os.PathLike)):
    layout = testsignal.read_layout(os.fspath(layout))
  nam = layout is not None and layout.get("name") == nam_layout.LAYOUT_NAME
  if len(x) != len(y) and not (nam and 0 < len(y) - len(x) <= (
      nam_layout.MAX_EXTRA_SECONDS * sample_rate)):  # NAM cuts the tail
    warnings_.append(
        f"the input has {len(x)} samples, the target {len(y)} "
        f"({1000.0 * abs(len(x) - len(y)) / sample_rate:.1f} ms apart); "
        "measured over the common start, trim them to one length to train")
  n = min(len(x), len(y))
  x, y = x[:n], y[:n]
  if layout is not None and (layout.get("sample_rate") != sample_rate or
                             layout.get("samples", 0) > len(x) + 1):
    warnings_.append(
        "the test-signal layout (sidecar) does not match this input "
        f"({layout.get('sample_rate')} Hz, {layout.get('samples')} samples); "
        "ignoring it")
    layout = None
  return x, y, sample_rate, paths, layout, untimed


def _level_warnings(name, levels, warnings_):
  if levels["clipped_samples"]:
    warnings_.append(
        f"the {name} has {levels['clipped_samples']} samples at or "
        f"above {data_lib.CLIP_LEVEL} of full scale: lower the "
        + ("playback" if name == "input" else "recording") + " level")
  if levels["peak_dbfs"] < QUIET_PEAK_DBFS:
    warnings_.append(
        f"the {name} peaks at {levels['peak_dbfs']:.1f} dBFS: raise "
        "its level (quiet recordings leave the noise floor large)")


def _untimed(x, y, max_lag, untimed, blip):
  """(latency in samples, how, None), or (None, how, why there is none): a
  silent side (the search would return the edge of its range), `untimed`,
  or no answer to the blip and a correlation peak that cannot be trusted."""
  silent = [name for name, a in (("input", x), ("target", y))
            if not np.max(np.abs(a), initial=0.0) > data_lib.SILENCE_PEAK]
  if silent:
    return None, None, "silent " + " and ".join(silent)
  if untimed:
    return None, None, untimed
  return latency_lib.find_latency(x, y, max_lag, blip)


def _latency(x, y, sample_rate, max_latency_ms, layout, report, warnings_,
             untimed=None, compensate_latency=False):
  """The target's latency (samples; 0 where it is unknown, so the rest is
  read unshifted); sets report's "latency" and, with a layout,
  "noise_floor_dbfs"."""
  max_lag = min(int(round(max_latency_ms * sample_rate / 1000.0)),
                max(len(x) - 1, 0))
  blip = files_lib.first_blip(x, sample_rate, layout)
  latency, how, why = _untimed(x, y, max_lag, untimed, blip)
  if latency is None:
    latency = 0
    report["latency"] = {"samples": None, "ms": None,
                         "max_searched_ms": max_latency_ms,
                         "undefined": why}
    if why.startswith(latency_lib.NARROWBAND):
      warnings_.append(f"the latency cannot be measured: {why}")
    elif not why.startswith("silent") and why != untimed:
      warnings_.append(files_lib.lag_refusal("the target", why,
                                             max_latency_ms))
  else:
    report["latency"] = {"samples": int(latency),
                         "ms": 1000.0 * latency / sample_rate,
                         "max_searched_ms": max_latency_ms, "from": how}
  if layout is not None:
    blips = _blip_latencies(x, y, layout.get("blips", []),
                            latency if how == "blips" else None,
                            sample_rate, max_lag)
    report["latency"]["blips_samples"] = blips
    found = [b for b in blips if b is not None]
    if len(found) >= 2 and max(found) - min(found) > 1:
      warnings_.append(
          f"the latency at the blips changes from {found[0]} to "
          f"{found[-1]} samples over the recording: the input and the "
          "recorder run on different clocks (record both on one interface)")
    silences = [s for s in layout["segments"] if s["kind"] == "silence"]
    if silences:
      # The first 10 ms of each silence still ring with what came before.
      skip = int(0.01 * sample_rate)
      quiet = np.concatenate([y[s["start"] + skip + max(latency, 0):s["end"]]
                              for s in silences])
      report["noise_floor_dbfs"] = _db(float(np.sqrt(np.mean(
          quiet.astype(np.float64) ** 2)))) if len(quiet) else None
  report["latency"]["compensated"] = bool(latency and compensate_latency)
  if latency and not compensate_latency:
    fix = ("--layout=nam aligns it by NAM's blips" if layout and
           layout.get("name") == nam_layout.LAYOUT_NAME else
           "align the files, or pass --compensate_latency to run.py "
           "(compensate_latency=True in emu.data.files_dataset), which "
           "shifts the target")
    warnings_.append(
        f"the target {'lags' if latency > 0 else 'leads'} the input by "
        f"{abs(latency)} samples ({abs(report['latency']['ms']):.2f} ms; a "
        f"pure delay, which training needs aligned): {fix}")
  return latency


def data_report(pair_or_paths, sample_rate=None, repeat=None,
                layout=None, channel=None, max_latency_ms=None,
                compensate_latency=False) -> dict:
  """Measures a recorded pair; see the module docstring.

  Args:
    pair_or_paths: (input_path, target_path), or an `emu.data.Pair` or an
      (input, target) tuple of [time] arrays.
    sample_rate: Hz; required with arrays, checked against files.
    repeat: where the input plays a segment twice: {"first": [start, end],
      "second": [start, end]} in input samples, or None to take it from
      `layout` or detect it (`emu.capture.repeat.find_repeat`).
    layout: an `emu.capture.testsignal` layout dict or sidecar path; with paths,
      the input's sidecar is read when present.
    channel: which channel of multi-channel files.
    max_latency_ms: largest latency the correlation searches, ms (None:
      `emu.data.latency.MAX_LATENCY_MS`); emu's test signal is timed by
      its first blip at any lag (`emu.data.latency.find_latency`).
    compensate_latency: the run shifts the target into line (or NAM's
      layout does): a latency is reported as compensated, not a warning.

  Returns:
    A JSON-safe dict (inf levels as strings): "sample_rate", "seconds",
    "samples", "input" and "target" levels, "latency", "noise_floor_dbfs"
    (with a layout), "repeatability" (or None), "warnings".
  """
  warnings_ = []
  x, y, sample_rate, paths, layout, untimed = _read_pair(
      pair_or_paths, sample_rate, layout, channel, warnings_)
  report = {"sample_rate": int(sample_rate), "samples": int(len(x)),
            "seconds": len(x) / sample_rate,
            "files": paths, "test_signal": layout is not None,
            "layout": layout and layout.get("name", "emu test signal")}
  for name, audio in (("input", x), ("target", y)):
    report[name] = _levels(audio)
    _level_warnings(name, report[name], warnings_)
  if max_latency_ms is None:
    max_latency_ms = latency_lib.MAX_LATENCY_MS
  latency = _latency(x, y, sample_rate, max_latency_ms, layout, report,
                     warnings_, untimed, compensate_latency)

  if repeat is None and layout is not None:
    repeat = layout.get("repeat")
  source = "layout" if repeat is not None else None
  if repeat is None:
    repeat = repeat_lib.find_repeat(x, sample_rate)
    source = "detected" if repeat is not None else None
  report["repeatability"] = rep = repeat_lib.repeatability(
      y, repeat, latency, source) if repeat is not None else None
  if rep is not None and rep["esr"] is None:
    warnings_.append(
        f"the repeatability is undefined: {rep['undefined']}; check that "
        "the device's output reaches the recorder")
  elif rep is not None and rep["esr"] > 1e-2:
    warnings_.append(
        f"the two recordings of the repeated segment differ by ESR "
        f"{rep['esr']:.2e}: the device is noisy or drifts (or changed "
        "settings); no model can get below ESR "
        f"{rep['esr_floor']:.2e} on this data")
  report["warnings"] = warnings_
  return metrics.json_safe(report)


def _fmt_db(value):
  return f"{value:.1f}" if isinstance(value, (int, float)) else str(value)


def format_report(d) -> str:
  """The report as a few readable lines."""
  lines = [f"data: {d['seconds']:.1f} s at {d['sample_rate']} Hz "
           f"({d['samples']} samples)" +
           (f", {d.get('layout') or 'emu test signal'}"
            if d.get("test_signal") else "")]
  for name in ("input", "target"):
    side = d[name]
    lines.append(
        f"  {name:6s}  peak {_fmt_db(side['peak_dbfs'])} dBFS, RMS "
        f"{_fmt_db(side['rms_dbfs'])} dBFS, {side['clipped_samples']} "
        f"clipped, DC {side['dc_offset']:+.1e}")
  lat = d["latency"]
  text = (f"  latency undefined ({lat['undefined']})"
          if lat["samples"] is None else
          f"  latency {lat['samples']} samples ({lat['ms']:.2f} ms, from "
          f"the {lat.get('from', 'correlation')}"
          + (", compensated" if lat.get("compensated") else "") + ")")
  if lat.get("blips_samples"):
    text += f"; at the blips {lat['blips_samples']} samples"
  lines.append(text)
  if d.get("noise_floor_dbfs") is not None:
    lines.append(f"  noise floor (target in the silences) "
                 f"{_fmt_db(d['noise_floor_dbfs'])} dBFS RMS")
  lines.append(repeat_lib.repeatability_line(d.get("repeatability"), d["sample_rate"]))
  for warning in d.get("warnings", []):
    lines.append(f"  warning: {warning}")
  return "\n".join(lines)


def report_files(input_path, target_path, workdir=None, log=True,
                 **options) -> dict:
  """data_report of two files, logged and, with workdir, saved as
  workdir/data_report.json; options: data_report's (max_latency_ms, ...).

  `emu.pipeline.run` calls it without workdir before training on files and
  writes the report once every input is checked.
  """
  report = data_report((input_path, target_path), **options)
  if log:
    logging.info("data report\n%s", format_report(report))
  if workdir:
    os.makedirs(workdir, exist_ok=True)
    workdir_lib.write_json(workdir, workdir_lib.DATA_REPORT, report,
                           indent=2)
  return report


def main(argv):
  if len(argv) != 3:
    print("usage: python -m emu.datareport INPUT.wav TARGET.wav",
          file=sys.stderr)
    return 2
  print(format_report(data_report((argv[1], argv[2]))))
  return 0


def run():
  """The command line."""
  cli.run_main(main)


if __name__ == "__main__":
  run()
