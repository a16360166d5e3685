"""A recording's latency is found wherever it is, or the pair is refused;
a capture that ends above NAM's "something went wrong" says why.

Given emu's test signal (timed by its first blip at any lag) or plain noise
(timed by correlation over --max_latency_ms) recorded through a high-pass
that lags or leads; then the lag is found and compensated, reported as a
latency, or refused naming the flag that widens the search.
"""

import math

import numpy as np
import pytest
import soundfile as sf

from emu import config as config_lib
from emu import data as data_lib
from emu import effects
from emu import pipeline
from emu.capture import datareport
from emu.capture import testsignal
from emu.train import outcome
from emu.train import restore

RATE = 8000


def _device(x):
  """A 440 Hz high-pass at half gain with a little noise of its own."""
  y = 0.5 * np.asarray(effects.highpass(x, 440.0, RATE), np.float64)
  return y + np.random.default_rng(1).normal(0.0, 1e-4, len(y))


def _shifted(y, samples):
  """y `samples` late (> 0) or early (< 0), the length kept."""
  out = np.zeros_like(y)
  if samples >= 0:
    out[samples:] = y[:len(y) - samples]
  else:
    out[:samples] = y[-samples:]
  return out


def _write(folder, name, audio):
  path = str(folder / name)
  sf.write(path, np.asarray(audio, np.float32), RATE, subtype="FLOAT")
  return path


@pytest.fixture(scope="module")
def signal(tmp_path_factory):
  """emu's shortest test signal (with its sidecar) and its clean answer."""
  folder = tmp_path_factory.mktemp("signal")
  path = str(folder / "input.wav")
  testsignal.write(path, RATE, testsignal.MIN_SECONDS, subtype="FLOAT")
  x, _ = sf.read(path, dtype="float32")
  return folder, path, x, _device(x)


@pytest.mark.parametrize("lag", [int(0.3 * RATE), 2 * RATE, -int(0.05 * RATE)])
def test_the_test_signal_is_timed_by_its_blips_at_any_lag(signal, lag):
  folder, input_path, x, clean = signal
  target = _write(folder, f"rec{lag}.wav", _shifted(clean, lag))
  # The data report reads the lag from the first blip, and the end blip at
  # the same lag where the recording still holds it; a pure delay is a
  # latency, not a target that "does not follow".
  report = datareport.data_report((input_path, target))
  latency = report["latency"]
  assert latency["samples"] == lag and latency["from"] == "blips"
  end_in_recording = testsignal.read_layout(input_path)["blips"][1] + lag < len(x)
  assert latency["blips_samples"] == [lag, lag if end_in_recording else None]
  word = "lags" if lag > 0 else "leads"
  assert any(f"{word} the input by {abs(lag)} samples" in w
             for w in report["warnings"])
  assert not any("follow" in w for w in report["warnings"])
  # Training aligns it: the target is the device's answer to the input.
  pair, _ = data_lib.load_pair(input_path, target, compensate_latency=True)
  assert len(pair.input) == len(x) - abs(lag)
  start = max(-lag, 0)
  np.testing.assert_allclose(pair.input, x[start:start + len(pair.input)])
  np.testing.assert_allclose(pair.target, clean[start:start + len(pair.input)],
                             atol=1e-6)


def test_a_passed_compensate_latency_is_not_advised(signal):
  folder, input_path, _, clean = signal
  target = _write(folder, "late.wav", _shifted(clean, 100))
  report = datareport.data_report((input_path, target),
                                  compensate_latency=True)
  assert report["latency"]["compensated"]
  assert not any("--compensate_latency" in w for w in report["warnings"])
  assert "compensated" in datareport.format_report(report)


@pytest.fixture(scope="module")
def noise():
  return np.random.default_rng(0).uniform(-0.5, 0.5, 5 * RATE)


@pytest.mark.parametrize("lag", [int(0.3 * RATE), 2 * RATE,
                                 -int(0.05 * RATE)])
def test_plain_audio_is_timed_by_correlation(tmp_path, noise, lag):
  clean = _device(noise)
  paths = (_write(tmp_path, "in.wav", noise),
           _write(tmp_path, "rec.wav", _shifted(clean, lag)))
  report = datareport.data_report(paths)
  assert report["latency"]["samples"] == lag
  assert report["latency"]["from"] == "correlation"
  assert any("pure delay" in w for w in report["warnings"])
  with pytest.raises(data_lib.DataError, match="--compensate_latency"):
    data_lib.load_pair(*paths)
  pair, _ = data_lib.load_pair(*paths, compensate_latency=True)
  assert len(pair.input) == len(noise) - abs(lag)


