"""emu.pipeline: the whole run as a library call, and the run folder it
leaves (emu.workdir)."""

import numpy as np
import pytest
import scipy.signal

from emu import config as config_lib
from emu.report import evaluate
from emu import metrics
from emu import pipeline
from emu import workdir
from emu.report import speed
from emu.train import restore

RATE = 48000


@pytest.fixture(scope="module")
def lru_48k(tmp_path_factory):
  """A tiny one-mode lru trained for two epochs on the HPF-440 recipe at
  48 kHz: (workdir, report)."""
  cfg = config_lib.Config(
      model="lru", model_kwargs={"state_size": 1, "num_layers": 1},
      sample_rate=RATE, train_seconds=1.5, val1_seconds=0.5,
      segment_length=4096, warmup=1024, batch_size=4, learning_rate=0.1,
      max_epochs=2, stream_blocks=())
  path = str(tmp_path_factory.mktemp("lru48k"))
  return path, pipeline.run(cfg, path)


def test_the_model_takes_its_sample_rate_from_the_data(lru_48k):
  path, _ = lru_48k
  model, params, _ = restore.load_params(path)
  assert model.sample_rate == RATE
  # The lru's own (analytic) response, at the rate it was built with, is
  # the response measured from its impulse response at the data's rate: a
  # model built at 44.1 kHz would put every frequency 8.8% off.
  freqs = np.geomspace(50.0, 15000.0, 64)
  analytic = model.frequency_response(params, freqs)
  measured = evaluate.model_response(model, params, freqs, RATE)
  np.testing.assert_allclose(analytic, measured, rtol=1e-4, atol=1e-6)


def test_the_report_checks_the_response_against_the_true_eq_at_48k(lru_48k):
  path, report = lru_48k
  model, params, _ = restore.load_params(path)
  freqs = np.geomspace(20.0, 20000.0, evaluate.RESPONSE_POINTS)
  # The true EQ from scipy (2nd-order Butterworth high-pass at 440 Hz).
  b, a = scipy.signal.butter(2, 440.0, "highpass", fs=RATE)
  _, h_true = scipy.signal.freqz(b, a, worN=freqs, fs=RATE)
  expected = metrics.analytic_response_error(
      evaluate.model_response(model, params, freqs, RATE), h_true)
  for key in ("max_db", "mean_db"):
    assert report["response_error"][key] == pytest.approx(expected[key],
                                                          rel=1e-3, abs=1e-4)
  assert report["sample_rate"] == RATE


def test_the_run_folder_holds_what_workdir_names(lru_48k):
  path, report = lru_48k
  assert workdir.read_config(path).sample_rate == RATE
  assert workdir.sample_rate_of(path) == RATE
  assert [row["epoch"] for row in workdir.read_history(path)] == [1, 2]
  assert workdir.read_json(path, workdir.REPORT)["val1"]["esr"] == (
      report["val1"]["esr"])
  # 'last' holds the whole training state; its parameters load too.
  _, last, _ = restore.load_params(path, "last")
  _, best, _ = restore.load_params(path, "best")
  assert last.keys() == best.keys()
  # stream_blocks=() asks for no streaming measurement, and the report says
  # so.
  assert report["streaming"] == []
  assert report["streaming_method"]["method"] == speed.NOT_MEASURED


def test_the_summary_line_says_when_val2_is_missing_and_how_to_add_it():
  report = {"model": "lstm", "parameters": 10, "epochs": 1,
            "train_seconds": 1.0, "val1": {"esr": 0.5, "acc12": 0.1}}
  line = pipeline.summary_line("runs/x", report)
  assert "val1 ESR 5.000e-01" in line
  assert "no val2" in line and "--val2_files" in line and "alsa-utils" in line
  report["val2"] = {"esr": 0.25, "acc12": 0.2}
  assert "no val2" not in pipeline.summary_line("runs/x", report)
  # NAM's verdict beside each ESR (its thresholds: metrics.nam_verdict).
  assert "val1 ESR 5.000e-01 (NAM: ...Something seems to have gone wrong.)" \
      in pipeline.summary_line("runs/x", report)
  assert "val2 ESR 2.500e-01 (NAM: ...This probably won't sound great :()" \
      in pipeline.summary_line("runs/x", report)
  # A recording's own pair cannot have val2: no advice to add one.
  del report["val2"]
  report.update(val1={"esr": 0.004, "acc12": 0.3})
  assert "no val2" in pipeline.summary_line("runs/x", report)
  line = pipeline.summary_line("runs/x", report, config_lib.Config(
      dataset="files", train_input="in.wav", train_target="rec.wav"))
  assert "no val2" not in line and "(NAM: Great!)" in line
