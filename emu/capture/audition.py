"""Audition: train candidate models briefly, keep halving them, continue the best.

A capture recipe does not know the device it is given: a compressor needs
the wiener's compressor stage, a circuit with memory in its clipper needs a
black box (benchmarks/README.md). `Config.audition` lists the candidates,
split by '|'; each is a family (a flagfile of its own, holding only what
differs from the recipe: model, hyperparameters, segment, warm-up, batch,
learning rate...) or a change of settings (Config fields or model
hyperparameters):

  --audition='@experiments/families/wiener.flags|@experiments/families/lstm.flags'
  --audition='dynamics_width=0|8|residual_channels=8'   # three variants

Successive halving: in round 1 every candidate trains `audition_s` seconds
into its own run folder, WORKDIR/audition/LABEL (LABEL: the family file's
name, or NAME=VALUE); the better half by val1 ESR (the score that early
stopping and the best checkpoint use) each train twice as long again,
resuming their folders, and so on until one is left. It moves into WORKDIR
(`emu.workdir.adopt_run`) and trains on to the end of `time_budget_s`.
Where the half has room, the best grey box and the best black box both go
on, whatever their rank (`keep`): a grey box converges in seconds and a
WaveNet in minutes, so a short round alone would never let a WaveNet
show what it reaches.

The race (`races`): where the last round's candidates (two, after
halving) would each have a worker and use every core there is (a 2-core
CPU), that round does not halve them after twice the seconds: they train
side by side to the end of the budget and the better at the end is the
model. A single winner trains on with XLA's threads over both cores,
which a recurrent scan or a small WaveNet barely uses; a ranking after 80 s
of a 600 s budget chose a tube amp's wiener (4.5e-3 at the end) over NAM's
WaveNet, which passes it after about 100 s and ends at 2.3e-3
(benchmarks/README.md). The runner-up stays in WORKDIR/audition/LABEL,
trained as long: `emu.plugins.playable` takes its file where the winner
has none of its own.

With `audition_workers` >= 2 (default: one per usable core) a round's
candidates train side by side, each in a child process pinned to a core
with one XLA thread (`emu.capture.audition_workers`); 1 trains them one
after another in this process. time_budget_s counts wall-clock seconds,
what a user waits for: a round's wall seconds are measured around it
(the children's start-up and compilation included), and the winner trains
on for the budget less the audition's wall seconds (its own audition
seconds count once). A round's seconds are each candidate's training
seconds after its first step (`emu.train.fit`'s stop_after_seconds): a
WaveNet that compiles for 30 s gets its 40 s of training as an LSTM that
compiles for 3 does. The report's
train_seconds adds every candidate's training seconds (the CPU work: two
workers training 60 s each cost 120); its audition block gives the wall
seconds. WORKDIR/audition.json records every round (each candidate's val1
ESR and seconds) as it ends, then the choice; the same command run again
resumes the chosen run, or the audition where it stopped.
"""

import json
import math
import os
import time
from typing import Optional

from absl import logging

from emu import config as config_lib
from emu import workdir as workdir_lib
from emu.capture import audition_spec
from emu.capture import audition_workers
from emu.train import outcome
from emu.train import parallel

BUDGET_CLOCK = ("wall: time_budget_s counts the seconds a user waits; a "
                "round's wall seconds are measured around it (its workers' "
                "start-up and compilation included)")


# Models built from a device's structure (filters, a curve, a state-space
# core): a handful of parameters, converged within seconds. The rest are
# black boxes (recurrent nets, WaveNets), thousands of weights that need
# minutes: a short round compares the two kinds unfairly.
GREY_BOXES = ("wiener", "nss", "svf")


def kind(cfg: config_lib.Config) -> str:
  """'grey' or 'black': the kind of a candidate's model."""
  return "grey" if cfg.model in GREY_BOXES else "black"


