"""Ensembles: E members of one family, vmapped, predicting their mean.

  model = Ensemble(member="lstm", member_kwargs=(("hidden_size", 32),), size=4)

Parameters and state carry a leading member axis [E, ...]; one jitted call
runs every member, so E members cost one program, not E. One-layer LSTM
members run in one scan whose cell carries the member axis itself
(`emu.models.lstm_members`; `native` is True); other families
through `flax.linen.vmap`. Training scores each member on its own
(`member_outputs`), so the members learn as E independent runs from
different initialisations; the ensemble's output is their mean. The model
contract holds: causal, stateful, streaming-exact when the members are.
`as_one_recurrent` rewrites an ensemble of LSTM or GRU members as one wider
model that computes the same mean, which is how ensembles export
(`emu.plugins.export`).
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from emu.models import lstm_members
from emu.models import recurrent
from emu.models import registry


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
    # parent=None: an unbound helper, not a submodule of this ensemble.
    return registry.model_class(self.member)(**dict(self.member_kwargs),
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
      return lstm_members.lstm_members(
          self._member(), self.variables["params"]["members"], x, state)
    return self.members(x, state)  # (and at init: creates the parameters)

  def __call__(self, x, state=None):
    """The ensemble: the members' mean output [B, T, 1], and the state."""
    ys, state = self.member_outputs(x, state)
    return ys.mean(axis=0), state


def as_one_recurrent(ensemble, params):
  """An ensemble of LSTM or GRU members as one wider model of that family.

  E members of H units are one model of E x H units whose weights are
  block-diagonal: member e owns units e*H..(e+1)*H of every gate, its
  recurrent weights (and, from the second layer on, its input weights)
  see only its own units, and the first layer's input weights are the
  members' side by side (they share the input). The head averages: the
  members' w_out stacked and divided by E, b_out their mean. The skip, the
  same for every member, adds x once to the mean, as the ensemble does.
  So the merged model computes the ensemble's output exactly (up to float
  summation order), and exports to every format a single LSTM or GRU does
  (`emu.plugins.export`). It costs the arithmetic of the wider model: E = 4
  members of 32 units run as one model of 128.

  Args:
    ensemble: an `Ensemble` whose members are `emu.models.recurrent` LSTM
      or GRU.
    params: its parameters ({"params": {"members": ...}} or the inner dict).

  Returns:
    (model, params): the merged LSTM or GRU and its parameters.
  """
  member = ensemble._member()  # pylint: disable=protected-access
  if not isinstance(member, (recurrent.LSTM, recurrent.GRU)):
    raise ValueError(
        f"only LSTM and GRU members merge into one model; this ensemble's "
        f"members are {type(member).__name__}")
  p = params["params"] if "params" in params else params
  p = jax.tree.map(jnp.asarray, p["members"])
  size, hidden = ensemble.size, member.hidden_size
  gates = 4 if isinstance(member, recurrent.LSTM) else 3

  def gate_blocks(a):
    """[E, ..., gates * H] -> [E, ..., gates, H]."""
    return a.reshape(a.shape[:-1] + (gates, hidden))

  def side_by_side(a):
    """Members' [E, in, gates*H] sharing the input -> [in, gates*E*H]."""
    blocks = gate_blocks(a)  # [E, in, gates, H]
    return jnp.transpose(blocks, (1, 2, 0, 3)).reshape(
        a.shape[1], gates * size * hidden)

  def block_diagonal(a):
    """Members' [E, H, gates*H] on their own units -> [E*H, gates*E*H]."""
    blocks = gate_blocks(a)  # [E, H, gates, H]
    eye = jnp.eye(size, dtype=a.dtype)
    full = jnp.einsum("ef,eigh->eigfh", eye, blocks)  # [E, H, gates, E, H]
    return full.reshape(size * hidden, gates * size * hidden)

  def bias(a):
    """[E, gates*H] -> [gates*E*H]."""
    return jnp.transpose(gate_blocks(a), (1, 0, 2)).reshape(-1)

  merged = {}
  for k in range(member.num_layers):
    w_ih = p[f"w_ih_{k}"]
    merged[f"w_ih_{k}"] = side_by_side(w_ih) if k == 0 else block_diagonal(
        w_ih)
    merged[f"w_hh_{k}"] = block_diagonal(p[f"w_hh_{k}"])
    for name in ("bias", "b_ih", "b_hh"):
      if f"{name}_{k}" in p:
        merged[f"{name}_{k}"] = bias(p[f"{name}_{k}"])
  merged["w_out"] = p["w_out"].reshape(size * hidden, 1) / size
  merged["b_out"] = jnp.mean(p["b_out"], axis=0)
  model = type(member)(hidden_size=size * hidden,
                       num_layers=member.num_layers, skip=member.skip,
                       unroll=member.unroll, parent=None)
  return model, {"params": merged}
