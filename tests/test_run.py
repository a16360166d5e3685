"""experiments/run.py end to end, as a user runs it (subprocesses)."""

import json
import math
import os
import subprocess
import sys

import pytest

from emu.train import parallel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, timeout=300):
  return subprocess.run(
      [sys.executable, "experiments/run.py", *args], cwd=ROOT,
      capture_output=True, text=True, timeout=timeout,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))


def finite_numbers(tree):
  if isinstance(tree, dict):
    for value in tree.values():
      yield from finite_numbers(value)
  elif isinstance(tree, list):
    for value in tree:
      yield from finite_numbers(value)
  elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
    yield tree


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("tiny")
  result = run("--flagfile=experiments/tiny.flags", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


def test_tiny_run_leaves_report_audio_and_plots(tiny_run):
  workdir, result = tiny_run
  report = json.loads((workdir / "report.json").read_text())
  for key in ("model", "parameters", "train_seconds", "epochs", "val1",
              "streaming", "response_error", "stop_reason"):
    assert key in report, key
  assert report["epochs"] == 3 and report["model"] == "lstm"
  for key in ("esr", "mse", "mae", "snr_db", "acc12", "acc16", "lsd_db",
              "spectral_convergence", "mrstft"):
    assert math.isfinite(report["val1"][key]), key
  assert all(math.isfinite(v) for v in finite_numbers(report))
  assert report["streaming"][0]["block_size"] == 64
  for kind in ("input", "target", "output", "difference"):
    assert (workdir / "audio" / f"val1_{kind}.wav").stat().st_size > 1000
  assert (workdir / "plots" / "training_curves.png").exists()
  assert "--hidden_size=8" in (workdir / "flags.txt").read_text()
  rows = (workdir / "metrics.jsonl").read_text().strip().splitlines()
  assert len(rows) == 3
  assert "val1 ESR" in result.stdout
  assert report["devices"] == 1 and report["parallel"] == "data"


def test_cpu_device_count_splits_an_ensemble_over_the_cores():
  count = parallel.cpu_device_count
  # (ensemble, --cpu_devices, usable cores, XLA_FLAGS) -> devices
  assert count(4, None, 2, "") == 2  # 2 members on each core
  assert count(4, None, 16, "") == 4
  assert count(6, None, 4, "") == 3  # the largest divisor up to the cores
  assert count(3, None, 2, "") == 1  # no divisor of 3 fits 2 cores
  assert count(4, None, 1, "") == 1
  assert count(1, None, 2, "") is None  # one member: JAX's default
  forced = "--xla_force_host_platform_device_count=2"
  assert count(4, None, 2, forced) is None  # the user's XLA_FLAGS win
  assert count(1, 2, 2, forced) == 2  # an explicit request wins over them
  with pytest.raises(ValueError, match="at least 1"):
    count(4, 0, 2, "")


def test_ensemble_run_trains_its_members_apart_on_the_cores(tmp_path):
  result = run("--flagfile=experiments/tiny.flags", "--ensemble=2",
               "--max_epochs=1", "--stream_blocks=",
               f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((tmp_path / "report.json").read_text())
  cores = parallel.usable_cores()
  assert report["devices"] == (2 if cores >= 2 else 1)
  assert report["parallel"] == ("members" if cores >= 2 else "data")
  assert len(report["val1"]["members_esr"]) == 2


def test_other_config_in_same_workdir_is_refused(tiny_run):
  workdir, _ = tiny_run
  result = run("--flagfile=experiments/tiny.flags", "--hidden_size=9",
               f"--workdir={workdir}")
  assert result.returncode == 2
  assert "different config" in result.stderr and "--overwrite" in (
      result.stderr)


@pytest.mark.parametrize("args, message", [
    (["--hiden_size=8"], "hiden_size"),
    (["--flagfile=experiments/no_such.flags"], "no_such.flags"),
    (["--channels=4"], "does not apply to model 'lstm'"),
    (["--model=transformer"], "transformer"),
    (["--loss=esr=1,nope=2"], "nope"),
    (["--cpu_devices=0"], "--cpu_devices must be at least 1"),
])
def test_bad_flags_get_clear_errors(tmp_path, args, message):
  result = run("--flagfile=experiments/tiny.flags", *args,
               f"--workdir={tmp_path}", timeout=120)
  assert result.returncode != 0
  assert message in result.stderr
  assert "Traceback" not in result.stderr


def apply_cli(*args):
  return subprocess.run(
      [sys.executable, "-m", "emu.apply", *args], cwd=ROOT,
      capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_apply_matches_offline_model_and_guards_files(tiny_run, tmp_path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  from emu.train import restore
  from emu.report import evaluate  # pylint: disable=g-import-not-at-top
  workdir, _ = tiny_run
  x = np.random.default_rng(0).uniform(-0.5, 0.5, 5000).astype(np.float32)
  sf.write(tmp_path / "in.wav", x, 44100, subtype="FLOAT")
  result = apply_cli(f"--workdir={workdir}", "--block_size=1024",
                     str(tmp_path / "in.wav"), str(tmp_path / "out.wav"))
  assert result.returncode == 0, result.stderr[-2000:]
  y, rate = sf.read(tmp_path / "out.wav", dtype="float32")
  model, params, _ = restore.load_params(str(workdir))
  np.testing.assert_allclose(y, evaluate.predict(model, params, x), atol=1e-5)
  assert rate == 44100
  again = apply_cli(f"--workdir={workdir}", str(tmp_path / "in.wav"),
                    str(tmp_path / "out.wav"))
  assert again.returncode == 2 and "--overwrite" in again.stderr
  sf.write(tmp_path / "in48.wav", x, 48000)
  wrong = apply_cli(f"--workdir={workdir}", str(tmp_path / "in48.wav"),
                    str(tmp_path / "o.wav"))
  assert wrong.returncode == 2 and "48000 Hz" in wrong.stderr


def test_compare_tables_runs(tiny_run, tmp_path):
  workdir, _ = tiny_run
  result = subprocess.run(
      [sys.executable, "benchmarks/compare.py", str(workdir),
       f"--out={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
      timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads((workdir / "report.json").read_text())
  assert f"{report['val1']['esr']:.3e}" in result.stdout
  assert (tmp_path / "comparison.md").read_text() in result.stdout + "\n"
  assert (tmp_path / "comparison.png").stat().st_size > 1000
  missing = subprocess.run(
      [sys.executable, "benchmarks/compare.py", str(tmp_path / "nope")],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert missing.returncode == 2 and "report.json" in missing.stderr


FLAGFILES = sorted(f for f in os.listdir(os.path.join(ROOT, "experiments"))
                   if f.endswith(".flags"))


def _recipe_text(path):
  """A flagfile's text with the text of the flagfiles it nests."""
  with open(path) as f:
    text = f.read()
  for line in text.splitlines():
    if line.startswith("--flagfile="):
      text += _recipe_text(os.path.join(ROOT, line.split("=", 1)[1]))
  return text


@pytest.mark.parametrize("flagfile", FLAGFILES)
def test_every_flagfile_makes_a_valid_config(flagfile, tmp_path):
  # Read as run.py reads it (emu.cli, in this process: one subprocess per
  # flagfile cost a JAX start each), with the user's pair for a capture
  # recipe; the config survives its JSON and the model builds.
  from emu.capture import audition  # pylint: disable=g-import-not-at-top
  from emu import cli  # pylint: disable=g-import-not-at-top
  from emu import config as config_lib  # pylint: disable=g-import-not-at-top
  from emu import pipeline  # pylint: disable=g-import-not-at-top
  path = os.path.join(ROOT, "experiments", flagfile)
  # (a recipe on top of another is a files recipe when that one is)
  files = "--dataset=files" in _recipe_text(path)
  if files:  # the recipe, then the pair, as on run.py's command line
    (tmp_path / "with_pair.flags").write_text(
        f"--flagfile={path}\n--train_input=in.wav\n--train_target=rec.wav\n")
    path = str(tmp_path / "with_pair.flags")
  cfg = cli.config_from_flagfile(path)
  assert config_lib.Config.from_json(cfg.to_json()) == cfg
  assert pipeline.parameter_count(cfg) > 0
  for _, candidate in audition.candidates(cfg):  # each a valid run
    assert pipeline.parameter_count(candidate) > 0


def test_dry_run_prints_the_config_and_the_model_size(tmp_path):
  result = run("--flagfile=experiments/lstm.flags", f"--workdir={tmp_path}",
               "--dry_run", timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  config = json.loads(result.stdout[:result.stdout.rindex("}") + 1])
  assert config["model"] == "lstm"
  assert config["model_kwargs"] == {"hidden_size": 32, "skip": True,
                                    "silent_rest": True}
  # "model lstm: 4385 parameters" (README's table).
  assert result.stdout.splitlines()[-1] == "model lstm: 4385 parameters"
  assert not os.listdir(tmp_path)  # a dry run writes nothing


@pytest.fixture(scope="module")
def device_recording(tmp_path_factory):
  """emu's test signal through a simulated device: an EQ and 5 samples of
  latency, as a user would record it."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  from emu import effects
  from emu.capture import testsignal  # pylint: disable=g-import-not-at-top
  folder = tmp_path_factory.mktemp("device")
  rate = 48000
  testsignal.write(str(folder / "input.wav"), sample_rate=rate, seconds=testsignal.MIN_SECONDS,
                   subtype="FLOAT")
  x, _ = sf.read(folder / "input.wav", dtype="float32")
  y = np.asarray(effects.highpass(x, 440.0, rate))
  y = np.concatenate([np.zeros(5, np.float32), y[:-5]])
  sf.write(folder / "recorded.wav", y, rate, subtype="FLOAT")
  return folder


FILES_RUN = ("--dataset=files", "--model=lstm", "--hidden_size=4",
             "--segment_length=2048", "--warmup=256", "--batch_size=4",
             "--max_epochs=2", "--stream_blocks=")


def test_recorded_pair_trains_with_one_command(device_recording, tmp_path):
  folder = device_recording
  result = run(*FILES_RUN, f"--train_input={folder / 'input.wav'}",
               f"--train_target={folder / 'recorded.wav'}",
               "--compensate_latency", f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  data_report = json.loads((tmp_path / "data_report.json").read_text())
  assert "latency" in json.dumps(data_report)
  assert "5 samples" in result.stderr  # the data report, logged
  report = json.loads((tmp_path / "report.json").read_text())
  assert report["sample_rate"] == 48000 and report["epochs"] == 2
  assert math.isfinite(report["val1"]["esr"])
  html = (tmp_path / "report.html").read_text()
  assert "data:audio/wav;base64," in html
  assert (tmp_path / "listening_test.html").exists()


def test_lagging_recording_is_refused_without_compensation(device_recording,
                                                           tmp_path):
  folder = device_recording
  result = run(*FILES_RUN, f"--train_input={folder / 'input.wav'}",
               f"--train_target={folder / 'recorded.wav'}",
               f"--workdir={tmp_path}")
  assert result.returncode == 2
  assert "compensate_latency" in result.stderr
  assert "Traceback" not in result.stderr
