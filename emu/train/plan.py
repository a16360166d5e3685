"""What a run needs, built and checked before anything is written: the Plan.

`make_plan(cfg, workdir, overwrite, dataset)` reads the data, builds the
model, its optimiser and jitted train step, decides how the devices share
the work and checks the workdir, the input files' fingerprints included
(`emu.train.loop.fit`'s first phase): a refused run leaves its workdir as
it was.
"""

import dataclasses
from typing import Any, Callable, Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from emu import config as config_lib
from emu import data as data_lib
from emu import losses
from emu import models
from emu import stream
from emu import workdir as workdir_lib
from emu.train import checkpoints as checkpoints_lib
from emu.models import data_init
from emu.train import batches
from emu.train import parallel
from emu.train import step as step_lib


@dataclasses.dataclass(frozen=True)
class Plan:
  """What `make_plan` decides once; fixed for the whole run."""
  cfg: config_lib.Config
  workdir: str
  dataset: data_lib.Dataset
  full_model: Any           # what fit returns: one model or the Ensemble
  train_step: Callable      # jitted, donates its state
  predict: Callable         # (params, signal) -> output(s) on the host
  to_full: Callable         # trained params -> full_model's params
  init_state: Callable      # () -> a fresh TrainState (stacked: ensemble)
  mesh: jax.sharding.Mesh
  split_members: bool
  sync_steps: bool
  checkpoints: checkpoints_lib.Checkpoints
  # The input files' sizes and sha256 (`batches.input_fingerprints`;
  # None for a Dataset given, not read from files): workdir's INPUTS.
  inputs: Optional[dict] = None

  @property
  def place_state(self):
    return (parallel.shard_members if self.split_members
            else parallel.replicate)

  @property
  def samples_per_step(self) -> int:
    return self.cfg.batch_size * (
        1 if self.cfg.mode == "window" else self.cfg.segment_length)


def check_config(cfg: config_lib.Config):
  """ValueError for what cfg's own values get wrong (an unknown loss,
  effect, model or hyperparameter, a size below 1), before any file is
  read or written."""
  losses.combined(cfg.loss)
  models.build_model(cfg)  # builds no weights: checks names and sizes
  if cfg.dataset == "knobs":
    from emu import effects  # pylint: disable=g-import-not-at-top
    effects.knob_effect(cfg.effect)
  elif cfg.dataset != "files":
    from emu import effects  # pylint: disable=g-import-not-at-top
    effects.effect(cfg.effect)


def make_plan(cfg, workdir, overwrite, dataset) -> Plan:
  """The data, the model, its step and how devices share it, every input
  checked; writes nothing.
  """
  check_config(cfg)

  def check_workdir():
    workdir_lib.check_writable(workdir)
    inputs = None if dataset else batches.input_fingerprints(cfg)
    workdir_lib.check_resumable(cfg, workdir, overwrite, inputs)
    return inputs
  inputs = parallel.on_process_zero(check_workdir)
  loss_fn = losses.combined(cfg.loss)
  dataset = dataset or batches.build_dataset(cfg)
  channels = channels_of(dataset.train.input)
  full_model = models.build_model(cfg, channels, dataset.sample_rate)
  model = full_model if cfg.ensemble == 1 else models.build_model(
      cfg.replace(ensemble=1), channels, dataset.sample_rate)
  n_steps = batches.steps_per_epoch(cfg, len(dataset.train.input))
  if n_steps < 1:
    raise ValueError(
        f"one epoch has no full batch: {len(dataset.train.input)} training "
        f"samples, batch_size {cfg.batch_size}, segment_length "
        f"{cfg.segment_length}; lower them or use more audio")
  tx = step_lib.make_optimizer(cfg, n_steps)
  mesh = parallel.data_mesh()
  split_members = parallel.splits_members(cfg.ensemble, mesh.size)
  if split_members:
    logging.info("ensemble of %d: %d member(s) on each of %d devices",
                 cfg.ensemble, cfg.ensemble // mesh.size, mesh.size)
  elif cfg.batch_size % mesh.size:
    raise ValueError(
        f"batch_size {cfg.batch_size} does not split over {mesh.size} "
        f"devices; use a multiple of {mesh.size}")
  step = step_lib.make_train_step(model, tx, loss_fn, cfg)
  init_state = data_init.wrap_initializer(
      state_initializer(cfg, model, tx, channels), model, dataset.train)
  if cfg.ensemble == 1:
    to_full = lambda params: params
    predict = stream.make_predict(full_model)
  else:
    if cfg.mode == "seq2seq" and full_model.native:  # one scan, E members
      step = step_lib.make_ensemble_train_step(full_model, tx, loss_fn, cfg)
    else:
      step = jax.vmap(step, in_axes=(0, None))
    to_full = step_lib.ensemble_params
    predict = stream.make_predict(full_model, method="member_outputs")
  return Plan(
      cfg=cfg, workdir=workdir, dataset=dataset, full_model=full_model,
      train_step=jax.jit(step, donate_argnums=0), predict=predict,
      to_full=to_full, init_state=init_state, mesh=mesh,
      split_members=split_members,
      sync_steps=parallel.sync_each_step(mesh, split_members),
      checkpoints=checkpoints_lib.Checkpoints(workdir), inputs=inputs)


def state_initializer(cfg, model, tx, channels):
  """() -> a fresh TrainState: one model's, or E members' from E keys
  stacked (independent runs that share the batches)."""
  key = jax.random.PRNGKey(cfg.seed)
  example = jnp.zeros((1, min(cfg.segment_length, 256), channels),
                      jnp.float32)
  if cfg.ensemble == 1:
    return lambda: step_lib.create_train_state(model, tx, key, example)
  return lambda: jax.vmap(
      lambda k: step_lib.create_train_state(model, tx, k, example))(
          jax.random.split(key, cfg.ensemble))


def channels_of(signal) -> int:
  """Input channels of a [time] or [time, channels] signal."""
  return 1 if np.ndim(signal) == 1 else int(np.shape(signal)[-1])
