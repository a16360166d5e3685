"""Capturing a stand-in device: record it, train emu and NAM, score both.

The steps behind benchmarks/capture_bench.py:

  record       emu's test signal (`emu.capture.testsignal`) through a device:
               input.wav (+ its layout sidecar) and recorded.wav
  held_out     what both models are scored on: real voice and music
               (`devices.program_material`) through the device, and the end
               of the recording itself (emu's val1, which neither trains on)
  train_emu    experiments/run.py on the recording (a child process)
  predict_emu  the trained emu model on the held-out inputs, one thread
               (a child process: `python -m benchmarks.capture predict ...`)
  train_nam    benchmarks/nam_train.py, run by NAM's own virtual env
  score        emu.metrics.esr of each model's outputs, part by part and
               pooled by group (voice, music, test_end)

Latency: the recording's latency is measured once (`latency`, emu's own
estimate) and handed to both sides the same way: emu's run gets
--compensate_latency, NAM's data the same 'delay', and `score` compares
a model's output at t with the device's output at t + latency. The
stand-in devices have none (every one answers an impulse at its own
sample), so it is 0 unless a device changes.
"""

import json
import os
import signal
import subprocess
import sys
import time
from typing import NamedTuple

import numpy as np
import soundfile as sf

from emu import metrics
from emu.capture import testsignal
from emu import workdir as workdir_lib
from emu.train import restore
from emu.data import latency as latency_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_PY = os.path.join(ROOT, "experiments", "run.py")
NAM_TRAIN = os.path.join(ROOT, "benchmarks", "nam_train.py")
DEFAULT_NAM_PYTHON = "/tmp/namvenv/bin/python"
VAL_FRACTION = 0.1  # emu's files dataset holds out the last 10 % as val1
CONTEXT_SECONDS = 2.0  # played before the held-out end, not scored
MAX_LATENCY_MS = 50.0  # searched, as emu.data.files.load_pair does
ONE_THREAD = ("--xla_cpu_multi_thread_eigen=false "
              "intra_op_parallelism_threads=1")
TEST_END = "test_end"


class Recording(NamedTuple):
  input: str  # input.wav: the test signal
  target: str  # recorded.wav: the device's output
  sample_rate: int
  samples: int


def nam_python() -> str:
  """The NAM venv's python: $EMU_NAM_PYTHON, else DEFAULT_NAM_PYTHON."""
  return os.environ.get("EMU_NAM_PYTHON") or DEFAULT_NAM_PYTHON


def record(device, sample_rate: int, seconds: float, workdir: str
           ) -> Recording:
  """Plays emu's test signal through `device` into workdir.

  Writes input.wav (24-bit, with input.layout.json) and recorded.wav
  (24-bit: what an audio interface gives; the devices keep their peaks
  below full scale).

  Raises:
    ValueError: the device's output clips or is not finite.
  """
  os.makedirs(workdir, exist_ok=True)
  in_path = os.path.join(workdir, "input.wav")
  out_path = os.path.join(workdir, "recorded.wav")
  testsignal.write(in_path, sample_rate=sample_rate, seconds=seconds,
                   overwrite=True)
  x, rate = sf.read(in_path, dtype="float32")
  y = np.asarray(device.process(x, rate), np.float32)
  if y.shape != x.shape or not np.all(np.isfinite(y)):
    raise ValueError(f"{device.name}: output shape {y.shape} or values are "
                     f"bad for an input of shape {x.shape}")
  peak = float(np.max(np.abs(y)))
  if peak >= 0.999:
    raise ValueError(f"{device.name}: output peak {peak:.3f} clips a 24-bit "
                     "recording; lower the device's level")
  sf.write(out_path, y, rate, subtype="PCM_24")
  return Recording(in_path, out_path, int(rate), int(len(x)))


def read(recording: Recording):
  """(input, recorded) float32 arrays as the trainers read them."""
  x, _ = sf.read(recording.input, dtype="float32")
  y, _ = sf.read(recording.target, dtype="float32")
  return x, y


