"""The pure training step: state, optimizer and `train_step` for one model or
an ensemble.

  state = create_train_state(model, tx, key, example_x)
  state, metrics = train_step(state, batch)   # pure, jitted once
"""

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from emu import config as config_lib
from emu import losses
from emu import models


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree."""
  params: Any
  opt_state: Any
  step: jax.Array
  key: jax.Array


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


def _scored(cfg, x, y, t):
  """The scored part of a seq2seq batch: (y, t) after the warm-up, both
  scaled per segment by `losses.level_scale` under cfg.level_balance.
  y: [B, L - warmup, channels] (an ensemble's members as channels)."""
  t = t[:, cfg.warmup:]
  if cfg.level_balance:  # a function of the data alone: no gradient flows
    scale = losses.level_scale(x[:, cfg.warmup:], t)
    y, t = y * scale, t * scale
  return y, t


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
      y, t = _scored(cfg, x, y, t)
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
    y, t = _scored(cfg, x, y, t)
    ys = jnp.moveaxis(y, -1, 0)[..., None]
    loss, parts = jax.vmap(loss_fn, in_axes=(0, None))(ys, t)
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


def ensemble_params(member_params):
  """Stacked member parameters [E, ...] -> the Ensemble's parameters."""
  return {"params": {"members": member_params["params"]}}


def next_epoch_key(state: TrainState, ensemble: int):
  """(key for this epoch's batch order, state with its key(s) advanced)."""
  if ensemble == 1:
    epoch_key, next_key = jax.random.split(state.key)
  else:  # one key per member; the batch order follows member 0's
    keys = jax.vmap(jax.random.split)(state.key)
    epoch_key, next_key = keys[0, 0], keys[:, 1]
  return epoch_key, state.replace(key=next_key)
