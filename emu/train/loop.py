"""The training loop: `fit(config, workdir)` as named phases.

  check -> start the workdir -> init or restore -> loop of (run epoch ->
  validate -> maybe checkpoint) until `stop_reason` says why -> finish

`emu.train.plan.make_plan` builds everything a run needs (data, model,
first weights) and writes nothing, so a refused run leaves its workdir as
it was; `_start` then writes config.json. Checkpoints (best and last, orbax) make a re-run
into the same workdir resume exactly; each epoch is one log line and one
row of `workdir/metrics.jsonl`.

Over several processes (`jax.distributed`) every process runs these phases
in lockstep on its share of each batch; process 0 alone reads and writes
the workdir, scores val1 and keeps the clock, and the others take its
numbers (`parallel.on_process_zero`), so that every process stops, saves
and resumes at the same epoch. One process: the plain calls.
"""

import dataclasses
import math
import time
from typing import Any, Callable, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from emu import config as config_lib
from emu import data as data_lib
from emu import metrics
from emu import workdir as workdir_lib
from emu.train import batches
from emu.train import outcome
from emu.train import parallel
from emu.train import plan as plan_lib
from emu.train import runlock
from emu.train import step as step_lib
from emu.train.stopping import EarlyStopping  # pylint: disable=g-importing-member


@dataclasses.dataclass
class FitResult:
  model: Any
  params: Any
  dataset: data_lib.Dataset
  history: list
  stop_reason: str
  train_seconds: float
  epochs: int
  best_epoch: int
  # How the devices shared the work: "data" (batch split, or one device),
  # "members" (an ensemble's members split over the devices).
  parallel: str = "data"
  # What the run should know about its result (a val1 ESR >= 1), logged.
  warnings: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Loop:
  """What the loop carries from epoch to epoch."""
  state: Any
  best_params: Any
  stopper: EarlyStopping
  epoch: int = 0
  elapsed: float = 0.0
  history: list = dataclasses.field(default_factory=list)
  saved_epoch: int = 0
  saved_at: float = 0.0
  stop_after_s: Optional[float] = None  # fit's stop_after_seconds
  first_step_s: Optional[float] = None  # this call's first (compiling) step

  def checkpoint(self):
    """The 'last' checkpoint's tree."""
    return {"state": self.state, "best_params": self.best_params,
            "stopper": self.stopper.as_array(),
            "epoch": np.int64(self.epoch),
            "elapsed": np.float64(self.elapsed)}


def fit(cfg: config_lib.Config, workdir: str, overwrite: bool = False,
        dataset: Optional[data_lib.Dataset] = None,
        stop_after_epochs: Optional[int] = None,
        on_start: Optional[Callable[[], Any]] = None,
        stop_after_seconds: Optional[float] = None) -> FitResult:
  """Trains `cfg` into `workdir`, resuming a run that is already there.

  Args:
    cfg: the run's Config.
    workdir: folder for config.json, metrics.jsonl and checkpoints/.
    overwrite: replace a run with a different config instead of refusing.
    dataset: use this Dataset instead of building the one cfg names.
    stop_after_epochs: end this call after so many epochs in total, as if
      interrupted (tests resume from it).
    stop_after_seconds: end this call once the run has trained so many
      seconds in total, as if interrupted (`emu.capture.audition`'s short
      runs), not counting this call's first step: its compilation, which
      took NAM's WaveNet 28-32 s of a 40 s audition round.
    on_start: called (on process 0) once every input is checked and
      workdir holds config.json, before the first epoch: what else a run
      writes into its folder (emu.pipeline: data_report.json).

  Returns:
    FitResult with the best parameters (by val1 ESR) and the history.

  Raises:
    ValueError (before anything is written) for a bad input: WorkdirConflict
    (another config, or changed input files), WorkdirBusy (another process
    runs there: `emu.train.runlock`), WorkdirError, DataError, an unknown
    loss, effect or model, a size below 1. TrainingFailed when training
    diverged before any epoch gave a finite val1 ESR, or ended no better
    than the first weights with an ESR >= 1 (worse than silence):
    `emu.train.outcome`; workdir records it (`emu.workdir.FAILED`).
  """
  with runlock.held(workdir):
    plan = plan_lib.make_plan(cfg, workdir, overwrite, dataset)
    fresh = _fresh_loop(plan)
    _start(plan, overwrite)
    if on_start is not None:
      parallel.on_process_zero(on_start)
    try:
      return _train(plan, fresh, stop_after_epochs, stop_after_seconds)
    except outcome.TrainingFailed as failed:  # no model: apply refuses it
      workdir_lib.record_failure(workdir, str(failed))
      raise


