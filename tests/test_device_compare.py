"""emu.report.device_compare: the device beside the model on the test signal.

Devices of known response stand in for the recording and the model: a
Butterworth band-pass (scipy's own response is the answer), a plain gain,
and tanh (its Fourier series and, on uniform noise, its closed-form RMS).
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from emu import config as config_lib
from emu import models
from emu import signals
from emu.capture import testsignal
from emu.data import files as files_lib
from emu.report import device_compare
from emu.report import evaluate
from emu.report import plots
from emu.report import run_page

RATE = 16000


@pytest.fixture(scope="module")
def made():
  """The shortest test signal at 16 kHz (float64) and its layout."""
  audio, layout = testsignal.make(RATE, testsignal.MIN_SECONDS)
  return audio.astype(np.float64), layout


def _part(layout, name):
  return next(s for s in layout["segments"] if s["name"] == name)


def _compare(made, device, model):
  x, layout = made
  return device_compare.compare(x, device(x), model(x), layout, RATE,
                                int(0.9 * len(x)))


def _band_pass():
  return scipy.signal.butter(2, [300.0, 3000.0], btype="band", fs=RATE,
                             output="sos")


def test_a_linear_device_shows_its_filter_and_a_gain_shows_6_db(made):
  # Given a band-pass as the device and half the input as the model,
  sos = _band_pass()
  result = _compare(made, lambda x: scipy.signal.sosfilt(sos, x),
                    lambda x: 0.5 * x)
  response = result["frequency_response"]
  freqs = np.array(response["freqs_hz"])
  _, h = scipy.signal.sosfreqz(sos, worN=freqs, fs=RATE)
  true_db = 20 * np.log10(np.abs(h))
  half_db = 20 * math.log10(0.5)
  curves = {c["part"]: c for c in response["curves"]}
  # then each sweep, deconvolved, gives scipy's response at both levels
  # (where it is within 30 dB of the top),
  assert set(curves) == {"sweep_up", "sweep_down", "white_-30dB",
                         "white_-18dB", "white_-6dB"}
  audible = true_db > -30
  for part in ("sweep_up", "sweep_down"):
    np.testing.assert_allclose(np.array(curves[part]["device_db"])[audible],
                               true_db[audible], atol=0.1)
  # white noise (H1, a third of a second of it) within 1 dB from 200 Hz
  # to 0.3 of the rate, and the model's gain is 6.02 dB down everywhere
  # (the sweeps' 25 ms impulse responses blur the lowest points with the
  # band below their 20 Hz start by 0.03 dB).
  band = audible & (freqs >= 200) & (freqs <= 0.3 * RATE)
  for part, curve in curves.items():
    if part.startswith("white"):
      np.testing.assert_allclose(np.array(curve["device_db"])[band],
                                 true_db[band], atol=1.0)
    np.testing.assert_allclose(curve["model_db"], half_db, atol=0.05)
  gain = result["gain"]
  np.testing.assert_allclose(np.subtract(gain["model_rms_dbfs"],
                                         gain["input_rms_dbfs"]),
                             half_db, atol=0.011)
  # A linear device makes no harmonics: the fundamental at 1 kHz is the
  # filter's gain on the sweep, the rest 80 dB below it.
  for row in result["harmonics"]["rows"]:
    fundamental, *others = row["device_dbfs"]
    if row["f0_hz"] == 1000.0:
      at_1k = true_db[np.argmin(np.abs(freqs - 1000.0))]
      _, h_1k = scipy.signal.sosfreqz(sos, worN=[1000.0], fs=RATE)
      assert fundamental == pytest.approx(
          row["input_dbfs"] + 20 * np.log10(abs(h_1k[0])), abs=0.05)
      assert at_1k == pytest.approx(0.0, abs=0.5)
    assert max(o for o in others if o is not None) < fundamental - 80
    assert row["device_thd_pct"] < 0.01


def _tanh_series(gain, amplitude, offset, orders):
  """Amplitudes of harmonics 1..orders of tanh(gain (a sin t + offset)),
  from a dense FFT of one period."""
  theta = 2 * np.pi * np.arange(4096) / 4096
  spectrum = np.fft.rfft(np.tanh(gain * (amplitude * np.sin(theta) +
                                         offset)))
  return 2 * np.abs(spectrum[1:orders + 1]) / 4096


def _aliased(series, f0, k):
  """The amplitude folded onto harmonic k by the harmonics above Nyquist
  (a digital tanh aliases them): those landing within f0 / 2 of k f0."""
  power = 0.0
  for m, amplitude in enumerate(series, start=1):
    folded = abs((m * f0 + RATE / 2) % RATE - RATE / 2)
    if m * f0 > RATE / 2 and abs(folded - k * f0) < f0 / 2:
      power += amplitude ** 2
  return math.sqrt(power)


def _sweep_sine(made, kind):
  """(amplitude, offset) of a test-signal sweep away from its fades: the
  part is emu.signals.sweep less its mean, peak-normalised to its level."""
  _, layout = made
  part = _part(layout, kind)
  low, high = testsignal.SWEEP_LOW_HZ, min(20000.0, 0.45 * RATE)
  start, end = (low, high) if kind == "sweep_up" else (high, low)
  raw = np.asarray(signals.sweep(part["end"] - part["start"], RATE, start,
                                 end), np.float64)
  mean = raw.mean()
  scale = 10 ** (part["peak_dbfs"] / 20) / np.max(np.abs(raw - mean))
  return scale, -mean * scale


def test_tanh_compresses_and_makes_its_fourier_series(made):
  # Given tanh(3 x) as the device (and the model),
  drive = 3.0
  result = _compare(made, lambda x: np.tanh(drive * x),
                    lambda x: np.tanh(drive * x))
  # then on uniform white noise of peak a its gain is the closed form:
  # E[tanh(g x)^2] = 1 - tanh(g a) / (g a), E[x^2] = a^2 / 3;
  gain = result["gain"]
  for part, x_db, y_db in zip(gain["parts"], gain["input_rms_dbfs"],
                              gain["device_rms_dbfs"]):
    if part.startswith("white"):
      a = 10 ** (_part(made[1], part)["peak_dbfs"] / 20)
      ga = drive * a
      expected = (10 * math.log10(1 - math.tanh(ga) / ga) -
                  10 * math.log10(a * a / 3))
      assert y_db - x_db == pytest.approx(expected, abs=0.1), part
  # it compresses: 2.7 dB less gain at -6 dBFS than at -30.
  white = dict(zip(gain["parts"], np.subtract(gain["device_rms_dbfs"],
                                              gain["input_rms_dbfs"])))
  assert white["white_-30dB"] - white["white_-6dB"] > 2.5
  # Each sweep's harmonics are tanh's Fourier series for a sine of the
  # sweep's amplitude and offset (the rising sweep's slow start leaves it
  # one: even harmonics too), within 0.2 dB down to -100 dBFS, where
  # what aliases onto them lies 40 dB below.
  checked = 0
  for row in result["harmonics"]["rows"]:
    amplitude, offset = _sweep_sine(made, row["part"])
    series = _tanh_series(drive, amplitude, offset, 200)
    expected = 20 * np.log10(series[:device_compare.ORDERS])
    for k, (measured, want) in enumerate(zip(row["device_dbfs"], expected),
                                         start=1):
      clean = _aliased(series, row["f0_hz"], k) < 0.01 * series[k - 1]
      if measured is not None and want > -100 and clean:
        assert measured == pytest.approx(want, abs=0.2), (row["part"], k)
        checked += 1
    assert row["input_dbfs"] == pytest.approx(20 * math.log10(amplitude),
                                              abs=0.02)
    below = int(0.45 * RATE // row["f0_hz"])
    thd = 100 * np.sqrt(np.sum(series[1:below] ** 2)) / series[0]
    assert row["device_thd_pct"] == pytest.approx(thd, rel=0.02)
    assert row["model_dbfs"] == row["device_dbfs"]
  assert checked >= 20


def test_error_over_time_finds_the_part_the_model_misses(made):
  x, layout = made
  missed = _part(layout, "pink_-3dB")

  def model(x):  # the device, but 10% low in one part: ESR 0.01 there
    y = np.tanh(2 * x)
    y[missed["start"]:missed["end"]] *= 0.9
    return y

  result = _compare(made, lambda x: np.tanh(2 * x), model)
  error = result["error_over_time"]
  parts = {p["part"]: p for p in error["parts"]}
  assert parts["pink_-3dB"]["esr"] == pytest.approx(0.01, rel=1e-6)
  assert all(p["esr"] == 0.0 for name, p in parts.items()
             if name != "pink_-3dB")
  assert "silence_head" not in parts and "blip" not in parts
  # Windows wholly inside the part read 0.01, the others 0 (or None where
  # the device is 60 dB below its loudest), and the sets are marked.
  window = error["window_s"]
  assert len(error["esr"]) == int(len(x) // round(window * RATE))
  for i, esr in enumerate(error["esr"]):
    start, end = i * window * RATE, (i + 1) * window * RATE
    if missed["start"] <= start and end <= missed["end"]:
      assert esr == pytest.approx(0.01, rel=1e-6)
    elif end <= missed["start"] or start >= missed["end"]:
      assert esr in (0.0, None)
  assert error["val1_start_s"] == pytest.approx(0.9 * len(x) / RATE,
                                                abs=1e-3)
  assert parts["sweep_up"]["set"] == "train"
  assert parts["played"]["set"] == "both"
  assert "pink_-3dB" in device_compare.summary(result)


def _write_pair(folder, made, device, lag=0, layout=True):
  """in.wav (+ its layout) and rec.wav, the device's output lagging by
  `lag` samples (leading when negative)."""
  x, made_layout = made
  y = np.roll(device(x), lag)
  sf.write(folder / "in.wav", x.astype(np.float32), RATE, subtype="FLOAT")
  sf.write(folder / "rec.wav", y.astype(np.float32), RATE, subtype="FLOAT")
  if layout:
    with open(files_lib.layout_path(str(folder / "in.wav")), "w") as f:
      json.dump(made_layout, f)
  return config_lib.Config(dataset="files", train_input=str(folder / "in.wav"),
                           train_target=str(folder / "rec.wav"),
                           compensate_latency=bool(lag), sample_rate=RATE)


@pytest.mark.parametrize("lag", [0, 7, -7])
def test_the_recording_is_found_where_latency_trimmed_it(made, tmp_path, lag):
  # Given a recording of the test signal through a gain, late or early,
  cfg = _write_pair(tmp_path, made, lambda x: 0.5 * x, lag)
  dataset = files_lib.files_dataset(cfg.train_input, cfg.train_target,
                                    compensate_latency=bool(lag))
  x, y, layout, val1_start = device_compare.recording(dataset, cfg)
  # then the layout moves with what compensation trimmed off the start,
  assert len(x) == len(made[0]) - abs(lag)
  assert val1_start == len(dataset.train.input)
  for part in layout["segments"]:
    original = _part(made[1], part["name"])
    shift = original["start"] - part["start"]
    assert shift == max(-lag, 0)
    np.testing.assert_array_equal(
        x[part["start"]:part["end"]],
        made[0][original["start"]:original["end"]].astype(np.float32))
  # and every level step reads the device's 6.02 dB down.
  gain = device_compare.gain(x, {"device": y}, layout["segments"], RATE)
  np.testing.assert_allclose(np.subtract(gain["device_rms_dbfs"],
                                         gain["input_rms_dbfs"]),
                             20 * math.log10(0.5), atol=0.011)


def test_a_run_on_the_test_signal_reports_device_and_model(made, tmp_path):
  # Given a model evaluated on a recording of the test signal,
  cfg = _write_pair(tmp_path, made, lambda x: np.tanh(2 * x)).replace(
      model="lstm", model_kwargs={"hidden_size": 4})
  dataset = files_lib.files_dataset(cfg.train_input, cfg.train_target)
  model = models.build_model(cfg)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 1)))
  workdir = tmp_path / "run"
  evaluate.evaluate(model, params, dataset, str(workdir), cfg=cfg,
                    stream_blocks=())
  report = json.loads((workdir / "report.json").read_text())
  # then report.json holds the four measurements of both sides,
  result = report[device_compare.KEY]
  assert set(result) >= {"gain", "frequency_response", "harmonics",
                         "error_over_time"}
  gain = result["gain"]
  assert len(gain["model_rms_dbfs"]) == len(gain["parts"]) == 9
  white_30 = gain["parts"].index("white_-30dB")
  assert (gain["device_rms_dbfs"][white_30] -
          gain["input_rms_dbfs"][white_30]) == pytest.approx(
              20 * math.log10(2), abs=0.05)  # tanh(2x) is 2x when quiet
  assert all(len(c["model_db"]) == len(result["frequency_response"][
      "freqs_hz"]) for c in result["frequency_response"]["curves"])
  # and the page shows them with their figures, not again under Plots.
  page = open(run_page.write_report_html(str(workdir),
                                         listening_test=False)).read()
  assert "Device and model on the test signal" in page
  assert "device THD (%)" in page and "white_-30dB" in page
  if plots.available():
    for name in device_compare.PLOT_FILES.values():
      assert (workdir / "plots" / name).exists()
      assert page.count(f'alt="{name}"') == 1


def test_a_recording_of_another_signal_says_why_it_has_no_section(
    made, tmp_path):
  # Given a pair whose input has no layout beside it,
  cfg = _write_pair(tmp_path, made, lambda x: 0.5 * x, layout=False)
  dataset = files_lib.files_dataset(cfg.train_input, cfg.train_target)
  note = device_compare.recording(dataset, cfg)
  # then there is one line saying why, and none at all for other data;
  assert isinstance(note, str) and "in.layout.json" in note
  assert "not emu's test signal" in note
  assert device_compare.recording(dataset, cfg.replace(
      dataset="thesis_mini", train_input="", train_target="")) is None
  # the page shows that line where the section would be.
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "report.json").write_text(json.dumps(
      {"model": "lstm", "dataset": "files_in", "val1": {"esr": 0.1},
       device_compare.KEY: {"skipped": note}}))
  page = open(run_page.write_report_html(str(workdir),
                                         listening_test=False)).read()
  assert "Device and model on the test signal" in page
  assert "not emu&#x27;s test signal" in page
