"""The report's figures as PNG files (matplotlib, an optional extra).

The thesis's figures, and the device beside the model on the test signal
(`emu.report.device_compare`: gain, responses, harmonics, error over time).

Each function draws one figure, writes it to `path` (parent folders are
created) and returns the path as a `pathlib.Path`. matplotlib is imported
lazily; without it the functions raise ImportError naming the fix
(`pip install 'emu[plots]'`) and `available()` is False.

Figures are built with `matplotlib.figure.Figure`, not pyplot: no GUI
backend is needed (headless machines), the process-wide backend is left as
the user set it (a notebook keeps its inline plots), and nothing is kept in
pyplot's registry of open figures.
"""

import importlib.util
import os
import pathlib
from typing import Mapping, Sequence, Union

import numpy as np
import scipy.signal

PathLike = Union[str, os.PathLike]

_INSTALL_HINT = ("plots need matplotlib: pip install 'emu[plots]' "
                 "(or pip install matplotlib)")


def available() -> bool:
  """True when matplotlib can be imported."""
  try:
    return importlib.util.find_spec("matplotlib") is not None
  except ValueError:  # A module set to None in sys.modules.
    return False


def _figure(rows: int = 1, height: float = 3.5, sharex: bool = False):
  """A fresh (figure, axes list) of `rows` stacked panels."""
  try:
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(_INSTALL_HINT) from error
  figure = Figure(figsize=(8, height * rows), layout="constrained")
  axes = figure.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0]
  return figure, list(axes)


def _save(figure, path: PathLike) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, format="png", dpi=100)
  return path


