"""Whether a run learned anything: `TrainingFailed` and a result's warnings.

A run whose every epoch diverged, or whose best val1 ESR is no better than
its first weights and >= 1 (worse than outputting silence), has nothing
worth evaluating: `emu.train.fit` raises TrainingFailed, whose message
names the flags to change, and no report is written. A best ESR >= 1 that
did improve on the first weights is a warning (logged, and in report.json).
A capture (a user's recording) whose val1 ESR ends above FAILED_ESR is a
`CaptureFailed` (`capture_failure`): its report is written and kept, and
the message gives the cause the data report found.
"""

import math

from absl import logging

from emu import metrics

# NAM's "...Something seems to have gone wrong." starts here
# (`emu.metrics.NAM_VERDICTS`: the last bound before it).
FAILED_ESR = metrics.NAM_VERDICTS[-2][0]
# Training ran away when an epoch's val1 ESR ends this far above its best.
DIVERGED_FACTOR = 10.0


class TrainingFailed(ValueError):
  """Training produced nothing worth keeping; the message names the fix."""


def fix(cfg) -> str:
  """What a user changes when training learned nothing (cfg: a Config)."""
  return (f"lower --learning_rate (now {cfg.learning_rate:g}) or set "
          f"--grad_clip (now {cfg.grad_clip:g}; e.g. 1), then run again "
          "with --overwrite or a new --workdir")


def diverged_before_any_epoch(cfg, epoch: int, what: str) -> TrainingFailed:
  """The error of a run that diverged in `epoch` (1-based) with no epoch
  before it that gave a finite val1 ESR."""
  return TrainingFailed(
      f"training diverged in epoch {epoch} ({what}) before any epoch gave a "
      "finite val1 ESR: no parameters worth keeping, so no report is "
      f"written; {fix(cfg)}")


def warnings_of(cfg, best: float, best_epoch: int, first_esr,
                finished: bool = True) -> list:
  """The warnings of a run whose best val1 ESR is `best` (at `best_epoch`).

  first_esr: () -> the val1 ESR of the first weights (None: not finite),
    called only when best >= 1.
  finished: False for an interrupted run (it may still improve): its
    warning is never an error.

  Raises:
    TrainingFailed: best >= 1 and no better than the first weights, in a
      finished run.
  """
  if best < 1.0:
    return []
  first = first_esr()
  first = math.inf if first is None else first
  if best >= first and finished:
    raise TrainingFailed(
        f"no epoch improved on the first weights: the best val1 ESR is "
        f"{best:.3g} (epoch {best_epoch}) against {first:.3g} before "
        "training, and an ESR >= 1 is worse than outputting silence; no "
        f"report is written; {fix(cfg)}")
  warning = (f"the best val1 ESR is {best:.3g} (epoch {best_epoch}), >= 1: "
             "worse than outputting silence (before training: "
             f"{first:.3g}); {fix(cfg)}, or train longer (--max_epochs)")
  logging.warning("%s", warning)
  return [warning]


class CaptureFailed(TrainingFailed):
  """A capture ended above FAILED_ESR; its run folder is kept."""


def diverged(history) -> bool:
  """Whether training ran away: a non-finite training loss, or the last
  epoch's val1 ESR DIVERGED_FACTOR times its best or more."""
  esrs = [row.get("val1_esr", math.nan) for row in history]
  losses = [v for row in history for k, v in row.items()
            if k.startswith("train_")]
  if not all(math.isfinite(v) for v in losses):
    return True
  finite = [e for e in esrs if math.isfinite(e)]
  return bool(finite) and (not math.isfinite(esrs[-1]) or
                           esrs[-1] >= DIVERGED_FACTOR * min(finite))


def capture_failure(cfg, workdir, report, data_report, history):
  """A CaptureFailed for a capture (dataset 'files') whose val1 ESR (in
  `report`, the run's report.json) is above FAILED_ESR, else None.

  The cause: the data report's warnings (alignment, level, a silent or
  unrelated target, a noisy device); the learning rate only where
  training `diverged`; else a budget too small for the device.
  """
  if cfg.dataset != "files" or report["val1"]["esr"] <= FAILED_ESR:
    return None
  esr = report["val1"]["esr"]
  causes = list((data_report or {}).get("warnings", []))
  if diverged(history):
    causes.append(f"training diverged: {fix(cfg)}")
  if not causes:
    causes.append("the data report found nothing wrong with the pair: the "
                  "model needs more training (--time_budget_s, "
                  "--max_epochs) or a larger model for this device")
  return CaptureFailed(
      f"val1 ESR {esr:.3g} is above {FAILED_ESR:g} (NAM: "
      f"{metrics.nam_verdict(esr)}): {'; '.join(causes)}. The run is kept "
      f"in {workdir} (report.html)")
