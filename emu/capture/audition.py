"""Audition: train each candidate setting briefly, then continue the best.

A capture recipe does not know the device it is given: a compressor needs
the wiener's compressor stage, a clipper trains better without it
(benchmarks/README.md). `Config.audition` lists the candidates, each a
change of settings (Config fields or model hyperparameters):

  --audition='dynamics_width=0|8' --audition_s=60
  --audition='dynamics_width=0|8|residual_channels=8'   # three

Each candidate trains `audition_s` seconds into its own run folder,
WORKDIR/audition/NAME=VALUE. The one with the lowest val1 ESR (the score
that early stopping and the best checkpoint use) moves into WORKDIR
(`emu.workdir.adopt_run`) and trains on there. Its time budget is the
run's `time_budget_s` less the other candidates' seconds, so the whole run
takes the time it was given (the report's train_seconds counts every
candidate's). WORKDIR/audition.json records every candidate's val1 ESR,
seconds and the choice; the same command run again resumes
the chosen candidate (or an unfinished audition) instead of starting over.
"""

import dataclasses
import json
import math
import os
from typing import Optional

from absl import logging

from emu import config as config_lib
from emu import models
from emu import workdir as workdir_lib
from emu.train import loop as train_loop
from emu.train import outcome

_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def _convert(text: str, like, what: str):
  """text as a value of like's type (bool, int, float or str)."""
  text = text.strip()
  try:
    if isinstance(like, bool):
      if text.lower() not in _TRUE + _FALSE:
        raise ValueError
      return text.lower() in _TRUE
    if isinstance(like, (int, float, str)):
      return type(like)(text)
  except ValueError:
    raise ValueError(f"--audition: {text!r} is not a value of {what} (a "
                     f"{type(like).__name__})") from None
  raise ValueError(f"--audition cannot try {what}: only a number, a bool "
                   f"or a string setting can be auditioned")


def _like(cfg: config_lib.Config, name: str):
  """The current value of setting `name` (a Config field or a model
  hyperparameter): what a candidate's text is converted like."""
  fields = {f.name for f in dataclasses.fields(config_lib.Config)}
  if name in fields and name not in ("audition", "audition_s",
                                     "model_kwargs"):
    return getattr(cfg, name)
  if name in models.hyperparameters(cfg.model):
    model_field = {f.name: f for f in dataclasses.fields(
        models.model_class(cfg.model))}[name]
    return cfg.model_kwargs.get(name, model_field.default)
  raise ValueError(
      f"--audition: {name!r} is neither a run setting (a Config field) nor "
      f"a hyperparameter of model {cfg.model!r} "
      f"({', '.join(models.hyperparameters(cfg.model))})")


def _alternatives(cfg: config_lib.Config) -> list:
  """[(label, {name: value})] of cfg.audition; ValueError naming what is
  wrong.

  Alternatives are split by '|'; each is NAME=VALUE, several joined by ','
  (one candidate changing two settings), or a bare VALUE of the previous
  alternative's one NAME: 'dynamics_width=0|8|residual_channels=8'.
  """
  usage = ("write NAME=V1|V2|... with two or more alternatives, e.g. "
           "--audition='dynamics_width=0|8'")
  parts = [p.strip() for p in cfg.audition.split("|")]
  if len(parts) < 2 or not all(parts):
    raise ValueError(f"--audition={cfg.audition!r}: {usage}")
  out, previous = [], None
  for part in parts:
    changes = {}
    for item in part.split(","):
      name, sep, text = item.partition("=")
      if not sep:  # a bare value: the previous alternative's setting
        if previous is None:
          raise ValueError(f"--audition={cfg.audition!r}: {usage}")
        name, text = previous, item
      name = name.strip()
      changes[name] = _convert(text, _like(cfg, name), name)
    previous = name if len(changes) == 1 else None
    label = ",".join(f"{k}={v}" for k, v in changes.items())
    if label in dict(out):
      raise ValueError(f"--audition={cfg.audition!r} names {label} twice")
    out.append((label, changes))
  return out


def candidates(cfg: config_lib.Config) -> list:
  """[(label, Config)], one per value of cfg.audition, each without an
  audition and with the budget the winner trains to; [] without one.

  Raises ValueError, before anything is written, for a malformed
  --audition, a budget that leaves the winner no time, several processes
  or a candidate that is not a valid Config.
  """
  if not cfg.audition:
    return []
  alternatives = _alternatives(cfg)
  count = len(alternatives)
  budget = cfg.time_budget_s
  if budget:
    budget -= (count - 1) * cfg.audition_s
    if budget <= cfg.audition_s:
      raise ValueError(
          f"--time_budget_s={cfg.time_budget_s:g} leaves nothing after "
          f"{count} auditions of {cfg.audition_s:g} s: raise it above "
          f"{count * cfg.audition_s:g} or lower --audition_s")
  if not cfg.audition_s:
    raise ValueError("--audition_s must be > 0: each candidate trains that "
                     "long before the choice")
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    raise ValueError("--audition trains its candidates in one process; "
                     "leave it empty for a run over several processes")
  out = []
  for label, changes in alternatives:
    fields = {k: v for k, v in changes.items()
              if k in config_lib.Config.__dataclass_fields__}
    hyper = {k: v for k, v in changes.items() if k not in fields}
    try:
      candidate = cfg.replace(
          audition="", time_budget_s=budget,
          model_kwargs={**cfg.model_kwargs, **hyper}, **fields)
    except ValueError as e:
      raise ValueError(f"--audition candidate {label}: {e}") from None
    out.append((label, candidate))
  return out