def _train(plan, fresh, stop_after_epochs, stop_after_seconds):
  """Init or restore, the epochs until a stop reason, finish."""
  cfg = plan.cfg
  loop = _init_or_restore(plan, fresh)
  loop.stop_after_s = stop_after_seconds
  while True:
    reason = stop_reason(cfg, loop, stop_after_epochs)
    if reason:
      break
    start = time.perf_counter()
    loop, row = _run_epoch(plan, loop)
    if not math.isfinite(row["train_loss"]):
      reason = _diverged(plan, loop, f"the training loss is {row['train_loss']}")
      break
    if not _validate(plan, loop, row, start):
      reason = _diverged(plan, loop, "the val1 output is not finite")
      break
    _maybe_checkpoint(plan, loop)
  return _finish(plan, loop, reason)


def stop_reason(cfg: config_lib.Config, loop: Loop,
                stop_after_epochs: Optional[int] = None) -> Optional[str]:
  """Why training stops before the next epoch, or None to go on.

  The one place that decides: early stopping wins over the epoch limit,
  which wins over the time budget and an interruption (`stop_after_epochs`,
  fit's `stop_after_seconds`, held as `loop.stop_after_s`).
  A diverged loss stops inside the epoch (`_diverged`), and the clock's
  limits cut the epoch that reaches them (`epoch_deadline`).
  """
  if loop.stopper.should_stop:
    return "early_stopping"
  if loop.epoch >= cfg.max_epochs:
    return "max_epochs"
  if cfg.time_budget_s and loop.elapsed >= cfg.time_budget_s:
    return "time_budget"
  if stop_after_epochs is not None and loop.epoch >= stop_after_epochs:
    return "interrupted"
  if loop.stop_after_s is not None and loop.elapsed >= loop.stop_after_s:
    return "interrupted"
  return None


# ----------------------------------------------------------------- phases


def _start(plan: plan_lib.Plan, overwrite: bool):
  """config.json and dataset.json: the first writes of a checked run."""
  channels = plan_lib.channels_of(plan.dataset.train.input)
  def start():
    workdir_lib.prepare(plan.cfg, plan.workdir, overwrite, plan.inputs)
    workdir_lib.write_dataset_info(plan.workdir, plan.dataset, channels)
  parallel.on_process_zero(start)


