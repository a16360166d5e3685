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

import dataclasses
import importlib

# name -> (module, class). Imported lazily so one family's import cost or
# optional dependency never burdens another.
_REGISTRY = {
    "lstm": ("emu.models.recurrent", "LSTM"),
    "gru": ("emu.models.recurrent", "GRU"),
    "thesis_cnn": ("emu.models.thesis_cnn", "ThesisCNN"),
    "wavenet": ("emu.models.wavenet", "WaveNet"),
    "nam_wavenet": ("emu.models.nam_wavenet", "NamWaveNet"),
    "lru": ("emu.models.lru", "LRU"),
    "svf": ("emu.models.svf", "SVF"),
    "wiener": ("emu.models.wiener", "Wiener"),
}


def names():
  """Registered model names, sorted."""
  return sorted(_REGISTRY)


def model_class(name):
  """The Linen class registered under `name`; ValueError if unknown."""
  if name not in _REGISTRY:
    raise ValueError(
        f"unknown model {name!r}; known models: {', '.join(names())}")
  module_name, class_name = _REGISTRY[name]
  return getattr(importlib.import_module(module_name), class_name)


def hyperparameters(name):
  """Names of the hyperparameters the model `name` accepts."""
  cls = model_class(name)
  return tuple(f.name for f in dataclasses.fields(cls)
               if f.init and f.name not in ("parent", "name"))


def create(name, **hparams):
  """Builds model `name` with hyperparameters `hparams`.

  Raises ValueError naming the unknown model or hyperparameter and listing the
  valid ones.
  """
  cls = model_class(name)
  valid = hyperparameters(name)
  unknown = sorted(set(hparams) - set(valid))
  if unknown:
    raise ValueError(
        f"model {name!r} has no hyperparameter(s) {', '.join(unknown)}; "
        f"valid: {', '.join(valid)}")
  return cls(**hparams)


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


# Sizes that must be whole numbers >= 1 (or >= 0), named as their flags.
_POSITIVE = ("hidden_size", "num_layers", "unroll", "channels", "kernel_size",
             "filters", "groups", "state_size", "features", "window")
_NON_NEGATIVE = ("knob_hidden",)


def check_sizes(kwargs):
  """ValueError naming the flag of a size below 1 (knob_hidden: below 0),
  or of a dilation below 1: before a model divides by it or builds it."""
  for name, value in kwargs.items():
    least = 1 if name in _POSITIVE else 0 if name in _NON_NEGATIVE else None
    if name == "dilations":
      bad = [d for d in value if not isinstance(d, int) or d < 1]
      if bad or not value:
        raise ValueError(f"--dilations takes whole numbers >= 1, got "
                         f"{','.join(map(str, value)) or 'none'}")
    elif least is not None and (isinstance(value, bool) or
                                not isinstance(value, int) or value < least):
      raise ValueError(f"--{name} must be a whole number >= {least}, got "
                       f"{value!r}")


def build_model(cfg, channels: int = 1, sample_rate=None):
  """The model an `emu.config.Config` names: one member, or an Ensemble of
  cfg.ensemble members.

  channels: input channels (1 audio + knobs), for models that must know
    them up front (thesis_cnn's `input_channels`).
  sample_rate: Hz of the data, for models whose initialisation and
    frequency response depend on it (lru, svf: `sample_rate`); a value in
    cfg.model_kwargs wins.

  Raises ValueError naming the flag of a size below 1 (`check_sizes`), an
  unknown model or hyperparameter.
  """
  from emu.models import ensemble as ensemble_lib  # pylint: disable=g-import-not-at-top
  kwargs = dict(cfg.model_kwargs)
  check_sizes(kwargs)
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