def val_start(samples: int) -> int:
  """The first sample of val1: emu's files dataset split."""
  return int(round(samples * (1.0 - VAL_FRACTION)))


def latency(recording: Recording) -> int:
  """The recording's latency in samples (emu's estimate, as load_pair's)."""
  x, y = read(recording)
  max_lag = min(int(round(MAX_LATENCY_MS * recording.sample_rate / 1000.0)),
                len(x) - 1)
  return int(latency_lib.estimate_latency(x, y, max_lag))


class HeldOut(NamedTuple):
  inputs: dict  # name -> float32 [time], played from a fresh state
  targets: dict  # name -> the device's output for it
  score_from: dict  # name -> first scored sample (before it: context)


def held_out(recording: Recording, device, material: dict) -> HeldOut:
  """The held-out set: each material part through the device, and the
  recording's end (val1) after CONTEXT_SECONDS of what precedes it."""
  inputs, targets, score_from = {}, {}, {}
  for name, x in material.items():
    inputs[name] = np.asarray(x, np.float32)
    targets[name] = np.asarray(device.process(x, recording.sample_rate),
                               np.float32)
    score_from[name] = 0
  x, y = read(recording)
  start = val_start(len(x))
  context = min(start, int(CONTEXT_SECONDS * recording.sample_rate))
  inputs[TEST_END] = x[start - context:]
  targets[TEST_END] = y[start - context:]
  score_from[TEST_END] = context
  return HeldOut(inputs, targets, score_from)


def prepare(device, folder: str, sample_rate: int, seconds: float,
            material: dict):
  """(Recording, HeldOut) for a device: `record` and `held_out` (and the
  held-out inputs in folder/inputs.npz, as `save_inputs`), or what an
  earlier call left in `folder` for the same device, length, rate and
  material (a SPICE circuit takes minutes per minute of audio)."""
  stamp = {"device": device.name, "description": device.description,
           "seconds": seconds, "sample_rate": sample_rate,
           "material": {k: len(v) for k, v in sorted(material.items())}}
  stamp_path = os.path.join(folder, "prepared.json")
  held_path = os.path.join(folder, "held_out.npz")
  if all(os.path.exists(p) for p in (stamp_path, held_path, os.path.join(
      folder, "inputs.npz"))):
    with open(stamp_path) as f:
      if json.load(f) == stamp:
        rec_dir = os.path.join(folder, "recording")
        info = sf.info(os.path.join(rec_dir, "input.wav"))
        rec = Recording(os.path.join(rec_dir, "input.wav"),
                        os.path.join(rec_dir, "recorded.wav"),
                        int(info.samplerate), int(info.frames))
        with np.load(held_path) as z:
          held = HeldOut(
              {k[2:]: z[k] for k in z.files if k.startswith("x/")},
              {k[2:]: z[k] for k in z.files if k.startswith("y/")},
              {k[2:]: int(z[k]) for k in z.files if k.startswith("s/")})
        return rec, held
  rec = record(device, sample_rate, seconds, os.path.join(folder, "recording"))
  held = held_out(rec, device, material)
  np.savez(held_path, **{f"x/{k}": v for k, v in held.inputs.items()},
           **{f"y/{k}": v for k, v in held.targets.items()},
           **{f"s/{k}": v for k, v in held.score_from.items()})
  save_inputs(held, os.path.join(folder, "inputs.npz"))
  with open(stamp_path, "w") as f:
    json.dump(stamp, f)  # last: a stamp means both are complete
  return rec, held


def save_inputs(held: HeldOut, path: str):
  """An npz of x/<name> inputs, what both predictors read."""
  np.savez(path, **{f"x/{k}": v for k, v in held.inputs.items()})


def group(name: str) -> str:
  """voice, music or test_end: the pools `score` reports."""
  if name == TEST_END:
    return TEST_END
  return "voice" if name.startswith("voice") else "music"


