"""Config: the one frozen value the library takes for a run.

`experiments/run.py` turns absl flags into a `Config`; notebooks build one
directly:

  cfg = emu.config.Config(model="lstm", model_kwargs={"hidden_size": 32})
  emu.train.fit(cfg, "/tmp/run")

The library never reads flags.
"""

import collections.abc
import dataclasses
import json
import numbers
import typing
from typing import Any, Mapping

MODES = ("seq2seq", "window")
DATASETS = ("thesis_mini", "thesis_big", "files", "knobs")
LAYOUTS = ("plain", "nam")


def _field(default, help, **metadata):  # pylint: disable=redefined-builtin
  """A Config field with its help, the one place the flag's help lives.

  metadata: choices (an enum flag), cli ('list', 'weights'; the flag's
  form when it differs from the field's type), flag (False: no flag).
  """
  kw = ({"default_factory": default} if callable(default)
        else {"default": default})
  return dataclasses.field(metadata={"help": help, **metadata}, **kw)


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run needs. Units are in the names: samples, seconds, Hz.

  Each field's help is in its definition below; `experiments/run.py` makes
  one flag of each (`emu.cli`), with the same name, help and default.
  """

  # Data.
  dataset: str = _field(
      "thesis_mini", "'thesis_mini' (the 20 s recipe), 'thesis_big' (7.8 M "
      "samples), 'files' (your own WAV pair: train_input, train_target) or "
      "'knobs' (the mini recipe through a knob effect whose settings change "
      "clip by clip; val1 at settings never trained on).",
      choices=DATASETS)
  effect: str = _field(
      "hpf440", "Effect applied to the synthetic recipe (emu.effects."
      "EFFECTS; emu.effects.KNOB_EFFECTS for dataset 'knobs').")
  sample_rate: int = _field(44100, "Hz, for the synthetic recipe.")
  train_seconds: float = _field(
      0.0, "Use only this much of the training signal (0 = all).")
  val1_seconds: float = _field(6.0, "Seconds of new recipe chunks in val1.")
  val2_files: tuple = _field(
      tuple, "Recorded voice WAVs for val2 (paths or glob patterns), e.g. "
      "/usr/share/sounds/alsa/Front_*.wav from Debian's alsa-utils; empty: "
      "no val2.", cli="list")
  train_input: str = _field("", "Input WAV (dataset 'files').")
  train_target: str = _field(
      "", "Target WAV, the input recorded through the device (dataset "
      "'files'); its last 10% becomes val1.")
  train_manifest: str = _field(
      "", "A JSON manifest of recordings of one device at several knob "
      "settings (dataset 'files', instead of train_input and train_target; "
      "the format: emu.data.manifest): knob values in [0, 1]; val1 its "
      "validation recordings, at settings never trained on.")
  compensate_latency: bool = _field(
      False, "Shift a target that lags its input into line instead of "
      "refusing the pair (dataset 'files').")
  max_latency_ms: float = _field(
      3000.0, "How far the correlation looks for the target's lag or lead, "
      "ms (a DAW's re-amp round trip takes seconds); a pair it cannot time "
      "is refused. emu's test signal is timed by its first blip at any lag. "
      "0: no search, the pair is read as it is (dataset 'files').")
  channel: int = _field(
      -1, "Which channel of multi-channel WAVs dataset 'files' trains on "
      "(0 = the first); -1: the files must be mono.")
  layout: str = _field(
      "plain", "How dataset 'files' reads the pair: 'plain' (any recording; "
      "its last 10% becomes val1) or 'nam' (NAM's standard reamp input v3 "
      "at 48 kHz and its recording, read as NAM 0.13 does: latency from "
      "the blips, the pair refused when its two validation replicates "
      "differ by ESR > 0.01, train 0:10 to 3:01, val1 the last 9 s).",
      choices=LAYOUTS)

  # Model.
  model: str = _field("lstm", "Model family (emu.models.names()).")
  model_kwargs: Mapping[str, Any] = _field(
      dict, "Hyperparameters passed to emu.models.create (one flag each).",
      flag=False)
  ensemble: int = _field(
      1, "Members trained together in one step from different seeds; the "
      "model is their mean (emu.models.ensemble.Ensemble).")

  # Training.
  mode: str = _field(
      "seq2seq", "seq2seq (truncated BPTT over segments) or window (the "
      "thesis: the `window` samples up to t -> the target at t).",
      choices=MODES)
  segment_length: int = _field(8192, "Samples per training segment "
                               "(seq2seq).")
  warmup: int = _field(
      1024, "Samples at the start of each segment that are run but not "
      "scored, so the state has settled (seq2seq).")
  tbptt: int = _field(
      0, "Truncate gradients every N samples inside a segment; the state is "
      "still carried (0 = never).")
  window: int = _field(1024, "Samples per window (window mode; thesis_cnn's "
                       "K).")
  windows_per_epoch: int = _field(65536, "Windows drawn per epoch (window "
                                  "mode).")
  batch_size: int = _field(16, "Segments or windows per step.")
  gain_db: float = _field(
      0.0, "Scale each training segment's input and target by a random gain "
      "in +-gain_db dB (seq2seq). Linear effects only: a nonlinear effect "
      "of g*x is not g times its output.")
  gain_low_db: float = _field(
      0.0, "The lowest random gain in dB (<= 0) when quiet levels should "
      "reach further down than -gain_db: the gain is then uniform in dB in "
      "[gain_low_db, +gain_db], e.g. -60 with gain_db=24 (seq2seq, linear "
      "effects). 0: -gain_db.")
  level_balance: bool = _field(
      False, "Score every training segment at one level: its output and "
      "target are divided by the RMS of its input and target together "
      "before the loss, so a segment played at -60 dB (gain_low_db) weighs "
      "as much as one at 0 dB, and a quiet passage as much as a loud one "
      "(seq2seq; emu.losses.level_scale).")
  loss: Mapping[str, float] = _field(
      lambda: {"esr": 1.0}, "Weighted losses, e.g. "
      "'mse=1,esr_pre=1,mrstft=2e-4' (emu.losses.LOSSES).", cli="weights")
  learning_rate: float = _field(5e-3, "Adam's rate.")
  lr_decay: float = _field(1.0, "Learning rate factor per epoch.")
  grad_clip: float = _field(0.0, "Global-norm gradient clip (0 = off).")
  max_epochs: int = _field(100, "Epoch limit.")
  patience: int = _field(
      100, "Early stopping: epochs without a val1 improvement of at least "
      "min_delta.")
  min_delta: float = _field(
      0.0, "Early stopping: relative improvement that counts.")
  time_budget_s: float = _field(
      0.0, "Stop training after this many seconds (0 = none), between two "
      "steps: the last epoch may be cut short.")
  audition: str = _field(
      "", "Candidates split by '|', each a family (@FLAGFILE: what differs "
      "from the recipe, e.g. @experiments/families/lstm.flags) or settings "
      "(NAME=V, a Config field or model hyperparameter; NAME=V,NAME2=W "
      "changes two; a bare V: the previous NAME), e.g. 'dynamics_width=0|8'."
      " Successive halving: each trains audition_s seconds, the better half "
      "twice as long again until one is left, which trains on "
      "(emu.capture.audition); empty: no audition.")
  audition_s: float = _field(
      60.0, "Seconds each audition candidate trains in the first round; "
      "the audition's wall-clock seconds count against time_budget_s.")
  audition_workers: int = _field(
      0, "Audition candidates trained at once, each in a child process on "
      "a core of its own; 1: one after another in this process; 0: one per "
      "usable core.")
  seed: int = _field(
      0, "The one source of randomness: data, init and batch order.")
  checkpoint_every_s: float = _field(
      30.0, "Write the last/best checkpoints at most this often (seconds; 0 "
      "= every epoch) and always when training stops.")

  # The plugin file.
  plugin_seconds: float = _field(
      120.0, "A run on dataset 'files' ends with WORKDIR/model.nam, a file "
      "NAM's plugin loads, and its own val1 ESR: the model exported as it "
      "is where .nam holds it (nam_wavenet, wavenet, lstm), else (a grey "
      "box, a GRU) NAM's standard WaveNet distilled from it, trained this "
      "many seconds on the model's output (emu.plugins.playable); 0: no "
      "file.")

  # Evaluation.
  stream_blocks: tuple = _field(
      lambda: (1, 64, 512), "Block sizes (samples) whose streaming speed the "
      "report measures; empty: none (the report says it was not measured).",
      cli="list")

  def __post_init__(self):
    """Checks the fields where the Config is made, in three phases: each
    field's type (from its annotation), then each field's range and
    choice, then the fields together; then freezes the containers."""
    self._check_types()
    self._check_values()
    self._check_combinations()
    self._freeze()

  def _check_types(self):
    """ValueError naming the first field whose value is not of its
    annotated type (an int is a float; a list is a tuple)."""
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      kind = typing.get_origin(field.type) or field.type
      accepts, what = _TYPES[kind]
      if kind is collections.abc.Mapping and accepts(value):
        value_type = typing.get_args(field.type)[1]
        bad = [v for v in value.values() if value_type is not Any
               and not _TYPES[value_type][0](v)]
        if bad:
          raise ValueError(
              f"Config {field.name} maps names to numbers ({_example(field)}"
              f"), got {bad[0]!r} in {dict(value)!r}")
      elif not accepts(value):
        raise ValueError(
            f"Config {field.name} takes {what} ({_example(field)}), got "
            f"{value!r}, of type {type(value).__name__}")

  def _check_values(self):
    """Each field's own range or choice."""
    _check_choice("mode", self.mode, MODES)
    _check_choice("dataset", self.dataset, DATASETS)
    _check_choice("layout", self.layout, LAYOUTS)
    for name in ("segment_length", "window", "batch_size", "max_epochs",
                 "ensemble",
                 "windows_per_epoch", "sample_rate"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
    if not self.learning_rate >= 0:  # a negative rate climbs the loss
      raise ValueError(
          f"learning_rate must be >= 0, got {self.learning_rate} "
          f"(--learning_rate="
          f"{type(self).__dataclass_fields__['learning_rate'].default:g} is "
          "the default)")
    for name in ("warmup", "tbptt", "patience", "time_budget_s", "gain_db",
                 "max_latency_ms",
                 "audition_s", "audition_workers",
                 "checkpoint_every_s", "plugin_seconds",
                 "train_seconds", "grad_clip", "min_delta"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
    if self.gain_low_db > 0:
      raise ValueError(f"gain_low_db must be <= 0 (a cut), got "
                       f"{self.gain_low_db}")
    if not self.loss:
      raise ValueError("loss needs at least one term, e.g. {'esr': 1.0}")

  def _check_combinations(self):
    """Fields that constrain each other."""
    if self.layout != "plain" and self.dataset != "files":
      raise ValueError(f"layout {self.layout!r} reads your own files: it "
                       "needs dataset 'files'")
    if self.mode == "seq2seq" and self.warmup >= self.segment_length:
      raise ValueError(
          f"warmup ({self.warmup}) must be shorter than segment_length "
          f"({self.segment_length}): no sample would be scored")
    if self.tbptt and (self.segment_length - self.warmup) % self.tbptt:
      raise ValueError(
          f"segment_length - warmup ({self.segment_length - self.warmup}) "
          f"must be a multiple of tbptt ({self.tbptt})")
    if self.level_balance and self.mode != "seq2seq":
      raise ValueError("level_balance scores segments (mode seq2seq); "
                       f"mode {self.mode!r} scores one sample per window: "
                       "drop --level_balance or use --mode=seq2seq")
    if self.train_manifest and self.dataset != "files":
      raise ValueError(f"train_manifest lists your own recordings: it needs "
                       f"dataset 'files', got {self.dataset!r}")
    if self.train_manifest and (self.train_input or self.train_target):
      raise ValueError(
          "train_manifest and train_input/train_target both given: the "
          "manifest lists every recording, so leave --train_input and "
          "--train_target empty (or drop --train_manifest)")
    if self.train_manifest and self.layout != "plain":
      raise ValueError(f"layout {self.layout!r} reads one pair, not a "
                       "manifest: leave --layout=plain with --train_manifest")
    if self.dataset == "files" and not self.train_manifest and not (
        self.train_input and self.train_target):
      raise ValueError("dataset 'files' needs train_input and train_target "
                       "(or train_manifest)")

  def _freeze(self):
    """The mappings and sequences copied, so the value is truly
    immutable."""
    object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
    object.__setattr__(self, "loss", dict(self.loss))
    object.__setattr__(self, "val2_files", tuple(self.val2_files))
    object.__setattr__(self, "stream_blocks", tuple(self.stream_blocks))

  @property
  def gain_range_db(self) -> tuple:
    """(lowest, highest) training-segment gain in dB; (0, 0): no gain."""
    return (self.gain_low_db or -self.gain_db, self.gain_db)

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
    """Settings whose values differ: name -> (self's, other's), sorted
    by name. A model hyperparameter is one setting, "model_kwargs.NAME"
    (None where one side leaves it at the model's default), so that only
    the hyperparameters that differ are listed."""
    mine, theirs = _settings(self), _settings(other)
    names = list(mine) + [k for k in theirs if k not in mine]
    return {k: (mine.get(k), theirs.get(k)) for k in names
            if mine.get(k) != theirs.get(k)}


def _real(v) -> bool:
  return isinstance(v, numbers.Real) and not isinstance(v, bool) and (
      v == v)  # not NaN


# A field's annotation -> (accepts(value), what it takes, for the message).
_TYPES = {
    str: (lambda v: isinstance(v, str), "a string"),
    int: (lambda v: isinstance(v, numbers.Integral) and not isinstance(
        v, bool), "a whole number"),
    float: (_real, "a number"),
    bool: (lambda v: isinstance(v, bool), "True or False"),
    tuple: (lambda v: isinstance(v, (tuple, list)), "a tuple"),
    collections.abc.Mapping: (lambda v: isinstance(v, collections.abc.Mapping),
                              "a dict"),
}


def _example(field) -> str:
  """The field's default, as its flag: what a right value looks like."""
  default = (field.default_factory() if field.default is dataclasses.MISSING
             else field.default)
  if field.metadata.get("flag", True) is False:
    return f"e.g. {default!r}"
  return f"e.g. --{field.name}={default}" if not isinstance(
      default, (tuple, dict)) else f"e.g. {default!r}"


def _settings(cfg) -> dict:
  """cfg's fields as JSON values, model_kwargs spread into one entry per
  hyperparameter ("model_kwargs.NAME")."""
  out = {}
  for name, value in json.loads(cfg.to_json()).items():
    if name == "model_kwargs":
      out.update({f"{name}.{k}": v for k, v in sorted(value.items())})
    else:
      out[name] = value
  return out


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

