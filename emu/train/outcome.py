"""Whether a run learned anything: `TrainingFailed` and a result's warnings.

A run whose every epoch diverged, or whose best val1 ESR is no better than
its first weights and >= 1 (worse than outputting silence), has nothing
worth evaluating: `emu.train.fit` raises TrainingFailed, whose message
names the flags to change, and no report is written. A best ESR >= 1 that
did improve on the first weights is a warning (logged, and in report.json).
"""

import math

from absl import logging


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