def _aligned(prediction, target, lag: int, start: int):
  """(prediction, target) with prediction[t] against target[t + lag],
  both from `start` on."""
  n = min(len(prediction), len(target))
  p, t = prediction[:n], target[:n]
  if lag > 0:
    p, t = p[:n - lag], t[lag:]
  elif lag < 0:
    p, t = p[-lag:], t[:n + lag]
  return p[start:], t[start:]


def score(held: HeldOut, predictions: dict, lag: int = 0) -> dict:
  """ESR (emu.metrics.esr) per part and per group; a group pools its
  parts' samples (sum of errors over sum of target energies)."""
  parts, pooled = {}, {}
  for name in held.inputs:
    p, t = _aligned(np.asarray(predictions[name], np.float64),
                    np.asarray(held.targets[name], np.float64), lag,
                    held.score_from[name])
    parts[name] = metrics.esr(p, t)
    err, energy = pooled.get(group(name), (0.0, 0.0))
    pooled[group(name)] = (err + parts[name] * float(np.sum(t * t)),
                           energy + float(np.sum(t * t)))
  groups = {g: e / s for g, (e, s) in pooled.items()}
  return {"parts": parts, "groups": groups}


def _run(argv, log_path, env=None, allowed=()) -> float:
  """Runs argv with its output in log_path; wall seconds, or
  RuntimeError quoting the log's tail (unless its exit status is in
  `allowed`). An exception in the wait (Ctrl-C, or SystemExit from
  `exit_on_sigterm`) kills the child too."""
  start = time.perf_counter()
  with open(log_path, "w") as log:
    proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                          env=env, cwd=ROOT, check=False)
  wall = time.perf_counter() - start
  if proc.returncode and proc.returncode not in allowed:
    with open(log_path) as log:
      tail = log.read()[-3000:]
    raise RuntimeError(f"{os.path.basename(argv[1])} failed (exit "
                       f"{proc.returncode}); {log_path} ends:\n{tail}")
  return wall


def exit_on_sigterm():
  """SIGTERM raises SystemExit, so that `_run` kills its child (a
  trainer) before this process ends."""
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def use_cores(threads: int) -> int:
  """Confines this process, and so every child it starts, to its first
  `threads` usable cores (all of them if None); returns the count."""
  cores = sorted(os.sched_getaffinity(0)) if hasattr(
      os, "sched_getaffinity") else []
  if not cores:
    return threads or os.cpu_count() or 1
  if threads and threads < len(cores):
    os.sched_setaffinity(0, cores[:threads])
    return threads
  return len(cores)


def train_emu(recording: Recording, workdir: str, budget_s: float,
              flagfile: str, extra_flags=(), threads: int = 0) -> dict:
  """experiments/run.py --flagfile=... on the recording; its report plus
  the process's wall seconds. threads=1: XLA's one-thread flags (its
  default pool would start a thread per core whatever the affinity)."""
  os.makedirs(workdir, exist_ok=True)
  argv = [sys.executable, RUN_PY, f"--flagfile={flagfile}",
          f"--train_input={recording.input}",
          f"--train_target={recording.target}", f"--workdir={workdir}",
          f"--time_budget_s={budget_s:g}", "--overwrite", *extra_flags]
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  if threads == 1:
    env["XLA_FLAGS"] = ONE_THREAD
  # A capture above ESR 0.3 exits 2 but keeps its report: a bench scores
  # it as it is (a missing report still fails below).
  wall = _run(argv, os.path.join(workdir, "run.log"), env, allowed=(2,))
  report = workdir_lib.read_json(workdir, workdir_lib.REPORT)
  return {"report": report, "wall_s": wall}


def predict_emu(workdir: str, inputs_npz: str, out_npz: str,
                rtf_seconds: float = 10.0) -> dict:
  """The trained run on every input, in a one-thread pinned child; its
  info (parameters, offline RTF on rtf_seconds of audio) and the
  predictions."""
  env = dict(os.environ, XLA_FLAGS=ONE_THREAD)
  argv = [sys.executable, "-m", "benchmarks.capture", "predict", workdir,
          inputs_npz, out_npz, f"{rtf_seconds:g}"]
  _run(argv, os.path.join(workdir, "predict.log"), env)
  with np.load(out_npz) as z:
    predictions = {k[2:]: z[k] for k in z.files if k.startswith("y/")}
  with open(out_npz + ".json") as f:
    info = json.load(f)
  return {"predictions": predictions, **info}