def checkpoint_template(loop: Loop):
  """The 'last' checkpoint's shapes (the live arrays get donated)."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                      loop.checkpoint())


def _fresh_loop(plan: plan_lib.Plan) -> Loop:
  state = plan.init_state()
  return Loop(state=state, best_params=jax.tree.map(jnp.copy, state.params),
               stopper=EarlyStopping(patience=plan.cfg.patience,
                                     min_delta=plan.cfg.min_delta))


def _init_or_restore(plan: plan_lib.Plan, loop: Loop) -> Loop:
  """The fresh `loop`, or the one the 'last' checkpoint holds (to resume).

  Over several processes, process 0 reads the checkpoint and metrics.jsonl
  and every process resumes from what it read (a fresh loop is the seed's,
  the same on every process).
  """
  restored, history = parallel.on_process_zero(
      lambda: _read_last(plan, loop))
  if restored is not None:
    loop = Loop(state=restored["state"],
                 best_params=restored["best_params"],
                 stopper=loop.stopper.from_array(restored["stopper"]),
                 epoch=int(restored["epoch"]),
                 elapsed=float(restored["elapsed"]))
    loop.saved_epoch = loop.epoch
    logging.info("resuming %s from epoch %d", plan.workdir, loop.epoch)
  loop.history = history
  parallel.on_process_zero(
      lambda: workdir_lib.write_history(plan.workdir, loop.history))
  loop.saved_at = time.perf_counter()
  return loop


def _read_last(plan: plan_lib.Plan, loop: Loop):
  """(the 'last' checkpoint or None, metrics.jsonl's rows up to its epoch)."""
  restored = plan.checkpoints.restore("last", checkpoint_template(loop))
  epoch = 0 if restored is None else int(restored["epoch"])
  return restored, workdir_lib.read_history(plan.workdir, epoch)


def _run_epoch(plan: plan_lib.Plan, loop: Loop):
  """One pass over the training batches; (loop, row of train_* means)."""
  start = time.perf_counter()
  epoch_key, loop.state = step_lib.next_epoch_key(loop.state,
                                                  plan.cfg.ensemble)
  step_metrics = []
  deadline = epoch_deadline(plan.cfg, loop, start)
  compiled = None  # this epoch's first step, where it is the call's first
  loop.state = plan.place_state(loop.state, plan.mesh)
  for batch in batches.epoch_batches(plan.cfg, plan.dataset.train,
                                     parallel.host_local(epoch_key)):
    loop.state, step_out = plan.train_step(
        loop.state, parallel.shard_batch(batch, plan.mesh,
                                         split=not plan.split_members))
    if plan.sync_steps:
      jax.block_until_ready(step_out)
    step_metrics.append(step_out)
    if loop.first_step_s is None and loop.stop_after_s is not None:
      deadline = _without_first_step(plan.cfg, loop, start, step_out)
      compiled = loop.first_step_s
    if deadline is not None and _past(deadline, step_metrics):
      break
  # One host transfer per epoch (replicated over the processes: each reads
  # its own copy, the same numbers).
  step_metrics = parallel.to_host(step_metrics)
  train_time = time.perf_counter() - start
  row = {"epoch": loop.epoch + 1}
  for name in step_metrics[0]:
    row["train_" + name] = float(np.mean([m[name] for m in step_metrics]))
  row["samples_per_s"] = len(step_metrics) * plan.samples_per_step / (
      train_time)
  row["steps"] = len(step_metrics)
  if compiled is not None:
    row["first_step_s"] = compiled  # compiling, not counted
  return loop, row


def epoch_deadline(cfg: config_lib.Config, loop: Loop,
                   start: float) -> Optional[float]:
  """The `time.perf_counter()` at which an epoch begun at `start` stops
  between two steps: where the run reaches its time budget or fit's
  `stop_after_seconds`, whichever is first; None without either, and in
  the run's first epoch, which is always whole (a model that has seen
  every segment once, however short the budget).

  A budget is kept to the step, not to the epoch's end: an epoch of a long
  recording takes a minute or more on a CPU, and a budget checked only
  between epochs overran by as much (the audition's 40 s rounds took 100 s).
  The cut epoch is validated and counted as any other; the next one
  starts a fresh pass over the data.
  """
  limits = [s for s in (cfg.time_budget_s, loop.stop_after_s) if s]
  if not limits or loop.epoch == 0:
    return None
  return start + min(limits) - loop.elapsed


def _without_first_step(cfg, loop: Loop, start: float, step_out):
  """The epoch's deadline once this call's first step (`step_out`, its
  compilation) is done, fit's stop_after_seconds moved past it: a
  candidate's round counts the seconds it trains, not those it compiles."""
  jax.block_until_ready(step_out)
  loop.first_step_s = time.perf_counter() - start
  loop.stop_after_s += loop.first_step_s
  return epoch_deadline(cfg, loop, start)


def _past(deadline: float, step_metrics: list) -> bool:
  """Whether the clock is past `deadline` once the step before the last is
  done (one step stays in flight; process 0's clock decides for all)."""
  if len(step_metrics) > 1:
    jax.block_until_ready(step_metrics[-2])
  return parallel.same_as_process_zero(time.perf_counter() >= deadline)


def _validate(plan: plan_lib.Plan, loop: Loop, row: dict, start: float) -> bool:
  """val1 ESR, early stopping and the best parameters; logs the epoch.

  Returns False (and changes nothing) if the val1 output is not finite.
  Over several processes, process 0 scores and times the epoch and every
  process takes its row.
  """
  params = parallel.host_local(plan.to_full(loop.state.params))
  scored = parallel.on_process_zero(
      lambda: _scored_row(plan, loop, params, row, start))
  if scored is None:
    return False
  row = scored
  loop.epoch += 1
  loop.elapsed = row["elapsed_s"]
  loop.stopper = loop.stopper.update(row["val1_esr"], loop.epoch)
  if loop.stopper.improved:
    # A copy: the next step donates state.params' buffers.
    loop.best_params = jax.tree.map(jnp.copy, loop.state.params)
  loop.history.append(row)
  _log_epoch(row, plan.cfg, loop.elapsed, loop.epoch, loop.stop_after_s)
  workdir_lib.append_history(plan.workdir, row)
  return True


def _scored_row(plan: plan_lib.Plan, loop: Loop, params, row: dict, start: float):
  """`row` with val1's ESR and the epoch's times; None if the val1 output
  is not finite."""
  scores = _val1_esr(plan, params)
  if scores is None:
    return None
  row["val1_esr"], members = scores
  if members is not None:
    row["val1_esr_members"] = members
  seconds = time.perf_counter() - start
  row.update(epoch_seconds=seconds, elapsed_s=loop.elapsed + seconds,
             lr_scale=plan.cfg.lr_decay ** loop.epoch)
  return row


def _val1_esr(plan: plan_lib.Plan, params):
  """(val1 ESR, the members' ESRs or None) of the full model's params;
  None if the output is not finite."""
  val1 = plan.dataset.val1
  output = val1.trim(plan.predict(params, val1.input))
  target = val1.scored().target
  if not np.all(np.isfinite(output)):
    return None
  members = None
  if plan.cfg.ensemble > 1:
    members = [metrics.esr(y, target) for y in output]
    output = output.mean(axis=0)
  return metrics.esr(output, target), members


def _maybe_checkpoint(plan: plan_lib.Plan, loop: Loop, force: bool = False):
  """Saves last (and best) if checkpoint_every_s has passed (or `force`);
  the time it takes counts as training."""
  if loop.saved_epoch == loop.epoch:
    return
  # Process 0's clock decides for every process.
  if not force and not parallel.same_as_process_zero(
      time.perf_counter() - loop.saved_at >= plan.cfg.checkpoint_every_s):
    return
  start = time.perf_counter()
  last = parallel.host_local(loop.checkpoint())
  best = parallel.host_local({"params": plan.to_full(loop.best_params)})

  def save():
    plan.checkpoints.save("last", last)
    plan.checkpoints.save("best", best)
    return loop.elapsed + (time.perf_counter() - start)

  loop.elapsed = parallel.on_process_zero(save)
  loop.saved_epoch, loop.saved_at = loop.epoch, time.perf_counter()


def _diverged(plan: plan_lib.Plan, loop: Loop, what: str) -> str:
  """Non-finite numbers: stops with the best parameters so far (their
  'best' checkpoint saved), or TrainingFailed if no epoch gave any."""
  if loop.stopper.best_epoch < 1:
    raise outcome.diverged_before_any_epoch(plan.cfg, loop.epoch + 1, what)
  logging.error(
      "epoch %d: %s; stopping with the best parameters so far (epoch %d, "
      "val1 ESR %.3e). Lower --learning_rate or set --grad_clip.",
      loop.epoch + 1, what, loop.stopper.best_epoch, loop.stopper.best)
  if loop.saved_epoch < loop.stopper.best_epoch:
    # The diverged state is not worth a 'last' checkpoint; the best is.
    best = parallel.host_local({"params": plan.to_full(loop.best_params)})
    parallel.on_process_zero(lambda: plan.checkpoints.save("best", best))
  loop.saved_epoch = loop.epoch  # nothing new worth saving
  return "diverged"


def _finish(plan: plan_lib.Plan, loop: Loop, reason: str) -> FitResult:
  # The seconds the 'last' checkpoint holds, where a resumed run's clock
  # starts (its own write is not in it): what the audition's next round
  # adds to.
  trained = loop.elapsed
  _maybe_checkpoint(plan, loop, force=True)
  logging.info("training stopped (%s) after %d epochs, %.1f s; best val1 "
               "ESR %.3e at epoch %d", reason, loop.epoch, loop.elapsed,
               loop.stopper.best, loop.stopper.best_epoch)
  def first_esr():  # the seed's first weights, scored as an epoch is
    scores = _val1_esr(plan, parallel.host_local(
        plan.to_full(plan.init_state().params)))
    return scores and scores[0]
  warnings = parallel.on_process_zero(lambda: outcome.warnings_of(
      plan.cfg, loop.stopper.best, loop.stopper.best_epoch, first_esr,
      finished=reason != "interrupted"))
  # Parameters this process holds whole: what evaluation and export take.
  return FitResult(model=plan.full_model,
                   params=parallel.host_local(plan.to_full(loop.best_params)),
                   dataset=plan.dataset, history=loop.history,
                   stop_reason=reason, train_seconds=trained,
                   epochs=loop.epoch, best_epoch=loop.stopper.best_epoch,
                   parallel="members" if plan.split_members else "data",
                   warnings=warnings)


def _log_epoch(row, cfg, elapsed, epoch, stop_after_s=None):
  per_epoch = elapsed / max(epoch, 1)
  eta = per_epoch * (cfg.max_epochs - epoch)
  for limit in (cfg.time_budget_s, stop_after_s):
    if limit:
      eta = min(eta, max(limit - elapsed, 0.0))
  logging.info(
      "epoch %d/%d loss %.3e val1_esr %.3e | %.0fk samples/s | %.1f s "
      "elapsed, ETA %.0f s", epoch, cfg.max_epochs, row["train_loss"],
      row["val1_esr"], row["samples_per_s"] / 1e3, elapsed, eta)
