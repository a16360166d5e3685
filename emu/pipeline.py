"""The whole run: data report -> fit -> evaluate -> HTML report.

What `experiments/run.py` calls, and what a notebook calls to get the same
run folder:

  report = emu.pipeline.run(cfg, "/tmp/run")
"""

from typing import Optional

from absl import logging
import jax

from emu import config as config_lib
from emu import data as data_lib
from emu import datareport
from emu import evaluate as evaluate_lib
from emu import models
from emu import report_html
from emu import train
from emu import workdir as workdir_lib
from emu.train import parallel


def run(cfg: config_lib.Config, workdir: str, overwrite: bool = False,
        flags_text: Optional[str] = None,
        dataset: Optional[data_lib.Dataset] = None) -> Optional[dict]:
  """Trains and evaluates cfg into workdir; returns the report.

  A workdir holding a run of another config is refused (WorkdirConflict)
  before anything is written, unless overwrite. flags_text: the command
  line, saved as flags.txt.

  Over several processes (`jax.distributed`) every process trains in
  lockstep; process 0 alone writes workdir, evaluates and returns the
  report, and the others return None.
  """
  parallel.on_process_zero(
      lambda: _before_training(cfg, workdir, overwrite))
  result = train.fit(cfg, workdir, overwrite=overwrite, dataset=dataset)
  if not workdir_lib.writes_here():
    return None
  if flags_text is not None:
    with open(workdir_lib.path(workdir, workdir_lib.FLAGS), "w") as f:
      f.write(flags_text)
  info = {"train_seconds": result.train_seconds, "epochs": result.epochs,
          "best_epoch": result.best_epoch, "stop_reason": result.stop_reason,
          "devices": len(jax.devices()), "parallel": result.parallel}
  if jax.process_count() > 1:
    info["processes"] = jax.process_count()
  report = evaluate_lib.evaluate(
      result.model, result.params, result.dataset, workdir, cfg=cfg,
      history=result.history, train_info=info,
      stream_blocks=cfg.stream_blocks)
  logging.info("report: %s", report_html.write_report_html(workdir))
  return report


def _before_training(cfg, workdir, overwrite):
  """Refuses a workdir holding another run; reports a user's files."""
  workdir_lib.check_resumable(cfg, workdir, overwrite)
  if cfg.dataset == "files":
    # Levels, latency and the device's repeatability, before any training.
    datareport.report_files(cfg.train_input, cfg.train_target,
                            workdir=workdir)


def parameter_count(cfg: config_lib.Config) -> int:
  """The parameters of cfg's model, from shapes alone (nothing runs)."""
  channels = 1
  if cfg.dataset == "knobs":
    from emu import effects  # pylint: disable=g-import-not-at-top
    channels += len(effects.knob_effect(cfg.effect).knobs)
  model = models.build_model(cfg, channels, cfg.sample_rate)
  length = cfg.window if cfg.mode == "window" else 256
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jax.ShapeDtypeStruct((1, length, channels),
                                               "float32"))
  return sum(int(s.size) for s in jax.tree.leaves(shapes))


def summary_line(workdir: str, report: dict) -> str:
  """The one line a finished run prints."""
  line = [f"{workdir}: {report['model']} ({report['parameters']} "
          f"parameters), {report['epochs']} epochs in "
          f"{report['train_seconds']:.0f} s"]
  for name in ("val1", "val2"):
    if name in report:
      line.append(f"{name} ESR {report[name]['esr']:.3e}, acc12 "
                  f"{report[name]['acc12']:.3f}")
  if "val2" not in report:
    line.append(NO_VAL2)
  return "; ".join(line)


NO_VAL2 = ("no val2 (recorded voice): install Debian's alsa-utils for the "
           "default clips (apt-get install alsa-utils) or pass "
           "--val2_files=YOUR.wav")
