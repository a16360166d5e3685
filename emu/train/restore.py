"""Reading a run's trained parameters back from its checkpoints.

`load_params(workdir, which)` rebuilds the run's model from config.json and
dataset.json and restores 'best' (the lowest val1 ESR) or 'last' (the whole
training state of the last checkpointed epoch, whose parameters it takes).
`emu.apply`, `emu.export` and the report read runs through it.
"""

import jax
import jax.numpy as jnp

from emu import config as config_lib
from emu import models
from emu import workdir as workdir_lib
from emu.train import checkpoints as checkpoints_lib
from emu.train import loop as loop_lib
from emu.train import plan as plan_lib
from emu.train import step as step_lib
from emu.train.stopping import EarlyStopping  # pylint: disable=g-importing-member


def load_params(workdir: str, which: str = "best"):
  """(model, params, config) of a finished or running run in workdir;
  FailedRun if its training failed (`emu.workdir.FAILED`).

  which: 'best' (the parameters with the lowest val1 ESR) or 'last' (those
  of the last checkpointed epoch).
  """
  if which not in ("best", "last"):
    raise ValueError(f"unknown checkpoint {which!r}; choose best or last")
  workdir_lib.check_not_failed(workdir)  # FailedRun: no model worth playing
  cfg = workdir_lib.read_config(workdir)
  info = workdir_lib.dataset_info(workdir)
  channels = info.get("channels", 1)
  model = models.build_model(cfg, channels, info.get("sample_rate"))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 256, channels), jnp.float32))
  checkpoints = checkpoints_lib.Checkpoints(workdir)
  if which == "best":
    restored = checkpoints.restore("best", {"params": params})
    restored = restored and restored["params"]
  else:
    restored = restore_last_params(cfg, checkpoints, channels,
                                   info.get("sample_rate"))
  if restored is None:
    raise FileNotFoundError(
        f"{workdir} has no '{which}' checkpoint yet; train at least one epoch")
  return model, restored, cfg


def restore_last_params(cfg: config_lib.Config,
                        checkpoints: checkpoints_lib.Checkpoints, channels: int,
                        sample_rate=None):
  """The parameters of the 'last' checkpoint, which holds the whole training
  state, as the full model takes them; None if there is none."""
  member = models.build_model(cfg.replace(ensemble=1), channels, sample_rate)
  tx = step_lib.make_optimizer(cfg, 1)  # the schedule does not shape state
  state = jax.eval_shape(
      plan_lib.state_initializer(cfg, member, tx, channels))
  template = loop_lib.checkpoint_template(
      loop_lib.Loop(state=state, best_params=state.params,
                    stopper=EarlyStopping()))
  restored = checkpoints.restore("last", template)
  if restored is None:
    return None
  return (step_lib.ensemble_params if cfg.ensemble > 1 else
          (lambda p: p))(restored["state"].params)
