"""Audition workers: train a round's candidates, one at a time or side by side.

`train_all(jobs, count)` trains each job (a candidate's Config, its run
folder, and the seconds of training it is to reach there) and returns
{label: (its best val1 ESR, inf if it learned nothing; the seconds it has
trained)}. count 1: one after another in this process (`emu.train.fit`).
count >= 2: job i runs on worker i % count, each worker a series of child
processes (`python -m emu.capture.audition_workers JOB.json`) pinned to a
core of its own with one XLA thread (`emu.report.speed`'s
ONE_THREAD_XLA_FLAGS), so two candidates train at once on a 2-core CPU
and neither steals the other's core. A child's log goes to
audition/LABEL.log beside its run folder. The children share a persistent
XLA compilation cache, audition/xla_cache (unless JAX_COMPILATION_CACHE_DIR
names another): a candidate going on to the next round loads its training
step instead of compiling it again (NAM's standard WaveNet's first step:
31 s in round 1, 7 s in round 2 on one loaded core).
"""

import dataclasses
import json
import math
import os
import pickle
import subprocess
import sys
import threading
from typing import Any

from absl import logging

from emu import config as config_lib
from emu import workdir as workdir_lib
from emu.train import loop as train_loop
from emu.train import outcome

# emu importable in a child from a source checkout, not installed.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Job:
  label: str
  cfg: config_lib.Config
  folder: str
  until_s: float  # train until the run has trained this long in total


def train_all(jobs: list, count: int, overwrite: bool = False,
              dataset: Any = None) -> dict:
  """{label: (best val1 ESR or inf, seconds trained)} of each job, `count`
  at a time (1: in this process)."""
  if count <= 1:
    return {job.label: train_one(job, overwrite, dataset) for job in jobs}
  cpus = sorted(os.sched_getaffinity(0)) if hasattr(
      os, "sched_getaffinity") else [None]
  data_path = None
  if dataset is not None:  # a caller's Dataset: the children read a copy
    data_path = os.path.join(os.path.dirname(jobs[0].folder), "dataset.pkl")
    with open(data_path, "wb") as f:
      pickle.dump(dataset, f)
  results, errors, children = {}, [], []

  def worker(index):
    try:
      for job in jobs[index::count]:
        results[job.label] = _in_child(job, overwrite, data_path,
                                       cpus[index % len(cpus)], children)
    except BaseException as e:  # pylint: disable=broad-except
      errors.append(e)

  threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
  try:
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
  finally:  # an interrupted parent leaves no child training
    for child in children:
      if child.poll() is None:
        child.terminate()
        child.wait()
    if data_path is not None:
      os.remove(data_path)
  if errors:
    raise errors[0]
  return results


def train_one(job: Job, overwrite: bool = False, dataset: Any = None):
  """(best val1 ESR or inf, seconds trained) of one job, in this process:
  its folder's run trained (or resumed) until job.until_s."""
  logging.info("audition: %s until %g s into %s", job.label, job.until_s,
               job.folder)
  try:
    result = train_loop.fit(job.cfg, job.folder, overwrite=overwrite,
                            dataset=dataset, stop_after_seconds=job.until_s)
  except outcome.TrainingFailed as e:
    logging.warning("audition: %s learned nothing (%s)", job.label, e)
    rows = workdir_lib.read_history(job.folder)
    return math.inf, rows[-1]["elapsed_s"] if rows else 0.
  scores = [row["val1_esr"] for row in result.history
            if math.isfinite(row["val1_esr"])]
  return (min(scores) if scores else math.inf), result.train_seconds


def _in_child(job, overwrite, data_path, cpu, children):
  """`train_one` in a child process pinned to `cpu`, one XLA thread."""
  from emu.report import speed  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(job.folder), exist_ok=True)
  spec = os.path.join(os.path.dirname(job.folder), job.label + ".job.json")
  with open(spec, "w") as f:
    json.dump({"label": job.label, "config_json": job.cfg.to_json(),
               "folder": job.folder, "until_s": job.until_s,
               "overwrite": overwrite, "dataset": data_path, "cpu": cpu}, f)
  path = [_ROOT, os.environ.get("PYTHONPATH", "")]
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=speed.ONE_THREAD_XLA_FLAGS,
             PYTHONPATH=os.pathsep.join(p for p in path if p))
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
      os.path.dirname(job.folder), workdir_lib.XLA_CACHE))
  log = os.path.join(os.path.dirname(job.folder), job.label + ".log")
  logging.info("audition: %s until %g s in a child on CPU %s (log %s)",
               job.label, job.until_s, cpu, log)
  with open(log, "a") as out:
    child = subprocess.Popen(
        [sys.executable, "-m", "emu.capture.audition_workers", spec],
        env=env, stdout=out, stderr=subprocess.STDOUT)
    children.append(child)
    code = child.wait()
  try:
    if code:
      with open(log) as f:
        tail = f.read()[-2000:].strip()
      raise RuntimeError(f"audition candidate {job.label}'s child process "
                         f"failed ({code}); the end of {log}:\n{tail}")
    with open(spec) as f:
      result = json.load(f)["result"]
  finally:
    os.remove(spec)
  return (math.inf if result[0] is None else result[0]), result[1]


def _child_main(spec: str):
  """A child's work: the job in `spec`, its result written back there."""
  with open(spec) as f:
    job_spec = json.load(f)
  if job_spec["cpu"] is not None:
    os.sched_setaffinity(0, {job_spec["cpu"]})
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)
  dataset = None
  if job_spec["dataset"]:
    with open(job_spec["dataset"], "rb") as f:
      dataset = pickle.load(f)
  job = Job(job_spec["label"],
            config_lib.Config.from_json(job_spec["config_json"]),
            job_spec["folder"], job_spec["until_s"])
  esr, seconds = train_one(job, job_spec["overwrite"], dataset)
  job_spec["result"] = [esr if math.isfinite(esr) else None, seconds]
  with open(spec, "w") as f:
    json.dump(job_spec, f)


if __name__ == "__main__":
  _child_main(sys.argv[1])
