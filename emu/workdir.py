"""The run folder: the one module that knows its layout.

A run's folder (`experiments/run.py --workdir=DIR`, `emu.train.fit(cfg,
DIR)`) holds:

  config.json       the run's Config (CONFIG)
  flags.txt         the command line that made it (FLAGS)
  dataset.json      the data's name, sample rate, length, channels (DATASET)
  data_report.json  levels, latency, repeatability of a user's pair
                    (DATA_REPORT)
  metrics.jsonl     one line per epoch (METRICS)
  checkpoints/      orbax checkpoints 'best' (params) and 'last' (the whole
                    training state) (CHECKPOINTS; emu.train.checkpoints)
  report.json       every metric of the evaluation (REPORT)
  report.html, listening_test.html   pages to read and listen (REPORT_HTML,
                    LISTENING_TEST)
  audio/, plots/    WAVs and figures (AUDIO, PLOTS)
  audition/, audition.json   with --audition: each candidate's short runs
                    (a run folder of its own; a child's LABEL.log; the
                    children's XLA compilation cache, XLA_CACHE), every
                    round and the choice (AUDITION, AUDITION_CHOICE;
                    `emu.capture.audition`)
  inputs.json       size and sha256 of each file the run read (INPUTS)
  model.nam         the model in a file NAM's plugin loads, exact or
                    distilled (PLUGIN_FILE; emu.plugins.playable), with
                    plugin.json, its record (PLUGIN_RECORD), and plugin/,
                    the distilled student's own run folder (PLUGIN)
  failed.json       why training failed, if it did (FAILED): no model to use
  run.lock          pid and host of the run in progress (LOCK; emu.train.runlock)

Every other module names these files through `path(workdir, NAME)` and reads
or writes them through the helpers here.

In a multi-host run (`jax.distributed`) only process 0 writes the run folder
(`writes_here`): this module's writers (and emu.train.checkpoints) do
nothing on the others, which compute in lockstep and need not see the folder at all.
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys

from absl import logging

from emu import config as config_lib


CONFIG = "config.json"
FLAGS = "flags.txt"
DATASET = "dataset.json"
DATA_REPORT = "data_report.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
REPORT = "report.json"
REPORT_HTML = "report.html"
LISTENING_TEST = "listening_test.html"
AUDIO = "audio"
PLOTS = "plots"
AUDITION = "audition"
AUDITION_CHOICE = "audition.json"
XLA_CACHE = "xla_cache"  # in AUDITION
INPUTS = "inputs.json"
FAILED = "failed.json"
PLUGIN_FILE = "model.nam"
PLUGIN_RECORD = "plugin.json"
PLUGIN = "plugin"
LOCK = "run.lock"

# A run's training: what audition's chosen candidate hands on (adopt_run).
_TRAINING_FILES = (CHECKPOINTS, METRICS)
# What a replaced run (--overwrite) loses: all but its settings.
_RUN_FILES = _TRAINING_FILES + (INPUTS, FAILED, AUDITION, AUDITION_CHOICE,
    DATA_REPORT, REPORT, REPORT_HTML, LISTENING_TEST, AUDIO, PLOTS,
    PLUGIN_FILE, PLUGIN_RECORD, PLUGIN)


class WorkdirConflict(ValueError):
  """The workdir holds a run with a different config."""


class WorkdirError(ValueError):
  """The workdir cannot be written: a file, read-only, the disk full."""


class FailedRun(ValueError):
  """The workdir holds a run whose training failed: no model to use."""


def file_sha256(path: str) -> str:
  """The sha256 (hex) of a file's bytes, read in 1 MiB blocks: how a run
  folder tells a changed input (INPUTS) or plugin file (PLUGIN_RECORD)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(1 << 20):
      digest.update(block)
  return digest.hexdigest()


def writes_here() -> bool:
  """Whether this process writes run folders: a lone process does; of a
  multi-host run (`jax.distributed.initialize`) only process 0 does."""
  jax = sys.modules.get("jax")  # not imported: no jax.distributed either
  if jax is None or not _distributed(jax):
    return True
  return jax.process_index() == 0


def _distributed(jax) -> bool:
  """Whether jax.distributed.initialize has run (without starting JAX's
  backends, which a tool may still be configuring)."""
  is_initialized = getattr(jax.distributed, "is_initialized", None)
  if is_initialized is not None:
    return is_initialized()
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  return distributed.global_state.client is not None  # an older jax


def path(workdir: str, name: str) -> str:
  """workdir/name for one of this module's file names."""
  return os.path.join(workdir, name)


