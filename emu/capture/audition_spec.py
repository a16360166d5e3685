"""Audition spec: the --audition text parsed into each candidate's settings.

`alternatives(cfg)` reads `Config.audition` (emu.capture.audition's
docstring): alternatives split by '|', each a family flagfile (@PATH,
only what differs from the recipe) or NAME=VALUE changes of Config fields
or model hyperparameters, and returns each candidate's label, Config
fields and model hyperparameters, or a ValueError naming what is wrong.
"""

import dataclasses
import os

from emu import config as config_lib
from emu import models

_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")
# Settings the whole run shares: a family may not change them.
SHARED = ("audition", "audition_s", "audition_workers", "time_budget_s",
          "dataset", "train_input", "train_target", "train_manifest",
          "layout", "effect", "sample_rate", "train_seconds", "val1_seconds",
          "val2_files", "compensate_latency", "max_latency_ms",
          "plugin_seconds")
USAGE = ("write NAME=V1|V2|... or @FAMILY.flags|@OTHER.flags with two or "
         "more alternatives, e.g. --audition='dynamics_width=0|8'")


def _convert(text: str, like, what: str):
  """text as a value of like's type (bool, int, float or str)."""
  text = text.strip()
  try:
    if isinstance(like, bool):
      if text.lower() not in _TRUE + _FALSE:
        raise ValueError
      return text.lower() in _TRUE
    if isinstance(like, (int, float, str)):
      return type(like)(text)
  except ValueError:
    raise ValueError(f"--audition: {text!r} is not a value of {what} (a "
                     f"{type(like).__name__})") from None
  raise ValueError(f"--audition cannot try {what}: only a number, a bool "
                   f"or a string setting can be auditioned")


def _like(cfg: config_lib.Config, name: str):
  """The current value of setting `name` (a Config field or a model
  hyperparameter): what a candidate's text is converted like."""
  fields = {f.name for f in dataclasses.fields(config_lib.Config)}
  if name in SHARED:
    raise ValueError(f"--audition cannot try {name}: the whole run shares "
                     "it; set it in the recipe")
  if name in fields and name != "model_kwargs":
    return getattr(cfg, name)
  if name in models.hyperparameters(cfg.model):
    model_field = {f.name: f for f in dataclasses.fields(
        models.model_class(cfg.model))}[name]
    return cfg.model_kwargs.get(name, model_field.default)
  raise ValueError(
      f"--audition: {name!r} is neither a run setting (a Config field) nor "
      f"a hyperparameter of model {cfg.model!r} "
      f"({', '.join(models.hyperparameters(cfg.model))})")


def _family(cfg: config_lib.Config, path: str) -> tuple:
  """(label, {field: value}, model_kwargs) of family flagfile `path`."""
  from emu import cli  # pylint: disable=g-import-not-at-top
  try:
    fields, hyper = cli.flagfile_settings(path, cfg.model)
  except (ValueError, FileNotFoundError) as e:
    raise ValueError(f"--audition family: {e}") from None
  shared = [name for name in fields if name in SHARED]
  if shared:
    raise ValueError(
        f"--audition family {path} sets --{shared[0]}, which the whole run "
        "shares: set it in the recipe, not in a family")
  model = fields.get("model", cfg.model)
  kwargs = {**cfg.model_kwargs, **hyper} if model == cfg.model else hyper
  if "window" in models.hyperparameters(model):  # thesis_cnn's window
    kwargs["window"] = fields.get("window", cfg.window)
  label = os.path.splitext(os.path.basename(path))[0]
  return label, fields, kwargs


def alternatives(cfg: config_lib.Config) -> list:
  """[(label, {field: value}, model_kwargs)] of cfg.audition; ValueError
  naming what is wrong.

  Alternatives are split by '|'; each is @FLAGFILE (a family), NAME=VALUE,
  several joined by ',' (one candidate changing two settings), or a bare
  VALUE of the previous alternative's one NAME: 'dynamics_width=0|8|
  residual_channels=8'.
  """
  parts = [p.strip() for p in cfg.audition.split("|")]
  if len(parts) < 2 or not all(parts):
    raise ValueError(f"--audition={cfg.audition!r}: {USAGE}")
  out, previous = [], None
  for part in parts:
    if part.startswith("@"):
      out.append(_family(cfg, part[1:].strip()))
      previous = None
      continue
    changes = {}
    for item in part.split(","):
      name, sep, text = item.partition("=")
      if not sep:  # a bare value: the previous alternative's setting
        if previous is None:
          raise ValueError(f"--audition={cfg.audition!r}: {USAGE}")
        name, text = previous, item
      name = name.strip()
      changes[name] = _convert(text, _like(cfg, name), name)
    previous = name if len(changes) == 1 else None
    fields = {k: v for k, v in changes.items()
              if k in config_lib.Config.__dataclass_fields__}
    hyper = {k: v for k, v in changes.items() if k not in fields}
    out.append((",".join(f"{k}={v}" for k, v in changes.items()), fields,
                {**cfg.model_kwargs, **hyper}))
  labels = [label for label, _, _ in out]
  twice = [label for label in labels if labels.count(label) > 1]
  if twice:
    raise ValueError(f"--audition={cfg.audition!r} names {twice[0]} twice")
  return out
