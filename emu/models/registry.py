"""The model families by name: create, look up and check a model's settings.

`create("lstm", hidden_size=32)` builds a registered family with its
hyperparameters, refusing an unknown name or hyperparameter and a size a
model cannot be built with (`check_sizes`).
"""

import dataclasses
import importlib
import math
import numbers

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
    "nss": "emu.models.nss:NSS",
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
  check_sizes(hparams)
  return cls(**hparams)


# Sizes that must be whole numbers >= 1 (or >= 0), and quantities that
# must be positive numbers, named as their flags.
_POSITIVE = ("hidden_size", "num_layers", "unroll", "channels", "kernel_size",
             "filters", "groups", "state_size", "features", "window",
             "shaper_width", "input_channels", "core_width")
_NON_NEGATIVE = ("knob_hidden", "pre_modes", "post_modes",
                 "residual_channels", "dynamics_width")
_POSITIVE_REAL = ("sample_rate", "shaper_max_gain", "f_min_hz", "f_max_hz",
                  "core_max_gain")


def _whole(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_real(value) -> bool:
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and 0 < value < math.inf)


def check_sizes(kwargs):
  """ValueError naming the flag of a size that is not a whole number >= 1
  (knob_hidden and the grey boxes' optional stages: >= 0; a bool, a float or
  a string is not one), of dilations that are not, or of a rate, gain or
  frequency that is not a positive number: before a model divides by it or
  builds it."""
  for name, value in kwargs.items():
    least = 1 if name in _POSITIVE else 0 if name in _NON_NEGATIVE else None
    if name in ("dilations", "residual_dilations"):
      if (isinstance(value, (str, bytes)) or not hasattr(value, "__iter__")
          or not value or not all(_whole(d) and d >= 1 for d in value)):
        shown = (",".join(map(str, value)) or "none") if isinstance(
            value, (tuple, list)) else repr(value)
        raise ValueError(f"--{name} takes whole numbers >= 1, got {shown}")
    elif least is not None and not (_whole(value) and value >= least):
      raise ValueError(f"--{name} must be a whole number >= {least}, got "
                       f"{value!r}")
    elif name in _POSITIVE_REAL and not _positive_real(value):
      raise ValueError(f"--{name} must be a positive number, got {value!r}")
    elif name == "knob_sweep_hz" and value and not (
        len(value) == 2 and all(_positive_real(v) for v in value)):
      raise ValueError(f"--knob_sweep_hz takes LOW,HIGH in Hz, two positive "
                       f"numbers, got {value!r}")
