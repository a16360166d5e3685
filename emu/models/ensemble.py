"""Ensembles: E members of one family, vmapped, predicting their mean.

  model = Ensemble(member="lstm", member_kwargs=(("hidden_size", 32),), size=4)

Parameters and state carry a leading member axis [E, ...]; one jitted call
runs every member, so E members cost one program, not E. One-layer LSTM
members run in one scan whose cell carries the member axis itself
(`emu.models.recurrent.lstm_members`; `native` is True); other families
through `flax.linen.vmap`. Training scores each member on its own
(`member_outputs`), so the members learn as E independent runs from
different initialisations; the ensemble's output is their mean. The model
contract holds: causal, stateful, streaming-exact when the members are.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from emu.models import recurrent


class Ensemble(nn.Module):
  """The mean of `size` independently initialised members.

  Attributes:
    member: registered model name of the members (`emu.models.names()`).
    member_kwargs: the members' hyperparameters, as (name, value) pairs so
      the module stays hashable.
    size: E, the number of members.
  """
  member: str = "lstm"
  member_kwargs: tuple = ()
  size: int = 4

  def _member(self):
    from emu import models  # pylint: disable=g-import-not-at-top
    # parent=None: an unbound helper, not a submodule of this ensemble.
    return models.model_class(self.member)(**dict(self.member_kwargs),
                                           parent=None)

  def setup(self):
    member = self._member()
    stacked = nn.vmap(
        type(member), variable_axes={"params": 0},
        split_rngs={"params": True}, in_axes=(None, 0), out_axes=0,
        axis_size=self.size)
    self.members = stacked(**dict(self.member_kwargs))

  @property
  def native(self):
    """True when the members run in one scan of their own (one-layer LSTM),
    not through vmap. A train step of E = 4 LSTM-32 members cost 2.7x one
    member's on the project's 2-core CPU, vmapped 7.9x (benchmarks/README.md).
    """
    member = self._member()
    return isinstance(member, recurrent.LSTM) and member.num_layers == 1

  @property
  def receptive_field(self):
    return self._member().receptive_field

  def initial_state(self, batch):
    """The members' initial states stacked on a leading axis [E, ...]."""
    return jax.tree.map(
        lambda s: jnp.broadcast_to(s, (self.size,) + s.shape),
        self._member().initial_state(batch))

  def member_outputs(self, x, state=None):
    """Every member's output: x [B, T, C] -> ([E, B, T, 1], state)."""
    if state is None:
      state = self.initial_state(x.shape[0])
    if self.native and not self.is_initializing():
      return recurrent.lstm_members(
          self._member(), self.variables["params"]["members"], x, state)
    return self.members(x, state)  # (and at init: creates the parameters)

  def __call__(self, x, state=None):
    """The ensemble: the members' mean output [B, T, 1], and the state."""
    ys, state = self.member_outputs(x, state)
    return ys.mean(axis=0), state
