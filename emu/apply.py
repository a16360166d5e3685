"""Applies a trained model, or a plugin file, to a WAV file.

  python -m emu.apply --workdir=DIR input.wav output.wav
  python -m emu.apply --model_file=MODEL.nam input.wav output.wav
  python -m emu.apply --model_file=MODEL.json input.wav output.wav

`--model_file` takes what `emu.plugins.export` writes and NAM's own files: a `.nam`
(LSTM, WaveNet, or a SlimmableContainer's best WaveNet), RTNeural JSON
(LSTM or GRU layers and a dense head) or GuitarML JSON; the format is told
by the extension and, for .json, by the keys inside.

Any length (processed in blocks with the model's carried state, so memory
stays bounded); mono; the file's sample rate must be the model's. A model
with a finite memory (WaveNets, the thesis CNN) starts as if it had heard
silence, as NAM's plugin starts its models, so the output matches the
plugin's from the first sample; recurrent models start from zero, as in
NAM's and RTNeural's code. A knob model takes its setting as `--knobs`.
"""

import math
import os

from absl import app
from absl import flags
import numpy as np
import soundfile as sf

from emu import cli
from emu.plugins import folds
from emu import stream
from emu import workdir as workdir_lib
from emu.train import restore

FLAGS = flags.FLAGS
EXTENSIONS = {".nam": "nam", ".json": None}


