"""A run folder knows its data, holds one run at a time, records a failure
and survives Ctrl-C (issue 26)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from emu import apply as apply_lib
from emu import pipeline
from emu import train
from emu import workdir as workdir_lib
from emu.capture import audition_workers
from emu.plugins import export as export_lib
from emu.train import batches
from emu.train import outcome
from emu.train import plan as plan_lib
from emu.train import restore
from emu.train import runlock
from test_bad_inputs import _hashes
from test_train import SAMPLE_RATE, tiny_config, tiny_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = tiny_config(max_epochs=1, checkpoint_every_s=0, stream_blocks=())
TINY = ("experiments/run.py", "--flagfile=experiments/tiny.flags",
        "--stream_blocks=")


def _popen(*args, stderr=None):
  """A child python; its stderr a pipe, or the file `stderr` (a pipe left
  unread while it runs would fill and stop it)."""
  return subprocess.Popen(
      [sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE if stderr is None else open(stderr, "w"),
      text=True, env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT),
      preexec_fn=_ctrl_c_heard)


def _ctrl_c_heard():
  """SIGINT back to its default in the child, so that its Python raises
  KeyboardInterrupt on it: a suite started in the background by a shell
  (`bash .ci/run &`) ignores SIGINT, and its children inherit that."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def _error_lines(stderr):
  return [l for l in stderr.splitlines() if l.startswith("error: ")]


@pytest.fixture(scope="module")
def data():
  return tiny_dataset(seconds=0.5, val_seconds=0.1)


def _write_pair(folder, data):
  """data's pair as WAVs (val1 the last part, as dataset 'files' reads)."""
  x = np.concatenate([data.train.input, data.val1.input])
  sf.write(folder / "in.wav", x, SAMPLE_RATE, subtype="FLOAT")
  return str(folder / "in.wav"), _record(folder, data)


def _record(folder, data, scale=1.0):
  """rec.wav: data's target (a new take: another scale)."""
  y = scale * np.concatenate([data.train.target, data.val1.target])
  sf.write(folder / "rec.wav", y, SAMPLE_RATE, subtype="FLOAT")
  return str(folder / "rec.wav")


@pytest.fixture(scope="module")
def capture(tmp_path_factory, data):
  """A finished run of a recorded pair (read only: tests change copies)."""
  folder = tmp_path_factory.mktemp("capture")
  paths = _write_pair(folder, data)
  # A one-mode lru from its least-squares start: the pair's one-pole
  # filter at once, so the capture ends well below NAM's "went wrong".
  cfg = CFG.replace(dataset="files", train_input=paths[0],
                    train_target=paths[1], model="lru",
                    model_kwargs={"state_size": 1, "data_init": True},
                    # No model.nam: distilling one takes 2 minutes, and
                    # tests/test_playable.py tests it.
                    plugin_seconds=0.0)
  pipeline.run(cfg, str(folder / "run"))
  return folder, cfg


@pytest.fixture
def capture_copy(capture, tmp_path):
  """The capture's files and run folder, copied; its config names the
  copied WAVs."""
  folder, cfg = capture
  shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
  cfg = cfg.replace(train_input=str(tmp_path / "in.wav"),
                    train_target=str(tmp_path / "rec.wav"))
  run = tmp_path / "run"
  (run / workdir_lib.CONFIG).write_text(cfg.to_json())
  inputs = json.loads((run / workdir_lib.INPUTS).read_text())
  (run / workdir_lib.INPUTS).write_text(json.dumps(
      {str(tmp_path / os.path.basename(k)): v for k, v in inputs.items()}))
  return run, cfg


# --------------------------------------------------- 1. a run knows its data


def test_a_run_records_its_input_files(capture):
  folder, cfg = capture
  inputs = json.loads((folder / "run" / workdir_lib.INPUTS).read_text())
  assert sorted(inputs) == sorted([cfg.train_input, cfg.train_target])
  for path, print_ in inputs.items():
    assert print_["size"] == os.path.getsize(path)
    assert len(print_["sha256"]) == 64
  for name in (workdir_lib.REPORT, workdir_lib.DATA_REPORT):
    assert (folder / "run" / name).exists()
  assert not (folder / "run" / workdir_lib.LOCK).exists()


def test_a_changed_recording_is_refused_and_the_run_kept(capture_copy, data):
  run, cfg = capture_copy
  before = _hashes(run)
  _record(run.parent, data, scale=0.5)  # a new take, the same name
  with pytest.raises(workdir_lib.WorkdirConflict,
                     match=f"input file {cfg.train_target} changed .*"
                     r"--overwrite"):
    pipeline.run(cfg, str(run))
  assert _hashes(run) == before  # report, audio, plots, pages, checkpoints


def test_overwrite_trains_afresh_on_the_changed_files(capture_copy, data):
  run, cfg = capture_copy
  _record(run.parent, data, scale=0.5)
  old = json.loads((run / workdir_lib.INPUTS).read_text())
  train.fit(cfg, str(run), overwrite=True)  # the same config
  new = json.loads((run / workdir_lib.INPUTS).read_text())
  assert new[cfg.train_target] != old[cfg.train_target]
  for name in (workdir_lib.REPORT, workdir_lib.DATA_REPORT,
               workdir_lib.AUDIO):  # the old data's: gone
    assert not (run / name).exists()
  # The same files again: the same run, no refusal.
  train.fit(cfg, str(run))