def check_writable(workdir: str):
  """WorkdirError naming --workdir if a run could not be written there: it
  is a file, lies below a file, or it (or the folder it would be made in)
  is not writable. Writes nothing."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir {workdir} is a file, not a folder; "
                       "choose a folder's path for the run")
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise WorkdirError(f"--workdir {workdir} lies below {existing}, which "
                       "is a file; choose a folder's path for the run")
  if not os.access(existing, os.R_OK | os.W_OK | os.X_OK):
    what = "it" if existing == os.path.abspath(workdir) else existing
    raise WorkdirError(
        f"--workdir {workdir}: {what} is not writable (permission denied); "
        "choose another --workdir or make it writable (chmod u+rwx)")


@contextlib.contextmanager
def writing(target: str):
  """Turns a failed write of `target` (a full disk, permissions) into one
  WorkdirError naming --workdir; the temporary files of atomic writes are
  removed, so what was there before stays as it was."""
  try:
    yield
  except OSError as e:
    for leftover in (target + ".tmp", target + ".new"):
      if os.path.isdir(leftover):
        shutil.rmtree(leftover, ignore_errors=True)
      elif os.path.exists(leftover):
        os.remove(leftover)
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    raise WorkdirError(
        f"cannot write {target}: {e.strerror or e}; " + (
            "free some disk space or choose a --workdir on another disk"
            if full else "choose another --workdir or fix its permissions")
        + " (the files already there are unchanged; run again to resume)"
    ) from e


def _write_atomic(final: str, text: str):
  """final's new contents: a temporary file, then a rename, so a failed
  write (`writing`) leaves the old file whole."""
  with writing(final):
    with open(final + ".tmp", "w") as f:
      f.write(text)
    os.replace(final + ".tmp", final)


def read_json(workdir: str, name: str):
  with open(path(workdir, name)) as f:
    return json.load(f)


def write_json(workdir: str, name: str, tree, indent=None, sort_keys=False):
  """Writes atomically (a temporary file, then a rename); on process 0
  only (`writes_here`). A failed write is a WorkdirError."""
  if not writes_here():
    return
  _write_atomic(path(workdir, name),
                json.dumps(tree, indent=indent, sort_keys=sort_keys))


def write_text(workdir: str, name: str, text: str):
  """workdir/name holds `text` (atomically); on process 0 only."""
  if writes_here():
    _write_atomic(path(workdir, name), text)


def read_config(workdir: str) -> config_lib.Config:
  """The Config of the run in workdir; FileNotFoundError if there is none."""
  config_path = path(workdir, CONFIG)
  if not os.path.exists(config_path):
    raise FileNotFoundError(
        f"{workdir} holds no run (no {CONFIG}); train one with "
        "experiments/run.py --workdir=...")
  with open(config_path) as f:
    return config_lib.Config.from_json(f.read())


def check_resumable(cfg: config_lib.Config, workdir: str,
                    overwrite: bool, inputs=None, recorded=None) -> bool:
  """Whether workdir holds a run of another config, or (inputs: the
  files' `emu.train.batches.input_fingerprints`; None: not compared) one
  trained on other files, that will be replaced; WorkdirConflict if it
  does and overwrite is False. Writes nothing.

  recorded: what a difference from config.json is listed against (an
  audition's command, whose chosen candidate config.json holds), so that
  the message lists the user's changes alone; None: config.json.
  """
  if not os.path.exists(path(workdir, CONFIG)):
    return False
  diff = read_config(workdir).differences(cfg)
  if diff and recorded is not None:
    diff = recorded.differences(cfg) or diff
  if diff and not overwrite:
    listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
    raise WorkdirConflict(
        f"{workdir} holds a run with a different config ({listed}). Use a "
        "new workdir, or pass overwrite=True (--overwrite) to replace it.")
  return bool(diff) or _inputs_changed(workdir, inputs, overwrite)


def _inputs_changed(workdir: str, inputs, overwrite: bool) -> bool:
  """Whether a file workdir's run read differs now; WorkdirConflict."""
  if inputs is None or not os.path.exists(path(workdir, INPUTS)):
    return False
  recorded = read_json(workdir, INPUTS)
  changed = sorted(k for k in set(recorded) | set(inputs)
                   if recorded.get(k) != inputs.get(k))
  if changed and not overwrite:
    was, now = recorded.get(changed[0]), inputs.get(changed[0])
    how = ("is gone" if now is None else "is new to it" if was is None
           else f"changed (size {was['size']} -> {now['size']} bytes)"
           if was["size"] != now["size"] else "changed (another sha256)")
    raise WorkdirConflict(
        f"input file {changed[0]} {how} since the run in {workdir} was "
        "trained on it: pass overwrite=True (--overwrite) to train again on "
        "the files as they are now, or use a new --workdir to keep that run")
  return bool(changed)


def prepare(cfg: config_lib.Config, workdir: str, overwrite: bool,
            inputs=None):
  """Creates workdir or checks that it holds the same run on the same
  files (to resume); then writes inputs (INPUTS, if any) and cfg's
  config.json. On process 0 only (`writes_here`)."""
  if not writes_here():
    return
  check_writable(workdir)
  replace = check_resumable(cfg, workdir, overwrite, inputs)
  with writing(workdir):
    os.makedirs(workdir, exist_ok=True)
  if replace:
    logging.warning("overwriting the run in %s", workdir)
    clear_run(workdir)
  _remove(path(workdir, FAILED))  # a new try: not failed (yet)
  if inputs:
    write_json(workdir, INPUTS, inputs, indent=2, sort_keys=True)
  _write_atomic(path(workdir, CONFIG), cfg.to_json())


def clear_run(workdir: str):
  """Removes all workdir's run made but its settings; on process 0."""
  if writes_here():
    for name in _RUN_FILES:
      _remove(path(workdir, name))


def _remove(target: str):  # a file or a folder, if there
  if os.path.isdir(target):
    shutil.rmtree(target)
  elif os.path.exists(target):
    os.remove(target)


def record_failure(workdir: str, message: str):
  """Records in workdir (FAILED) that its training failed, and why."""
  write_json(workdir, FAILED, {"error": message}, indent=2)


def check_not_failed(workdir: str):
  """FailedRun, naming the cause and the fix, if workdir's run failed."""
  if os.path.exists(path(workdir, FAILED)):
    raise FailedRun(f"{workdir} holds no model to use: its training failed "
                    f"({read_json(workdir, FAILED)['error']})")


def adopt_run(source: str, workdir: str):
  """workdir takes over the run in the folder `source` (its config, inputs,
  history and checkpoints, copied: `emu.capture.audition`'s chosen
  candidate), replacing those files of workdir's. On process 0."""
  if not writes_here():
    return
  with writing(workdir):
    os.makedirs(workdir, exist_ok=True)
    for name in (CONFIG, INPUTS) + _TRAINING_FILES:
      origin, target = path(source, name), path(workdir, name)
      _remove(target)
      if os.path.isdir(origin):
        shutil.copytree(origin, target)
      elif os.path.exists(origin):
        shutil.copy2(origin, target)


def read_history(workdir: str, upto_epoch=None) -> list:
  """metrics.jsonl's rows (up to and including epoch `upto_epoch`)."""
  metrics_path = path(workdir, METRICS)
  if not os.path.exists(metrics_path):
    return []
  with open(metrics_path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [r for r in rows if upto_epoch is None or r["epoch"] <= upto_epoch]


def write_history(workdir: str, history):
  """Replaces metrics.jsonl with `history` (atomically); on process 0 only
  (`writes_here`)."""
  if not writes_here():
    return
  _write_atomic(path(workdir, METRICS),
                "".join(json.dumps(row) + "\n" for row in history))


def append_history(workdir: str, row):
  """Adds one row to metrics.jsonl; on process 0 only (`writes_here`).

  Appended (a run's epochs cost one row each, not the whole file again); a
  failed write (a full disk) truncates the file back to its rows before,
  so it never keeps half a row.
  """
  if not writes_here():
    return
  metrics_path = path(workdir, METRICS)
  size = (os.path.getsize(metrics_path) if os.path.exists(metrics_path)
          else None)
  with writing(metrics_path):
    try:
      with open(metrics_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    except OSError:
      if size is None:
        if os.path.exists(metrics_path):
          os.remove(metrics_path)
      else:
        os.truncate(metrics_path, size)
      raise


def write_dataset_info(workdir: str, dataset, channels: int):
  write_json(workdir, DATASET, {
      "name": dataset.name, "sample_rate": dataset.sample_rate,
      "train_samples": len(dataset.train.input), "channels": channels})


def dataset_info(workdir: str) -> dict:
  return read_json(workdir, DATASET)


def sample_rate_of(workdir: str) -> int:
  """The sample rate (Hz) a run in workdir was trained at."""
  return int(dataset_info(workdir)["sample_rate"])
