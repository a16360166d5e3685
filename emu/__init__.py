"""emu: neural audio-effect emulation in JAX/Flax.

Submodules are imported lazily so that `import emu` stays cheap. The way
through them, in the order a run takes: `emu.config` (the Config),
`emu.signals` and `emu.effects` (test audio and target effects), `emu.data`
(pairs and datasets), `emu.models`, `emu.losses`, `emu.train` (fit),
`emu.workdir` (the run folder), `emu.report` (evaluation and pages),
`emu.stream` (block-by-block inference), `emu.plugins` (export to plugin
formats), and `emu.pipeline`, which strings a whole run together (what
`experiments/run.py` calls); `emu.capture` is the front end of capturing
a device (test signal, data report, audition); `emu.cli` turns a Config
into flags; `emu.apply` plays audio through a run or a plugin file.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "apply", "capture", "cli", "config", "data", "datareport", "effects",
    "export", "losses",
    "metrics", "models", "pipeline", "plugins", "report", "signals",
    "stream", "testsignal", "train", "workdir",
)


def lazy_submodules(package: str, names):
  """A module `__getattr__` that imports package.NAME on first use, for
  NAME in names: `emu.report.evaluate` works after a bare `import emu`."""

  def getattr_(name):
    if name in names:
      return importlib.import_module(f"{package}.{name}")
    raise AttributeError(f"module {package!r} has no attribute {name!r}")

  return getattr_


__getattr__ = lazy_submodules(__name__, _SUBMODULES)
