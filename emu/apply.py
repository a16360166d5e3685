"""Applies a trained model to a WAV file.

  python -m emu.apply --workdir=DIR input.wav output.wav

Any length (processed in blocks with the model's carried state, so memory
stays bounded); mono; the file's sample rate must be the model's.
"""

import os

from absl import app
from absl import flags
import numpy as np
import soundfile as sf

from emu import cli
from emu import stream
from emu import workdir as workdir_lib

FLAGS = flags.FLAGS


def apply_file(workdir, input_path, output_path, block_size=65536,
               channel=None, checkpoint="best", subtype="FLOAT",
               overwrite=False) -> dict:
  """Processes input_path into output_path; returns a small summary."""
  if not os.path.exists(input_path):
    raise FileNotFoundError(f"input file {input_path} does not exist")
  if os.path.exists(output_path) and not overwrite:
    raise FileExistsError(
        f"{output_path} exists; choose another name or pass --overwrite")
  model, params, _ = workdir_lib.load_params(workdir, checkpoint)
  rate = workdir_lib.sample_rate_of(workdir)
  try:
    audio, file_rate = sf.read(input_path, dtype="float32", always_2d=True)
  except RuntimeError as e:
    raise ValueError(f"cannot read {input_path}: {e}") from None
  if file_rate != rate:
    raise ValueError(
        f"{input_path} is at {file_rate} Hz but the model was trained at "
        f"{rate} Hz; resample the file (e.g. sox in.wav -r {rate} out.wav)")
  if audio.shape[1] > 1 and channel is None:
    raise ValueError(
        f"{input_path} has {audio.shape[1]} channels; choose one with "
        "--channel=N (0-based)")
  x = audio[:, channel or 0]
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{input_path} contains NaN or inf samples")
  streamer = stream.Streamer(model, params)
  out = np.concatenate([
      streamer.process(x[i:i + block_size])
      for i in range(0, len(x), block_size)]) if len(x) else x
  clipped = int(np.sum(np.abs(out) > 1.0))
  sf.write(output_path, out, rate, subtype=subtype)
  return {"samples": len(x), "sample_rate": rate, "clipped": clipped}


def main(argv):
  stream.realtime()  # inline dispatch: blocks are processed one by one
  if len(argv) != 3:
    raise app.UsageError(
        "usage: python -m emu.apply --workdir=DIR input.wav output.wav")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required")
  info = apply_file(FLAGS.workdir, argv[1], argv[2], FLAGS.block_size,
                    FLAGS.channel, FLAGS.checkpoint, FLAGS.subtype,
                    FLAGS.overwrite)
  print(f"wrote {argv[2]}: {info['samples']} samples at "
        f"{info['sample_rate']} Hz" + (
            f"; {info['clipped']} samples beyond full scale (use "
            "--subtype=FLOAT to keep them)" if info["clipped"] else ""))
  return 0


def _define_flags():
  flags.DEFINE_string("workdir", None, "A run's folder (experiments/run.py).")
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