def _predict_child(workdir: str, inputs_npz: str, out_npz: str,
                   rtf_seconds: str):
  """The child of `predict_emu` (XLA_FLAGS already one thread)."""
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  from emu import stream  # pylint: disable=g-import-not-at-top
  from emu.report import speed
  import jax  # pylint: disable=g-import-not-at-top
  model, params, _ = restore.load_params(workdir, "best")
  predict = stream.make_predict(model)
  with np.load(inputs_npz) as z:
    out = {"y/" + k[2:]: predict(params, z[k]).astype(np.float32)
           for k in z.files}
  np.savez(out_npz, **out)
  rate = workdir_lib.sample_rate_of(workdir)
  rtf = max((speed.offline_rtf(model, params, seconds=float(rtf_seconds),
                                sample_rate=rate, repeats=1)["rtf"]
             for _ in range(3)))
  info = {"parameters": int(sum(p.size for p in jax.tree.leaves(params))),
          "rtf_offline_1thread": rtf}
  with open(out_npz + ".json", "w") as f:
    json.dump(info, f)


def train_nam(recording: Recording, outdir: str, preset: str,
              budget_s: float, threads: int, delay: int, inputs_npz: str,
              python: str = None, rtf_seconds: float = 10.0) -> dict:
  """benchmarks/nam_train.py in NAM's venv; its result.json, the
  predictions and the process's wall seconds."""
  os.makedirs(outdir, exist_ok=True)
  python = python or nam_python()
  if not os.path.exists(python):
    raise FileNotFoundError(
        f"no NAM python at {python}: make a venv with python -m venv "
        "/tmp/namvenv && /tmp/namvenv/bin/pip install neural-amp-modeler "
        "(CPU torch), or point EMU_NAM_PYTHON / --nam_python at one")
  argv = [python, NAM_TRAIN, f"--input={recording.input}",
          f"--target={recording.target}", f"--outdir={outdir}",
          f"--preset={preset}", f"--budget_s={budget_s:g}",
          f"--threads={threads}", f"--val_start={val_start(recording.samples)}",
          f"--delay={delay}", f"--eval={inputs_npz}",
          f"--rtf_seconds={rtf_seconds:g}"]
  return _nam_child(argv, outdir)


def _nam_child(argv, outdir: str) -> dict:
  """benchmarks/nam_train.py run as `argv` (NAM's venv, emu's environment
  left out): its result.json, the predictions and its wall seconds."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "XLA_FLAGS")}
  wall = _run(argv, os.path.join(outdir, "nam.log"), env)
  with open(os.path.join(outdir, "result.json")) as f:
    info = json.load(f)
  with np.load(os.path.join(outdir, "predictions.npz")) as z:
    predictions = {k[2:]: z[k] for k in z.files}
  return {"predictions": predictions, "wall_s": wall, **info}


def play_nam_file(nam_file: str, outdir: str, inputs_npz: str,
                  python: str = None, rtf_seconds: float = 10.0) -> dict:
  """NAM's own package plays `nam_file` (benchmarks/nam_train.py
  --play_file) on every input; its result.json and the predictions."""
  os.makedirs(outdir, exist_ok=True)
  python = python or nam_python()
  argv = [python, NAM_TRAIN, f"--play_file={nam_file}", f"--outdir={outdir}",
          f"--eval={inputs_npz}", f"--rtf_seconds={rtf_seconds:g}"]
  return _nam_child(argv, outdir)


if __name__ == "__main__":
  if len(sys.argv) != 6 or sys.argv[1] != "predict":
    sys.exit("usage: python -m benchmarks.capture predict WORKDIR "
             "INPUTS.npz OUT.npz RTF_SECONDS")
  _predict_child(*sys.argv[2:])
