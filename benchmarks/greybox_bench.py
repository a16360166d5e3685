"""The grey-box model (emu.models.wiener) on stand-in devices, and WaveNet.

  python benchmarks/greybox_bench.py --devices=pb_amp,pb_overdrive \
      --models=wiener,wavenet --budget_s=180 --out=/tmp/greybox

For each device (benchmarks/devices.py) it records emu's test signal
through it (benchmarks.capture.record, --seconds at 44.1 kHz), trains each
model on the recording with emu.train.fit for --budget_s seconds
(dataset 'files': the last 10% is val1), then plays the held-out real
audio (devices.program_material: voice and music, never trained on) and
the recording's end through the best checkpoint and prints one row per
device and model: val1 ESR, held-out voice / music / test-end ESR
(benchmarks.capture.score), parameters, epochs and training seconds.

The wiener model is trained with the --wiener_* settings, the WaveNet
with experiments/capture.flags' (8 channels, dilations 1..1024, 12,288
sample segments with 4,096 of warm-up, lr 5e-3 decaying 0.99 per epoch,
gradient clip 1). Both stop at the budget or after --patience epochs
without a val1 improvement.
"""
import json
import os
import sys

from absl import app
from absl import flags
import jax
import numpy as np

# Runs from a source checkout without installing.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks import capture  # pylint: disable=g-import-not-at-top
from benchmarks import devices  # pylint: disable=g-import-not-at-top
from emu import cli  # pylint: disable=g-import-not-at-top
from emu import config as config_lib  # pylint: disable=g-import-not-at-top
from emu import stream  # pylint: disable=g-import-not-at-top
from emu import train  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
SAMPLE_RATE = 44100


def _define_flags():
  flags.DEFINE_list("devices", ["pb_amp", "pb_overdrive"],
                    "Stand-in devices (benchmarks/devices.py).")
  flags.DEFINE_list("models", ["wiener"], "wiener and/or wavenet.")
  flags.DEFINE_float("seconds", 60.0, "Test signal length (s).")
  flags.DEFINE_float("budget_s", 180.0, "Training seconds per model.")
  flags.DEFINE_integer("patience", 200, "Early stopping patience (epochs).")
  flags.DEFINE_integer("seed", 0, "Init and batch order.")
  flags.DEFINE_string("out", None, "Folder for recordings and runs.")
  flags.DEFINE_integer("wiener_pre_modes", 2, "Modes before the shaper.")
  flags.DEFINE_integer("wiener_post_modes", 2, "Modes after the shaper.")
  flags.DEFINE_integer("wiener_width", 16, "Shaper tanh units.")
  flags.DEFINE_float("wiener_max_gain", 32.0, "Largest initial shaper gain.")
  flags.DEFINE_bool("wiener_bounded", True, "Saturating linear path "
                    "(--nowiener_bounded: c u).")
  flags.DEFINE_integer("wiener_residual", 0, "Residual WaveNet channels.")
  flags.DEFINE_float("wiener_lr", 1e-2, "Adam's rate (wiener).")
  flags.DEFINE_float("wiener_lr_decay", 0.99, "Rate factor per epoch.")
  flags.DEFINE_integer("wiener_segment", 4096, "Segment length (wiener).")
  flags.DEFINE_integer("wiener_warmup", 1024, "Warm-up samples (wiener).")
  flags.DEFINE_integer("wiener_batch", 4, "Batch size (wiener).")
  flags.DEFINE_string("wiener_loss", "esr=1", "Loss weights (wiener).")
  flags.DEFINE_float("wiener_grad_clip", 0.0, "Gradient clip (wiener).")
  flags.mark_flag_as_required("out")


def _weights(text):
  return {k: float(v) for k, v in (p.split("=") for p in text.split(","))}


def model_config(name, recording):
  """The Config that trains `name` on `recording`."""
  common = dict(dataset="files", train_input=recording.input,
                train_target=recording.target, mode="seq2seq",
                max_epochs=100000, patience=FLAGS.patience,
                time_budget_s=FLAGS.budget_s, seed=FLAGS.seed,
                checkpoint_every_s=60.0, stream_blocks=(64,))
  if name == "wavenet":
    return config_lib.Config(
        model="wavenet", model_kwargs=dict(
            channels=8, dilations=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512,
                                   1024)),
        segment_length=12288, warmup=4096, batch_size=8, loss={"esr": 1.0},
        learning_rate=5e-3, lr_decay=0.99, grad_clip=1.0, **common)
  if name == "wiener":
    return config_lib.Config(
        model="wiener", model_kwargs=dict(
            pre_modes=FLAGS.wiener_pre_modes,
            post_modes=FLAGS.wiener_post_modes,
            shaper_width=FLAGS.wiener_width,
            shaper_max_gain=FLAGS.wiener_max_gain,
            shaper_bounded=FLAGS.wiener_bounded,
            residual_channels=FLAGS.wiener_residual),
        segment_length=FLAGS.wiener_segment, warmup=FLAGS.wiener_warmup,
        batch_size=FLAGS.wiener_batch, loss=_weights(FLAGS.wiener_loss),
        learning_rate=FLAGS.wiener_lr, lr_decay=FLAGS.wiener_lr_decay,
        grad_clip=FLAGS.wiener_grad_clip, **common)
  raise ValueError(f"unknown model {name!r}: wiener or wavenet")


def run_one(device, name, recording, material):
  """Trains `name` on the recording; its result row as a dict."""
  workdir = os.path.join(FLAGS.out, device.name, name)
  result = train.fit(model_config(name, recording), workdir, overwrite=True)
  predict = stream.make_predict(result.model)
  held = capture.held_out(recording, device, material)
  scores = capture.score(held, {k: predict(result.params, x)
                                for k, x in held.inputs.items()})
  val1 = min(row["val1_esr"] for row in result.history)
  size = sum(np.size(v) for v in jax.tree.leaves(result.params))
  row = {"device": device.name, "model": name, "val1": val1,
         **scores["groups"], "params": int(size), "epochs": result.epochs,
         "train_s": result.train_seconds, "parts": scores["parts"]}
  with open(os.path.join(workdir, "greybox.json"), "w") as f:
    json.dump(row, f, indent=1)
  return row


def main(argv):
  del argv
  material = devices.program_material(SAMPLE_RATE)
  print("| device | model | val1 ESR | voice | music | test end | params "
        "| epochs | train s |")
  print("|---|---|---|---|---|---|---|---|---|")
  for device_name in FLAGS.devices:
    device = devices.device(device_name)
    recording = capture.record(device, SAMPLE_RATE, FLAGS.seconds,
                               os.path.join(FLAGS.out, device.name))
    for name in FLAGS.models:
      r = run_one(device, name, recording, material)
      print(f"| {r['device']} | {r['model']} | {r['val1']:.2e} | "
            f"{r['voice']:.2e} | {r['music']:.2e} | "
            f"{r[capture.TEST_END]:.2e} | {r['params']} | {r['epochs']} | "
            f"{r['train_s']:.0f} |", flush=True)
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
