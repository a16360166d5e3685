"""Exports a trained run's model to a real-time plugin format.

  python -m emu.export --workdir=DIR --format=nam OUT.nam
  python -m emu.export --workdir=DIR --format=rtneural OUT.json
  python -m emu.export --workdir=DIR --format=guitarml OUT.json
  python -m emu.export --workdir=DIR --format=faust OUT.dsp

It writes the file, reads it back, and prints what the plugin will see: the
architecture, sample rate, parameter count, the metadata the NAM plugin
uses, and the CPU the model costs per second of audio, measured here
(emu's streaming of the file's model in 64-sample blocks, one pinned core,
one XLA thread: `emu.stream`'s real-time method; a plugin's own code
differs).

Which formats take which models, and how the dry-input skip and knobs are
carried, is in `emu.plugins.formats` (and `emu.plugins.folds`); their writers
and readers are offered here too (`export_nam`, `load_nam`, ...), so a file
can be checked against the model it came from. The grey boxes (wiener,
nss) go to `faust` (`emu.plugins.faust`): a Faust program computing the
model exactly, whose CPU cost is measured by compiling it (faust -double,
g++ -O3) into a command-line processor.

An ensemble (`--ensemble=E`) of LSTM or GRU members exports as one model
of E x H units with block-diagonal weights and an averaging head, which
computes the members' mean exactly (`emu.models.ensemble.as_one_recurrent`);
a plugin runs it as one wider LSTM or GRU, at that model's cost.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import flags
import numpy as np

from emu import cli
from emu.plugins import faust
from emu.plugins import folds
from emu.plugins import formats
from emu import workdir as workdir_lib
from emu.train import restore
from emu.models import ensemble as ensemble_lib

FLAGS = flags.FLAGS

# The formats' names, writers and readers, as emu.plugins.export has offered them.
FORMATS = formats.FORMATS + faust.FORMATS
NAM_VERSION = formats.NAM_VERSION
ExportError = formats.ExportError
LOADERS = formats.LOADERS
export_nam = formats.export_nam
export_rtneural = formats.export_rtneural
export_guitarml = formats.export_guitarml
load_nam = formats.load_nam
load_rtneural = formats.load_rtneural
load_guitarml = formats.load_guitarml

# NAM's user metadata (nam/models/metadata.py UserMetadata) and its enums.
GEAR_TYPES = ("amp", "pedal", "pedal_amp", "amp_cab", "amp_pedal_cab",
              "preamp", "studio")
TONE_TYPES = ("clean", "overdrive", "crunch", "hi_gain", "fuzz")
NAM_USER_FIELDS = ("name", "modeled_by", "gear_type", "gear_make",
                   "gear_model", "tone_type", "input_level_dbu",
                   "output_level_dbu")
BLOCK = 64  # samples per block of the CPU measurement
# NAM's standardized input for a .nam file's "loudness" and "gain" (NAM
# 0.13's nam/models/_resources/loudness_input.wav, MIT: its LICENSE beside
# it), so that a file's metadata is what NAM's trainer would write.
NAM_LOUDNESS_INPUT = os.path.join(os.path.dirname(os.path.abspath(
    __file__)), "nam_loudness", "loudness_input.wav")


def export(model, params, fmt, sample_rate=None, metadata=None,
           knobs=None) -> dict:
  """The dict of `model` in format `fmt` (one of FORMATS).

  An ensemble of LSTM or GRU members is written as the one wider model
  that computes its mean (`emu.models.ensemble.as_one_recurrent`); knob
  channels are held at `knobs` (normalised values, one per knob).
  """
  exporters = {**formats.EXPORTERS, "faust": faust.export_faust}
  if fmt not in exporters:
    raise ExportError(f"unknown format {fmt!r}; choose one of "
                      f"{', '.join(FORMATS)}")
  if isinstance(model, ensemble_lib.Ensemble):
    try:
      model, params = ensemble_lib.as_one_recurrent(model, params)
    except ValueError as e:
      raise ExportError(f"this ensemble cannot be exported: {e}") from e
  if knobs and type(model).__name__ in ("Wiener", "NSS"):
    raise ExportError(f"a {type(model).__name__.lower()} reads audio alone "
                      "(it has no knob channels): leave --knobs out")
  if knobs:
    model, params = folds.fix_knobs(model, params, knobs)
  return exporters[fmt](model, params, sample_rate=sample_rate,
                        metadata=metadata)


def nam_loudness(model, params, loudness_wav=NAM_LOUDNESS_INPUT):
  """(loudness dB, gain 0-1) as NAM's trainer computes them for the
  metadata (nam/models/base.py _metadata_loudness, _metadata_gain): RMS of
  the model's output on NAM's loudness_input.wav, and how much that output
  compresses as the input's gain goes 0..1 in 11 steps."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  from emu import stream  # pylint: disable=g-import-not-at-top
  x, _ = sf.read(loudness_wav, dtype="float32", always_2d=True)
  predict = stream.make_predict(model)
  rms = lambda g: float(np.sqrt(np.mean(np.square(
      predict(params, g * x[:, 0]).astype(np.float64)))))
  levels = np.array([rms(g) for g in np.linspace(0.0, 1.0, 11)])
  top = levels[-1] * len(levels)
  gain = np.clip((levels.sum() - 0.5 * top) / (0.5 * top), 0.0, 1.0)
  return 20.0 * np.log10(levels[-1]), float(gain)


