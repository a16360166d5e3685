"""The whole run: data report -> (audition) -> fit -> evaluate -> report.

What `experiments/run.py` calls, and what a notebook calls to get the same
run folder:

  report = emu.pipeline.run(cfg, "/tmp/run")
"""

import os
from typing import Optional

from absl import logging
import jax

from emu.capture import audition as audition_lib
from emu import config as config_lib
from emu import data as data_lib
from emu.capture import datareport
from emu import metrics
from emu.report import evaluate as evaluate_lib
from emu import models
from emu.plugins import playable
from emu.report import run_page
from emu import train
from emu import workdir as workdir_lib
from emu.train import batches
from emu.train import outcome
from emu.train import plan as train_plan
from emu.train import parallel
from emu.train import runlock


def run(cfg: config_lib.Config, workdir: str, overwrite: bool = False,
        flags_text: Optional[str] = None,
        dataset: Optional[data_lib.Dataset] = None) -> Optional[dict]:
  """Trains and evaluates cfg into workdir; returns the report.

  Every input is checked before anything is written (a workdir holding a
  run of another config is refused, WorkdirConflict, unless overwrite; an
  unknown loss, effect or model, a bad file, a size below 1: ValueError),
  so a refused run leaves workdir as it was. A run that learned nothing
  raises `emu.train.outcome.TrainingFailed` and writes no report; a
  capture whose val1 ESR ends above NAM's "something went wrong" writes
  its report, then raises `emu.train.outcome.CaptureFailed` with the cause.
  flags_text: the command line, saved as flags.txt.

  Over several processes (`jax.distributed`) every process trains in
  lockstep; process 0 alone writes workdir, evaluates and returns the
  report, and the others return None.

  One run per folder: another process running in workdir is refused at
  once (`emu.train.runlock.WorkdirBusy`), and so are input files changed
  since the run there read them (WorkdirConflict) unless overwrite.
  """
  workdir = _check_arguments(cfg, workdir)
  with runlock.held(workdir):
    return _run(cfg, workdir, overwrite, flags_text, dataset)


def _run(cfg, workdir, overwrite, flags_text, dataset):
  """`run` with workdir's lock held."""
  files_report, replace = parallel.on_process_zero(
      lambda: _before_training(cfg, workdir, overwrite, dataset))

  def on_start():  # every input checked: the run's own files
    if files_report is not None:
      workdir_lib.write_json(workdir, workdir_lib.DATA_REPORT, files_report,
                             indent=2)
    if flags_text is not None:
      workdir_lib.write_text(workdir, workdir_lib.FLAGS, flags_text)

  auditioned = bool(cfg.audition)
  if auditioned:  # the candidates' short runs; cfg becomes the chosen
    if replace:  # another config or changed files, --overwrite: afresh
      workdir_lib.clear_run(workdir)
    try:
      cfg = audition_lib.choose(cfg, workdir, overwrite, dataset)
    except outcome.TrainingFailed as failed:  # no model: apply refuses it
      workdir_lib.record_failure(workdir, str(failed))
      raise
  result = train.fit(cfg, workdir, overwrite=overwrite, dataset=dataset,
                     on_start=on_start)
  if not workdir_lib.writes_here():
    return None
  info = {"train_seconds": result.train_seconds, "epochs": result.epochs,
          "best_epoch": result.best_epoch, "stop_reason": result.stop_reason,
          "devices": len(jax.devices()), "parallel": result.parallel,
          "warnings": result.warnings}
  if jax.process_count() > 1:
    info["processes"] = jax.process_count()
  if auditioned:  # the candidates not chosen trained too (CPU seconds);
    # the wall clock counts the audition's rounds once (time_budget_s's)
    audition = info["audition"] = audition_lib.summary(workdir)
    info["train_seconds"] += audition["other_seconds"]
    audition["run_wall_seconds"] = (result.train_seconds + audition[
        "wall_seconds"] - audition["chosen_seconds"])
  report = evaluate_lib.evaluate(
      result.model, result.params, result.dataset, workdir, cfg=cfg,
      history=result.history, train_info=info,
      stream_blocks=cfg.stream_blocks)
  failed = outcome.capture_failure(cfg, workdir, report, files_report,
                                   result.history)
  if cfg.dataset == "files" and not failed:  # a capture: its model.nam
    playable.write(cfg, workdir, result, report)
  logging.info("report: %s", run_page.write_report_html(workdir))
  if failed:  # the report stays to read; apply and export refuse the model
    workdir_lib.record_failure(workdir, str(failed))
    raise failed
  return report


