"""A capture ends with model.nam (emu.plugins.playable): exact or distilled,
its val1 ESR measured as emu.apply plays the file, kept across re-runs,
Ctrl-C and failures.

The distilled file's student is a 4-layer NAM WaveNet (the standard one
compiles for longer than these tests take) trained 3 s on a wiener with
its initial parameters; the numbers checked are recomputed here with
numpy from `emu.apply`'s output of the file (and NAM's own package's,
where its venv is: $EMU_NAM_PYTHON, default /tmp/namvenv/bin/python).
"""

import json
import os
import shutil
import subprocess
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import soundfile as sf

from emu import apply as apply_lib
from emu import config as config_lib
from emu import data as data_lib
from emu import models
from emu import pipeline
from emu import stream
from emu import workdir as workdir_lib
from emu.models import nam_wavenet
from emu.plugins import distill
from emu.plugins import export
from emu.plugins import formats
from emu.plugins import playable

RATE = 8000
CONTEXT = RATE // 2
NAM_PYTHON = os.environ.get("EMU_NAM_PYTHON", "/tmp/namvenv/bin/python")
TINY_STUDENT = nam_wavenet.dumps({"layers": [dict(
    input_size=1, condition_size=1, channels=4, head_size=1, kernel_size=3,
    dilations=[1, 2, 4, 8], activation="Tanh", gated=False,
    head_bias=True)], "head": None, "head_scale": 0.02})
WIENER = {"shaper_width": 2, "pre_modes": 1, "post_modes": 1}


def _esr(y, t):
  """numpy's ESR, float64: sum (t - y)^2 / sum t^2."""
  y, t = np.asarray(y, np.float64), np.asarray(t, np.float64)
  return float(np.sum((t - y) ** 2) / np.sum(t ** 2))


def _pair(seconds, seed=0):
  """Noise under a slow envelope and a numpy device (tanh drive, then a
  one-pole low-pass at 1 kHz)."""
  rng = np.random.default_rng(seed)
  n = int(seconds * RATE)
  env = 0.1 + 0.4 * np.abs(np.sin(np.arange(n) * np.pi / (0.7 * RATE)))
  x = (rng.standard_normal(n) * env * 0.3).astype(np.float32)
  b, a = scipy.signal.butter(1, 1000.0, fs=RATE)
  return x, scipy.signal.lfilter(b, a, np.tanh(3.0 * x)).astype(np.float32)


def _measured_by_hand(tmp_path, path, val_input, val_target, context):
  """The file's val1 ESR recomputed: emu.apply plays val1's input WAV
  through it (python -m emu.apply --model_file), numpy scores the output
  after the context against the target."""
  sf.write(tmp_path / "val1_in.wav", val_input, RATE, subtype="FLOAT")
  apply_lib.apply_file(None, str(tmp_path / "val1_in.wav"),
                       str(tmp_path / "val1_out.wav"), model_file=path,
                       overwrite=True)
  out = sf.read(tmp_path / "val1_out.wav", dtype="float32")[0]
  return _esr(out[context:], val_target[context:]), out


@pytest.fixture(scope="module")
def teacher():
  """A wiener at its initial parameters, as a FitResult, its data (train
  4 s, val1 1 s after 0.5 s of context), its report and Config."""
  x, y = _pair(5.5)
  split = 4 * RATE
  dataset = data_lib.Dataset(
      "files_in", RATE, data_lib.Pair(x[:split], y[:split]),
      data_lib.Pair(x[split - CONTEXT:], y[split - CONTEXT:],
                    context=CONTEXT))
  model = models.create("wiener", **WIENER)
  params = model.init(jax.random.key(0), jnp.zeros((1, 256, 1)))
  val1 = dataset.val1
  esr = _esr(val1.trim(stream.make_predict(model)(params, val1.input)),
             val1.scored().target)
  result = types.SimpleNamespace(model=model, params=params,
                                 dataset=dataset,
                                 history=[{"epoch": 1, "val1_esr": esr}])
  cfg = config_lib.Config(dataset="files", train_input="in.wav",
                          train_target="rec.wav", model="wiener",
                          model_kwargs=WIENER, plugin_seconds=3.0,
                          checkpoint_every_s=0.0)
  return cfg, result, {"model": "wiener", "val1": {"esr": esr}}