def _mono(a) -> np.ndarray:
  a = np.asarray(a, dtype=np.float64)
  return a[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a


def training_curves(history: Sequence[Mapping[str, float]],
                    path: PathLike) -> pathlib.Path:
  """Loss and validation ESR per epoch on a log scale (thesis Fig. 10/14/16).

  Args:
    history: one dict per epoch with 'epoch', 'train_loss', 'val1_esr' and
      optionally 'val2_esr'; missing or None values are skipped.
    path: PNG to write.
  """
  if not history:
    raise ValueError("training_curves: empty history")
  figure, (axis,) = _figure()
  all_positive = True
  for key, label in (("train_loss", "training loss"),
                     ("val1_esr", "validation 1 ESR"),
                     ("val2_esr", "validation 2 ESR")):
    points = [(row["epoch"], row[key]) for row in history
              if row.get(key) is not None and np.isfinite(row[key])]
    if points:
      epochs, values = zip(*points)
      axis.plot(epochs, values, label=label)
      all_positive &= min(values) > 0
  # A loss can be 0 or negative in principle; log scale only when it can.
  axis.set_yscale("log" if all_positive else "linear")
  axis.set_xlabel("epoch")
  axis.set_ylabel("error")
  axis.grid(True, which="both", alpha=0.3)
  axis.legend()
  return _save(figure, path)


def waveforms(target, output, path: PathLike, sample_rate: float,
              title: str = "") -> pathlib.Path:
  """Target, output and their difference in three panels (Fig. 15/17/19).

  Args:
    target, output: [time] signals of the same length.
    path: PNG to write.
    sample_rate: Hz, for the time axis in seconds.
    title: figure title.
  """
  target, output = _mono(target), _mono(output)
  if target.shape != output.shape:
    raise ValueError(f"target {target.shape} and output {output.shape} differ")
  seconds = np.arange(target.size) / sample_rate
  figure, axes = _figure(rows=3, height=2.2, sharex=True)
  for axis, signal, label in zip(
      axes, (target, output, output - target),
      ("target", "output", "output - target")):
    axis.plot(seconds, signal, linewidth=0.6)
    axis.set_ylabel(label)
    axis.grid(True, alpha=0.3)
  axes[-1].set_xlabel("time (s)")
  if title:
    figure.suptitle(title)
  return _save(figure, path)


def spectra(target, output, path: PathLike,
            sample_rate: float) -> pathlib.Path:
  """Welch magnitude spectra (dB vs log frequency) of output and target.

  Thesis Fig. 12/13. Segments of up to 8192 samples.
  """
  figure, (axis,) = _figure()
  for signal, label in ((target, "target"), (output, "output")):
    signal = _mono(signal)
    freqs, power = scipy.signal.welch(
        signal, fs=sample_rate, nperseg=min(8192, signal.size))
    # Skip DC, which a log axis cannot show; floor keeps log10 finite.
    axis.semilogx(freqs[1:], 10 * np.log10(power[1:] + 1e-20), label=label,
                  linewidth=0.8)
  axis.set_xlabel("frequency (Hz)")
  axis.set_ylabel("power spectral density (dB/Hz)")
  axis.grid(True, which="both", alpha=0.3)
  axis.legend()
  return _save(figure, path)


def frequency_response(freqs, responses: Mapping[str, np.ndarray],
                       path: PathLike) -> pathlib.Path:
  """Magnitude (dB) and phase (degrees) of complex responses, 20 Hz-20 kHz.

  Args:
    freqs: [bins] Hz, shared by every response.
    responses: label -> complex [bins], e.g. {'target': h, 'model': h_hat}.
    path: PNG to write.
  """
  freqs = np.asarray(freqs, dtype=np.float64)
  if not responses:
    raise ValueError("frequency_response: no responses to plot")
  # Only the audible band, so the y axes scale to it (a log x axis cannot
  # show DC anyway).
  keep = (freqs >= 20.0) & (freqs <= 20000.0)
  if not np.any(keep):
    keep = freqs > 0
  figure, (magnitude, phase) = _figure(rows=2, height=3.0, sharex=True)
  for label, h in responses.items():
    h = np.asarray(h)
    if h.shape != freqs.shape:
      raise ValueError(f"response {label!r} has shape {h.shape}, freqs "
                       f"{freqs.shape}")
    magnitude.semilogx(freqs[keep], 20 * np.log10(np.abs(h[keep]) + 1e-12),
                       label=label)
    phase.semilogx(freqs[keep], np.degrees(np.angle(h[keep])), label=label)
  magnitude.set_ylabel("magnitude (dB)")
  phase.set_ylabel("phase (degrees)")
  phase.set_xlabel("frequency (Hz)")
  for axis in (magnitude, phase):
    axis.grid(True, which="both", alpha=0.3)
  magnitude.legend()
  return _save(figure, path)


def comparison_bars(names: Sequence[str], values: Sequence[float],
                    path: PathLike, ylabel: str) -> pathlib.Path:
  """Bars of one error per model on a log scale (thesis Fig. 20)."""
  if len(names) != len(values) or not names:
    raise ValueError(f"need one value per name, got {len(names)} names and "
                     f"{len(values)} values")
  values = np.asarray(values, dtype=np.float64)
  figure, (axis,) = _figure()
  axis.bar(list(names), values)
  axis.set_yscale("log" if np.all(values > 0) else "linear")
  axis.set_ylabel(ylabel)
  axis.grid(True, axis="y", which="both", alpha=0.3)
  return _save(figure, path)


# The device beside the model (`emu.report.device_compare`): each figure
# draws one part of report.json's "device_vs_model", the device solid with
# circles, the model dashed with crosses, one colour per level or kind.
_SIDE_STYLE = {"device": {"linestyle": "-", "marker": "o"},
               "model": {"linestyle": "--", "marker": "x"}}


def _colours(count):
  return [f"C{i % 10}" for i in range(count)]


def _floats(values):
  """A report list as floats, None (null, 'nan') as NaN: a gap."""
  return np.array([np.nan if v is None or isinstance(v, str) else v
                   for v in values], dtype=np.float64)


def level_gain(gain: Mapping, path: PathLike) -> pathlib.Path:
  """Output less input RMS level (dB) against the input's (dBFS), per kind
  of level step (white, pink, brown noise; the sweeps), device and model."""
  groups = {}
  for i, kind in enumerate(gain["kinds"]):
    groups.setdefault("sweep" if kind.startswith("sweep") else kind,
                      []).append(i)
  figure, (axis,) = _figure()
  x_in = _floats(gain["input_rms_dbfs"])
  for colour, (kind, index) in zip(_colours(len(groups)), groups.items()):
    index = sorted(index, key=lambda i: x_in[i])
    for side, style in _SIDE_STYLE.items():
      out = _floats(gain[f"{side}_rms_dbfs"])
      axis.plot(x_in[index], out[index] - x_in[index], color=colour,
                label=f"{side}: {kind}", **style)
  axis.set_xlabel("input RMS level (dBFS)")
  axis.set_ylabel("gain: output - input RMS (dB)")
  axis.set_title("Level-dependent gain (device solid, model dashed)")
  axis.grid(True, alpha=0.3)
  axis.legend(fontsize="small", ncol=2)
  return _save(figure, path)


def level_responses(response: Mapping, path: PathLike) -> pathlib.Path:
  """|H| (dB) per input level: the sweeps in one panel, white noise in the
  other, device and model."""
  freqs = _floats(response["freqs_hz"])
  panels = [(method, [c for c in response["curves"] if c["method"] == method])
            for method in ("sweep", "noise")]
  panels = [(m, c) for m, c in panels if c]
  if not panels:
    raise ValueError("level_responses: no curves to plot")
  figure, axes = _figure(rows=len(panels), height=3.0, sharex=True)
  for axis, (method, curves) in zip(axes, panels):
    for colour, curve in zip(_colours(len(curves)), curves):
      for side, style in _SIDE_STYLE.items():
        axis.semilogx(freqs, _floats(curve[f"{side}_db"]), color=colour,
                      markersize=3, label=f"{side}: {curve['part']} "
                      f"({curve['peak_dbfs']:g} dBFS peak)", **style)
    axis.set_ylabel("magnitude (dB)")
    axis.set_title("sweeps, deconvolved" if method == "sweep" else
                   "white noise, H1 = Pxy / Pxx", fontsize="medium")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize="x-small", ncol=2)
  axes[-1].set_xlabel("frequency (Hz)")
  figure.suptitle("Frequency response per input level "
                  "(device solid, model dashed)")
  return _save(figure, path)