def keep(ranked: list, kinds: dict, count: int) -> list:
  """The `count` candidates that go on, from `ranked` (best first): the
  best of each kind first (as far as count allows), then the rest in rank
  order; returned in rank order.

  On a tube amp circuit a grey box led the first 40 s round (1.5e-2, then
  1.1e-2 after 80 s more) and NAM's WaveNet was third (3.0e-2): kept by
  rank alone, two grey boxes went on and the chosen one ended 2x worse
  than the WaveNet trained alone (benchmarks/README.md, 2026-12-07 (3)).
  """
  leaders = []
  for label in ranked:
    if kinds[label] not in [kinds[l] for l in leaders]:
      leaders.append(label)
  kept = leaders[:count]
  kept += [label for label in ranked if label not in kept][:count - len(kept)]
  return sorted(kept, key=ranked.index)


def workers(cfg: config_lib.Config) -> int:
  """How many candidates train at once: audition_workers, or (0) one per
  usable core."""
  return cfg.audition_workers or parallel.usable_cores()


def rounds(count: int, first_s: float) -> list:
  """[(candidates training in the round, seconds each trains in it)]:
  successive halving of `count` candidates, the better half (at least
  one) going on for twice the seconds until one is left."""
  out, seconds = [], first_s
  while count > 1:
    out.append((count, seconds))
    count, seconds = count // 2, seconds * 2
  return out


def races(cfg: config_lib.Config, count: int) -> bool:
  """Whether the last round's `count` candidates train side by side to the
  end of the budget (the module's docstring): a time budget, a worker for
  each of them, and no usable core left over."""
  return bool(cfg.time_budget_s) and 2 <= count <= workers(cfg) and (
      parallel.usable_cores() <= count)


