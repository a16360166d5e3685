"""Bad inputs (issue 17's sweep): each one clear error naming the fix, and
nothing lost: a refused run leaves its workdir byte for byte as it was."""

import errno
import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from emu import apply as apply_lib
from emu import cli
from emu import data as data_lib
from emu.capture import datareport
from emu import models
from emu import pipeline
from emu import train
from emu import workdir as workdir_lib
from emu.train import checkpoints as checkpoints_lib
from emu.train import restore
from emu.data import latency as latency_lib
from emu.train import outcome
from test_train import tiny_config, tiny_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 44100
CFG = tiny_config(max_epochs=1, checkpoint_every_s=0)


def _python(*args, timeout=120):
  return subprocess.run(
      [sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
      timeout=timeout, check=False,
      env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT))


def _one_error_line(done, *words):
  """The command failed with exit 2 and one 'error:' line naming words."""
  assert done.returncode == 2, done.stderr[-3000:]
  assert "Traceback" not in done.stderr, done.stderr[-3000:]
  errors = [l for l in done.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1, done.stderr[-3000:]
  for word in words:
    assert word in errors[0], errors[0]
  return errors[0]


def _hashes(folder):
  """{relative path: sha256 of a file, 'dir' for a folder} under folder."""
  found = {}
  for base, dirs, files in os.walk(folder):
    for name in dirs:
      found[os.path.relpath(os.path.join(base, name), folder)] = "dir"
    for name in files:
      with open(os.path.join(base, name), "rb") as f:
        found[os.path.relpath(os.path.join(base, name), folder)] = (
            hashlib.sha256(f.read()).hexdigest())
  return found


def _noise(seconds=0.5, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(-0.5, 0.5, int(seconds * SR)).astype(np.float32)


def _delayed(x, samples):
  return np.concatenate([np.zeros(samples, x.dtype), x[:len(x) - samples]])


def _wavs(folder, x, y, rate_x=SR, rate_y=SR):
  paths = str(folder / "in.wav"), str(folder / "target.wav")
  sf.write(paths[0], x, rate_x, subtype="FLOAT")
  sf.write(paths[1], y, rate_y, subtype="FLOAT")
  return paths


@pytest.fixture(scope="module")
def data():
  return tiny_dataset(seconds=0.5, val_seconds=0.1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
  """A finished one-epoch run folder (read only: tests change copies)."""
  folder = tmp_path_factory.mktemp("trained") / "run"
  train.fit(CFG, str(folder), dataset=data)
  return folder


@pytest.fixture
def run_copy(trained, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(trained, copy)
  return copy


# -------------------------------------- 1. a refused run changes nothing


@pytest.mark.parametrize("changes, match", [
    (dict(loss={"l1": 1.0}), "unknown loss"),
    (dict(effect="nope"), "unknown effect 'nope'"),
    (dict(model_kwargs={"hidden_size": 0}), "--hidden_size"),
    (dict(model_kwargs={"hidden_size": 4, "nope": 1}), "nope"),
    (dict(learning_rate=0.5), "different config"),
])
def test_a_refused_run_leaves_the_workdir_as_it_was(run_copy, data, changes,
                                                    match):
  before = _hashes(run_copy)
  with pytest.raises(ValueError, match=match):
    train.fit(CFG.replace(**changes), str(run_copy), dataset=data)
  assert _hashes(run_copy) == before


def test_a_bad_data_file_is_refused_before_anything_is_written(tmp_path):
  junk = tmp_path / "junk.wav"
  junk.write_bytes(b"this is not audio")
  cfg = CFG.replace(dataset="files", train_input=str(junk),
                    train_target=str(junk))
  workdir = tmp_path / "fresh"
  with pytest.raises(ValueError, match="junk.wav"):
    pipeline.run(cfg, str(workdir))
  assert not workdir.exists()


def test_an_unknown_loss_leaves_a_fresh_workdir_unmade(tmp_path, data):
  # The corrected command must not meet "a run with a different config".
  workdir = tmp_path / "fresh"
  with pytest.raises(ValueError, match="unknown loss"):
    pipeline.run(CFG.replace(loss={"l1": 1.0}), str(workdir), dataset=data)
  assert not workdir.exists()
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="--hidden_size"):
    pipeline.run(CFG.replace(model_kwargs={"hidden_size": -4}), str(empty),
                 dataset=data)
  assert not os.listdir(empty)


def test_a_refused_pair_writes_no_data_report(tmp_path):
  # The data report is logged first but written only once all is checked.
  x = _noise()
  paths = _wavs(tmp_path, x, _delayed(x, 37))
  cfg = CFG.replace(dataset="files", train_input=paths[0],
                    train_target=paths[1])
  workdir = tmp_path / "fresh"
  with pytest.raises(data_lib.DataError, match="--compensate_latency"):
    pipeline.run(cfg, str(workdir))
  assert not workdir.exists()


# ------------------------------------------------ 2. a run that learned nothing


def test_divergence_with_no_good_epoch_fails_without_a_report(
    tmp_path, data, caplog):
  workdir = tmp_path / "run"
  with pytest.raises(outcome.TrainingFailed,
                     match="diverged in epoch 1.*--learning_rate.*"
                     "--grad_clip.*--overwrite") as failed:
    pipeline.run(CFG.replace(learning_rate=1e30), str(workdir), dataset=data)
  assert isinstance(failed.value, cli.USER_ERRORS)  # run.py: one line, exit 2
  assert "last good checkpoint" not in caplog.text
  assert not (workdir / workdir_lib.REPORT).exists()
  assert not (workdir / workdir_lib.CHECKPOINTS).exists()


def test_no_improvement_on_the_first_weights_fails(tmp_path, data):
  with pytest.raises(outcome.TrainingFailed,
                     match="no epoch improved on the first weights.*"
                     "--learning_rate"):
    train.fit(CFG.replace(learning_rate=1e3), str(tmp_path), dataset=data)


def test_an_esr_worse_than_silence_is_a_warning_in_the_report(
    tmp_path, data, monkeypatch):
  # A target 60 dB below the input: the LSTM's skip path starts at ESR ~1e6
  # and one epoch improves on it without reaching 1.
  quiet = data_lib.Dataset(
      name="quiet", sample_rate=SR, val2=None,
      train=data_lib.Pair(data.train.input, 1e-3 * data.train.target),
      val1=data_lib.Pair(data.val1.input, 1e-3 * data.val1.target))
  seen = {}
  monkeypatch.setattr(pipeline.evaluate_lib, "evaluate",
                      lambda *a, train_info, **k: seen.update(train_info))
  monkeypatch.setattr(pipeline.run_page, "write_report_html",
                      lambda workdir: "report.html")
  pipeline.run(CFG, str(tmp_path), dataset=quiet)
  assert len(seen["warnings"]) == 1
  assert "worse than outputting silence" in seen["warnings"][0]


def test_outcome_warns_or_fails_by_the_first_weights():
  never = lambda: pytest.fail("scored the first weights for a good run")
  assert outcome.warnings_of(CFG, 0.5, 3, never) == []
  (warning,) = outcome.warnings_of(CFG, 1.5, 3, lambda: 40.0)
  assert "1.5 (epoch 3)" in warning and "40" in warning
  with pytest.raises(outcome.TrainingFailed, match="--grad_clip"):
    outcome.warnings_of(CFG, 1.5, 3, lambda: 1.2)
  # First weights whose output is not finite: any finite epoch improved.
  assert outcome.warnings_of(CFG, 1.5, 3, lambda: None)
  # An interrupted run may still improve: a warning, not a failure.
  assert outcome.warnings_of(CFG, 1.5, 3, lambda: 1.2, finished=False)


def test_a_negative_learning_rate_is_refused():
  with pytest.raises(ValueError, match="learning_rate must be >= 0"):
    CFG.replace(learning_rate=-1.0)


# --------------------------------------------- 3. sizes below 1, by the flag


@pytest.mark.parametrize("model, name, value", [
    ("lstm", "hidden_size", 0), ("lstm", "hidden_size", -4),
    ("gru", "num_layers", 0), ("wavenet", "channels", 0),
    ("lru", "state_size", 0), ("svf", "features", -1),
])
def test_a_size_below_one_names_its_flag(model, name, value):
  cfg = CFG.replace(model=model, model_kwargs={name: value})
  with pytest.raises(ValueError, match=f"--{name} must be a whole number "
                     f">= 1, got {value}"):
    models.build_model(cfg)


def test_run_py_says_hidden_size_0_in_one_line(tmp_path):
  done = _python("experiments/run.py", "--flagfile=experiments/tiny.flags",
                 "--hidden_size=0", f"--workdir={tmp_path / 'run'}")
  _one_error_line(done, "--hidden_size")
  assert not (tmp_path / "run").exists()


# ----------------------------------------- 4. a workdir that cannot be one


def test_a_workdir_that_is_or_lies_below_a_file(tmp_path, data):
  a_file = tmp_path / "notes.txt"
  a_file.write_text("mine")
  for workdir, match in ((a_file, "--workdir .* is a file"),
                         (a_file / "run", "lies below .* a file")):
    with pytest.raises(workdir_lib.WorkdirError, match=match):
      train.fit(CFG, str(workdir), dataset=data)
  assert a_file.read_text() == "mine"


@pytest.mark.parametrize("mode", [0o555, 0o000])
def test_a_workdir_without_permission(tmp_path, data, monkeypatch, mode):
  folder = tmp_path / "locked"
  folder.mkdir()
  if os.geteuid() == 0:  # root ignores permissions: as a user would meet it
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if os.path.abspath(
        p) == str(folder) else real(p, m))
  else:
    folder.chmod(mode)
  try:
    for workdir in (folder, folder / "run"):
      with pytest.raises(workdir_lib.WorkdirError,
                         match="--workdir .*not writable"):
        train.fit(CFG, str(workdir), dataset=data)
  finally:
    folder.chmod(0o755)
  assert not os.listdir(folder)


def test_run_py_says_a_file_workdir_in_one_line(tmp_path):
  a_file = tmp_path / "notes.txt"
  a_file.write_text("mine")
  done = _python("experiments/run.py", "--flagfile=experiments/tiny.flags",
                 f"--workdir={a_file}")
  _one_error_line(done, "--workdir", "is a file")
  assert a_file.read_text() == "mine"


# ------------------------------------------------------------ 5. a full disk


def _full_disk(monkeypatch):
  """emu.workdir's writes fail half way as on a full disk."""
  real_open = open

  class HalfWritten:

    def __init__(self, f):
      self.f = f

    def write(self, text):
      self.f.write(text[:len(text) // 2])
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      self.f.close()

  def full_open(path, mode="r", *args, **kwargs):
    f = real_open(path, mode, *args, **kwargs)
    return HalfWritten(f) if any(c in mode for c in "wa") else f

  monkeypatch.setattr(workdir_lib, "open", full_open, raising=False)


def test_a_full_disk_is_one_message_and_loses_nothing(run_copy, data,
                                                      monkeypatch):
  before = _hashes(run_copy)
  _full_disk(monkeypatch)
  # Resuming rewrites config.json first; then one more epoch's row.
  with pytest.raises(workdir_lib.WorkdirError,
                     match="No space left on device; free some disk space"):
    train.fit(CFG, str(run_copy), dataset=data)
  with pytest.raises(workdir_lib.WorkdirError, match="metrics.jsonl"):
    workdir_lib.append_history(str(run_copy), {"epoch": 2})
  with pytest.raises(workdir_lib.WorkdirError, match="report.json"):
    workdir_lib.write_json(str(run_copy), workdir_lib.REPORT, {"a": 1})
  assert _hashes(run_copy) == before


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_full_disk_during_a_checkpoint_keeps_the_old_one(
    run_copy, monkeypatch, wrapped):
  before = _hashes(run_copy)
  checkpoints = checkpoints_lib.Checkpoints(str(run_copy))
  model, params, _ = restore.load_params(str(run_copy))

  def full_save(path, tree):
    os.makedirs(path)
    with open(os.path.join(path, "partial"), "w") as f:
      f.write("half")
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if not wrapped:
      raise error
    raise RuntimeError("orbax: save failed") from error

  monkeypatch.setattr(checkpoints.checkpointer, "save", full_save)
  with pytest.raises(workdir_lib.WorkdirError, match="No space left"):
    checkpoints.save("best", {"params": params})
  assert _hashes(run_copy) == before
  del model


# ------------------------------------------------------------- 6. emu.apply


@pytest.fixture
def wavs(tmp_path):
  mono, stereo = str(tmp_path / "mono.wav"), str(tmp_path / "stereo.wav")
  x = _noise(0.05)
  sf.write(mono, x, SR)
  sf.write(stereo, np.stack([x, x], axis=1), SR)
  return mono, stereo


@pytest.mark.parametrize("output, kwargs, error, match", [
    ("missing/out.wav", {}, FileNotFoundError, "folder .*missing does not "
     "exist; create it"),
    ("out", {}, ValueError, "has no extension, which names the audio "
     "format: end it in .wav"),
    ("out.xyz", {}, ValueError, ".xyz names no audio format"),
    ("out.mp3", {}, ValueError, "a .mp3 file cannot hold --subtype=FLOAT"),
    ("out.wav", dict(block_size=0), ValueError, "--block_size must be at "
     "least 1 sample, got 0"),
    ("out.wav", dict(block_size=-64), ValueError, "--block_size"),
    ("out.wav", dict(channel=5), ValueError, "--channel=5 but .*mono.wav has "
     "1 channel"),
    ("out.wav", dict(channel=5, stereo=True), ValueError, "--channel=5 but "
     ".*choose 0..1"),
    ("out.wav", dict(stereo=True), ValueError, "--channel=0..1"),
])
def test_apply_names_the_flag(trained, wavs, tmp_path, output, kwargs, error,
                              match):
  source = wavs[1] if kwargs.pop("stereo", False) else wavs[0]
  with pytest.raises(error, match=match):
    apply_lib.apply_file(str(trained), source, str(tmp_path / output),
                         **kwargs)
  assert not os.path.exists(tmp_path / output)


def test_apply_works_after_the_checks(trained, wavs, tmp_path):
  info = apply_lib.apply_file(str(trained), wavs[1], str(tmp_path / "o.wav"),
                              channel=1, block_size=100)
  assert info["samples"] == len(sf.read(wavs[1])[0])


def test_apply_block_size_0_is_one_line(trained, wavs, tmp_path):
  done = _python("-m", "emu.apply", f"--workdir={trained}", "--block_size=0",
                 wavs[0], str(tmp_path / "out.wav"))
  _one_error_line(done, "--block_size")


# -------------------------------------------- 7. advice a user can follow


def test_the_pair_errors_name_run_py_flags(tmp_path):
  x = _noise()
  stereo = np.stack([x, x], axis=1)
  with pytest.raises(data_lib.DataError, match="mono") as refused:
    data_lib.load_pair(*_wavs(tmp_path, stereo, stereo))
  assert "pass channel=" not in str(refused.value)
  with pytest.raises(data_lib.DataError, match="--compensate_latency") as lag:
    data_lib.load_pair(*_wavs(tmp_path, x, _delayed(x, 37)))
  assert "max_latency_ms" not in str(lag.value)
  report = datareport.data_report((x, _delayed(x, 37)), SR)
  assert any("--compensate_latency" in w for w in report["warnings"])


# ----------------------------------- 8. a latency that cannot be trusted


def test_false_latencies_are_unknown_with_their_reason(tmp_path):
  x = _noise(1.0)
  # A real delay of a broadband pair is still found.
  assert datareport.data_report((x, _delayed(x, 37)), SR)["latency"][
      "samples"] == 37
  cases = {
      "silent": ((x, np.zeros_like(x)), "silent target"),
      "rates": (_wavs(tmp_path, x, x, SR, 48000), "44100 Hz, the target at "
                "48000 Hz"),
  }
  t = np.arange(SR // 2) / SR
  sine = (0.5 * np.sin(2 * np.pi * 100 * t)).astype(np.float32)
  cases["low sine"] = ((sine, _delayed(sine, 20)), "broadband")
  for name, (pair, reason) in cases.items():
    report = datareport.data_report(pair, None if name == "rates" else SR)
    latency = report["latency"]
    assert latency["samples"] is None and latency["ms"] is None, name
    assert reason in latency["undefined"], (name, latency)
    assert f"latency undefined ({latency['undefined']}" in (
        datareport.format_report(report))


def test_an_untrusted_peak_is_unknown():
  x, other = _noise(1.0), _noise(1.0, seed=1)
  assert latency_lib.latency_or_reason(x, _delayed(x, 37), 2205) == (37, None)
  # An unrelated target: no peak stands out.
  latency, why = latency_lib.latency_or_reason(x, other, 2205)
  assert latency is None and "does not stand out" in why
  # A delay at the edge of the search: the true one may be larger.
  latency, why = latency_lib.latency_or_reason(x, _delayed(x, 40), 40)
  assert latency is None and "edge of the searched range" in why