def with_loudness(d, loudness_input=NAM_LOUDNESS_INPUT) -> dict:
  """A .nam dict `d` with NAM's "loudness" and "gain" in its metadata,
  computed on the model read back from `d` (`nam_loudness`); `d` itself
  where loudness_input is empty."""
  if loudness_input:
    back, back_params, _ = load_nam(json.loads(json.dumps(d)))
    d["metadata"]["loudness"], d["metadata"]["gain"] = nam_loudness(
        back, back_params, loudness_input)
  return d


def export_workdir(workdir, fmt, out_path, checkpoint="best",
                   overwrite=False, metadata=None, knobs=None,
                   loudness_input=NAM_LOUDNESS_INPUT) -> dict:
  """Writes a trained run's model to `out_path`; returns the dict (a
  Faust program is its "dsp" text, the file written).

  The .nam metadata gets the run's best val1 ESR as
  "training": {"validation_esr": ...} (a Faust program declares it as
  emu_validation_esr), and NAM's "loudness" and "gain" computed on
  `loudness_input` (default NAM's own standardized input; '' for none).

  Raises:
    FileExistsError, FileNotFoundError, IsADirectoryError,
      PermissionError: out_path cannot be written (`cli.check_output_path`),
      found before the model is loaded.
    ExportError: the model does not fit the format (the message says
      what to change).
  """
  cli.check_output_path(out_path, overwrite, example="model.nam")
  model, params, cfg = restore.load_params(workdir, checkpoint)
  meta = {"emu_model": cfg.model, "emu_model_kwargs": dict(cfg.model_kwargs),
          **(metadata or {})}
  if cfg.ensemble > 1:
    meta["emu_ensemble"] = cfg.ensemble
  if knobs:
    meta["emu_knobs"] = [float(k) for k in knobs]
  esrs = [r["val1_esr"] for r in workdir_lib.read_history(workdir)
          if r.get("val1_esr") is not None]
  if fmt == "nam" and esrs:
    meta["training"] = {"validation_esr": float(min(esrs))}
  if fmt == "faust" and esrs:
    meta["emu_validation_esr"] = f"{min(esrs):.4g}"
  d = export(model, params, fmt, sample_rate=_sample_rate(workdir, cfg),
             metadata=meta, knobs=knobs)
  if fmt == "nam":
    d = with_loudness(d, loudness_input)
  _write_atomic(out_path, d["dsp"] if fmt == "faust" else json.dumps(d))
  return d


def _write_atomic(path, text):
  """path holds text (a temporary file, then a rename); a failed write is
  one ExportError naming path, and leaves no temporary file behind."""
  tmp = path + ".tmp"
  try:
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except OSError as e:
    raise ExportError(f"cannot write {path}: {e.strerror or e}; write it "
                      "elsewhere (a writable folder with free space)") from e
  finally:
    if os.path.isfile(tmp):
      os.remove(tmp)


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
                            "sample_rate", "in_shape", "shape",
                            "kernel_size", "dilation", "version"))
  if isinstance(tree, list):
    return sum(_count_weights(v) for v in tree)
  return 1 if isinstance(tree, float) else 0


