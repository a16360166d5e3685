"""Issue 26's tracebacks and unclear cases, each one line naming the problem,
the file or flag, and the fix.

Given a bad model file, output path, size or setting, when a library call
or a command meets it, then it refuses before any work with a message that
names it; library calls check their arguments where they are made.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from emu import apply
from emu import config as config_lib
from emu import models
from emu import pipeline
from emu import workdir as workdir_lib
from emu.capture import testsignal
from emu.plugins import export
from emu.plugins import formats
from test_plugin_cli import _workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LSTM_2 = {"version": "0.5.4", "architecture": "LSTM",
          "config": {"input_size": 1, "hidden_size": 2, "num_layers": 1},
          "weights": [0.0] * 39, "sample_rate": 16000.0}


def _file(tmp_path, name, content):
  path = str(tmp_path / name)
  with open(path, "w") as f:
    json.dump(content, f)
  return path


# ------------------------------------------------------------ model files


@pytest.mark.parametrize("name, content, words", [
    ("h0.nam", {**LSTM_2, "config": {**LSTM_2["config"], "hidden_size": 0}},
     "'config.hidden_size' is 0, not a whole number >= 1"),
    ("none.nam", {**LSTM_2, "weights": None},
     "'weights' is null, not a non-empty list of numbers"),
    ("bare.nam", {"weights": [0.0]}, "no 'architecture' entry"),
    ("nocfg.nam", {"architecture": "LSTM", "weights": [0.0]},
     "no 'config' entry"),
    ("neg.nam", {**LSTM_2, "config": {**LSTM_2["config"], "hidden_size": -1}},
     "'config.hidden_size' is -1"),
    ("count.nam", {**LSTM_2, "weights": [0.0] * 5},
     "holds 5 weights.* has 39 .a damaged or truncated file: export it"),
    ("wn.nam", {"architecture": "WaveNet", "config": {"layers": [{}]},
                "weights": [0.0]}, "no 'dilations' entry"),
    ("gml.json", {"model_data": {"unit_type": "LSTM", "num_layers": 1,
                                 "hidden_size": "32"}, "state_dict": {}},
     "'model_data.hidden_size' is \"32\""),
])
def test_a_bad_model_file_is_named_with_its_problem(tmp_path, name, content,
                                                     words):
  path = _file(tmp_path, name, content)
  with pytest.raises(formats.ExportError, match=words) as refused:
    apply.load_model(model_file=path)
  assert str(refused.value).startswith(f"{path} cannot be read as ")
  assert "export it again" in str(refused.value)


def test_an_audio_file_as_model_file_is_named(tmp_path):
  for name in ("audio.nam", "audio.json"):
    path = str(tmp_path / name)
    sf.write(path, np.zeros(100, np.float32), 16000, format="WAV")
    with pytest.raises(formats.ExportError,
                       match=f"{path} is not a model file: it holds binary "
                       "data .audio.., not JSON text; give --model_file"):
      apply.load_model(model_file=path)


# --------------------------------------------------------- audio outputs


@pytest.mark.parametrize("name, words", [
    ("noext", "noext has no extension, which names the audio format: end it "
     "in .wav"),
    ("x.mp3", "a .mp3 file cannot hold --subtype=PCM_24 samples; choose one "
     "it takes .MPEG_LAYER_I"),
    ("x.xyz", ".xyz names no audio format soundfile writes; end it in .wav"),
    ("missing/x.wav", "folder .*missing does not exist; create it first"),
])
def test_testsignal_refuses_an_output_it_cannot_write(tmp_path, name, words):
  with pytest.raises(ValueError if "missing" not in name else
                     FileNotFoundError, match=words):
    testsignal.write(str(tmp_path / name), 8000, seconds=testsignal.MIN_SECONDS)
  assert not os.path.exists(testsignal.layout_path(str(tmp_path / name)))


@pytest.mark.parametrize("seconds", [1e7, float("nan")])
def test_testsignal_refuses_a_length_beyond_its_maximum(seconds):
  with pytest.raises(ValueError, match=f"--seconds={seconds}: the test "
                     "signal is at most 600 s; choose a length up to that"):
    testsignal.make(8000, seconds)


def test_testsignal_cli_says_no_extension_in_one_line(tmp_path):
  done = subprocess.run(
      [sys.executable, "-m", "emu.testsignal", str(tmp_path / "noext")],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 2
  assert done.stderr.strip().splitlines() == [
      f"error: {tmp_path / 'noext'} has no extension, which names the audio "
      "format: end it in .wav (or .flac, .aiff, ...)"]


@pytest.mark.parametrize("name, error, words", [
    ("out.mp3", ValueError, "cannot hold --subtype=FLOAT samples"),
    ("out", ValueError, "has no extension"),
    (".", IsADirectoryError, "is a folder; give the output a file name"),
])
def test_apply_refuses_an_output_before_reading_the_model(tmp_path, name,
                                                          error, words):
  wav = str(tmp_path / "in.wav")
  sf.write(wav, np.zeros(100, np.float32), 16000)
  # the model file is not even read: the output is refused first
  with pytest.raises(error, match=words):
    apply.apply_file(None, wav, str(tmp_path / name),
                     model_file=str(tmp_path / "absent.nam"))


# ---------------------------------------------------------------- export


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  return _workdir(tmp_path_factory.mktemp("run"), "lstm", hidden_size=3)


def test_export_refuses_a_missing_folder_or_a_folder(tmp_path, run_dir):
  with pytest.raises(FileNotFoundError, match="missing does not exist; "
                     "create it first .mkdir -p"):
    export.export_workdir(run_dir, "nam", str(tmp_path / "missing" / "m.nam"))
  os.mkdir(tmp_path / "adir")
  with pytest.raises(IsADirectoryError, match="adir is a folder; give the "
                     "output a file name, e.g. .*adir/model.nam"):
    export.export_workdir(run_dir, "nam", str(tmp_path / "adir"),
                          overwrite=True)
  assert sorted(os.listdir(tmp_path)) == ["adir"]  # no adir.tmp


def test_a_failed_export_write_leaves_no_temporary_file(tmp_path, run_dir,
                                                        monkeypatch):
  def refuse(*_):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(export.os, "replace", refuse)
  out = str(tmp_path / "m.nam")
  with pytest.raises(export.ExportError, match=f"cannot write {out}: "
                     "Permission denied; write it elsewhere"):
    export.export_workdir(run_dir, "nam", out)
  assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_export_refuses_a_read_only_folder(tmp_path, run_dir):
  os.chmod(tmp_path, 0o500)
  try:
    with pytest.raises(PermissionError, match="is not writable; write the "
                       "output elsewhere"):
      export.export_workdir(run_dir, "nam", str(tmp_path / "m.nam"))
  finally:
    os.chmod(tmp_path, 0o700)


def test_the_wiener_refusal_names_the_stages_it_has():
  plain = models.create("wiener")
  with pytest.raises(export.ExportError, match="its state-space filters and "
                     "waveshaper are .*capture_plugin.flags") as refused:
    export.export(plain, None, "nam")
  assert "compressor" not in str(refused.value)
  with pytest.raises(export.ExportError, match="filters, waveshaper and "
                     "compressor stage"):
    export.export(models.create("wiener", dynamics_width=8), None, "nam")


# ----------------------------------------------- library arguments


@pytest.mark.parametrize("value", [0, -4, 32.5, "32", True])
def test_create_names_a_size_that_is_not_a_whole_number(value):
  with pytest.raises(ValueError, match="--hidden_size must be a whole "
                     f"number >= 1, got {value!r}"):
    models.create("lstm", hidden_size=value)


@pytest.mark.parametrize("kwargs, words", [
    ({"sample_rate": 0.0}, "--sample_rate must be a positive number"),
    ({"shaper_max_gain": -1.0}, "--shaper_max_gain must be a positive"),
    ({"dynamics_width": -1}, "--dynamics_width must be a whole number >= 0"),
    ({"residual_dilations": (1, 0)}, "--residual_dilations takes whole "
     "numbers >= 1, got 1,0"),
])
def test_create_checks_the_wiener_settings(kwargs, words):
  with pytest.raises(ValueError, match=words):
    models.create("wiener", **kwargs)


@pytest.mark.parametrize("kwargs, words", [
    ({"learning_rate": "abc"}, "Config learning_rate takes a number .e.g. "
     "--learning_rate=0.005., got 'abc', of type str"),
    ({"max_epochs": 2.5}, "Config max_epochs takes a whole number"),
    ({"level_balance": 1}, "Config level_balance takes True or False"),
    ({"loss": {"esr": "x"}}, "Config loss maps names to numbers"),
    ({"val2_files": "a.wav"}, "Config val2_files takes a tuple"),
])
def test_config_checks_each_fields_type(kwargs, words):
  with pytest.raises(ValueError, match=words):
    config_lib.Config(**kwargs)


def test_pipeline_run_names_a_missing_workdir():
  with pytest.raises(ValueError, match="emu.pipeline.run needs workdir, the "
                     "run's folder .a path such as 'runs/lstm'., got None"):
    pipeline.run(config_lib.Config(), None)


def test_a_config_diff_lists_only_what_differs():
  kwargs = {"hidden_size": 32, "num_layers": 1, "skip": True}
  a = config_lib.Config(model_kwargs=kwargs)
  b = a.replace(model_kwargs={**kwargs, "hidden_size": 16},
                learning_rate=1e-3)
  assert a.differences(b) == {"learning_rate": (5e-3, 1e-3),
                              "model_kwargs.hidden_size": (32, 16)}


def test_an_auditioned_folder_lists_the_users_change_alone(tmp_path):
  # Given a folder holding an audition's chosen candidate
  cfg = config_lib.Config(model="wiener", audition="dynamics_width=0|8",
                          audition_s=1.0, time_budget_s=10.0, max_epochs=1)
  chosen = cfg.replace(audition="", time_budget_s=9.0,
                       model_kwargs={"dynamics_width": 8})
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  workdir_lib.write_text(workdir, workdir_lib.CONFIG, chosen.to_json())
  workdir_lib.write_json(workdir, workdir_lib.AUDITION_CHOICE, {
      "chosen": "dynamics_width=8", "base": json.loads(cfg.to_json()),
      "config_json": chosen.to_json()})
  # When the command runs again with one flag changed
  with pytest.raises(workdir_lib.WorkdirConflict) as refused:
    pipeline.run(cfg.replace(learning_rate=1e-3), workdir)
  # Then the refusal lists that flag alone
  message = str(refused.value)
  assert "(learning_rate: 0.005 -> 0.001)" in message, message
  assert "--overwrite" in message