def planned_wall_s(count: int, first_s: float, worker_count: int) -> float:
  """The audition's wall seconds as planned: each round's candidates
  shared over the workers, one after another on each."""
  return sum(-(-n // min(worker_count, n)) * s
             for n, s in rounds(count, first_s))


def candidates(cfg: config_lib.Config) -> list:
  """[(label, Config)], one per alternative of cfg.audition, each without
  an audition; [] without one.

  Raises ValueError, before anything is written, for a malformed
  --audition, a missing or bad family file, a budget that leaves the
  winner no time (`planned_wall_s`), several processes or a candidate that
  is not a valid Config.
  """
  if not cfg.audition:
    return []
  alternatives = audition_spec.alternatives(cfg)
  if not cfg.audition_s:
    raise ValueError("--audition_s must be > 0: each candidate trains that "
                     "long in the first round")
  wall = planned_wall_s(len(alternatives), cfg.audition_s, workers(cfg))
  if cfg.time_budget_s and cfg.time_budget_s <= wall:
    raise ValueError(
        f"--time_budget_s={cfg.time_budget_s:g} leaves nothing after an "
        f"audition of {len(alternatives)} candidates taking {wall:g} s "
        f"(first round {cfg.audition_s:g} s, {workers(cfg)} worker(s)): "
        f"raise it above {wall:g} or lower --audition_s")
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    raise ValueError("--audition trains its candidates in one process; "
                     "leave it empty for a run over several processes")
  out = []
  for label, fields, kwargs in alternatives:
    try:
      candidate = cfg.replace(audition="", model_kwargs=kwargs, **fields)
    except ValueError as e:
      raise ValueError(f"--audition candidate {label}: {e}") from None
    out.append((label, candidate))
  return out


def resumed(cfg: config_lib.Config, workdir: str) -> Optional[
    config_lib.Config]:
  """The Config an earlier audition of cfg in workdir chose, or None."""
  choice = _read_choice(workdir)
  if choice is None or _base_of(choice) != _as_dict(cfg):
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
  """Auditions cfg's candidates into workdir by successive halving; the
  chosen candidate's Config (its time_budget_s what the audition's wall
  seconds leave), its run adopted by workdir (resume it with
  `emu.train.fit`).

  Phases: resume the choice, or the rounds recorded so far -> each round
  left (train, score, keep the better half; recorded; the last one a race
  to the budget's end where `races`) -> adopt the winner.
  Raises TrainingFailed if every candidate failed to learn.
  """
  chosen = resumed(cfg, workdir)
  if chosen is not None:
    logging.info("audition: resuming the candidate chosen earlier (%s)",
                 workdir_lib.path(workdir, workdir_lib.AUDITION_CHOICE))
    return chosen
  runs = dict(candidates(cfg))
  record = _started(cfg, workdir, overwrite, list(runs))
  alive = list(runs)
  plan = rounds(len(runs), cfg.audition_s)
  for index, (count, seconds) in enumerate(plan):
    if index == len(record["rounds"]):  # not trained yet (or interrupted)
      race = index == len(plan) - 1 and races(cfg, count)
      if race:  # to the budget's end (what the rounds before left of it)
        seconds = max(cfg.time_budget_s - sum(
            one["wall_seconds"] for one in record["rounds"]), 0.)
      record["rounds"].append({**_train_round(
          cfg, workdir, runs, alive, seconds, record, overwrite, dataset),
                               "race": race})
      workdir_lib.write_json(workdir, workdir_lib.AUDITION_CHOICE, record,
                             indent=2)
    alive = record["rounds"][index]["continue"]
    assert len(alive) == max(count // 2, 1)
  return _adopt(cfg, workdir, runs, alive[0], record)


def summary(workdir: str) -> Optional[dict]:
  """audition.json's setting, seconds, scores and choice, the seconds the
  candidates not chosen trained (`other_seconds`: part of the run's
  training time) and the audition's wall seconds, or None."""
  choice = _read_choice(workdir)
  if choice is None:
    return None
  out = {k: choice[k] for k in ("setting", "seconds", "workers", "val1_esr",
                                "chosen", "wall_seconds")}
  out["rounds"] = len(choice["rounds"])
  out["other_seconds"] = sum(v for k, v in choice["seconds_trained"].items()
                             if k != choice["chosen"])
  out["chosen_seconds"] = choice["seconds_trained"][choice["chosen"]]
  return out


def runner_up(workdir: str) -> Optional[tuple]:
  """(label, run folder, its best val1 ESR) of the candidate that lost the
  race to the one workdir holds, or None (no audition chosen, or its last
  round was no race: the others trained less than the winner)."""
  choice = _read_choice(workdir)
  if choice is None or not choice["rounds"][-1].get("race"):
    return None
  scores = choice["rounds"][-1]["val1_esr"]
  others = [label for label in scores if label != choice["chosen"]
            and scores[label] is not None]
  if not others:
    return None
  label = min(others, key=scores.get)
  return label, _folder(workdir, label), scores[label]


# ----------------------------------------------------------------- phases


def _started(cfg, workdir, overwrite, labels) -> dict:
  """The audition record: the one of cfg that workdir holds (its rounds
  so far), or a fresh one. One of other settings is refused
  (WorkdirConflict) unless overwrite, which clears it."""
  fresh = {"setting": cfg.audition, "seconds": cfg.audition_s,
           "workers": workers(cfg), "budget_clock": BUDGET_CLOCK,
           "candidates": labels, "rounds": [], "base": _as_dict(cfg)}
  path = workdir_lib.path(workdir, workdir_lib.AUDITION_CHOICE)
  if not os.path.exists(path):
    return fresh
  record = workdir_lib.read_json(workdir, workdir_lib.AUDITION_CHOICE)
  if _base_of(record) == fresh["base"] and "chosen" not in record:
    logging.info("audition: resuming after round %d", len(record["rounds"]))
    return record
  if not overwrite:
    raise workdir_lib.WorkdirConflict(
        f"{workdir} holds an audition of other settings ({path}). Run that "
        "command again to resume it, use a new workdir, or pass "
        "overwrite=True (--overwrite) to replace it.")
  workdir_lib.clear_run(workdir)
  return fresh


def _train_round(cfg, workdir, runs, alive, seconds, record, overwrite,
                 dataset) -> dict:
  """One round: each of `alive` trains `seconds` more (from where the last
  round left it); the round's record, its better half in "continue"."""
  before = (record["rounds"][-1]["seconds_trained"] if record["rounds"]
            else {})
  jobs = [audition_workers.Job(
      label, runs[label], _folder(workdir, label),
      until_s=before.get(label, 0.) + seconds) for label in alive]
  count = min(workers(cfg), len(jobs))
  logging.info("audition round %d: %s, %g s each, %d at a time",
               len(record["rounds"]) + 1, ", ".join(alive), seconds, count)
  started = time.perf_counter()
  results = audition_workers.train_all(jobs, count, overwrite, dataset)
  wall = time.perf_counter() - started
  scores = {label: results[label][0] for label in alive}
  trained = {label: results[label][1] for label in alive}
  ranked = sorted(alive, key=lambda label: (scores[label],
                                            alive.index(label)))
  kept = keep(ranked, {label: kind(runs[label]) for label in alive},
              max(len(alive) // 2, 1))
  if not math.isfinite(scores[kept[0]]):
    raise outcome.TrainingFailed(
        f"every audition candidate ({', '.join(alive)}) failed to learn: "
        + outcome.fix(cfg))
  logging.info("audition: %s; %s go on", ", ".join(
      f"{k} val1 ESR {v:.3e}" for k, v in scores.items()), ", ".join(kept))
  return {"seconds": seconds, "workers": count, "wall_seconds": wall,
          "val1_esr": {k: (v if math.isfinite(v) else None)
                       for k, v in scores.items()},
          "seconds_trained": trained, "continue": kept}


def _adopt(cfg, workdir, runs, label, record) -> config_lib.Config:
  """The winner's run moved into workdir, with the budget the audition's
  wall seconds leave it; audition.json completed."""
  scores, trained = {}, {}
  for one in record["rounds"]:  # each candidate's last round
    scores.update(one["val1_esr"])
    trained.update(one["seconds_trained"])
  wall = sum(one["wall_seconds"] for one in record["rounds"])
  chosen = runs[label]
  if cfg.time_budget_s:  # the winner's own seconds count once; at least
    # what it has trained (0 would mean no budget), so a race's winner or
    # an audition past the budget trains no more
    chosen = chosen.replace(time_budget_s=max(
        cfg.time_budget_s - wall + trained[label], trained[label]))
  workdir_lib.adopt_run(_folder(workdir, label), workdir)
  workdir_lib.write_text(workdir, workdir_lib.CONFIG, chosen.to_json())
  record.update(val1_esr=scores, seconds_trained=trained, wall_seconds=wall,
                chosen=label, config_json=chosen.to_json())
  workdir_lib.write_json(workdir, workdir_lib.AUDITION_CHOICE, record,
                         indent=2)
  logging.info("audition chose %s after %d round(s), %.0f s of wall clock; "
               "training on to %s", label, len(record["rounds"]), wall,
               f"{chosen.time_budget_s:g} s" if chosen.time_budget_s
               else "its stopping rule")
  return chosen


def _folder(workdir, label):
  return os.path.join(workdir_lib.path(workdir, workdir_lib.AUDITION), label)


def _as_dict(cfg):
  return json.loads(cfg.to_json())


def _base_of(record):
  """The command an audition record was run from, as `_as_dict` writes it
  now: a field added to Config since holds its default (None: no base)."""
  if "base" not in record:
    return None
  try:
    return _as_dict(config_lib.Config.from_json(json.dumps(record["base"])))
  except ValueError:  # a field since removed: another command
    return None


def _read_choice(workdir):
  """audition.json once it holds a choice, else None."""
  if not os.path.exists(workdir_lib.path(workdir,
                                         workdir_lib.AUDITION_CHOICE)):
    return None
  record = workdir_lib.read_json(workdir, workdir_lib.AUDITION_CHOICE)
  return record if "chosen" in record else None
