"""Config: the one frozen value the library takes for a run.

`experiments/run.py` turns absl flags into a `Config`; notebooks build one
directly:

  cfg = emu.config.Config(model="lstm", model_kwargs={"hidden_size": 32})
  emu.train.fit(cfg, "/tmp/run")

The library never reads flags.
"""

import dataclasses
import json
from typing import Any, Mapping

MODES = ("seq2seq", "window")
DATASETS = ("thesis_mini", "thesis_big", "files", "knobs")


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run needs. Units are in the names: samples, seconds, Hz.

  Data
    dataset: 'thesis_mini' (20 s recipe), 'thesis_big' (7.8 M samples),
      'files' (the user's own WAV pairs, `train_input`/`train_target`) or
      'knobs' (the mini recipe through a knob effect whose settings change
      clip by clip; val1 at settings never trained on).
    effect: name in `emu.effects.EFFECTS` applied to the synthetic recipe,
      or in `emu.effects.KNOB_EFFECTS` for dataset 'knobs'.
    sample_rate: Hz, for the synthetic recipe.
    train_seconds: optional cut of the training signal (CI uses tiny ones).
    val1_seconds: length of the validation set of new recipe chunks.
    val2_files: recorded voice WAVs for val2 (empty: no val2).
    train_input, train_target: the user's recorded pair (dataset 'files');
      the last 10% becomes val1.
    compensate_latency: shift a lagging target into line with its input
      (dataset 'files') instead of refusing the pair.
  Model
    model: registered name (`emu.models.names()`).
    model_kwargs: hyperparameters passed to `emu.models.create`.
    ensemble: E > 1 trains E members from different seeds in one jitted
      step (one-layer LSTMs in one scan, other families vmapped); the model
      is their mean (`emu.models.ensemble.Ensemble`).
  Training
    mode: 'seq2seq' (truncated BPTT over segments) or 'window' (the thesis:
      the `window` samples up to t -> the target at t).
    segment_length: samples per training segment (seq2seq).
    warmup: samples at the start of each segment that are run but not
      scored, so the state has settled (seq2seq).
    tbptt: gradients are truncated every `tbptt` samples inside a segment;
      the state is still carried. 0 means the whole segment.
    window: samples per window (window mode).
    windows_per_epoch: windows drawn per epoch (window mode).
    batch_size: segments or windows per step.
    gain_db: scale each training segment's input and target by a random
      gain in [-gain_db, +gain_db] dB (seq2seq). Valid for linear effects
      only (an EQ): a nonlinear effect of g*x is not g times its output.
    loss: weights of the losses in `emu.losses.LOSSES`.
    learning_rate, lr_decay (multiplied per epoch), grad_clip (global norm,
      0 = off), max_epochs, patience (epochs without a val1 improvement of
      at least min_delta, relative), time_budget_s (0 = none).
    seed: the one source of randomness: data, init and batch order.
    checkpoint_every_s: write the last/best checkpoints at most this often
      (seconds; 0 = every epoch) and always when training stops; a crash
      loses at most this much training, and short epochs are not slowed
      down by saving.
  Evaluation
    stream_blocks: block sizes (samples) whose streaming speed is measured.
  """

  dataset: str = "thesis_mini"
  effect: str = "hpf440"
  sample_rate: int = 44100
  train_seconds: float = 0.0
  val1_seconds: float = 6.0
  val2_files: tuple = ()
  train_input: str = ""
  train_target: str = ""
  compensate_latency: bool = False

  model: str = "lstm"
  model_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  ensemble: int = 1

  mode: str = "seq2seq"
  segment_length: int = 8192
  warmup: int = 1024
  tbptt: int = 0
  window: int = 1024
  windows_per_epoch: int = 65536
  batch_size: int = 16
  gain_db: float = 0.0
  loss: Mapping[str, float] = dataclasses.field(
      default_factory=lambda: {"esr": 1.0})
  learning_rate: float = 5e-3
  lr_decay: float = 1.0
  grad_clip: float = 0.0
  max_epochs: int = 100
  patience: int = 100
  min_delta: float = 0.0
  time_budget_s: float = 0.0
  seed: int = 0
  checkpoint_every_s: float = 30.0

  stream_blocks: tuple = (1, 64, 512)

  def __post_init__(self):
    _check_choice("mode", self.mode, MODES)
    _check_choice("dataset", self.dataset, DATASETS)
    for name in ("segment_length", "window", "batch_size", "max_epochs",
                 "ensemble",
                 "windows_per_epoch", "sample_rate"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    for name in ("warmup", "tbptt", "patience", "time_budget_s", "gain_db",
                 "checkpoint_every_s",
                 "train_seconds", "grad_clip", "min_delta"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
    if self.mode == "seq2seq" and self.warmup >= self.segment_length:
      raise ValueError(
          f"warmup ({self.warmup}) must be shorter than segment_length "
          f"({self.segment_length}): no sample would be scored")
    if self.tbptt and (self.segment_length - self.warmup) % self.tbptt:
      raise ValueError(
          f"segment_length - warmup ({self.segment_length - self.warmup}) "
          f"must be a multiple of tbptt ({self.tbptt})")
    if not self.loss:
      raise ValueError("loss needs at least one term, e.g. {'esr': 1.0}")
    if self.dataset == "files" and not (self.train_input and
                                        self.train_target):
      raise ValueError("dataset 'files' needs train_input and train_target")
    # Freeze the mappings and sequences so the value is truly immutable.
    object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
    object.__setattr__(self, "loss", dict(self.loss))
    object.__setattr__(self, "val2_files", tuple(self.val2_files))
    object.__setattr__(self, "stream_blocks", tuple(self.stream_blocks))

  def to_json(self):
    """A JSON string that `from_json` turns back into an equal Config."""
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text):
    fields = {f.name for f in dataclasses.fields(cls)}
    data = json.loads(text)
    unknown = sorted(set(data) - fields)
    if unknown:
      raise ValueError(f"unknown config field(s) {', '.join(unknown)}")
    for name in ("model_kwargs",):
      data[name] = {k: tuple(v) if isinstance(v, list) else v
                    for k, v in data.get(name, {}).items()}
    return cls(**data)

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def differences(self, other: "Config") -> dict:
    """Fields whose values differ: name -> (self's, other's)."""
    mine, theirs = json.loads(self.to_json()), json.loads(other.to_json())
    return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


def _check_choice(name, value, choices):
  if value not in choices:
    raise ValueError(
        f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def parse_weights(text: str) -> dict:
  """'mse=1,esr_pre=1,mrstft=2e-4' -> {'mse': 1.0, ...}."""
  weights = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    name, sep, value = part.partition("=")
    if not sep:
      raise ValueError(
          f"loss term {part!r} needs a weight, e.g. '{part}=1.0'")
    try:
      weights[name.strip()] = float(value)
    except ValueError:
      raise ValueError(f"loss weight for {name!r} is not a number: "
                       f"{value!r}") from None
  return weights