def file_format(path) -> str:
  """'nam', 'rtneural' or 'guitarml': what a model file holds."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in EXTENSIONS:
    raise ValueError(f"{path}: a model file is a .nam (NAM) or .json "
                     "(RTNeural, GuitarML) file")
  if not os.path.exists(path):
    raise FileNotFoundError(f"model file {path} does not exist")
  if ext == ".nam":
    return "nam"
  from emu.plugins import reading  # pylint: disable=g-import-not-at-top
  keys = set(reading.read_json(path))
  for fmt, needed in (("nam", {"architecture", "weights"}),
                      ("guitarml", {"model_data", "state_dict"}),
                      ("rtneural", {"in_shape", "layers"})):
    if needed <= keys:
      return fmt
  raise ValueError(f"{path} is neither RTNeural (in_shape, layers), "
                   "GuitarML (model_data, state_dict) nor NAM JSON")


def load_model(workdir=None, model_file=None, checkpoint="best"):
  """(model, params, sample_rate or None, what it is) from a run folder or
  a plugin file."""
  if (workdir is None) == (model_file is None):
    raise ValueError("give one of --workdir=DIR (a run folder) or "
                     "--model_file=FILE (.nam, RTNeural or GuitarML .json)")
  if workdir is not None:
    model, params, _ = restore.load_params(workdir, checkpoint)
    return model, params, workdir_lib.sample_rate_of(workdir), workdir
  from emu.plugins import formats  # pylint: disable=g-import-not-at-top
  fmt = file_format(model_file)
  model, params, rate = formats.LOADERS[fmt](model_file)
  return model, params, rate and int(rate), f"{model_file} ({fmt})"


def _start(model, params, knobs):
  """The state a stream starts from: silence for finite-memory models."""
  if getattr(model, "starts_from_silence", False) or not math.isfinite(
      model.receptive_field) or model.receptive_field <= 1:
    return None
  return folds.warmed_on_silence(model, params, knobs)


def play(model, params, x, knobs=(), block_size=65536) -> np.ndarray:
  """The model's output on x [time] (float32), as `apply_file` plays a
  file: in blocks of `block_size` samples with the carried state, from
  silence for a finite-memory model and from zero for a recurrent one."""
  streamer = stream.Streamer(model, params)
  start = _start(model, params, knobs)
  if start is not None:
    streamer.state = start
  x = np.asarray(x, np.float32)
  return np.concatenate([
      streamer.process(x[i:i + block_size], list(knobs) or None)
      for i in range(0, len(x), block_size)]) if len(x) else x


def _pick_channel(audio, input_path, channel):
  """[time] of one channel of audio [time, channels], or an error naming
  --channel."""
  channels = audio.shape[1]
  if channel is None:
    if channels > 1:
      raise ValueError(f"{input_path} has {channels} channels; choose one "
                       f"with --channel=0..{channels - 1}")
    channel = 0
  if not 0 <= channel < channels:
    raise ValueError(
        f"--channel={channel} but {input_path} has {channels} channel(s); "
        + (f"choose 0..{channels - 1}" if channels > 1 else
           "leave --channel out for a mono file"))
  return audio[:, channel]


def apply_file(workdir, input_path, output_path, block_size=65536,
               channel=None, checkpoint="best", subtype="FLOAT",
               overwrite=False, model_file=None, knobs=()) -> dict:
  """Processes input_path into output_path; returns a small summary.

  Every argument is checked before the model is loaded, and the output is
  written only once the whole input is processed."""
  if not os.path.exists(input_path):
    raise FileNotFoundError(f"input file {input_path} does not exist")
  if block_size is None or block_size < 1:
    raise ValueError(f"--block_size must be at least 1 sample, got "
                     f"{block_size} (default 65536)")
  cli.check_audio_output(output_path, subtype, overwrite)
  try:
    audio, file_rate = sf.read(input_path, dtype="float32", always_2d=True)
  except RuntimeError as e:
    raise ValueError(f"cannot read {input_path}: {e}") from None
  x = _pick_channel(audio, input_path, channel)
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{input_path} contains NaN or inf samples")
  model, params, rate, source = load_model(workdir, model_file, checkpoint)
  knobs = [float(k) for k in knobs or ()]
  channels = folds.input_channels(model, params)
  if channels is not None and channels != 1 + len(knobs):
    raise ValueError(
        f"the model reads {channels - 1} knob channel(s); give their "
        f"setting with --knobs (normalised 0-1), {len(knobs)} given")
  rate = rate or file_rate  # an RTNeural file may not record its rate
  if file_rate != rate:
    raise ValueError(
        f"{input_path} is at {file_rate} Hz but the model was trained at "
        f"{rate} Hz; resample the file (e.g. sox in.wav -r {rate} out.wav)")
  out = play(model, params, x, knobs, block_size)
  clipped = int(np.sum(np.abs(out) > 1.0))
  sf.write(output_path, out, rate, subtype=subtype)
  return {"samples": len(x), "sample_rate": rate, "clipped": clipped,
          "model": source}


def main(argv):
  stream.realtime()  # inline dispatch: blocks are processed one by one
  if len(argv) != 3:
    raise app.UsageError(
        "usage: python -m emu.apply --workdir=DIR | --model_file=FILE "
        "input.wav output.wav")
  info = apply_file(FLAGS.workdir, argv[1], argv[2], FLAGS.block_size,
                    FLAGS.channel, FLAGS.checkpoint, FLAGS.subtype,
                    FLAGS.overwrite, FLAGS.model_file, FLAGS.knobs)
  kept = FLAGS.subtype.upper() in ("FLOAT", "DOUBLE")
  print(f"wrote {argv[2]}: {info['samples']} samples at "
        f"{info['sample_rate']} Hz through {info['model']}" + (
            f"; {info['clipped']} samples beyond full scale" + (
                " (kept: a float file)" if kept else
                ", clipped by the format (use --subtype=FLOAT to keep them)")
            if info["clipped"] else ""))
  return 0


def _define_flags():
  flags.DEFINE_string("workdir", None, "A run's folder (experiments/run.py).")
  flags.DEFINE_string("model_file", None, "Or a model file: .nam (NAM), "
                      "RTNeural or GuitarML .json (e.g. from emu.plugins.export).")
  flags.DEFINE_list("knobs", None, "A knob model's setting: one normalised "
                    "value (0-1) per knob channel.")
  flags.DEFINE_integer("block_size", 65536, "Samples per processing block.")
  flags.DEFINE_integer("channel", None,
                       "Channel to process in a multi-channel file.")
  flags.DEFINE_enum("checkpoint", "best", ["best", "last"],
                    "Which parameters.")
  flags.DEFINE_string("subtype", "FLOAT",
                      "Output sample format (soundfile subtype: FLOAT, "
                      "PCM_24, PCM_16, ...).")
  flags.DEFINE_bool("overwrite", False, "Replace an existing output file.")


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
