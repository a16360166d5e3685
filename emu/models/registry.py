"""The model families by name: create, look up and check a model's settings.

`create("lstm", hidden_size=32)` builds a registered family with its
hyperparameters, refusing an unknown name or hyperparameter and a size a
model cannot be built with (`check_sizes`).
"""

import dataclasses
import importlib

# name -> "module:Class". Imported lazily so one family's import cost or
# optional dependency never burdens another.
_REGISTRY = {
    "lstm": "emu.models.recurrent:LSTM",
    "gru": "emu.models.recurrent:GRU",
    "thesis_cnn": "emu.models.thesis_cnn:ThesisCNN",
    "wavenet": "emu.models.wavenet:WaveNet",
    "nam_wavenet": "emu.models.nam_wavenet:NamWaveNet",
    "lru": "emu.models.lru:LRU",
    "svf": "emu.models.svf:SVF",
    "wiener": "emu.models.wiener:Wiener",
}


def names():
  """Registered model names, sorted."""
  return sorted(_REGISTRY)


def model_class(name):
  """The Linen class registered under `name`; ValueError if unknown."""
  if name not in _REGISTRY:
    raise ValueError(
        f"unknown model {name!r}; known models: {', '.join(names())}")
  module_name, class_name = _REGISTRY[name].split(":")
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