def test_an_interrupted_run_on_the_same_files_resumes(tmp_path, data):
  paths = _write_pair(tmp_path, data)
  cfg = CFG.replace(dataset="files", train_input=paths[0],
                    train_target=paths[1], max_epochs=2)
  train.fit(cfg, str(tmp_path / "run"), stop_after_epochs=1)
  result = train.fit(cfg, str(tmp_path / "run"))
  assert [r["epoch"] for r in result.history] == [1, 2]


def test_input_files_name_a_manifest_its_recordings_and_val2(tmp_path):
  manifest = tmp_path / "m.json"
  manifest.write_text(json.dumps({"knobs": ["drive"], "recordings": [
      {"input": "in.wav", "target": "d0.wav", "knobs": {"drive": 0.0}}],
      "validation": [{"input": "in.wav", "target": "d5.wav",
                      "knobs": {"drive": 0.5}}]}))
  for name in ("v1.wav", "v2.wav"):
    (tmp_path / name).write_bytes(b"x")
  cfg = CFG.replace(dataset="files", train_manifest=str(manifest),
                    val2_files=(str(tmp_path / "v*.wav"),))
  assert batches.input_files(cfg) == [str(manifest)] + [
      str(tmp_path / n) for n in ("in.wav", "d0.wav", "in.wav", "d5.wav",
                                  "v1.wav", "v2.wav")]
  # Only the files there are: a missing one is the data loader's to name.
  assert sorted(batches.input_fingerprints(cfg)) == [
      str(manifest), str(tmp_path / "v1.wav"), str(tmp_path / "v2.wav")]
  assert batches.input_fingerprints(CFG) == {}  # synthetic: no files


# ------------------------------------------------ 2. one run per folder


def test_a_second_run_is_refused_at_once_naming_the_holder(tmp_path, data):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / workdir_lib.CONFIG).write_text(CFG.to_json())
  sleeper = subprocess.Popen([sys.executable, "-c",
                              "import time; time.sleep(60)"])
  try:
    lock = workdir / workdir_lib.LOCK
    lock.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname()[1],
                                "started": "now"}))
    before = _hashes(workdir)
    start = time.perf_counter()
    with pytest.raises(runlock.WorkdirBusy,
                       match=f"{workdir} is in use: process {sleeper.pid} "):
      pipeline.run(CFG, str(workdir), dataset=data)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(runlock.WorkdirBusy, match=str(sleeper.pid)):
      train.fit(CFG, str(workdir), dataset=data)
    assert _hashes(workdir) == before  # its lock included
  finally:
    sleeper.kill()
    sleeper.wait()


def test_a_stale_lock_is_taken_over(tmp_path, data, caplog):
  ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                         capture_output=True, text=True, check=True)
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / workdir_lib.LOCK).write_text(json.dumps(
      {"pid": int(ended.stdout), "host": os.uname()[1], "started": "then"}))
  train.fit(CFG, str(workdir), dataset=data)
  assert "taking over the lock of process" in caplog.text
  assert not (workdir / workdir_lib.LOCK).exists()
  assert workdir_lib.read_history(str(workdir))


def test_the_lock_is_released_on_an_error_and_ctrl_c(tmp_path, data,
                                                     monkeypatch):
  workdir = tmp_path / "fresh"
  with pytest.raises(ValueError, match="unknown loss"):
    pipeline.run(CFG.replace(loss={"l1": 1.0}), str(workdir), dataset=data)
  assert not workdir.exists()  # the folder made for the lock, removed

  def interrupted(*args):
    raise KeyboardInterrupt
  monkeypatch.setattr(plan_lib, "make_plan", interrupted)
  with pytest.raises(KeyboardInterrupt):
    train.fit(CFG, str(workdir), dataset=data)
  assert not workdir.exists()
  # Held by this process: fit inside it takes it again (re-entrant).
  monkeypatch.undo()
  with runlock.held(str(workdir)):
    assert (workdir / workdir_lib.LOCK).exists()
    train.fit(CFG, str(workdir), dataset=data)
    assert (workdir / workdir_lib.LOCK).exists()
  assert not (workdir / workdir_lib.LOCK).exists()


