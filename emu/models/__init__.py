"""Model zoo under one causal, stateful contract.

Every model is a Flax Linen module with

  y, state = model.apply(params, x, state)   # x: [batch, time, channels]
                                              # y: [batch, time, 1]
  model.initial_state(batch)                 # plain method, no params needed
  model.receptive_field                      # samples (math.inf for IIR)

`state=None` means the initial state. Channel 0 of `x` is the audio; further
channels are conditioning (knobs). Processing a signal in blocks while
carrying `state` gives the same output as one call.

Create models by name: `emu.models.create("lstm", hidden_size=32)`.
"""

from emu.models.registry import create  # pylint: disable=g-importing-member
from emu.models.registry import hyperparameters  # pylint: disable=g-importing-member
from emu.models.registry import model_class  # pylint: disable=g-importing-member
from emu.models.registry import names  # pylint: disable=g-importing-member


def output_at_last(model, params, windows):
  """The thesis's window mode: y at the last step of each window.

  windows: [n, K, channels] -> [n, 1]. Each window starts from the initial
  state. Models whose cost per output is independent of the window (the
  thesis CNN) may define `predict_last(windows)` to skip the other outputs.
  """
  if hasattr(model, "predict_last"):
    return model.apply(params, windows, method="predict_last")
  y, _ = model.apply(params, windows, None)
  return y[:, -1, :]


def build_model(cfg, channels: int = 1, sample_rate=None):
  """The model an `emu.config.Config` names: one member, or an Ensemble of
  cfg.ensemble members.

  channels: input channels (1 audio + knobs), for models that must know
    them up front (thesis_cnn's `input_channels`).
  sample_rate: Hz of the data, for models whose initialisation and
    frequency response depend on it (lru, svf: `sample_rate`); a value in
    cfg.model_kwargs wins.

  Raises ValueError naming the flag of a size below 1 (`check_sizes`, in
  `create`), an unknown model or hyperparameter.
  """
  from emu.models import ensemble as ensemble_lib  # pylint: disable=g-import-not-at-top
  kwargs = dict(cfg.model_kwargs)
  valid = hyperparameters(cfg.model)
  if "input_channels" in valid:
    kwargs.setdefault("input_channels", channels)
  if "sample_rate" in valid and sample_rate is not None:
    kwargs.setdefault("sample_rate", float(sample_rate))
  if cfg.ensemble == 1:
    return create(cfg.model, **kwargs)
  create(cfg.model, **kwargs)  # checks the names
  return ensemble_lib.Ensemble(
      member=cfg.model, member_kwargs=tuple(sorted(kwargs.items())),
      size=cfg.ensemble)
