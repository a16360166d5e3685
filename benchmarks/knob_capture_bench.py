"""Knob capture: pedalboard Distortion recorded at 5 drives, tested at a 6th.

  python benchmarks/knob_capture_bench.py --out=/tmp/knob_capture \
      [--budget_s=300] [-- --model=lstm --hidden_size=16]

records emu's test signal (`emu.capture.testsignal`, --seconds long) through
pedalboard's Distortion (`benchmarks.devices.pb_distortion`: tanh drive,
then -6 dB) at each of --drives_db, writes OUT/input.wav, one
OUT/rec_<drive>dB.wav per drive and OUT/manifest.json (knob `drive`
normalised: drive_db / the largest drive), the validation recording at
--val_drive_db (a setting between the trained ones), then trains
`python experiments/run.py --flagfile=RECIPE --dataset=files
--train_manifest=OUT/manifest.json --time_budget_s=BUDGET
--workdir=OUT/run` and prints val1's ESR at the unseen setting with NAM's
verdict. Extra run.py flags follow `--`. Needs pedalboard (pip install
pedalboard).
"""
import json
import os
import subprocess
import sys
import time

from absl import flags
import soundfile as sf

# Runs from a source checkout without installing.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from benchmarks import devices  # pylint: disable=g-import-not-at-top
from emu import cli  # pylint: disable=g-import-not-at-top
from emu.capture import testsignal  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
_RUN = os.path.join(_ROOT, "experiments", "run.py")
_RECIPE = os.path.join(_ROOT, "experiments", "distortion.flags")
# pedalboard's Distortion is memoryless (tanh, then gain): no DC blocker
# whose history the recipe's 2048-sample warm-up covers, so a receptive
# field of 255 samples and a 256-sample warm-up spend the budget on
# scored samples. Extra flags after `--` override these.
DEVICE_FLAGS = ("--dilations=1,2,4,8,16,32,64", "--warmup=256")


def _define_flags():
  flags.DEFINE_string("out", None, "Folder for the WAVs, the manifest and "
                      "the run (OUT/run).")
  flags.DEFINE_list("drives_db", ["0", "6", "12", "18", "24"],
                    "Training drives (dB) of pedalboard's Distortion.")
  flags.DEFINE_float("val_drive_db", 15.0, "The unseen validation drive "
                     "(dB), between the training ones.")
  flags.DEFINE_float("seconds", 24.0, "Length of the test signal per "
                     "recording, seconds.")
  flags.DEFINE_integer("sample_rate", 48000, "Hz of the recordings.")
  flags.DEFINE_float("budget_s", 300.0, "Training time budget, seconds "
                     "(run.py's --time_budget_s).")
  flags.DEFINE_string("recipe", _RECIPE, "run.py flagfile: the model and "
                      "training settings (its data flags are replaced).")
  flags.DEFINE_integer("seed", 0, "run.py's --seed.")
  flags.DEFINE_float("target", 1e-2, "val1 ESR that meets the target.")
  flags.mark_flag_as_required("out")


def record(out, drives_db, val_drive_db, seconds, sample_rate):
  """Writes the test signal, the recordings and the manifest; its path."""
  os.makedirs(out, exist_ok=True)
  top = max(drives_db)
  if min(drives_db) < 0 or top <= 0:
    raise ValueError(f"--drives_db must be >= 0 with one above 0, got "
                     f"{drives_db}")
  if not 0 <= val_drive_db <= top:
    raise ValueError(f"--val_drive_db={val_drive_db:g} lies outside the "
                     f"training drives [0, {top:g}] dB")
  x, _ = testsignal.make(sample_rate, seconds)
  sf.write(os.path.join(out, "input.wav"), x, sample_rate, subtype="FLOAT")

  def entry(drive_db):
    name = f"rec_{drive_db:g}dB.wav"
    y = devices.pb_distortion(drive_db)(x, sample_rate)
    sf.write(os.path.join(out, name), y, sample_rate, subtype="FLOAT")
    return {"input": "input.wav", "target": name,
            "knobs": {"drive": drive_db / top}}

  manifest = {"knobs": ["drive"],
              "recordings": [entry(d) for d in drives_db],
              "validation": [entry(val_drive_db)]}
  path = os.path.join(out, "manifest.json")
  with open(path, "w") as f:
    json.dump(manifest, f, indent=1)
  return path


def main(argv):
  extra = argv[1:]
  drives = [float(d) for d in FLAGS.drives_db]
  start = time.perf_counter()
  manifest = record(FLAGS.out, drives, FLAGS.val_drive_db, FLAGS.seconds,
                    FLAGS.sample_rate)
  print(f"recorded {len(drives)} drives ({', '.join(f'{d:g}' for d in drives)}"
        f" dB) and {FLAGS.val_drive_db:g} dB, {FLAGS.seconds:g} s each at "
        f"{FLAGS.sample_rate} Hz, in {time.perf_counter() - start:.1f} s: "
        f"{manifest}", flush=True)
  workdir = os.path.join(FLAGS.out, "run")
  command = [sys.executable, _RUN, f"--flagfile={FLAGS.recipe}",
             "--dataset=files", f"--train_manifest={manifest}",
             "--val2_files=", "--stream_blocks=",
             f"--time_budget_s={FLAGS.budget_s:g}",
             f"--seed={FLAGS.seed}", f"--workdir={workdir}", "--overwrite",
             *DEVICE_FLAGS, *extra]
  print(" ".join(command), flush=True)
  subprocess.run(command, check=True)
  with open(os.path.join(workdir, "report.json")) as f:
    report = json.load(f)
  val1 = report["val1"]
  for row in val1.get("per_setting", []):
    drive = row["knobs"]["drive"] * max(drives)
    print(f"drive {drive:g} dB (knob {row['knobs']['drive']:g}, unseen): "
          f"ESR {row['esr']:.3e}")
  met = "met" if val1["esr"] <= FLAGS.target else "not met"
  print(f"val1 ESR {val1['esr']:.3e} at the unseen drive "
        f"{FLAGS.val_drive_db:g} dB (NAM: {val1['nam_verdict']}); "
        f"{report['epochs']} epochs in {report['train_seconds']:.0f} s; "
        f"target <= {FLAGS.target:g} {met}")
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