def harmonic_amplitudes(harmonics: Mapping, path: PathLike
                        ) -> pathlib.Path:
  """Harmonic amplitudes (dBFS) against order, one panel per sweep level,
  one colour per fundamental, device and model."""
  parts = list(dict.fromkeys(row["part"] for row in harmonics["rows"]))
  if not parts:
    raise ValueError("harmonic_amplitudes: no rows to plot")
  orders = np.asarray(harmonics["orders"])
  figure, axes = _figure(rows=len(parts), height=3.0, sharex=True)
  for axis, part in zip(axes, parts):
    rows = [r for r in harmonics["rows"] if r["part"] == part]
    lowest = []
    for colour, row in zip(_colours(len(rows)), rows):
      for side, style in _SIDE_STYLE.items():
        values = _floats(row[f"{side}_dbfs"])
        lowest.append(np.nanmax(values) - 120.0)
        thd = row.get(f"{side}_thd_pct")
        axis.plot(orders, values, color=colour, label=(
            f"{side}: {row['f0_hz']:g} Hz" +
            (f", THD {thd:.3g}%" if thd is not None else "")), **style)
    axis.set_ylim(bottom=min(lowest))
    axis.set_title(f"{part} ({rows[0]['peak_dbfs']:g} dBFS peak)",
                   fontsize="medium")
    axis.set_ylabel("amplitude (dBFS)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="x-small", ncol=2)
  axes[-1].set_xlabel("harmonic (1 = fundamental)")
  axes[-1].set_xticks(orders)
  figure.suptitle("Harmonics as the sweep passes each fundamental "
                  "(device solid, model dashed)")
  return _save(figure, path)


def error_over_time(error: Mapping, path: PathLike) -> pathlib.Path:
  """The device's level and the model's error level (dBFS), and ESR, in
  short windows across the test signal; its parts named, val1 shaded."""
  window = float(error["window_s"])
  times = (np.arange(len(error["esr"])) + 0.5) * window
  figure, (levels, esr) = _figure(rows=2, height=2.8, sharex=True)
  levels.plot(times, _floats(error["device_dbfs"]), linewidth=0.8,
              label="device output")
  levels.plot(times, _floats(error["error_dbfs"]), linewidth=0.8,
              label="error: model - device")
  esr_values = _floats(error["esr"])
  esr.plot(times, esr_values, linewidth=0.8, color="C3")
  if np.any(esr_values > 0):
    esr.set_yscale("log")
  end = times[-1] + window / 2 if times.size else 0.0
  for axis in (levels, esr):
    axis.axvspan(error["val1_start_s"], end, color="0.85", zorder=0,
                 label="val1 (held out)" if axis is levels else None)
    for part in error["parts"]:
      axis.axvline(part["start_s"], color="0.6", linewidth=0.5)
    axis.grid(True, alpha=0.3)
  for part in error["parts"]:
    levels.text(part["start_s"], 1.0, f" {part['part']}", rotation=90,
                fontsize="xx-small", va="top", ha="left",
                transform=levels.get_xaxis_transform())
  levels.set_ylabel("RMS level (dBFS)")
  levels.legend(fontsize="x-small", loc="lower left")
  esr.set_ylabel(f"ESR per {window * 1000:g} ms")
  esr.set_xlabel("time in the test signal (s)")
  figure.suptitle("Where in the signal the model misses")
  return _save(figure, path)