def _check_arguments(cfg, workdir) -> str:
  """workdir as a str; ValueError naming the argument that is not a Config
  or a folder's path."""
  if not isinstance(cfg, config_lib.Config):
    raise ValueError(f"emu.pipeline.run takes an emu.config.Config, got "
                     f"{type(cfg).__name__}; build one with "
                     "emu.config.Config(...)")
  if not isinstance(workdir, (str, os.PathLike)) or not os.fspath(workdir):
    raise ValueError(f"emu.pipeline.run needs workdir, the run's folder "
                     f"(a path such as 'runs/lstm'), got {workdir!r}")
  return os.fspath(workdir)


def _before_training(cfg, workdir, overwrite, dataset):
  """Refuses a workdir it cannot write or that holds another run (or one
  on other files); (a user's files' data report (logged; written once
  every input is checked) or None, whether workdir's run is replaced).
  Writes nothing."""
  workdir_lib.check_writable(workdir)
  for _, candidate in audition_lib.candidates(cfg) or [(None, cfg)]:
    train_plan.check_config(candidate)
  # An audition run resumed: workdir holds the candidate it chose; another
  # command is compared with the one that audition ran (its changes alone).
  chosen = audition_lib.resumed(cfg, workdir)
  inputs = None if dataset else batches.input_fingerprints(cfg)
  replace = workdir_lib.check_resumable(
      chosen or cfg, workdir, overwrite, inputs,
      recorded=None if chosen else audition_lib.base(workdir))
  if cfg.dataset != "files" or cfg.train_manifest:
    return None, replace  # a manifest's recordings: load_pair checks each
  # Levels, latency and the device's repeatability, before any training.
  return datareport.report_files(
      cfg.train_input, cfg.train_target, max_latency_ms=cfg.max_latency_ms,
      compensate_latency=cfg.compensate_latency or cfg.layout == "nam"
  ), replace


def parameter_count(cfg: config_lib.Config) -> int:
  """The parameters of cfg's model, from shapes alone (nothing runs)."""
  channels = 1
  if cfg.dataset == "knobs":
    from emu import effects  # pylint: disable=g-import-not-at-top
    channels += len(effects.knob_effect(cfg.effect).knobs)
  elif cfg.dataset == "files" and cfg.train_manifest:
    channels += len(data_lib.knob_names(cfg.train_manifest))
  model = models.build_model(cfg, channels, cfg.sample_rate)
  length = cfg.window if cfg.mode == "window" else 256
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jax.ShapeDtypeStruct((1, length, channels),
                                               "float32"))
  return sum(int(s.size) for s in jax.tree.leaves(shapes))


def summary_line(workdir: str, report: dict, cfg=None) -> str:
  """The one line a finished run prints (cfg: the run's Config, if known:
  a recorded pair, dataset 'files', gets no advice to add a val2)."""
  line = [f"{workdir}: {report['model']} ({report['parameters']} "
          f"parameters), {report['epochs']} epochs in "
          f"{report['train_seconds']:.0f} s"]
  if "audition" in report:
    line.append(f"audition chose {report['audition']['chosen']}")
  for name in ("val1", "val2"):
    if name in report:
      verdict = metrics.nam_verdict(report[name]["esr"])
      line.append(f"{name} ESR {report[name]['esr']:.3e} (NAM: {verdict}), "
                  f"acc12 {report[name]['acc12']:.3f}")
  # A recording's own pair has no val2 (the voice would need the device).
  if "val2" not in report and getattr(cfg, "dataset", None) != "files":
    line.append(NO_VAL2)
  if "plugin" in report:  # last: the file to play, and how close it is
    line.append(plugin_summary(workdir, report["plugin"]))
  return "; ".join(line)


def plugin_summary(workdir: str, entry: dict) -> str:
  """The summary line's part on the run's plugin file (report.json's
  "plugin", `emu.plugins.playable`)."""
  if not entry.get("file"):
    return "no plugin file: " + (entry.get("why") or (
        f"{entry.get('error')} ({entry.get('fix')})"))
  esr = lambda v: f"{v:.3e}" if isinstance(v, float) else str(v)
  return (f"plugin {os.path.join(workdir, entry['file'])} ({entry['how']}) "
          f"val1 ESR {esr(entry['val1_esr'])} (NAM: {entry['nam_verdict']}) "
          f"beside the model's {esr(entry['model_val1_esr'])}")


NO_VAL2 = ("no val2 (recorded voice): install Debian's alsa-utils for the "
           "default clips (apt-get install alsa-utils) or pass "
           "--val2_files=YOUR.wav")
