"""Exports a trained run's model to a real-time plugin format.

  python -m emu.export --workdir=DIR --format=nam OUT.nam
  python -m emu.export --workdir=DIR --format=rtneural OUT.json
  python -m emu.export --workdir=DIR --format=guitarml OUT.json

The formats, what each one holds and which models it takes (LSTM and GRU;
`nam` and `rtneural` refuse the dry-input skip, `guitarml` needs it) are in
`emu.plugin_formats`; their writers and readers are offered here too
(`export_nam`, `load_nam`, ...), so a file can be checked against the model
it came from.

An ensemble (`--ensemble=E`) of LSTM or GRU members exports as one model
of E x H units with block-diagonal weights and an averaging head, which
computes the members' mean exactly (`emu.models.ensemble.as_one_recurrent`);
a plugin runs it as one wider LSTM or GRU, at that model's cost.
"""

import json
import os
import sys

from absl import flags

from emu import cli
from emu import plugin_formats
from emu import workdir as workdir_lib
from emu.models import ensemble as ensemble_lib

FLAGS = flags.FLAGS

# The formats' names, writers and readers, as emu.export has offered them.
FORMATS = plugin_formats.FORMATS
NAM_VERSION = plugin_formats.NAM_VERSION
ExportError = plugin_formats.ExportError
LOADERS = plugin_formats.LOADERS
export_nam = plugin_formats.export_nam
export_rtneural = plugin_formats.export_rtneural
export_guitarml = plugin_formats.export_guitarml
load_nam = plugin_formats.load_nam
load_rtneural = plugin_formats.load_rtneural
load_guitarml = plugin_formats.load_guitarml


def export(model, params, fmt, sample_rate=None, metadata=None) -> dict:
  """The dict of `model` in format `fmt` (one of FORMATS).

  An ensemble of LSTM or GRU members is written as the one wider model
  that computes its mean (`emu.models.ensemble.as_one_recurrent`).
  """
  if fmt not in plugin_formats.EXPORTERS:
    raise ExportError(f"unknown format {fmt!r}; choose one of "
                      f"{', '.join(FORMATS)}")
  if isinstance(model, ensemble_lib.Ensemble):
    try:
      model, params = ensemble_lib.as_one_recurrent(model, params)
    except ValueError as e:
      raise ExportError(f"this ensemble cannot be exported: {e}") from e
  return plugin_formats.EXPORTERS[fmt](model, params, sample_rate=sample_rate,
                                       metadata=metadata)


def export_workdir(workdir, fmt, out_path, checkpoint="best",
                   overwrite=False, metadata=None) -> dict:
  """Writes a trained run's model to `out_path`; returns the dict.

  Raises:
    FileExistsError: out_path exists and not overwrite.
    ExportError: the model does not fit the format (the message says
      what to change).
  """
  if os.path.exists(out_path) and not overwrite:
    raise FileExistsError(
        f"{out_path} exists; choose another name or pass --overwrite")
  model, params, cfg = workdir_lib.load_params(workdir, checkpoint)
  meta = {"emu_model": cfg.model, "emu_model_kwargs": dict(cfg.model_kwargs),
          **(metadata or {})}
  if cfg.ensemble > 1:
    meta["emu_ensemble"] = cfg.ensemble
  d = export(model, params, fmt, sample_rate=_sample_rate(workdir, cfg),
             metadata=meta)
  tmp = out_path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(d, f)
  os.replace(tmp, out_path)
  return d


def _sample_rate(workdir, cfg):
  """Hz of a run: dataset.json, else report.json, else the config's."""
  try:
    return workdir_lib.sample_rate_of(workdir)
  except FileNotFoundError:
    pass
  if os.path.exists(workdir_lib.path(workdir, workdir_lib.REPORT)):
    return int(workdir_lib.read_json(workdir, workdir_lib.REPORT)
               ["sample_rate"])
  if cfg.dataset != "files":
    return int(cfg.sample_rate)
  raise FileNotFoundError(
      f"{workdir} records no sample rate (no {workdir_lib.DATASET} or "
      f"{workdir_lib.REPORT})")


def _count_weights(tree):
  """Numbers in an exported dict outside its metadata and config."""
  if isinstance(tree, dict):
    return sum(_count_weights(v) for k, v in tree.items()
               if k not in ("metadata", "emu", "config", "model_data",
                            "sample_rate", "in_shape", "shape"))
  if isinstance(tree, list):
    return sum(_count_weights(v) for v in tree)
  return 1 if isinstance(tree, float) else 0


def main(argv):
  if len(argv) != 2:
    print("usage: python -m emu.export --workdir=DIR "
          f"--format={'|'.join(FORMATS)} OUT", file=sys.stderr)
    return 2
  d = export_workdir(FLAGS.workdir, FLAGS.format, argv[1],
                     checkpoint=FLAGS.checkpoint, overwrite=FLAGS.overwrite,
                     metadata={"name": FLAGS.name} if FLAGS.name else None)
  print(f"wrote {argv[1]} ({FLAGS.format}, {_count_weights(d)} weights)")
  return 0


def _define_flags():
  flags.DEFINE_string("workdir", None, "A run's folder (experiments/run.py).")
  flags.DEFINE_enum("format", None, list(FORMATS), "Output format.")
  flags.DEFINE_enum("checkpoint", "best", ["best", "last"],
                    "Which parameters.")
  flags.DEFINE_string("name", None, "A name for the model's metadata.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")
  flags.mark_flags_as_required(["workdir", "format"])


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