def _folder(tmp_path, report):
  """A run folder holding `report` as report.json, as evaluate leaves it."""
  workdir_lib.write_json(str(tmp_path), workdir_lib.REPORT, report)
  return str(tmp_path)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, teacher):
  """The distillation interrupted by Ctrl-C after the student's first epoch,
  then the same step again: (workdir, entry, what the folder held when
  interrupted)."""
  cfg, result, report = teacher
  workdir = _folder(tmp_path_factory.mktemp("distilled"), report)
  real_fit = distill.train.fit

  def ctrl_c_after_one_epoch(student, folder, **kw):
    real_fit(student, folder, stop_after_epochs=1, **kw)
    raise KeyboardInterrupt

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(distill, "STUDENT_CONFIG", TINY_STUDENT)
    with pytest.MonkeyPatch.context() as interrupt:
      interrupt.setattr(distill.train, "fit", ctrl_c_after_one_epoch)
      with pytest.raises(KeyboardInterrupt):
        playable.write(cfg, workdir, result, dict(report))
    student = workdir_lib.path(workdir, workdir_lib.PLUGIN)
    stopped = {"report": workdir_lib.read_json(workdir, workdir_lib.REPORT),
               "history": workdir_lib.read_history(student),
               "file": os.path.exists(playable.file_path(workdir))}
    entry = playable.write(cfg, workdir, result, dict(report))
  return workdir, entry, stopped


def test_ctrl_c_in_a_distillation_keeps_the_report_and_resumes(distilled,
                                                               teacher):
  workdir, entry, stopped = distilled
  # Given a distillation stopped by Ctrl-C after the student's first epoch
  # Then the model's report was as it was, no file was written, and the
  # student's epoch was in its folder
  assert stopped["report"] == teacher[2] and not stopped["file"]
  assert [row["epoch"] for row in stopped["history"]] == [1]
  # When the step ran again, the student resumed from that epoch (its row
  # kept, not trained again) and the file was written
  again = workdir_lib.read_history(workdir_lib.path(workdir,
                                                    workdir_lib.PLUGIN))
  assert again[0] == stopped["history"][0]
  assert entry["how"] == "distilled" and entry["student_epochs"] >= 1
  assert os.path.isfile(playable.file_path(workdir))


def test_the_distilled_file_plays_and_its_esr_is_the_one_recomputed(
    distilled, teacher, tmp_path):
  workdir, entry, _ = distilled
  _, result, report = teacher
  path = playable.file_path(workdir)
  # Given the distilled file: NAM's WaveNet at the recording's rate, its
  # best val1 ESR in NAM's metadata
  with open(path) as f:
    d = json.load(f)
  assert d["architecture"] == "WaveNet" and d["sample_rate"] == RATE
  assert d["metadata"]["training"]["validation_esr"] > 0
  assert formats.load_nam(path)[0].config == TINY_STUDENT
  # and the loudness of its output on NAM's standardized input (RMS, dB),
  # recomputed here from emu.apply's output of the file
  x = sf.read(export.NAM_LOUDNESS_INPUT, dtype="float32")[0]
  y = apply_lib.play(*formats.load_nam(path)[:2], x).astype(np.float64)
  assert d["metadata"]["loudness"] == pytest.approx(
      20 * np.log10(np.sqrt(np.mean(y ** 2))), abs=1e-4)
  assert 0.0 <= d["metadata"]["gain"] <= 1.0
  # When emu.apply plays val1 through it and numpy scores the output
  val1 = result.dataset.val1
  esr, out = _measured_by_hand(tmp_path, path, val1.input, val1.target,
                               CONTEXT)
  # Then report.json's plugin entry holds that ESR beside the model's, and
  # the file's ESR against the model's own output
  kept = workdir_lib.read_json(workdir, workdir_lib.REPORT)
  assert kept["plugin"]["val1_esr"] == pytest.approx(esr, rel=1e-6)
  assert kept["plugin"]["model_val1_esr"] == report["val1"]["esr"]
  assert kept["val1"] == report["val1"]
  model_out = stream.make_predict(result.model)(result.params, val1.input)
  assert kept["plugin"]["teacher_val1_esr"] == pytest.approx(
      _esr(out[CONTEXT:], model_out[CONTEXT:]), rel=1e-5)
  line = pipeline.summary_line(workdir, {**kept, "parameters": 25,
                                         "epochs": 1, "train_seconds": 1.0,
                                         "val1": {"esr": 0.5, "acc12": 0.1}})
  assert line.endswith(f"plugin {path} (distilled) val1 ESR {esr:.3e} "
                       f"(NAM: {entry['nam_verdict']}) beside the model's "
                       f"{report['val1']['esr']:.3e}")


