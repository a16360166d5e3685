"""The thesis's figures as PNG files (matplotlib, an optional extra).

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
