"""What a report says about how it measured: the levels a model was
trained and validated at, the signals its responses come from, and how its
streaming speed was measured (a child run as a real-time host, or this
process for a model not on disk)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emu import config as config_lib
from emu import data as data_lib
from emu.report import evaluate
from emu import models
from emu.report import run_page
from emu.report import speed
from emu import workdir as workdir_lib
from emu.train import checkpoints as checkpoints_lib

RATE = 8000


def _tone(amplitude, seconds, rate=RATE):
  t = np.arange(int(seconds * rate)) / rate
  return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_signal_levels_span_its_quiet_and_loud_passages_not_its_silence():
  # Given a loud passage, one 40 dB quieter, and silence,
  x = np.concatenate([_tone(0.5, 1.0), _tone(0.005, 1.0),
                      np.zeros(4000, np.float32)])
  levels = evaluate.signal_levels(x, RATE)
  # then peak and RMS are the loud tone's, and the short-term range runs
  # from the quiet tone (-49 dBFS) to the loud one (-9 dBFS), silence aside.
  assert levels["peak_dbfs"] == pytest.approx(-6.02, abs=0.01)
  assert levels["short_rms_p5_dbfs"] == pytest.approx(-49.03, abs=0.1)
  assert levels["short_rms_p95_dbfs"] == pytest.approx(-9.03, abs=0.1)
  # The quiet tone holds 0.01 % of the energy: ESR checks the loud one.
  assert levels["esr_floor_dbfs"] == pytest.approx(-9.03, abs=0.1)
  assert evaluate.signal_levels(np.zeros(100), RATE)["peak_dbfs"] == -np.inf


def _dataset(val2=True):
  def pair(x):
    return data_lib.Pair(x, 0.5 * x)
  return data_lib.Dataset(
      name="tones", sample_rate=RATE, train=pair(_tone(0.1, 1.0)),
      val1=pair(_tone(0.5, 0.5)),
      val2=pair(_tone(0.05, 0.5)) if val2 else None)


def test_level_ranges_say_what_was_validated_and_trained():
  cfg = config_lib.Config(gain_db=24)
  levels = evaluate.level_ranges(_dataset(), cfg)
  # val1 at -9 dBFS RMS, val2 at -29: validated from -29 to -9 dBFS;
  assert levels["validated_rms_dbfs"] == pytest.approx([-29.03, -9.03],
                                                       abs=0.1)
  assert levels["validated_peak_dbfs"] == pytest.approx(-6.02, abs=0.01)
  assert levels["validated_esr_floor_dbfs"] == pytest.approx(-29.03, abs=0.1)
  # the train tone (-23 dBFS) at a random +-24 dB: -47 to +1 dBFS.
  assert levels["train_gain_db"] == 24.0
  assert levels["trained_rms_dbfs"] == pytest.approx([-47.03, 0.97], abs=0.1)
  assert levels["train_gain_range_db"] == [-24.0, 24.0]
  # gain_low_db reaches further down: -23 - 60 = -83 dBFS.
  levels = evaluate.level_ranges(_dataset(), cfg.replace(gain_low_db=-60.0))
  assert levels["train_gain_range_db"] == [-60.0, 24.0]
  assert levels["trained_rms_dbfs"] == pytest.approx([-83.03, 0.97], abs=0.1)
  # Without val2 the range is val1's; window mode trains at no random gain.
  levels = evaluate.level_ranges(_dataset(val2=False),
                                 cfg.replace(mode="window", warmup=0))
  assert "val2" not in levels and levels["train_gain_db"] == 0.0
  assert levels["validated_rms_dbfs"] == pytest.approx([-9.03, -9.03],
                                                       abs=0.1)


def test_streaming_of_a_model_not_on_disk_is_measured_here_and_says_so(
    tmp_path):
  model = models.create("lstm", hidden_size=4)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 1)))
  measured = speed.streaming_speed(model, params, str(tmp_path), (16,),
                                   44100)
  assert measured["method"] == speed.IN_PROCESS_METHOD
  assert "no trained run" in measured["why"]
  assert (measured["rows"][0]["block_size"] == 16
          and measured["rows"][0]["rtf"] > 0)


def test_a_run_folder_report_streams_in_a_child_and_labels_levels(tmp_path):
  # Given a run folder holding a model's config and best checkpoint (what
  # train.fit leaves before evaluate runs),
  cfg = config_lib.Config(model="lstm", model_kwargs={"hidden_size": 4},
                          dataset="thesis_mini", effect="hpf440",
                          sample_rate=RATE, gain_db=12)
  workdir = str(tmp_path)
  workdir_lib.prepare(cfg, workdir, overwrite=False)
  dataset = _dataset()
  workdir_lib.write_dataset_info(workdir, dataset, channels=1)
  model = models.build_model(cfg)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 1)))
  checkpoints_lib.Checkpoints(workdir).save("best", {"params": params})
  # when it is evaluated,
  evaluate.evaluate(model, params, dataset, workdir, cfg=cfg,
                    stream_blocks=(64,))
  report = json.loads((tmp_path / "report.json").read_text())
  # then its streaming rows were measured in a child, as a real-time host
  # runs, and say so;
  how = report["streaming_method"]
  assert how["method"] == speed.CHILD_METHOD
  assert how["settings"]["inline_dispatch"] and how["settings"][
      "one_xla_thread"]
  assert report["streaming"][0]["block_size"] == 64
  assert report["streaming"][0]["rtf"] > 0
  # the levels and the response signals are in report.json;
  assert report["levels"]["train_gain_db"] == 12.0
  assert set(report["response_signals"]) == {"response_error",
                                             "noise_response_error"}
  # and the page says all three in words.
  page = open(run_page.write_report_html(workdir, listening_test=False)
              ).read()
  assert "Small-signal response error (impulse, amplitude 0.1)" in page
  assert "Full-scale noise response error (white noise, peak 0.5)" in page
  assert "Validated (val1 and val2) at short-term RMS levels from -29.0 to " \
         "-9.0 dBFS" in page
  assert "random gain -12 to +12 dB" in page
  assert "it checks little below -29.0 dBFS" in page
  assert "Measured in a child process pinned to one core" in page


def test_small_signal_response_leaves_out_what_the_model_outputs_on_silence(
    init):
  # Given an LSTM, and the same LSTM with 0.05 more output bias (an offset
  # on every sample, silence included: the head's bias feeds nothing back),
  model = models.create("lstm", hidden_size=4)
  params = init(model, jnp.zeros((1, 8, 1)))
  offset = jax.tree.map(lambda a: a, params)
  offset["params"]["b_out"] = params["params"]["b_out"] + 0.05
  freqs = np.geomspace(20.0, 20000.0, 64)
  # then its small-signal response is the same (the offset would add
  # 0.05 / 0.1 to every sample of a raw impulse response),
  np.testing.assert_allclose(
      evaluate.model_response(model, offset, freqs, RATE),
      evaluate.model_response(model, params, freqs, RATE), atol=1e-4)
  # and the offset is what idle_output reports: |0.05 + rest| vs |rest|.
  silence = np.zeros(evaluate.IMPULSE_LENGTH, np.float32)
  rest = evaluate.predict(model, params, silence)
  want = 20 * np.log10(np.mean(np.abs(rest[-len(rest) // 10:] + 0.05)))
  assert evaluate.idle_output(model, offset)["final_dbfs"] == pytest.approx(
      want, abs=0.01)
  # A linear model at rest outputs nothing.
  lru = models.create("lru", state_size=1, num_layers=1)
  idle = evaluate.idle_output(lru, init(lru, jnp.zeros((1, 8, 1))))
  assert idle["peak_dbfs"] == -np.inf and idle["final_dbfs"] == -np.inf