def test_the_same_step_again_does_not_distil_again(distilled, teacher,
                                                   monkeypatch, tmp_path):
  workdir, entry, _ = distilled
  cfg, result, report = teacher
  with open(playable.file_path(workdir), "rb") as f:
    before = f.read()

  def refuse(*args, **kwargs):
    raise AssertionError("distilled again")

  monkeypatch.setattr(distill, "STUDENT_CONFIG", TINY_STUDENT)
  monkeypatch.setattr(distill, "distill", refuse)
  # When a re-run of the finished capture reaches the step
  again = playable.write(cfg, workdir, result, dict(report))
  # Then the file and its entry are the ones made before
  assert again == json.loads(json.dumps(entry))
  with open(playable.file_path(workdir), "rb") as f:
    assert f.read() == before
  # and another model (other parameters) is distilled afresh, its file
  # never the one made for the first
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  other = types.SimpleNamespace(**{**vars(result), "params": jax.tree.map(
      lambda a: a * 0.5, result.params)})
  failed = playable.write(cfg, copy, other, dict(report))
  assert "distilled again" in failed["error"]
  assert not os.path.exists(playable.file_path(copy))


def test_a_failed_distillation_keeps_the_model_and_its_report(
    teacher, tmp_path, monkeypatch):
  cfg, result, report = teacher
  workdir = _folder(tmp_path, report)

  def fail(*args, **kwargs):
    raise RuntimeError("the student diverged")

  monkeypatch.setattr(distill, "distill", fail)
  entry = playable.write(cfg, workdir, result, dict(report))
  # Then no file, the error recorded beside the report's other entries,
  # and the summary line says what happened and what to do
  assert not os.path.exists(playable.file_path(workdir))
  kept = workdir_lib.read_json(workdir, workdir_lib.REPORT)
  assert kept["val1"] == report["val1"] and kept["plugin"] == entry
  assert entry["file"] is None
  assert pipeline.plugin_summary(workdir, entry) == (
      "no plugin file: RuntimeError: the student diverged (run the same "
      "command again to retry; the model and its report are kept)")


def test_plugin_seconds_0_writes_no_file_and_says_so(teacher, tmp_path):
  cfg, result, report = teacher
  workdir = _folder(tmp_path, report)
  entry = playable.write(cfg.replace(plugin_seconds=0.0), workdir, result,
                         dict(report))
  assert os.listdir(workdir) == [workdir_lib.REPORT]
  assert workdir_lib.read_json(workdir, workdir_lib.REPORT)["plugin"] == entry
  assert pipeline.plugin_summary(workdir, entry) == (
      "no plugin file: --plugin_seconds=0 (pass --plugin_seconds=120 for "
      "one)")


def test_a_knob_model_gets_no_file_naming_the_export_that_makes_one(teacher):
  cfg, result, _ = teacher
  x = np.zeros((RATE, 2), np.float32)
  knobs = data_lib.Dataset("k", RATE, data_lib.Pair(x, x[:, 0]),
                           result.dataset.val1)
  assert "--knobs=V1" in playable.why_none(cfg, knobs)


def test_a_negative_plugin_seconds_is_refused_naming_it():
  with pytest.raises(ValueError, match="plugin_seconds must be >= 0"):
    config_lib.Config(plugin_seconds=-1.0)


@pytest.mark.skipif(not os.access(NAM_PYTHON, os.X_OK), reason=(
    f"no Neural Amp Modeler venv at {NAM_PYTHON}: set EMU_NAM_PYTHON to the "
    "python of a venv with `pip install neural-amp-modeler`"))
