"""emu.capture.datareport on a simulated device recording emu's test signal."""

import json
import math

import numpy as np
import pytest
import soundfile as sf

from emu import data as data_lib
from emu.capture import datareport
from emu.capture import repeat
from emu import effects
from emu.capture import testsignal

RATE = 48000
SECONDS = testsignal.MIN_SECONDS
DELAY = 5  # samples
NOISE = 1e-3  # RMS of the device's own noise, -60 dBFS


def _device(x, noise=NOISE, delay=DELAY, seed=1):
  """A 440 Hz high-pass that answers `delay` samples late, plus noise."""
  clean = np.asarray(effects.highpass(x, 440.0, RATE), np.float32)
  y = np.concatenate([np.zeros(delay, np.float32), clean[:len(x) - delay]])
  y = y + np.random.default_rng(seed).normal(0.0, noise, len(y))
  return clean, y.astype(np.float32)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
  """The test signal as played and as recorded through `_device`."""
  folder = tmp_path_factory.mktemp("rec")
  input_path = str(folder / "input.wav")
  layout = testsignal.write(input_path, RATE, SECONDS, subtype="FLOAT")
  x, _ = sf.read(input_path, dtype="float32")
  clean, y = _device(x)
  target_path = str(folder / "recorded.wav")
  sf.write(target_path, y, RATE, subtype="FLOAT")
  return {"x": x, "y": y, "clean": clean, "layout": layout,
          "input": input_path, "target": target_path, "folder": folder}


def _expected_repeat_esr(recording):
  a0, a1 = recording["layout"]["repeat"]["first"]
  power = np.mean(recording["clean"][a0:a1].astype(np.float64) ** 2)
  return 2.0 * NOISE ** 2 / power


def test_report_finds_delay_noise_floor_and_repeatability(recording):
  # When the pair is reported from its files (the sidecar is found)
  report = datareport.data_report((recording["input"], recording["target"]))
  # Then the delay, from the cross-correlation and from both blips,
  assert report["test_signal"]
  assert report["latency"]["samples"] == DELAY
  assert report["latency"]["ms"] == pytest.approx(1000.0 * DELAY / RATE)
  assert report["latency"]["blips_samples"] == [DELAY, DELAY]
  # the device's noise floor, and its repeatability ~ the noise it adds
  assert report["noise_floor_dbfs"] == pytest.approx(-60.0, abs=0.5)
  rep = report["repeatability"]
  assert rep["source"] == "layout"
  assert rep["esr"] == pytest.approx(_expected_repeat_esr(recording),
                                     rel=0.15)
  assert rep["esr_floor"] == pytest.approx(rep["esr"] / 2)
  assert report["input"]["peak_dbfs"] == pytest.approx(-1.0, abs=0.01)
  assert report["input"]["clipped_samples"] == 0
  assert any("lags the input by 5 samples" in w for w in report["warnings"])
  text = datareport.format_report(report)
  assert "latency 5 samples" in text and "repeatability (layout" in text
  assert json.loads(json.dumps(report)) == report


def test_load_pair_aligns_the_simulated_device(recording):
  pair, rate = data_lib.load_pair(recording["input"], recording["target"],
                                  compensate_latency=True)
  assert rate == RATE and len(pair.input) == len(recording["x"]) - DELAY
  # Aligned, the target is the clean response plus the device's noise only.
  residual = pair.target - recording["clean"][:len(pair.target)]
  assert np.sqrt(np.mean(residual.astype(np.float64) ** 2)) == pytest.approx(
      NOISE, rel=0.05)
  np.testing.assert_array_equal(pair.input, recording["x"][:-DELAY])


def test_noiseless_device_repeats_exactly(recording):
  _, y = _device(recording["x"], noise=0.0)
  report = datareport.data_report((recording["x"], y), RATE,
                                  layout=recording["layout"])
  assert report["repeatability"]["esr"] < 1e-12
  assert report["latency"]["samples"] == DELAY


def test_a_silent_repeat_is_undefined_not_a_perfect_device(recording):
  # Given a recording that holds nothing while the repeat plays
  y = recording["y"].copy()
  (a0, _), (_, b1) = (recording["layout"]["repeat"][c]
                      for c in ("first", "second"))
  y[a0:b1 + DELAY] = 0.0
  report = datareport.data_report((recording["x"], y), RATE,
                                  layout=recording["layout"])
  # Then the ESR is undefined, with the reason, and never a number
  rep = report["repeatability"]
  assert rep["esr"] is None and rep["esr_floor"] is None
  assert "silent" in rep["undefined"]
  assert any("repeatability is undefined" in w for w in report["warnings"])
  assert "repeatability (layout" in datareport.format_report(report)
  assert json.loads(json.dumps(report)) == report


def test_repeat_is_detected_without_a_layout(recording):
  # Given arrays and no layout, the input's own autocorrelation finds it
  report = datareport.data_report((recording["x"], recording["y"]), RATE)
  rep = report["repeatability"]
  assert rep["source"] == "detected"
  block = int(repeat.REPEAT_BLOCK_SECONDS * RATE)
  for copy in ("first", "second"):
    np.testing.assert_allclose(rep[copy], recording["layout"]["repeat"][copy],
                               atol=block)
  assert rep["esr"] == pytest.approx(_expected_repeat_esr(recording),
                                     rel=0.15)


def test_no_repeat_and_problems_are_reported():
  rng = np.random.default_rng(0)
  x = rng.uniform(-0.5, 0.5, RATE).astype(np.float32)
  y = np.clip(4.0 * x, -1.0, 1.0)  # a clipping device
  report = datareport.data_report((x, y[:-100]), RATE)
  assert report["repeatability"] is None
  assert report["samples"] == RATE - 100
  assert report["target"]["clipped_samples"] > 0
  text = datareport.format_report(report)
  assert "no repeated segment" in text
  assert "clipped" in text
  assert any("the target 47900" in w for w in report["warnings"])
  quiet = datareport.data_report((x * 1e-3, x * 1e-3), RATE)
  assert any("raise its level" in w for w in quiet["warnings"])
  silent = datareport.data_report((x, np.zeros_like(x)), RATE)
  assert silent["target"]["peak_dbfs"] == str(-math.inf)
  # nothing answers: no latency, rather than the edge of the search
  assert silent["latency"]["samples"] is None
  assert "latency undefined (silent target)" in datareport.format_report(
      silent)


def test_report_files_writes_json(recording):
  workdir = recording["folder"] / "run"
  report = datareport.report_files(recording["input"], recording["target"],
                                   workdir=str(workdir), log=False)
  with open(workdir / "data_report.json") as f:
    assert json.load(f) == report


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_file_is_refused_as_training_refuses_it(tmp_path, bad):
  # Given a target with one NaN (or inf) sample, then the report stops with
  # load_pair's message (count and place) instead of formatting "nan" levels.
  x = (0.3 * np.random.default_rng(0).normal(size=RATE)).astype(np.float32)
  y = x.copy()
  y[100] = bad
  sf.write(tmp_path / "in.wav", x, RATE)
  sf.write(tmp_path / "out.wav", y, RATE, subtype="FLOAT")
  paths = (str(tmp_path / "in.wav"), str(tmp_path / "out.wav"))
  want = "out.wav has 1 NaN/inf samples \\(first at sample 100"
  with pytest.raises(data_lib.DataError, match=want):
    datareport.data_report(paths)
  with pytest.raises(data_lib.DataError, match=want):
    data_lib.load_pair(*paths)
