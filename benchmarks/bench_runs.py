"""The benchmark's processes: its children and whole run.py trainings.

`run_child` runs one part of benchmarks/bench.py in a fresh process (how
threads and devices are set: XLA_FLAGS must be in place before JAX starts).
`quality` and `ensemble_runs` train with `experiments/run.py` and read the
run folder (`emu.workdir`'s metrics.jsonl and report.json).
"""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import bench_options
from emu import workdir

ROOT = bench_options.ROOT


def run_child(part, opts, xla_flags, pin):
  """Runs benchmarks/bench.py for one part in a fresh process (CPU only,
  XLA_FLAGS=xla_flags); returns its JSON."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if xla_flags:
    env["XLA_FLAGS"] = xla_flags
  else:
    env.pop("XLA_FLAGS", None)
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
    path = f.name
  argv = [sys.executable, bench_options.SCRIPT, f"--part={part}",
          f"--part_out={path}", *opts.child_flags()]
  if pin:
    argv.append("--pin")
  result = subprocess.run(argv, env=env, cwd=ROOT, check=False)
  if result.returncode:
    raise RuntimeError(f"bench part {part!r} failed ({result.returncode})")
  with open(path) as f:
    data = json.load(f)
  os.remove(path)
  return data


def run_flags(recipe, run_dir, *extra):
  """run.py's flags for the recipe, into run_dir, then `extra`."""
  return [f"--flagfile={recipe}", f"--workdir={run_dir}", *extra]


def train_run(what, run_dir, flags, env=None):
  """Runs experiments/run.py with flags (from `run_flags(..., run_dir,
  ...)`); (metrics.jsonl rows, report.json, wall seconds)."""
  start = time.perf_counter()
  result = subprocess.run([sys.executable, bench_options.RUN_PY, *flags],
                          cwd=ROOT, capture_output=True, text=True, env=env,
                          check=False)
  wall = time.perf_counter() - start
  if result.returncode:
    raise RuntimeError(f"{what} failed:\n{result.stderr[-3000:]}")
  return (workdir.read_history(run_dir),
          workdir.read_json(run_dir, workdir.REPORT), wall)


def quality(opts, name):
  """Seconds of training to val1 ESR thresholds, from a real run."""
  family, kwargs = bench_options.MODELS[name]
  run_dir = tempfile.mkdtemp(prefix=f"emu_bench_{name}_")
  flags = run_flags(opts.recipe, run_dir, f"--model={family}",
                    "--stream_blocks=64",
                    *(f"--{k}={v}" for k, v in kwargs.items()),
                    *opts.quality_flags)
  rows, report, wall = train_run("quality run", run_dir, flags)
  out = {"workdir": run_dir, "flags": flags, "epochs": len(rows),
         "train_s": rows[-1]["elapsed_s"], "run_wall_s": wall,
         "best_val1_esr": min(r["val1_esr"] for r in rows),
         "final_val1_esr": rows[-1]["val1_esr"]}
  for threshold in bench_options.THRESHOLDS:
    hit = next((r for r in rows if r["val1_esr"] < threshold), None)
    out[f"s_to_{threshold:.0e}"] = hit["elapsed_s"] if hit else None
  out["report_val1_esr"] = report["val1"]["esr"]
  if "val2" in report:
    out["report_val2_esr"] = report["val2"]["esr"]
  return out


def ensemble_runs(opts):
  """Whole training runs: one member against E members, as run.py runs them.

  `experiments/run.py` on the recipe for --ensemble_runs epochs (no time
  budget, no early stopping), each in its own process with JAX's default
  devices unless --cpu_devices says otherwise: one member (1 device), one
  member with the batch split over 2 CPU devices, E members (run.py's
  default: the members split over min(E, cores) CPU devices) and E members
  on 1 device. train_s is the training time run.py records (steps and the
  per-epoch validation; evaluation and compilation excluded). The variants
  take turns in every repeat; the best of --runs_repeats is kept.
  """
  size, epochs = opts.ensemble, opts.ensemble_runs
  variants = {"one_member": [], "one_member_2dev": ["--cpu_devices=2"],
              "ensemble": [f"--ensemble={size}"],
              "ensemble_1dev": [f"--ensemble={size}", "--cpu_devices=1"]}
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  out = {"members": size, "epochs": epochs, "train_s": {}, "runs": {}}
  for _ in range(opts.runs_repeats):
    for key, extra in variants.items():
      run_dir = tempfile.mkdtemp(prefix=f"emu_bench_{key}_")
      flags = run_flags(opts.recipe, run_dir, f"--max_epochs={epochs}",
                        "--time_budget_s=0", f"--patience={epochs + 1}",
                        "--stream_blocks=64", *extra)
      rows, report, _ = train_run(f"run {key}", run_dir, flags, env)
      shutil.rmtree(run_dir, ignore_errors=True)
      train_s = rows[-1]["elapsed_s"]
      out["runs"].setdefault(key, []).append(
          {"train_s": train_s, "devices": report["devices"],
           "parallel": report["parallel"],
           "val1_esr": report["val1"]["esr"]})
      out["train_s"][key] = min(out["train_s"].get(key, math.inf), train_s)
      print(f"  {key}: {train_s:.1f} s for {epochs} epochs on "
            f"{report['devices']} device(s)", file=sys.stderr)
  t = out["train_s"]
  out["ensemble_over_one"] = t["ensemble"] / t["one_member"]
  out["ensemble_over_one_2dev"] = t["ensemble"] / t["one_member_2dev"]
  out["ensemble_over_best_one"] = t["ensemble"] / min(
      t["one_member"], t["one_member_2dev"])
  return out
