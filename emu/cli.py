"""Command lines: absl flags generated from `Config`, and the one way every
entry point starts and reports an error.

The library reads no flags; this module only defines them when an entry
point asks (`define_config_flags`), on absl's global FlagValues or on a
fresh one (`config_from_flagfile`, for tools that read a recipe):

  define_config_flags()               # one flag per Config field + model
  cfg = config_from_flags(flags.FLAGS)

Every entry point (`experiments/run.py`, `python -m emu.apply`, ...) runs
through `run_main`: a user's mistake (a bad flag value, a missing file, a
run that is not there) ends with one line `error: ...` and exit status 2,
not a traceback; `--debug` shows the traceback.
"""

import dataclasses
import glob
import os
import sys

from absl import app
from absl import flags
from absl import logging
import soundfile

from emu import config as config_lib

# Model hyperparameters as flags: name -> (kind, help). The models say
# which of them they take (`emu.models.hyperparameters`); a flag the chosen
# model does not take is an error.
MODEL_FLAGS = {
    "hidden_size": ("int", "Recurrent units (lstm, gru)."),
    "num_layers": ("int", "Stacked layers (lstm, gru, lru, svf)."),
    "skip": ("bool", "Add the input audio to the output."),
    "unroll": ("int", "lax.scan unroll (lstm, gru, lru, svf, wiener, "
               "nss)."),
    "forget_bias": ("float", "Initial forget-gate bias (lstm)."),
    "silent_rest": ("bool", "Hold the biases that move the state on silence "
                    "at 0: silence in, silence out (lstm, gru)."),
    "channels": ("int", "Channels (wavenet)."),
    "kernel_size": ("int", "Kernel size (wavenet, thesis_cnn)."),
    "dilations": ("ints", "Dilations, comma-separated (wavenet)."),
    "gated": ("bool", "Gated tanh*sigmoid activations (wavenet)."),
    "filters": ("int", "Filters of the first group (thesis_cnn)."),
    "groups": ("int", "Conv groups (thesis_cnn)."),
    "state_size": ("int", "Complex modes (lru) or SVF sections (svf) per "
                   "layer; states of the nonlinear core (nss)."),
    "features": ("int", "Hidden width between layers (lru, svf)."),
    "knob_hidden": ("int", "Knob channels set the filters through an MLP "
                    "this wide; 0 = knobs are inputs (lru, svf)."),
    "knob_sweep_hz": ("floats", "LOW,HIGH: start each filter's cutoff at "
                      "LOW (knob 0) to HIGH (knob 1), log (lru, svf)."),
    "backend": (("associative", "sequential"),
                "Recurrence backend for long calls (lru, svf, wiener, "
                "nss)."),
    "pre_modes": ("int", "Complex modes of the filter before the shaper or "
                  "core; 0 = none (wiener, nss)."),
    "post_modes": ("int", "Complex modes of the filter after the shaper or "
                   "core; 0 = none (wiener, nss)."),
    "shaper_width": ("int", "tanh units of the memoryless shaper (wiener)."),
    "shaper_max_gain": ("float", "Largest initial shaper gain; gains start "
                        "spread from 1 to it (wiener)."),
    "shaper_bounded": ("bool", "The shaper's linear path saturates, "
                       "c*s*tanh(u/s) (wiener)."),
    "residual_channels": ("int", "Channels of a gated WaveNet on the "
                          "residual; 0 = none (wiener, nss)."),
    "residual_dilations": ("ints", "Dilations of that residual WaveNet "
                           "(wiener, nss)."),
    "dynamics_width": ("int", "Hinges of a compressor stage's gain curve "
                       "(a peak detector and gain smoothing, attack and "
                       "release learned) before the shaper; 0 = none "
                       "(wiener)."),
    "core_width": ("int", "tanh units of the network that updates and reads "
                   "the nonlinear core's states (nss)."),
    "core_max_gain": ("float", "Largest initial gain of those units; gains "
                      "start spread from 1 to it (nss)."),
    "data_init": ("bool", "Start from a least-squares fit of the training "
                  "pair instead of the random start (one-layer lru, svf)."),
}

# Errors that are the user's to fix: their message is the whole answer.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError,
               PermissionError, IsADirectoryError, NotADirectoryError,
               soundfile.LibsndfileError)

_DEFINE = {int: flags.DEFINE_integer, float: flags.DEFINE_float,
           bool: flags.DEFINE_bool, str: flags.DEFINE_string}


