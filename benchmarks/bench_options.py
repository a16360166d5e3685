"""What the benchmark measures: its models, NAM's numbers and its Options.

Options is the one description of a benchmark run that the parent process
and its children (`benchmarks/bench.py --part=...`) share: the children
get it back from the flags `Options.child_flags` writes.
"""

import dataclasses
import os

from emu import cli
from emu import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "bench.py")
RUN_PY = os.path.join(ROOT, "experiments", "run.py")
DEFAULT_RECIPE = os.path.join(ROOT, "experiments", "lstm.flags")

ONE_THREAD = ("--xla_cpu_multi_thread_eigen=false "
              "intra_op_parallelism_threads=1")
TWO_DEVICES = "--xla_force_host_platform_device_count=2"

# name -> (registered model, hyperparameters). wavenet_feather: emu's
# WaveNet (NAM's standard 20 layers, kernel 3, dilations 1..512 twice) at
# 4 channels, 2,873 parameters, about NAM FEATHER's 3,025 (NAM's FEATHER
# has two layer arrays of different widths; emu's has one).
MODELS = {
    "lstm24": ("lstm", {"hidden_size": 24}),
    "lstm32": ("lstm", {"hidden_size": 32}),
    "gru32": ("gru", {"hidden_size": 32}),
    "wavenet_feather": ("wavenet", {"channels": 4}),
    "thesis_cnn_small": ("thesis_cnn", {"window": 64, "filters": 16,
                                        "kernel_size": 16, "groups": 2}),
    "lru": ("lru", {}),
}
TINY_MODELS = {
    "lstm32": ("lstm", {"hidden_size": 4}),
    "wavenet_feather": ("wavenet", {"channels": 2, "dilations": (1, 2)}),
}
# The model of the device, ensemble and one-thread parts.
LSTM = "lstm32"

# Reference numbers (shared/ANCHORS.md): NAM 0.13, PyTorch 2.13, 2-vCPU Zen 3.
NAM = {
    "lstm24": {"val1_esr_10min": 1.16e-4, "train_sps": 639e3,
               "offline_rtf": 18.6, "stream64_rtf": 7.2},
    "lstm32": {"val1_esr_10min": 5.98e-5, "train_sps": 518e3,
               "offline_rtf": 15.1, "stream64_rtf": 6.7},
    "wavenet_feather": {"val1_esr_10min": 2.56e-4, "train_sps": 284e3,
                        "offline_rtf": 19.8, "stream64_rtf": 0.5},
}
RTNEURAL_RTF = {"lstm24": 138, "lstm32": 99}

# val1 ESRs for time to quality (6e-5: NAM LSTM-32 after 10 minutes).
THRESHOLDS = (1e-3, 1e-4, 6e-5, 2e-5)

# What the benchmark takes from a recipe: the training shapes and the loss
# (not its optimizer, data or model, which the benchmark sets itself).
RECIPE_FIELDS = ("segment_length", "warmup", "batch_size", "tbptt", "loss")


def recipe(flagfile: str) -> config_lib.Config:
  """The training shapes and loss of a flagfile (read as run.py reads it),
  over the default Config."""
  full = cli.config_from_flagfile(flagfile)
  return config_lib.Config(**{k: getattr(full, k) for k in RECIPE_FIELDS})


@dataclasses.dataclass(frozen=True)
class Options:
  """One benchmark run's settings (benchmarks/bench.py's flags)."""
  recipe: str = DEFAULT_RECIPE
  tiny: bool = False
  models: tuple = tuple(MODELS)
  repeats: int = 3
  train_steps: int = 10
  ensemble: int = 4
  ensemble_runs: int = 0
  runs_repeats: int = 2
  quality_models: tuple = (LSTM,)
  quality_flags: tuple = ()

  def __post_init__(self):
    unknown = sorted(set(self.models) - set(self.available))
    if unknown:
      raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from "
                       f"{', '.join(self.available)}")
    unknown = sorted(set(self.quality_models) - set(MODELS))
    if unknown:
      raise ValueError(f"unknown --quality_models {', '.join(unknown)}; "
                       f"choose from {', '.join(MODELS)}")

  @property
  def available(self) -> dict:
    return TINY_MODELS if self.tiny else MODELS

  def specs(self) -> dict:
    """name -> (family, hyperparameters) of the chosen models."""
    return {n: self.available[n] for n in self.models}

  def only(self, name: str) -> "Options":
    """These options for one model."""
    return dataclasses.replace(self, models=(name,))

  def config(self) -> config_lib.Config:
    """The recipe's Config (--tiny: short segments, small batches)."""
    cfg = recipe(self.recipe)
    if self.tiny:
      cfg = cfg.replace(segment_length=512, warmup=64, batch_size=4, tbptt=0)
    return cfg

  def child_flags(self) -> list:
    """The flags that give a child process these options."""
    argv = [f"--recipe={self.recipe}", f"--repeats={self.repeats}",
            f"--train_steps={self.train_steps}",
            f"--models={','.join(self.models)}",
            f"--ensemble={self.ensemble}"]
    return (argv + ["--tiny"]) if self.tiny else argv

  # Sizes, small with --tiny (a check that everything runs).

  @property
  def steps(self) -> int:
    """Train steps per timed run."""
    return 2 if self.tiny else self.train_steps

  @property
  def offline_seconds(self) -> float:
    return 0.05 if self.tiny else 10.0

  @property
  def stream_seconds(self) -> float:
    return 0.05 if self.tiny else 2.0

  def max_blocks(self, full: int) -> int:
    return 50 if self.tiny else full

  @property
  def blocks(self) -> tuple:
    """Streaming block sizes."""
    return (1, 16) if self.tiny else (1, 16, 64, 256)

  def lengths(self, family: str) -> tuple:
    """Seconds of audio for the cost-per-sample part."""
    if self.tiny:
      return (0.01, 0.1)
    if family == "thesis_cnn":
      return (1.0, 10.0)  # 100 s is minutes: one CNN per output sample
    return (1.0, 10.0, 100.0)
