"""The trainer's hook that starts an lru or svf from a fit of the training pair.

`wrap_initializer` (emu.train.loop) wraps the trainer's `init_state` for a
model with `data_init` set: layer_0 starts from the least-squares fit of
emu.models.ssm_init (lru) or emu.models.svf_init (svf), so training only
polishes; every other model's initialisation is left alone.
"""

import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from emu.models import ssm_init
from emu.models import svf
from emu.models import svf_init


def fit_layer(model, layer, x, t):
  """layer_0's parameters of a one-layer lru or svf fitted to the
  training pair (x, t): emu.models.ssm_init.fit_lru or emu.models.svf_init.fit_svf.

  layer: the model's initial layer_0 parameters (one member's).
  """
  if isinstance(model, svf.SVF):
    return svf_init.fit_svf(model, x, t, layer)
  return ssm_init.fit_lru(model, x, t)


def with_fitted_layer(params, fitted):
  """params with layer_0's leaves replaced by `fitted` (nested like them;
  leaves it lacks kept), broadcast over any leading axes, e.g. an
  ensemble's members."""

  def merge(tree, new, where):
    tree = dict(tree)
    for name, value in new.items():
      if isinstance(value, dict):
        tree[name] = merge(tree[name], value, f"{where}/{name}")
        continue
      shape = np.shape(tree[name])
      if shape[len(shape) - np.ndim(value):] != np.shape(value):
        raise ValueError(f"data_init: {where}/{name} has shape {shape}, "
                         f"the fit {np.shape(value)}")
      tree[name] = jnp.broadcast_to(jnp.asarray(value), shape)
    return tree

  inner = dict(params["params"],
               layer_0=merge(params["params"]["layer_0"], fitted, "layer_0"))
  return dict(params, params=inner)


def wrap_initializer(init_state, model, train):
  """The trainer's `init_state` (() -> TrainState), with a model that has
  `data_init` set (an lru or svf) started from `fit_layer` of the training
  pair `train` (an emu.data.Pair); `init_state` itself for any other model.

  The fit runs once, on the first call; an ensemble's members all start
  from it. Adam's state starts at zero whatever the parameters, so only
  the parameters change.
  """
  if not getattr(model, "data_init", False):
    return init_state
  cache = {}

  def initialize():
    state = init_state()
    params = jax.device_get(state.params)
    if "fitted" not in cache:
      layer = params["params"]["layer_0"]
      if np.ndim(layer["D"]) == 3:  # [members, d_in, d_out]: an ensemble
        layer = jax.tree.map(lambda v: v[0], layer)
      start = time.perf_counter()
      cache["fitted"] = fit_layer(model, layer, train.input, train.target)
      logging.info("data_init: least-squares start in %.1f s",
                   time.perf_counter() - start)
    return state.replace(params=with_fitted_layer(params, cache["fitted"]))

  return initialize