def _format_weights(weights) -> str:
  return ",".join(f"{k}={v:g}" for k, v in weights.items())


def define_config_flags(flag_values=flags.FLAGS):
  """One flag per Config field (name, help and default from the field) and
  one per model hyperparameter (`MODEL_FLAGS`, default: the model's)."""
  default = config_lib.Config()
  for field in dataclasses.fields(config_lib.Config):
    meta = field.metadata
    if meta.get("flag", True) is False:
      continue
    value = getattr(default, field.name)
    kw = dict(name=field.name, help=meta["help"], flag_values=flag_values)
    if "choices" in meta:
      flags.DEFINE_enum(default=value, enum_values=list(meta["choices"]),
                        **kw)
    elif meta.get("cli") == "list":
      flags.DEFINE_list(default=[str(v) for v in value], **kw)
    elif meta.get("cli") == "weights":
      flags.DEFINE_string(default=_format_weights(value), **kw)
    else:
      _DEFINE[type(value)](default=value, **kw)
  for name, (kind, help_text) in MODEL_FLAGS.items():
    kw = dict(name=name, default=None, help=help_text,
              flag_values=flag_values)
    if isinstance(kind, tuple):
      flags.DEFINE_enum(enum_values=list(kind), **kw)
    elif kind in ("ints", "floats"):
      flags.DEFINE_list(**kw)
    else:
      _DEFINE[{"int": int, "float": float, "bool": bool}[kind]](**kw)


def _model_kwargs(flag_values, model: str) -> dict:
  """Hyperparameters set on the command line or in a flagfile.

  A flag that the chosen model does not take is an error, not ignored.
  """
  from emu import models  # pylint: disable=g-import-not-at-top
  valid = models.hyperparameters(model)
  kwargs = {}
  for name, (kind, _) in MODEL_FLAGS.items():
    if not flag_values[name].present:
      continue
    if name not in valid:
      raise ValueError(
          f"--{name} does not apply to model {model!r}; its "
          f"hyperparameters are: {', '.join(valid)}")
    value = flag_values[name].value
    if kind in ("ints", "floats"):
      convert = int if kind == "ints" else float
      try:
        value = tuple(convert(v) for v in value)
      except ValueError:
        raise ValueError(f"--{name} takes comma-separated numbers, got "
                         f"{','.join(value)!r}") from None
    kwargs[name] = value
  if "window" in valid:  # thesis_cnn consumes exactly the training window
    kwargs["window"] = flag_values["window"].value
  return kwargs


def expand_paths(patterns):
  """Paths and glob patterns -> sorted existing files.

  A literal path that does not exist is an error; a pattern that matches
  nothing is a warning (the default voice clips may not be installed).
  """
  paths = []
  for pattern in patterns:
    if glob.has_magic(pattern):
      matches = sorted(glob.glob(pattern))
      if not matches:
        logging.warning(
            "%s matches no file: no val2. Debian's alsa-utils package ships "
            "voice clips in /usr/share/sounds/alsa/.", pattern)
      paths.extend(matches)
    elif not os.path.exists(pattern):
      raise ValueError(f"val2 file {pattern} does not exist")
    else:
      paths.append(pattern)
  return tuple(paths)


def _field_value(flag_values, field):
  """Config field `field`'s value as its flag holds it, converted."""
  value = flag_values[field.name].value
  if field.name == "val2_files":
    value = expand_paths(value)
  elif field.metadata.get("cli") == "weights":
    value = config_lib.parse_weights(value)
  elif field.name == "stream_blocks":
    try:
      value = tuple(int(b) for b in value)
    except ValueError:
      raise ValueError(f"--stream_blocks takes comma-separated whole "
                       f"numbers, got {','.join(value)!r}") from None
  return value


def _flag_fields():
  return [f for f in dataclasses.fields(config_lib.Config)
          if f.metadata.get("flag", True) is not False]


def config_from_flags(flag_values=flags.FLAGS) -> config_lib.Config:
  """The Config the parsed flags describe."""
  values = {f.name: _field_value(flag_values, f) for f in _flag_fields()}
  values["model_kwargs"] = _model_kwargs(flag_values, values["model"])
  return config_lib.Config(**values)


