"""The stateless training loop.

  state = create_train_state(model, tx, key, example_x)
  state, metrics = train_step(state, batch)   # pure, jitted once

`fit(config, workdir)` wraps it into a run: builds the data and model, trains
with early stopping, checkpoints (best and last, orbax) so that re-running
into the same workdir resumes exactly, logs one line per epoch and writes the
same numbers to `workdir/metrics.jsonl`.
"""

import dataclasses
import json
import math
import os
import shutil
import time
from typing import Any, Callable, NamedTuple, Optional

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from emu import config as config_lib
from emu import data as data_lib
from emu import losses
from emu import models
from emu.models import ensemble as ensemble_lib


class WorkdirConflict(ValueError):
  """The workdir holds a run with a different config."""


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree."""
  params: Any
  opt_state: Any
  step: jax.Array
  key: jax.Array


@flax.struct.dataclass
class EarlyStopping:
  """Early stopping as an immutable value: `update` returns a new one.

  An epoch improves when its value is below best * (1 - min_delta); training
  should stop after `patience` epochs in a row without an improvement.
  """
  best: float = math.inf
  best_epoch: int = -1
  bad_epochs: int = 0
  patience: int = flax.struct.field(pytree_node=False, default=100)
  min_delta: float = flax.struct.field(pytree_node=False, default=0.0)

  def update(self, value: float, epoch: int) -> "EarlyStopping":
    if value < self.best * (1.0 - self.min_delta):
      return self.replace(best=value, best_epoch=epoch, bad_epochs=0)
    return self.replace(bad_epochs=self.bad_epochs + 1)

  @property
  def improved(self) -> bool:
    return self.bad_epochs == 0

  @property
  def should_stop(self) -> bool:
    return self.bad_epochs >= self.patience


# ---------------------------------------------------------------- the step


def make_optimizer(cfg: config_lib.Config, steps_per_epoch: int):
  """Adam with a per-epoch exponential decay and optional clipping."""
  learning_rate = optax.exponential_decay(
      cfg.learning_rate, transition_steps=max(steps_per_epoch, 1),
      decay_rate=cfg.lr_decay, staircase=True)
  parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip else []
  return optax.chain(*parts, optax.adam(learning_rate))


def create_train_state(model, tx, key, example_x) -> TrainState:
  init_key, key = jax.random.split(key)
  params = model.init(init_key, example_x)
  return TrainState(params=params, opt_state=tx.init(params),
                    step=jnp.zeros((), jnp.int32), key=key)


def seq2seq_predict(model, params, x, warmup: int, tbptt: int):
  """Runs x [B, L, C] from the initial state; returns y after the warm-up.

  The first `warmup` samples set the state and are neither scored nor
  differentiated. The rest runs in chunks of `tbptt` samples whose carried
  state is cut from the gradient (truncated BPTT); 0 = one chunk.
  """
  state = model.initial_state(x.shape[0])
  if warmup:
    _, state = model.apply(params, x[:, :warmup], state)
    state = jax.lax.stop_gradient(state)
  x = x[:, warmup:]
  if not tbptt or tbptt >= x.shape[1]:
    return model.apply(params, x, state)[0]
  batch, length, channels = x.shape
  chunks = x.reshape(batch, length // tbptt, tbptt, channels).swapaxes(0, 1)

  def chunk(state, xc):
    y, state = model.apply(params, xc, jax.lax.stop_gradient(state))
    return state, y

  _, ys = jax.lax.scan(chunk, state, chunks)
  return ys.swapaxes(0, 1).reshape(batch, length, -1)


def make_train_step(model, tx, loss_fn: Callable, cfg: config_lib.Config):
  """The pure step `(state, batch) -> (state, metrics)` for cfg.mode.

  seq2seq batch: (x [B, L, C], t [B, L, 1]); window batch: (x [B, K, C],
  t [B, 1]). metrics: {'loss': total, <term>: value, ...}.
  """

  def predict_and_score(params, batch):
    x, t = batch
    if cfg.mode == "window":
      y = models.output_at_last(model, params, x)
    else:
      y = seq2seq_predict(model, params, x, cfg.warmup, cfg.tbptt)
      t = t[:, cfg.warmup:]
    return loss_fn(y, t)

  def train_step(state: TrainState, batch):
    (loss, parts), grads = jax.value_and_grad(
        predict_and_score, has_aux=True)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(parts, loss=loss, grad_norm=optax.tree.norm(grads))
    return state.replace(params=params, opt_state=opt_state,
                         step=state.step + 1), metrics

  return train_step


class _MembersAsChannels:
  """An Ensemble seen as one model whose output channels are its members
  (y [B, T, E]), so `seq2seq_predict`'s warm-up and TBPTT apply unchanged."""

  def __init__(self, ensemble):
    self.ensemble = ensemble

  def initial_state(self, batch):
    return self.ensemble.initial_state(batch)

  def apply(self, params, x, state):
    ys, state = self.ensemble.apply(params, x, state,
                                    method="member_outputs")
    return jnp.moveaxis(ys[..., 0], 0, -1), state