def architecture(d, fmt) -> str:
  """One line naming the model a plugin builds from the file."""
  if fmt == "nam" and d["architecture"] == "LSTM":
    c = d["config"]
    return f"NAM LSTM, {c['num_layers']} layer(s) x {c['hidden_size']} units"
  if fmt == "nam":
    arrays = ", ".join(
        f"{len(lc['dilations'])} layers x {lc['channels']} channels "
        f"({'/'.join(sorted({a['type'] for a in lc['activation']}))}, "
        f"{'/'.join(sorted(set(lc['gating_mode'])))})"
        for lc in d["config"]["layers"])
    return f"NAM WaveNet, layer arrays: {arrays}"
  if fmt == "rtneural":
    kinds = [l["type"] for l in d["layers"]]
    return "RTNeural " + ", ".join(
        f"{kinds.count(k)} x {k}" for k in dict.fromkeys(kinds))
  info = d["model_data"]
  return (f"GuitarML SimpleRNN, {info['num_layers']} x {info['unit_type']}"
          f"-{info['hidden_size']}, skip {info['skip']}")


def measure_file(path, fmt, sample_rate, timeout_s=300.0) -> dict:
  """CPU cost of the file's model, as emu streams it: a child process
  pinned to one core with one XLA thread and inline dispatch (the method of
  `emu.report.speed.measure_in_child`), 64-sample blocks, the fastest of 3 runs
  of 2 s of noise."""
  from emu.report import speed  # pylint: disable=g-import-not-at-top
  fd, out = tempfile.mkstemp(suffix=".json", prefix="emu_export_")
  os.close(fd)
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=speed.ONE_THREAD_XLA_FLAGS,
             PYTHONPATH=os.pathsep.join(
                 p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
  code = ("import sys; from emu.plugins import export; "
          "export._measure_child(*sys.argv[1:])")
  try:
    subprocess.run([sys.executable, "-c", code, path, fmt,
                    str(int(sample_rate)), out], env=env, check=True,
                   capture_output=True, text=True, timeout=timeout_s)
    with open(out) as f:
      return json.load(f)
  except subprocess.CalledProcessError as e:
    raise RuntimeError(f"the measurement failed: {e.stderr[-2000:]}") from e
  finally:
    os.remove(out)


def _measure_child(path, fmt, sample_rate, out):
  from emu.report import speed  # pylint: disable=g-import-not-at-top
  settings = speed.as_realtime_process()
  model, params, _ = LOADERS[fmt](path)
  row = speed.measure_best(model, params, BLOCK, int(sample_rate))
  with open(out, "w") as f:
    json.dump({"row": row, "settings": settings, "method":
               speed.CHILD_METHOD}, f)


def _faust_report(d, path, sample_rate, measure) -> list:
  """report()'s lines for a Faust program: how to build it, its cost."""
  lines = [f"wrote {path} (faust, {d['numbers']} numbers)",
           f"  architecture: {d['architecture']}",
           f"  sample rate: {sample_rate} Hz (run the host at this rate)",
           f"  build: faust2lv2 -double {path} (an LV2 bundle; needs "
           "lv2-dev and libboost-dev), or faust2jackconsole, faust2vst, "
           "faust -lang wasm ...: -double keeps emu's numbers exact"]
  missing = faust.missing_tools()
  if measure and missing:
    lines.append(f"  CPU: not measured: {missing}")
  elif measure:
    row = faust.measure(path, sample_rate)
    lines.append(
        f"  CPU: {100 / row['rtf']:.2f}% of one core ({1e3 / row['rtf']:.1f}"
        f" ms per second of audio, real-time factor {row['rtf']:.0f}x), "
        "measured as faust -double and g++ -O3 build it into a command-line "
        f"processor: {faust.BLOCK}-sample blocks, the fastest of 3 runs of "
        f"{row['seconds']:.0f} s of noise, load average "
        f"{os.getloadavg()[0]:.1f}; a plugin host adds its own costs")
  return lines


def report(d, fmt, path, sample_rate, measure=True) -> list:
  """Lines saying what the plugin will see, and what the model costs."""
  if fmt == "faust":
    return _faust_report(d, path, sample_rate, measure)
  lines = [f"wrote {path} ({fmt}"
           + (f", file version {d['version']}" if fmt == "nam" else "")
           + f", {_count_weights(d)} weights)",
           f"  architecture: {architecture(d, fmt)}",
           f"  sample rate: {sample_rate} Hz (run the host at this rate)"]
  if fmt == "nam":
    meta = d["metadata"]
    shown = ", ".join(
        f"{k}={meta[k]:.4g}" if isinstance(meta[k], float) else
        f"{k}={meta[k]}" for k in NAM_USER_FIELDS + ("loudness", "gain")
        if meta.get(k) is not None)
    lines.append(f"  metadata: {shown or 'none that the plugin reads'}")
    if "loudness" not in meta:
      lines.append("  loudness: not written, so the plugin cannot normalise "
                   "this model's output (leave --loudness_input at its "
                   "default, NAM's standardized input)")
    esr = meta.get("training", {}).get("validation_esr")
    if esr is not None:
      lines.append(f"  validation ESR (val1, best checkpoint): {esr:.4g}")
  if measure:
    row = measure_file(path, fmt, sample_rate)["row"]
    lines.append(
        f"  CPU: {100 / row['rtf']:.2f}% of one core "
        f"({1e3 / row['rtf']:.1f} ms per second of audio; "
        f"{row['block_ms_mean'] * 1e3:.0f} us per {BLOCK}-sample block), "
        "measured as emu streams the file's model: one pinned core, one "
        "XLA thread, inline dispatch, the fastest of 3 runs of 2 s of "
        f"noise, load average {os.getloadavg()[0]:.1f}; the plugin's own "
        "code costs differently")
  return lines


def main(argv):
  if len(argv) != 2:
    print("usage: python -m emu.export --workdir=DIR "
          f"--format={'|'.join(FORMATS)} OUT", file=sys.stderr)
    return 2
  meta = {k: FLAGS[k].value for k in NAM_USER_FIELDS
          if FLAGS[k].value is not None}
  knobs = [float(v) for v in FLAGS.knobs] if FLAGS.knobs else None
  d = export_workdir(FLAGS.workdir, FLAGS.format, argv[1],
                     checkpoint=FLAGS.checkpoint, overwrite=FLAGS.overwrite,
                     metadata=meta, knobs=knobs,
                     loudness_input=FLAGS.loudness_input)
  rate = _sample_rate(FLAGS.workdir, workdir_lib.read_config(FLAGS.workdir))
  print("\n".join(report(d, FLAGS.format, argv[1], rate,
                         measure=FLAGS.measure)))
  return 0


def _define_flags():
  flags.DEFINE_string("workdir", None, "A run's folder (experiments/run.py).")
  flags.DEFINE_enum("format", None, list(FORMATS), "Output format.")
  flags.DEFINE_enum("checkpoint", "best", ["best", "last"],
                    "Which parameters.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")
  flags.DEFINE_list("knobs", None, "A knob model's setting for the file: "
                    "one normalised value (0-1) per knob channel.")
  flags.DEFINE_string("loudness_input", NAM_LOUDNESS_INPUT,
                      "The standardized input of NAM's loudness and gain "
                      "metadata (the plugin's output normalisation): NAM's "
                      "own loudness_input.wav, which emu carries; '' for "
                      "none.")
  flags.DEFINE_bool("measure", True, "Measure the model's CPU cost here.")
  flags.DEFINE_string("name", None, "A name for the model's metadata.")
  for k in ("modeled_by", "gear_make", "gear_model"):
    flags.DEFINE_string(k, None, f"NAM metadata: {k}.")
  flags.DEFINE_enum("gear_type", None, list(GEAR_TYPES), "NAM metadata.")
  flags.DEFINE_enum("tone_type", None, list(TONE_TYPES), "NAM metadata.")
  flags.DEFINE_float("input_level_dbu", None, "NAM metadata: the analog "
                     "level (dBu) of a 0 dBFS input, for the plugin's "
                     "calibration.")
  flags.DEFINE_float("output_level_dbu", None, "NAM metadata: the analog "
                     "level (dBu) of a 0 dBFS output.")
  flags.mark_flags_as_required(["workdir", "format"])


def run():
  """The command line: its flags, then main."""
  _define_flags()
  cli.run_main(main)


if __name__ == "__main__":
  run()