def flagfile_settings(path: str, model: str) -> tuple:
  """What a partial flagfile sets (an audition family's: only what differs
  from a recipe): (the Config fields it names -> their values, the model
  hyperparameters it names, checked against its --model or else `model`).

  Raises FileNotFoundError for a missing file and ValueError naming the
  file and the flag for an unknown flag or a bad value.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"flagfile {path} does not exist (a relative path is read from the "
        f"folder you run in, {os.getcwd()}, as --flagfile's)")
  flag_values = flags.FlagValues()
  define_config_flags(flag_values)
  try:
    flag_values([sys.argv[0], f"--flagfile={path}"])
  except flags.Error as e:
    raise ValueError(f"{path}: {e}") from None
  fields = {f.name: _field_value(flag_values, f) for f in _flag_fields()
            if flag_values[f.name].present}
  try:
    hyper = _model_kwargs(flag_values, fields.get("model", model))
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  hyper.pop("window", None)  # thesis_cnn's, from --window: a field already
  return fields, hyper


def config_from_flagfile(path: str, **overrides) -> config_lib.Config:
  """The Config of a flagfile, read as run.py reads it (with `overrides`
  of fields replaced); for tools that take a recipe."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"flagfile {path} does not exist")
  flag_values = flags.FlagValues()
  define_config_flags(flag_values)
  flags.DEFINE_string("workdir", None, "", flag_values=flag_values)
  flag_values([sys.argv[0], f"--flagfile={path}"], known_only=True)
  return config_from_flags(flag_values).replace(**overrides)


def define_debug_flag():
  if "debug" not in flags.FLAGS:
    flags.DEFINE_bool("debug", False,
                      "Show the traceback of an error instead of one line.")


def check_output_path(path, overwrite=False, example="out.wav"):
  """An error naming the fix if a command cannot write its output file
  `path`: it is a folder, it exists (without --overwrite), its folder does
  not exist or is not writable. Checked before any work is done."""
  if os.path.isdir(path):
    raise IsADirectoryError(f"{path} is a folder; give the output a file "
                            f"name, e.g. {os.path.join(path, example)}")
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(
        f"{path} exists; choose another name or pass --overwrite")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise FileNotFoundError(
        f"the output's folder {folder} does not exist; create it first "
        f"(mkdir -p {folder}) or write the output elsewhere")
  if not os.access(folder, os.W_OK):
    raise PermissionError(f"the output's folder {folder} is not writable; "
                          "write the output elsewhere")


def check_audio_output(path, subtype=None, overwrite=False):
  """An error naming the fix if soundfile cannot write `path` as audio in
  `subtype` (FLOAT, PCM_24, ...; None: the format's default): what
  `check_output_path` refuses, an extension that names no format soundfile
  writes (it names the format), or a format that cannot hold `subtype`.
  The one home of which audio files emu can write; checked before any work
  is done."""
  check_output_path(path, overwrite)
  ext = os.path.splitext(path)[1].lstrip(".")
  if not ext:
    raise ValueError(f"{path} has no extension, which names the audio "
                     "format: end it in .wav (or .flac, .aiff, ...)")
  if ext.upper() not in soundfile.available_formats():
    raise ValueError(f"{path}: .{ext} names no audio format soundfile "
                     "writes; end it in .wav (or .flac, .aiff, ...)")
  if subtype is not None and not soundfile.check_format(ext.upper(),
                                                        subtype.upper()):
    takes = ", ".join(soundfile.available_subtypes(ext.upper()))
    raise ValueError(
        f"{path}: a .{ext.lower()} file cannot hold --subtype={subtype} "
        f"samples; choose one it takes ({takes}) or write a .wav "
        "(FLOAT, PCM_24, PCM_16)")


def run_main(main):
  """app.run(main), with a user's error as one line `error: ...` (exit 2).

  --debug re-raises it with its traceback.
  """
  define_debug_flag()

  def guarded(argv):
    try:
      return main(argv)
    except USER_ERRORS as e:
      if flags.FLAGS.debug:
        raise
      print(f"error: {e}", file=sys.stderr)
      return 2

  app.run(guarded)


def alias(name: str, home):
  """Makes the module `name` stand for `home`, a command kept at its old name.

  Run as `python -m` (name is "__main__") it runs home's command line;
  imported, `name` is home itself, so that `import emu.export` and
  `emu.plugins.export` are one module with one set of names.
  """
  if name == "__main__":
    home.run()
  else:
    sys.modules[name] = home

