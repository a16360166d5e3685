"""Stand-in devices, held-out material and the capture benchmark's pipeline."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from benchmarks import capture
from benchmarks import devices
from emu.capture import testsignal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 44100


def _probe(n=RATE // 2):
  """n samples of a decaying sine burst plus noise, peak about -6 dBFS."""
  t = np.arange(n) / RATE
  rng = np.random.default_rng(0)
  x = 0.4 * np.sin(2 * np.pi * 220 * t) * np.exp(-3 * t)
  return (x + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _device(name):
  dev = devices.device(name)
  reason = devices.unavailable(dev)
  if reason:
    pytest.skip(reason)
  return dev


@pytest.mark.parametrize("name", list(devices.DEVICES))
def test_given_a_device_when_played_twice_then_same_sane_output(name):
  dev = _device(name)
  # A tenth of a second for the circuits and plugins (ngspice runs about
  # 6 s per second of audio; tests/test_circuits.py checks them further).
  x = _probe(RATE // 10 if dev.apt else RATE // 2)
  y = dev.process(x, RATE)
  assert y.dtype == np.float32 and y.shape == x.shape
  assert np.all(np.isfinite(y)) and np.max(np.abs(y)) < 0.999
  assert np.array_equal(y, dev.process(x, RATE))  # deterministic, reset
  assert np.sum((y - x) ** 2) > 1e-3 * np.sum(x ** 2)  # not the identity
  assert dev.description


@pytest.mark.parametrize("name", list(devices.DEVICES))
def test_given_an_impulse_when_played_then_nothing_comes_before_it(name):
  dev = _device(name)
  x = np.zeros(4096, np.float32)
  x[1000] = 0.5
  y = dev.process(x, RATE)
  # Causal, no lookahead. A SPICE circuit or an LV2 plugin at rest sits
  # near 0, not at it (a solver's tolerance, up to 1e-8; swh_valve's
  # denormal guard, 4e-26): within 1e-7. pedalboard and emu give exactly 0.
  rest = 1e-7 if dev.apt else 0.0
  assert np.max(np.abs(y[:1000])) <= rest
  assert abs(y[1000]) > 1e-3  # answers at once: latency 0


def test_given_an_unknown_name_when_looked_up_then_the_names_are_listed():
  with pytest.raises(ValueError, match="pb_overdrive"):
    devices.device("nope")


@pytest.mark.skipif(not devices.material_available(),
                    reason="needs Debian's alsa-utils and sonic-pi-samples")
def test_given_the_packages_when_material_loads_then_named_mono_parts():
  full = devices.program_material(RATE)
  half = devices.program_material(RATE // 2)
  assert "voice" in full and any(k.startswith("guitar") for k in full)
  assert {devices.group(k) for k in full} == {"voice", "music"}
  for name, x in full.items():
    assert x.dtype == np.float32 and x.ndim == 1, name
    assert abs(len(half[name]) / len(x) - 0.5) < 1e-3, name  # resampled
    rms_db = 20 * np.log10(np.sqrt(np.mean(np.square(x))))
    assert rms_db <= devices.MATERIAL_RMS_DB + 0.01, name
    assert np.max(np.abs(x)) <= 10 ** (devices.MATERIAL_PEAK_DB / 20) + 1e-6


def test_given_no_package_when_material_loads_then_error_names_it(
    monkeypatch):
  monkeypatch.setattr(devices, "_PARTS", (
      ("piano", "/nonexistent/ambi_piano.flac", "sonic-pi-samples"),))
  with pytest.raises(FileNotFoundError, match="apt-get install sonic-pi"):
    devices.program_material(RATE)
  assert devices.missing_packages() == ["sonic-pi-samples"]


def test_given_a_device_when_recorded_then_input_and_recording_align(
    tmp_path):
  dev = devices.device("emu_compressor")
  rec = capture.record(dev, RATE, testsignal.MIN_SECONDS, str(tmp_path))
  x, y = capture.read(rec)
  assert os.path.exists(tmp_path / "input.layout.json")
  assert sf.info(rec.target).subtype == "PCM_24"
  assert len(x) == len(y) == rec.samples
  assert capture.latency(rec) == 0
  expected = dev.process(x, RATE)
  assert np.max(np.abs(y - expected)) < 2 ** -22  # 24-bit rounding only


def _bench(tmp_path, *flags, timeout=600):
  """capture_bench.py's CompletedProcess; on a timeout its whole process
  group (the trainers too) is killed."""
  with subprocess.Popen(
      [sys.executable, "benchmarks/capture_bench.py", "--seconds=12.6",
       f"--workdir={tmp_path}", *flags], cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True, start_new_session=True,
      env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)) as proc:
    try:
      out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      raise
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# A tiny emu recipe on top of the bench's (capture_families.flags): the
# pipeline, not the quality.
_TINY = ["--emu_flag=--shaper_width=2", "--emu_flag=--pre_modes=1",
         "--emu_flag=--segment_length=2048", "--emu_flag=--warmup=256",
         "--emu_flag=--stream_blocks=",
         # One model, not the recipe's audition (tests/test_audition.py).
         "--emu_flag=--audition=",
         # No model.nam: distilling one is tests/test_playable.py's.
         "--emu_flag=--plugin_seconds=0"]


@pytest.mark.skipif(not devices.material_available(),
                    reason="needs Debian's alsa-utils and sonic-pi-samples")
def test_given_a_tiny_budget_when_the_bench_runs_emu_then_a_scored_row(
    tmp_path):
  done = _bench(tmp_path, "--skip_nam", "--budget_s=2",
                "--devices=emu_compressor", "--material_seconds=1",
                "--rtf_seconds=1", "--threads=1", *_TINY)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads((tmp_path / "capture_bench.json").read_text())
  (row,) = result["rows"]
  assert row["device"] == "emu_compressor" and row["latency"] == 0
  assert set(row["groups"]) == {"voice", "music", "test_end"}
  assert all(np.isfinite(v) for v in row["groups"].values())
  assert row["rtf"] > 0 and row["parameters"] > 0
  assert result["threads"] == 1
  assert "| emu_compressor | emu wiener |" in done.stdout


def test_given_an_unknown_device_when_the_bench_starts_then_one_error_line(
    tmp_path):
  done = _bench(tmp_path, "--devices=nope", "--skip_nam")
  assert done.returncode == 2
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: unknown device")


@pytest.mark.skipif(not os.path.exists(capture.nam_python()),
                    reason="needs NAM's venv ($EMU_NAM_PYTHON)")
@pytest.mark.skipif(not devices.material_available(),
                    reason="needs Debian's alsa-utils and sonic-pi-samples")
def test_given_nams_venv_when_the_bench_runs_then_nam_is_scored_too(
    tmp_path):
  done = _bench(tmp_path, "--budget_s=2", "--devices=emu_compressor",
                "--nam_models=lstm_nano", "--material_seconds=1",
                "--rtf_seconds=1", "--threads=1", *_TINY)
  assert done.returncode == 0, done.stderr[-3000:]
  rows = json.loads((tmp_path / "capture_bench.json").read_text())["rows"]
  assert [r["model"] for r in rows] == ["emu wiener", "NAM lstm_nano"]
  assert np.isfinite(rows[1]["groups"]["voice"])
  assert rows[1]["parameters"] > 0 and rows[1]["rtf"] > 0