def make_ensemble_train_step(ensemble, tx, loss_fn: Callable,
                             cfg: config_lib.Config):
  """`make_train_step` for E members in one program (seq2seq mode).

  The state is E members' TrainStates stacked on a leading axis (params as
  the member model has them, `ensemble_params` wraps them). The Ensemble
  runs every member at once (one scan when `ensemble.native`, flax's vmap
  otherwise); each member is scored on its own and the
  scores summed, so each member's gradient is that of its own loss; the
  optimizer (clipping included) runs per member. The result equals E runs
  of `make_train_step` on the same batch (tests/test_ensemble.py), at a
  fraction of the cost of vmapping that step (benchmarks/README.md).
  metrics: as make_train_step's, each with a leading axis E.
  """
  outputs = _MembersAsChannels(ensemble)

  def predict_and_score(member_params, batch):
    x, t = batch
    y = seq2seq_predict(outputs, ensemble_params(member_params), x,
                        cfg.warmup, cfg.tbptt)  # [B, L, E]
    ys = jnp.moveaxis(y, -1, 0)[..., None]
    loss, parts = jax.vmap(loss_fn, in_axes=(0, None))(ys,
                                                      t[:, cfg.warmup:])
    return jnp.sum(loss), (loss, parts)

  def train_step(state: TrainState, batch):
    (_, (loss, parts)), grads = jax.value_and_grad(
        predict_and_score, has_aux=True)(state.params, batch)
    updates, opt_state = jax.vmap(tx.update)(grads, state.opt_state,
                                             state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(parts, loss=loss,
                   grad_norm=jax.vmap(optax.tree.norm)(grads))
    return state.replace(params=params, opt_state=opt_state,
                         step=state.step + 1), metrics

  return train_step


# ------------------------------------------------------ data parallelism


def data_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh named 'data' over every device JAX sees (all hosts)."""
  return jax.sharding.Mesh(np.asarray(devices or jax.devices()), ("data",))


def replicate(tree, mesh):
  """Places every array of `tree` on every device of `mesh`."""
  return jax.device_put(
      tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def sync_each_step(mesh, split_members=False) -> bool:
  """Whether a training loop must wait for each step before the next.

  XLA:CPU runs a step's all-reduce (the split batch's gradient) on its
  thread pool; with about 100 steps queued ahead, the devices' halves of
  one step no longer met there and the run hung (LSTM-32, 2 forced devices
  on 2 cores; tests/test_parallel.py). Waiting for each step keeps one in
  flight, and was faster there (12.6 against 22 ms a step). Members split
  over the devices need no collective, nor does one device.
  """
  return (mesh.size > 1 and not split_members
          and mesh.devices.flat[0].platform == "cpu")


def shard_members(tree, mesh):
  """Splits every array of `tree` along its leading (member) axis over the
  mesh's 'data' axis: an ensemble's stacked TrainStates, members apart."""
  return jax.device_put(
      tree, jax.sharding.NamedSharding(mesh,
                                       jax.sharding.PartitionSpec("data")))


def shard_batch(batch, mesh, split=True):
  """Splits host arrays along axis 0 over the mesh's 'data' axis (or, with
  split=False, puts the whole batch on every device).

  Every process holds the whole (deterministic) batch and contributes the
  rows of its own devices, so the same code runs on one host or several.
  """
  sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("data" if split else None))

  def put(array):
    return jax.make_array_from_callback(array.shape, sharding,
                                        lambda index: array[index])

  return jax.tree.map(put, batch)


# ------------------------------------------------------------------- data


def build_dataset(cfg: config_lib.Config) -> data_lib.Dataset:
  """The Dataset a config names (synthetic recipe or the user's files)."""
  if cfg.dataset == "files":
    dataset = data_lib.files_dataset(
        cfg.train_input, cfg.train_target, val2_files=cfg.val2_files,
        compensate_latency=cfg.compensate_latency)
  elif cfg.dataset == "knobs":
    dataset = data_lib.knob_dataset(
        jax.random.PRNGKey(cfg.seed), effect=cfg.effect,
        sample_rate=cfg.sample_rate, val1_seconds=cfg.val1_seconds,
        val2=list(cfg.val2_files) or None)
  else:
    size = "mini" if cfg.dataset == "thesis_mini" else "big"
    dataset = data_lib.thesis_dataset(
        jax.random.PRNGKey(cfg.seed), size=size, effect=cfg.effect,
        sample_rate=cfg.sample_rate, val1_seconds=cfg.val1_seconds,
        val2=list(cfg.val2_files) or None)
  if cfg.train_seconds:
    n = int(cfg.train_seconds * dataset.sample_rate)
    train = data_lib.Pair(dataset.train.input[:n], dataset.train.target[:n])
    dataset = dataclasses.replace(dataset, train=train)
  return dataset


def epoch_batches(cfg: config_lib.Config, pair: data_lib.Pair, key):
  """The batches of one epoch, in an order drawn from `key`.

  seq2seq: every full segment of the training signal after a random offset
  (so segment borders move between epochs), shuffled; window mode:
  `windows_per_epoch` random target positions. Incomplete batches are
  dropped so every step has the same shape (no re-trace).
  """
  offset_key, order_key = jax.random.split(key)
  n = len(pair.input)
  if cfg.mode == "window":
    positions = np.asarray(jax.random.randint(
        order_key, (cfg.windows_per_epoch,), 0, n))
    for i in range(len(positions) // cfg.batch_size):
      idx = positions[i * cfg.batch_size:(i + 1) * cfg.batch_size]
      x, t = data_lib.windows(pair, cfg.window, idx)
      yield np.asarray(x), np.asarray(t)
    return
  length = cfg.segment_length
  if n < length:
    raise ValueError(
        f"the training signal ({n} samples) is shorter than one segment "
        f"({length}); lower segment_length or use more audio")
  offset = int(jax.random.randint(offset_key, (), 0, n % length + 1))
  count = (n - offset) // length
  order = np.asarray(jax.random.permutation(order_key, count))
  x_all = pair.input[offset:offset + count * length].reshape(
      count, length, -1)
  t_all = pair.target[offset:offset + count * length].reshape(count, length, 1)
  gains = np.ones(count, np.float32)
  if cfg.gain_db:
    # A linear effect of g*x is g*y: each segment at a random level shows
    # the model louder and quieter passages than the recipe holds.
    gains = np.asarray(10.0 ** (jax.random.uniform(
        jax.random.fold_in(key, 1), (count,), minval=-cfg.gain_db,
        maxval=cfg.gain_db) / 20.0), np.float32)
  for i in range(count // cfg.batch_size):
    idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
    if not cfg.gain_db:
      yield x_all[idx], t_all[idx]
      continue
    g = gains[idx][:, None, None]
    x = x_all[idx].copy()
    x[..., :1] *= g  # the audio; knob channels keep their values
    yield x, t_all[idx] * g


def steps_per_epoch(cfg: config_lib.Config, n_train: int) -> int:
  if cfg.mode == "window":
    return cfg.windows_per_epoch // cfg.batch_size
  return (n_train // cfg.segment_length) // cfg.batch_size


def as_batch(signal) -> jnp.ndarray:
  """[time] or [time, channels] (audio + knobs) -> [1, time, channels]."""
  x = jnp.asarray(signal, jnp.float32)
  return x.reshape(1, x.shape[0], -1)


def make_predict(model, method=None):
  """Jitted whole-signal inference: x [time(, channels)] -> y [time] numpy.

  With method='member_outputs' (an Ensemble), y is [members, time].
  """
  apply = jax.jit(lambda p, x: model.apply(p, x, None, method=method)[0])

  def predict(params, signal):
    y = np.asarray(apply(params, as_batch(signal)))
    return y.reshape(-1) if method is None else y.reshape(y.shape[0], -1)

  return predict


def build_model(cfg: config_lib.Config, channels: int = 1):
  """The model a config names: one member, or an Ensemble of cfg.ensemble.

  channels: input channels (1 audio + knobs), for models that must know
  them up front (thesis_cnn's `input_channels`).
  """
  kwargs = dict(cfg.model_kwargs)
  if "input_channels" in models.hyperparameters(cfg.model):
    kwargs.setdefault("input_channels", channels)
  if cfg.ensemble == 1:
    return models.create(cfg.model, **kwargs)
  models.create(cfg.model, **kwargs)  # checks the names
  return ensemble_lib.Ensemble(
      member=cfg.model, member_kwargs=tuple(sorted(kwargs.items())),
      size=cfg.ensemble)


def ensemble_params(member_params):
  """Stacked member parameters [E, ...] -> the Ensemble's parameters."""
  return {"params": {"members": member_params["params"]}}


def _next_epoch_key(state: TrainState, ensemble: int):
  """(key for this epoch's batch order, state with its key(s) advanced)."""
  if ensemble == 1:
    epoch_key, next_key = jax.random.split(state.key)
  else:  # one key per member; the batch order follows member 0's
    keys = jax.vmap(jax.random.split)(state.key)
    epoch_key, next_key = keys[0, 0], keys[:, 1]
  return epoch_key, state.replace(key=next_key)


def esr(y, t) -> float:
  return float(np.sum((t - y) ** 2) / max(float(np.sum(t ** 2)), 1e-20))


# -------------------------------------------------------------- the run


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


def _orbax_record(record) -> bool:
  return "/orbax/" not in record.pathname or record.levelno >= 30


def _quiet_orbax():
  """Keeps orbax's per-save INFO lines out of the epoch log."""
  logger = logging.get_absl_logger()
  if _orbax_record not in logger.filters:
    logger.addFilter(_orbax_record)


class _Checkpoints:
  """best/ and last/ under workdir/checkpoints, replaced atomically.

  A save goes to `<name>.new`, then swaps in, so an interrupted save never
  loses the previous checkpoint.
  """

  def __init__(self, workdir):
    _quiet_orbax()
    self.root = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.checkpointer = ocp.StandardCheckpointer()

  def path(self, name):
    return os.path.join(self.root, name)

  def save(self, name, tree):
    final, new, old = (self.path(name) + s for s in ("", ".new", ".old"))
    shutil.rmtree(new, ignore_errors=True)
    self.checkpointer.save(new, tree)
    self.checkpointer.wait_until_finished()
    if os.path.exists(final):
      shutil.rmtree(old, ignore_errors=True)
      os.rename(final, old)
    os.rename(new, final)
    shutil.rmtree(old, ignore_errors=True)

  def restore(self, name, target):
    """The checkpoint `name` (or its .old) as `target`'s shapes, every array
    on this process's first device, whatever devices saved it (a run
    trained with its members or batch split over 2 devices loads in a
    one-device process; the training loop places the arrays again)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
        target)
    for candidate in (self.path(name), self.path(name) + ".old"):
      if os.path.exists(candidate):
        return self.checkpointer.restore(candidate, target)
    return None


def _prepare_workdir(cfg: config_lib.Config, workdir: str, overwrite: bool):
  """Creates workdir or checks that it holds the same run (to resume)."""
  os.makedirs(workdir, exist_ok=True)
  config_path = os.path.join(workdir, "config.json")
  if os.path.exists(config_path):
    with open(config_path) as f:
      previous = config_lib.Config.from_json(f.read())
    diff = previous.differences(cfg)
    if diff and not overwrite:
      listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
      raise WorkdirConflict(
          f"{workdir} holds a run with a different config ({listed}). Use a "
          "new workdir, or pass overwrite=True (--overwrite) to replace it.")
    if diff:
      logging.warning("overwriting the run in %s", workdir)
      for name in ("checkpoints", "metrics.jsonl"):
        target = os.path.join(workdir, name)
        if os.path.isdir(target):
          shutil.rmtree(target)
        elif os.path.exists(target):
          os.remove(target)
  with open(config_path, "w") as f:
    f.write(cfg.to_json())


def _read_history(path, upto_epoch):
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [r for r in rows if r["epoch"] <= upto_epoch]


def _write_history(path, history):
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    for row in history:
      f.write(json.dumps(row) + "\n")
  os.replace(tmp, path)


def fit(cfg: config_lib.Config, workdir: str, overwrite: bool = False,
        dataset: Optional[data_lib.Dataset] = None,
        stop_after_epochs: Optional[int] = None) -> FitResult:
  """Trains `cfg` into `workdir`, resuming a run that is already there.

  Args:
    cfg: the run's Config.
    workdir: folder for config.json, metrics.jsonl and checkpoints/.
    overwrite: replace a run with a different config instead of refusing.
    dataset: use this Dataset instead of building the one cfg names.
    stop_after_epochs: end this call after so many epochs in total, as if
      interrupted (tests resume from it).

  Returns:
    FitResult with the best parameters (by val1 ESR) and the history.
  """
  _prepare_workdir(cfg, workdir, overwrite)
  dataset = dataset or build_dataset(cfg)
  with open(os.path.join(workdir, "dataset.json"), "w") as f:
    json.dump({"name": dataset.name, "sample_rate": dataset.sample_rate,
               "train_samples": len(dataset.train.input),
               "channels": _channels(dataset.train.input)}, f)
  channels = _channels(dataset.train.input)
  full_model = build_model(cfg, channels)
  model = full_model if cfg.ensemble == 1 else build_model(
      cfg.replace(ensemble=1), channels)
  loss_fn = losses.combined(cfg.loss)
  n_steps = steps_per_epoch(cfg, len(dataset.train.input))
  if n_steps < 1:
    raise ValueError(
        f"one epoch has no full batch: {len(dataset.train.input)} training "
        f"samples, batch_size {cfg.batch_size}, segment_length "
        f"{cfg.segment_length}; lower them or use more audio")
  tx = make_optimizer(cfg, n_steps)
  example = jnp.zeros((1, min(cfg.segment_length, 256), channels),
                      jnp.float32)
  mesh = data_mesh()
  # An ensemble whose members split evenly over the devices runs members
  # apart (each device trains E / devices members on the whole batch): its
  # work per sample is E times one member's, and splitting the batch
  # instead was 2.4x slower (benchmarks/README.md). Otherwise the batch is
  # split and everything else replicated.
  split_members = (cfg.ensemble > 1 and mesh.size > 1
                   and cfg.ensemble % mesh.size == 0)
  place_state = shard_members if split_members else replicate
  sync_steps = sync_each_step(mesh, split_members)
  if split_members:
    logging.info("ensemble of %d: %d member(s) on each of %d devices",
                 cfg.ensemble, cfg.ensemble // mesh.size, mesh.size)
  elif cfg.batch_size % mesh.size:
    raise ValueError(
        f"batch_size {cfg.batch_size} does not split over {mesh.size} "
        f"devices; use a multiple of {mesh.size}")
  step = make_train_step(model, tx, loss_fn, cfg)
  key = jax.random.PRNGKey(cfg.seed)
  if cfg.ensemble == 1:
    state = create_train_state(model, tx, key, example)
    to_full = lambda params: params  # pylint: disable=unnecessary-lambda-assignment
    predict = make_predict(full_model)
  else:
    # E members from E keys in one step: independent runs that share the
    # batches.
    state = jax.vmap(lambda k: create_train_state(model, tx, k, example))(
        jax.random.split(key, cfg.ensemble))
    if cfg.mode == "seq2seq" and full_model.native:  # one scan, E members
      step = make_ensemble_train_step(full_model, tx, loss_fn, cfg)
    else:
      step = jax.vmap(step, in_axes=(0, None))
    to_full = ensemble_params
    predict = make_predict(full_model, method="member_outputs")
  train_step = jax.jit(step, donate_argnums=0)
  stopper = EarlyStopping(patience=cfg.patience, min_delta=cfg.min_delta)
  best_params = jax.tree.map(jnp.copy, state.params)

  checkpoints = _Checkpoints(workdir)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  epoch, elapsed = 0, 0.0
  # Shapes only: the live arrays are donated to train_step.
  template = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
      {"state": state, "best_params": best_params,
       "stopper": _stopper_array(stopper), "epoch": np.int64(0),
       "elapsed": np.float64(0)})
  restored = checkpoints.restore("last", template)
  if restored is not None:
    state, best_params = restored["state"], restored["best_params"]
    best, best_epoch, bad_epochs = np.asarray(restored["stopper"]).tolist()
    stopper = EarlyStopping(best=best, best_epoch=int(best_epoch),
                            bad_epochs=int(bad_epochs),
                            patience=cfg.patience, min_delta=cfg.min_delta)
    epoch, elapsed = int(restored["epoch"]), float(restored["elapsed"])
    logging.info("resuming %s from epoch %d", workdir, epoch)
  history = _read_history(metrics_path, epoch)
  _write_history(metrics_path, history)

  samples_per_step = cfg.batch_size * (
      1 if cfg.mode == "window" else cfg.segment_length)
  stop_reason = "max_epochs"
  saved = {"epoch": epoch, "at": time.perf_counter()}

  def save():
    """last (and best) as of now; the time it takes counts as training."""
    start = time.perf_counter()
    checkpoints.save("last", {"state": state, "best_params": best_params,
                              "stopper": _stopper_array(stopper),
                              "epoch": np.int64(epoch),
                              "elapsed": np.float64(elapsed)})
    checkpoints.save("best", {"params": to_full(best_params)})
    saved.update(epoch=epoch, at=time.perf_counter())
    return saved["at"] - start

  while epoch < cfg.max_epochs:
    if stopper.should_stop:
      stop_reason = "early_stopping"
      break
    if cfg.time_budget_s and elapsed >= cfg.time_budget_s:
      stop_reason = "time_budget"
      break
    if stop_after_epochs is not None and epoch >= stop_after_epochs:
      stop_reason = "interrupted"
      break
    start = time.perf_counter()
    epoch_key, state = _next_epoch_key(state, cfg.ensemble)
    step_metrics = []
    state = place_state(state, mesh)
    for batch in epoch_batches(cfg, dataset.train, epoch_key):
      state, metrics = train_step(
          state, shard_batch(batch, mesh, split=not split_members))
      if sync_steps:
        jax.block_until_ready(metrics)
      step_metrics.append(metrics)
    # One host transfer per epoch.
    step_metrics = jax.device_get(step_metrics)
    train_time = time.perf_counter() - start
    row = {"epoch": epoch + 1}
    for name in step_metrics[0]:
      row["train_" + name] = float(np.mean([m[name] for m in step_metrics]))
    if not math.isfinite(row["train_loss"]):
      logging.error(
          "epoch %d: the training loss is %s; stopping and keeping the last "
          "good checkpoint (epoch %d). Lower learning_rate or set grad_clip.",
          epoch + 1, row["train_loss"], epoch)
      stop_reason = "diverged"
      restored = checkpoints.restore("last", template)
      if restored is not None:
        best_params = restored["best_params"]
      break
    output = predict(to_full(state.params), dataset.val1.input)
    if cfg.ensemble > 1:
      row["val1_esr_members"] = [esr(y, dataset.val1.target) for y in output]
      output = output.mean(axis=0)
    row["val1_esr"] = esr(output, dataset.val1.target)
    epoch += 1
    elapsed += time.perf_counter() - start
    row.update(samples_per_s=len(step_metrics) * samples_per_step / train_time,
               epoch_seconds=time.perf_counter() - start, elapsed_s=elapsed,
               lr_scale=cfg.lr_decay ** (epoch - 1))
    stopper = stopper.update(row["val1_esr"], epoch)
    if stopper.improved:
      # A copy: the next step donates state.params' buffers.
      best_params = jax.tree.map(jnp.copy, state.params)
    history.append(row)
    _log_epoch(row, cfg, elapsed, epoch)
    with open(metrics_path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if time.perf_counter() - saved["at"] >= cfg.checkpoint_every_s:
      elapsed += save()
  else:
    stop_reason = "max_epochs"
  if stop_reason != "diverged" and saved["epoch"] != epoch:
    elapsed += save()
  if stopper.should_stop and stop_reason == "max_epochs":
    stop_reason = "early_stopping"
  logging.info("training stopped (%s) after %d epochs, %.1f s; best val1 "
               "ESR %.3e at epoch %d", stop_reason, epoch, elapsed,
               stopper.best, stopper.best_epoch)
  return FitResult(model=full_model, params=to_full(best_params),
                   dataset=dataset,
                   history=history, stop_reason=stop_reason,
                   train_seconds=elapsed, epochs=epoch,
                   best_epoch=stopper.best_epoch,
                   parallel="members" if split_members else "data")


def _stopper_array(stopper):
  return np.array([stopper.best, stopper.best_epoch, stopper.bad_epochs],
                  np.float64)


def _log_epoch(row, cfg, elapsed, epoch):
  per_epoch = elapsed / max(epoch, 1)
  eta = per_epoch * (cfg.max_epochs - epoch)
  if cfg.time_budget_s:
    eta = min(eta, max(cfg.time_budget_s - elapsed, 0.0))
  logging.info(
      "epoch %d/%d loss %.3e val1_esr %.3e | %.0fk samples/s | %.1f s "
      "elapsed, ETA %.0f s", epoch, cfg.max_epochs, row["train_loss"],
      row["val1_esr"], row["samples_per_s"] / 1e3, elapsed, eta)


def _channels(signal) -> int:
  """Input channels of a [time] or [time, channels] signal."""
  return 1 if np.ndim(signal) == 1 else int(np.shape(signal)[-1])


def _dataset_info(workdir: str) -> dict:
  with open(os.path.join(workdir, "dataset.json")) as f:
    return json.load(f)


def sample_rate_of(workdir: str) -> int:
  """The sample rate (Hz) a run in workdir was trained at."""
  return int(_dataset_info(workdir)["sample_rate"])


def load_params(workdir: str, which: str = "best"):
  """(model, params, config) of a finished or running run in workdir."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(
        f"{workdir} holds no run (no config.json); train one with "
        "experiments/run.py --workdir=...")
  with open(config_path) as f:
    cfg = config_lib.Config.from_json(f.read())
  channels = _dataset_info(workdir).get("channels", 1)
  model = build_model(cfg, channels)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 256, channels), jnp.float32))
  checkpoints = _Checkpoints(workdir)
  restored = checkpoints.restore(which, {"params": params})
  if restored is None:
    raise FileNotFoundError(
        f"{workdir} has no '{which}' checkpoint yet; train at least one epoch")
  return model, restored["params"], cfg
