"""emu: neural audio-effect emulation in JAX/Flax.

Submodules are imported lazily so that `import emu` stays cheap. The way
through them, in the order a run takes: `emu.config` (the Config),
`emu.signals` and `emu.effects` (test audio and target effects), `emu.data`
(pairs and datasets), `emu.models`, `emu.losses`, `emu.train` (fit),
`emu.workdir` (the run folder), `emu.evaluate`, `emu.stream`, `emu.export`,
and `emu.pipeline`, which strings a whole run together (what
`experiments/run.py` calls; `emu.audition` chooses among candidate
settings first); `emu.cli` turns a Config into flags.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "apply", "audition", "cli", "config", "data", "datareport", "effects", "evaluate",
    "export", "listening_test", "losses", "metrics", "models", "pipeline",
    "plots", "plugin_folds", "plugin_formats", "plugin_wavenet", "ratings",
    "report_html", "signals", "stream", "testsignal", "train", "workdir",
)


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"emu.{name}")
  raise AttributeError(f"module 'emu' has no attribute {name!r}")