def resumed(cfg: config_lib.Config, workdir: str) -> Optional[
    config_lib.Config]:
  """The Config an earlier audition of cfg in workdir chose, or None."""
  choice = _read_choice(workdir)
  if choice is None or choice["base"] != _as_dict(cfg):
    return None
  return config_lib.Config.from_json(choice["config_json"])


def base(workdir: str) -> Optional[config_lib.Config]:
  """The Config an audition in workdir was run from (the user's command),
  while workdir holds the candidate it chose; None otherwise. What another
  command is compared with: its config.json is the candidate's."""
  choice = _read_choice(workdir)
  if choice is None or not os.path.exists(workdir_lib.path(
      workdir, workdir_lib.CONFIG)):
    return None
  if workdir_lib.read_config(workdir) != config_lib.Config.from_json(
      choice["config_json"]):
    return None  # a later run (--overwrite) replaced the candidate
  return config_lib.Config.from_json(json.dumps(choice["base"]))


def choose(cfg: config_lib.Config, workdir: str, overwrite: bool = False,
           dataset=None) -> config_lib.Config:
  """Auditions cfg's candidates into workdir; the chosen candidate's
  Config, its run adopted by workdir (resume it with `emu.train.fit`).

  Raises TrainingFailed if every candidate failed to learn.
  """
  # The same settings again resume, as every run does (--overwrite
  # replaces only a run of other settings).
  chosen = resumed(cfg, workdir)
  if chosen is not None:
    logging.info("audition: resuming the candidate chosen earlier (%s)",
                 workdir_lib.path(workdir, workdir_lib.AUDITION_CHOICE))
    return chosen
  runs = candidates(cfg)
  trained = {label: _audition_one(cfg, workdir, i, len(runs), label, c,
                                  overwrite, dataset)
             for i, (label, c) in enumerate(runs)}
  scores = {label: esr for label, (esr, _) in trained.items()}
  label = min(scores, key=scores.get)
  if not math.isfinite(scores[label]):
    raise outcome.TrainingFailed(
        f"every audition candidate ({', '.join(scores)}) failed to learn: "
        + outcome.fix(cfg))
  chosen = dict(runs)[label]
  workdir_lib.adopt_run(_folder(workdir, label), workdir)
  workdir_lib.write_json(workdir, workdir_lib.AUDITION_CHOICE, {
      "setting": cfg.audition, "seconds": cfg.audition_s,
      "val1_esr": {k: (v if math.isfinite(v) else None)
                   for k, v in scores.items()},
      "seconds_trained": {k: seconds for k, (_, seconds) in trained.items()},
      "chosen": label, "base": _as_dict(cfg),
      "config_json": chosen.to_json()}, indent=2)
  logging.info("audition: %s (%s); training on %s to %s", label,
               ", ".join(f"{k} val1 ESR {v:.3e}" for k, v in scores.items()),
               label, f"{chosen.time_budget_s:g} s" if chosen.time_budget_s
               else "its stopping rule")
  return chosen


def summary(workdir: str) -> Optional[dict]:
  """audition.json's setting, seconds, scores and choice, and the seconds
  the candidates not chosen trained (`other_seconds`: part of the run's
  training time), or None."""
  choice = _read_choice(workdir)
  if choice is None:
    return None
  out = {k: choice[k] for k in ("setting", "seconds", "val1_esr", "chosen")}
  out["other_seconds"] = sum(v for k, v in choice["seconds_trained"].items()
                             if k != choice["chosen"])
  return out


def _audition_one(cfg, workdir, index, count, label, candidate, overwrite,
                  dataset) -> tuple:
  """One candidate's short run: (its best val1 ESR, inf if it failed; the
  seconds it trained)."""
  folder = _folder(workdir, label)
  logging.info("audition %d/%d: %s for %g s into %s", index + 1, count,
               label, cfg.audition_s, folder)
  try:
    result = train_loop.fit(candidate, folder, overwrite=overwrite,
                            dataset=dataset,
                            stop_after_seconds=cfg.audition_s)
  except outcome.TrainingFailed as e:
    logging.warning("audition: %s learned nothing (%s)", label, e)
    rows = workdir_lib.read_history(folder)
    return math.inf, rows[-1]["elapsed_s"] if rows else 0.
  scores = [row["val1_esr"] for row in result.history
            if math.isfinite(row["val1_esr"])]
  return (min(scores) if scores else math.inf), result.train_seconds


def _folder(workdir, label):
  return os.path.join(workdir_lib.path(workdir, workdir_lib.AUDITION), label)


def _as_dict(cfg):
  return json.loads(cfg.to_json())


def _read_choice(workdir):
  if not os.path.exists(workdir_lib.path(workdir,
                                         workdir_lib.AUDITION_CHOICE)):
    return None
  return workdir_lib.read_json(workdir, workdir_lib.AUDITION_CHOICE)