def test_a_lag_past_the_search_is_refused_naming_the_flag(tmp_path, noise):
  paths = (_write(tmp_path, "in.wav", noise),
           _write(tmp_path, "rec.wav", _shifted(_device(noise), RATE // 2)))
  with pytest.raises(data_lib.DataError,
                     match=r"rec.wav: its latency cannot be found .*searched "
                     r"\+-100 ms\): pass a larger --max_latency_ms"):
    data_lib.load_pair(*paths, compensate_latency=True, max_latency_ms=100)
  report = datareport.data_report(paths, max_latency_ms=100)
  assert report["latency"]["samples"] is None
  assert any("--max_latency_ms" in w for w in report["warnings"])


def test_mono_files_refuse_a_second_channel(tmp_path, noise):
  paths = (_write(tmp_path, "in.wav", noise), _write(tmp_path, "rec.wav",
                                                    _device(noise)))
  with pytest.raises(data_lib.DataError, match=r"--channel=1 but .*in.wav "
                     r"has 1 channel \(mono\): leave --channel out"):
    data_lib.load_pair(*paths, channel=1)
  data_lib.load_pair(*paths, channel=0)


# ------------------------------------------ a capture that went wrong


CFG = config_lib.Config(
    dataset="files", train_input="in.wav", train_target="rec.wav",
    model="lstm", model_kwargs={"hidden_size": 2},
    segment_length=1024, warmup=256, batch_size=4, max_epochs=2,
    stream_blocks=())


def test_an_unrelated_target_is_refused_before_training(tmp_path, noise):
  other = np.random.default_rng(5).uniform(-0.5, 0.5, len(noise))
  cfg = CFG.replace(train_input=_write(tmp_path, "in.wav", noise),
                    train_target=_write(tmp_path, "rec.wav", other))
  with pytest.raises(data_lib.DataError,
                     match="not a recording of this input.*--max_latency_ms"):
    pipeline.run(cfg, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_a_quiet_target_fails_with_the_data_reports_cause(tmp_path, noise):
  # Given a target 40 dB below the device's answer, when a tiny capture
  # ends above ESR 0.3, then it fails naming the level, not the learning
  # rate, and keeps its report.
  cfg = CFG.replace(
      train_input=_write(tmp_path, "in.wav", noise),
      train_target=_write(tmp_path, "rec.wav", 0.01 * _device(noise)))
  workdir = tmp_path / "run"
  with pytest.raises(outcome.CaptureFailed,
                     match=r"val1 ESR .* above 0.3 .*Something.*the target "
                     r"peaks at -\d+\.\d dBFS: raise its level") as failed:
    pipeline.run(cfg, str(workdir))
  assert "--learning_rate" not in str(failed.value)
  assert (workdir / "report.json").exists()
  assert (workdir / "data_report.json").exists()
  # and the model it leaves is refused where it would be played.
  with pytest.raises(ValueError, match="holds no model to use: its training "
                     "failed .*above 0.3"):
    restore.load_params(str(workdir))


def _report(esr):
  return {"val1": {"esr": esr}}


def test_learning_rate_advice_only_where_training_diverged():
  cfg = CFG
  calm = [{"epoch": 1, "train_loss": 1.0, "val1_esr": 0.9},
          {"epoch": 2, "train_loss": 0.9, "val1_esr": 0.8}]
  ran_away = calm + [{"epoch": 3, "train_loss": math.nan,
                      "val1_esr": 50.0}]
  assert not outcome.diverged(calm) and outcome.diverged(ran_away)
  slow = outcome.capture_failure(cfg, "DIR", _report(0.8), {"warnings": []},
                                 calm)
  assert "--time_budget_s" in str(slow) and "learning_rate" not in str(slow)
  wild = outcome.capture_failure(cfg, "DIR", _report(50.0), {"warnings": []},
                                 ran_away)
  assert "diverged: lower --learning_rate" in str(wild)
  assert outcome.capture_failure(cfg, "DIR", _report(0.29), None, calm) is None
  assert outcome.capture_failure(CFG.replace(dataset="thesis_mini"), "DIR",
                                 None, None, calm) is None
  assert outcome.FAILED_ESR == 0.3
  assert "kept in DIR" in str(slow)