def test_nam_own_package_plays_the_distilled_file_as_emu_reads_it(
    distilled, teacher, tmp_path):
  workdir, _, _ = distilled
  val1 = teacher[1].dataset.val1
  np.save(tmp_path / "x.npy", val1.input)
  jobs = [{"op": "run", "nam": playable.file_path(workdir),
           "x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")},
          {"op": "loudness", "nam": playable.file_path(workdir),
           "out": str(tmp_path / "loudness.json")}]
  (tmp_path / "jobs.json").write_text(json.dumps(jobs))
  script = os.path.join(os.path.dirname(__file__), "nam_reference.py")
  proc = subprocess.run([NAM_PYTHON, script, str(tmp_path / "jobs.json")],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  y_nam = np.load(tmp_path / "y.npy").reshape(-1)
  _, y_emu = _measured_by_hand(tmp_path, playable.file_path(workdir),
                               val1.input, val1.target, CONTEXT)
  assert np.sqrt(np.mean(y_nam ** 2)) > 1e-3  # a signal
  assert np.max(np.abs(y_nam - y_emu)) <= 1e-6
  # and the loudness and gain in its metadata are those NAM's trainer
  # computes for it
  with open(playable.file_path(workdir)) as f:
    meta = json.load(f)["metadata"]
  with open(tmp_path / "loudness.json") as f:
    nam = json.load(f)
  assert meta["loudness"] == pytest.approx(nam["loudness"], abs=1e-4)
  assert meta["gain"] == pytest.approx(nam["gain"], abs=1e-5)


# ------------------------------------------- exact: through the pipeline


@pytest.fixture(scope="module")
def lstm_capture(tmp_path_factory):
  """README's capture command in small: an LSTM-4 trained on a recorded
  pair (dataset 'files', 6 s): (workdir, report, cfg, input, target)."""
  folder = tmp_path_factory.mktemp("lstm_capture")
  x, y = _pair(6.0, seed=1)
  for name, audio in (("in.wav", x), ("rec.wav", y)):
    sf.write(folder / name, audio, RATE, subtype="FLOAT")
  cfg = config_lib.Config(
      dataset="files", train_input=str(folder / "in.wav"),
      train_target=str(folder / "rec.wav"), max_latency_ms=0.0,
      model="lstm", model_kwargs={"hidden_size": 4}, segment_length=2048,
      warmup=256, batch_size=4, learning_rate=2e-2, max_epochs=20,
      stream_blocks=())
  workdir = str(folder / "run")
  return workdir, pipeline.run(cfg, workdir), cfg, x, y


def test_an_lstm_capture_ends_with_its_exact_file(lstm_capture, tmp_path):
  workdir, report, cfg, x, y = lstm_capture
  entry = report["plugin"]
  # Then the run wrote the LSTM as it is (its skip one more unit)
  assert entry["file"] == workdir_lib.PLUGIN_FILE and entry["how"] == "exact"
  path = playable.file_path(workdir)
  model, _, rate = formats.load_nam(path)
  assert (model.hidden_size, rate) == (5, RATE)
  # whose val1 ESR, recomputed (the recording's last 10% after a second of
  # context), is the model's to float32 rounding
  split = int(round(len(x) * 0.9))
  context = min(split, RATE)
  esr, _ = _measured_by_hand(tmp_path, path, x[split - context:],
                             y[split - context:], context)
  assert entry["val1_esr"] == pytest.approx(esr, rel=1e-6)
  assert esr == pytest.approx(report["val1"]["esr"], rel=1e-4)
  assert workdir_lib.read_json(workdir, workdir_lib.REPORT)["plugin"] == entry
  # and the run's last line names the file and both ESRs
  line = pipeline.summary_line(workdir, report, cfg)
  assert line.endswith(
      f"; plugin {path} (exact) val1 ESR {entry['val1_esr']:.3e} (NAM: "
      f"{entry['nam_verdict']}) beside the model's "
      f"{report['val1']['esr']:.3e}")


def test_a_file_whose_loudness_cannot_be_computed_is_written_without_it(
    teacher, tmp_path, monkeypatch):
  cfg, result, report = teacher
  workdir = _folder(tmp_path, report)
  model = nam_wavenet.NamWaveNet(config=TINY_STUDENT)
  student = types.SimpleNamespace(
      model=model, params=model.init(jax.random.key(1), jnp.zeros((1, 64, 1))),
      history=[{"epoch": 1, "val1_esr": 0.5}], epochs=1, train_seconds=1.0)
  monkeypatch.setattr(distill, "distill", lambda *a, **k: student)

  def unreadable(d, *args):
    raise RuntimeError("Error opening 'loudness_input.wav': System error.")

  monkeypatch.setattr(export, "with_loudness", unreadable)
  entry = playable.write(cfg, workdir, result, dict(report))
  # Then the file is there and plays; its metadata has no loudness
  assert entry["file"] == workdir_lib.PLUGIN_FILE and entry["how"] == "distilled"
  with open(playable.file_path(workdir)) as f:
    assert "loudness" not in json.load(f)["metadata"]