def test_two_runs_into_one_folder_one_refused(tmp_path):
  workdir = tmp_path / "run"
  logs = [tmp_path / f"stderr{i}.txt" for i in range(2)]
  runs = [_popen(*TINY, f"--workdir={workdir}", stderr=log) for log in logs]
  ended = []
  while len(ended) < 2:
    for i, p in enumerate(runs):
      if i not in ended and p.poll() is not None:
        ended.append(i)
    time.sleep(0.05)
  (loser, loser_log), (winner, winner_log) = (
      (runs[i], logs[i].read_text()) for i in ended)
  errors = _error_lines(loser_log)
  assert loser.returncode == 2 and len(errors) == 1, loser_log[-3000:]
  assert f"{workdir} is in use: process {winner.pid} " in errors[0]
  assert winner.returncode == 0, winner_log[-3000:]
  # The winner's folder is that of a run alone.
  assert sorted(os.listdir(workdir)) == sorted([
      "audio", "checkpoints", "config.json", "dataset.json", "flags.txt",
      "listening_test.html", "metrics.jsonl", "plots", "report.html",
      "report.json"])  # synthetic data: no inputs.json
  assert [r["epoch"] for r in workdir_lib.read_history(str(workdir))] == [
      1, 2, 3]


# ------------------------------------------ 3. a failed run is not played


def test_apply_and_export_refuse_a_run_that_failed(tmp_path, data):
  workdir = tmp_path / "run"
  train.fit(CFG.replace(max_epochs=2), str(workdir), dataset=data,
            stop_after_epochs=1)
  x = tmp_path / "in.wav"
  sf.write(x, data.val1.input, SAMPLE_RATE, subtype="FLOAT")
  # Still training (no report, not failed): playable.
  apply_lib.apply_file(str(workdir), str(x), str(tmp_path / "out.wav"))
  with pytest.raises(outcome.TrainingFailed):
    train.fit(CFG.replace(learning_rate=1e3), str(workdir), dataset=data,
              overwrite=True)
  assert "no epoch improved" in workdir_lib.read_json(
      str(workdir), workdir_lib.FAILED)["error"]
  message = (f"{workdir} holds no model to use: its training failed "
             r"\(no epoch improved.*--overwrite")
  with pytest.raises(workdir_lib.FailedRun, match=message):
    apply_lib.apply_file(str(workdir), str(x), str(tmp_path / "o2.wav"))
  with pytest.raises(workdir_lib.FailedRun, match=message):
    export_lib.export_workdir(str(workdir), "nam", str(tmp_path / "o.nam"))
  assert not (tmp_path / "o2.wav").exists()
  # Trained again: no longer failed.
  train.fit(CFG, str(workdir), dataset=data, overwrite=True)
  assert not (workdir / workdir_lib.FAILED).exists()
  apply_lib.apply_file(str(workdir), str(x), str(tmp_path / "o2.wav"))


def test_an_audition_that_failed_is_recorded(tmp_path, data, monkeypatch):
  def learns_nothing(*args, **kwargs):
    raise outcome.TrainingFailed("diverged")
  monkeypatch.setattr(audition_workers.train_loop, "fit", learns_nothing)
  workdir = tmp_path / "run"
  with pytest.raises(outcome.TrainingFailed, match="every audition"):
    pipeline.run(CFG.replace(audition="learning_rate=0|0.1",
                             audition_s=1e-6, audition_workers=1),
                 str(workdir), dataset=data)
  with pytest.raises(workdir_lib.FailedRun, match="every audition"):
    restore.load_params(str(workdir))
  assert not (workdir / workdir_lib.LOCK).exists()


# ---------------------------------------------------------------- 4. Ctrl-C


def _interrupt_once(workdir, wait_for):
  """run.py into workdir, sent SIGINT once a stderr line holds wait_for;
  (exit status, stderr)."""
  run = _popen(*TINY, "--max_epochs=100000", "--checkpoint_every_s=0",
               f"--workdir={workdir}")
  seen = []
  for line in run.stderr:
    seen.append(line)
    if wait_for in line:
      run.send_signal(signal.SIGINT)
      break
  seen.append(run.stderr.read())
  run.wait(timeout=60)
  return run.returncode, "".join(seen)


def test_ctrl_c_says_how_to_resume_and_resumes(tmp_path):
  workdir = tmp_path / "run"
  status, stderr = _interrupt_once(workdir, "epoch 2/")
  assert status == 130, stderr[-3000:]
  assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
  assert (f"interrupted: the run in {workdir} stopped; run the same command "
          "again to resume it from its last checkpoint") in stderr
  assert not (workdir / workdir_lib.LOCK).exists()
  status, stderr = _interrupt_once(workdir, "resuming")
  assert status == 130, stderr[-3000:]
  assert f"resuming {workdir} from epoch" in stderr


def test_a_ctrl_c_python_drops_in_a_callback_is_sent_again(monkeypatch,
                                                           request):
  """A KeyboardInterrupt raised in a __del__ or a gc callback (JAX's) is
  printed and dropped by Python; run.py's hook sends SIGINT once more."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      "run_py", os.path.join(os.path.dirname(os.path.dirname(
          os.path.abspath(__file__))), "experiments", "run.py"))
  run_py = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(run_py)
  monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
  # Python's own handler, even where the suite was started ignoring SIGINT
  # (`_ctrl_c_heard`); put back after the test
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
  run_py.redeliver_dropped_interrupts()

  class InterruptedWhileCollected:

    def __del__(self):
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    InterruptedWhileCollected()  # dropped at once: Python ignores it
    time.sleep(5.0)  # the hook's SIGINT arrives here
