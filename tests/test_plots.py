"""Tests for emu.report.plots: each figure writes a PNG."""

import sys

import numpy as np
import pytest
import scipy.signal

from emu.report import plots

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SAMPLE_RATE = 44100


def _assert_png(path, expected):
  assert path == expected
  data = path.read_bytes()
  assert len(data) > 1000 and data.startswith(PNG_MAGIC)


@pytest.fixture(scope="module")
def signals():
  rng = np.random.default_rng(0)
  target = rng.uniform(-0.5, 0.5, 4096)
  return target, target + 0.01 * rng.standard_normal(4096)


def test_available():
  assert plots.available()


def test_training_curves(tmp_path):
  history = [{"epoch": e, "train_loss": 1.0 / e, "val1_esr": 2.0 / e,
              "val2_esr": None if e < 3 else 3.0 / e} for e in range(1, 6)]
  path = tmp_path / "curves" / "training.png"  # The folder is created.
  _assert_png(plots.training_curves(history, path), path)
  with pytest.raises(ValueError, match="empty"):
    plots.training_curves([], tmp_path / "empty.png")


def test_waveforms(tmp_path, signals):
  path = tmp_path / "waveforms.png"
  _assert_png(plots.waveforms(*signals, str(path), SAMPLE_RATE, title="LSTM"),
              path)


def test_spectra(tmp_path, signals):
  path = tmp_path / "spectra.png"
  _assert_png(plots.spectra(*signals, path, SAMPLE_RATE), path)


def test_frequency_response(tmp_path):
  b, a = scipy.signal.butter(2, 440, "highpass", fs=SAMPLE_RATE)
  freqs, h = scipy.signal.freqz(b, a, worN=1024, fs=SAMPLE_RATE)
  path = tmp_path / "response.png"
  _assert_png(plots.frequency_response(
      freqs, {"target": h, "model": 0.9 * h}, path), path)


def test_comparison_bars(tmp_path):
  path = tmp_path / "bars.png"
  _assert_png(plots.comparison_bars(
      ["lstm", "gru", "cnn"], [1e-3, 2e-3, 5e-2], path, "validation ESR"),
              path)


def test_missing_matplotlib_names_the_fix(tmp_path, monkeypatch):
  # A None entry in sys.modules makes `import matplotlib...` fail.
  for name in [m for m in sys.modules if m.startswith("matplotlib")]:
    monkeypatch.delitem(sys.modules, name)
  monkeypatch.setitem(sys.modules, "matplotlib", None)
  monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
  assert not plots.available()
  with pytest.raises(ImportError, match=r"pip install 'emu\[plots\]'"):
    plots.comparison_bars(["a"], [1.0], tmp_path / "x.png", "error")
