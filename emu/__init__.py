"""emu: neural audio-effect emulation in JAX/Flax.

Submodules are imported lazily so that `import emu` stays cheap:
`emu.signals`, `emu.effects`, `emu.data`, `emu.models`, `emu.losses`,
`emu.metrics`, `emu.train`, `emu.evaluate`, `emu.stream`, `emu.config`.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "apply", "config", "data", "datareport", "effects", "evaluate", "export",
    "losses", "metrics", "models", "plots", "ratings", "report_html",
    "signals", "stream", "testsignal", "train",
)


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"emu.{name}")
  raise AttributeError(f"module 'emu' has no attribute {name!r}")
