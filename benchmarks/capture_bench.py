"""Captures stand-in devices with emu and with NAM, side by side.

  python benchmarks/capture_bench.py --budget_s=600 --seconds=60 \
    [--devices=pb_overdrive,pb_compressor] [--nam_models=lstm_standard]

For each device of benchmarks/devices.py: records emu's test signal
through it, trains emu (experiments/run.py --flagfile=
capture_families.flags, README's capture command) and
each of Neural Amp Modeler 0.13's --nam_models (benchmarks/nam_train.py,
in NAM's own venv: --nam_python or $EMU_NAM_PYTHON) on that recording,
each with the same wall-clock budget on all the cores this process may
use, one after the other so that each gets the same machine; then plays
the same held-out audio through every model and prints, per device and
model: ESR on real voice, on real music (benchmarks/devices.
program_material: never trained on) and on the held-out end of the test
signal, training seconds and epochs, parameters, and the offline
real-time factor on one thread. The load average is printed with every
row: the machine may be shared. --skip_nam trains emu only, --skip_emu
NAM only; --prepare_only records the devices and stops. The emu run's
plugin file (RUN/model.nam, emu.plugins.playable) gets a row of its own:
played by NAM's package (benchmarks/nam_train.py --play_file) on the
same held-out audio. A device's
recording and held-out targets are kept in WORKDIR and reused by later
runs (capture.prepare), so that two benches side by side, one per core
(`taskset -c 0 ... --skip_nam`, `taskset -c 1 ... --skip_emu`), share
them; --emu_label names the emu run, to bench several recipes on one
recording.

Results: WORKDIR/<seconds>s/<device>/{recording,emu,nam_<preset>} and
WORKDIR/capture_bench.json (or --out).
"""

import json
import os
import sys
import tempfile
import time

from absl import flags

# Runs from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import capture  # pylint: disable=g-import-not-at-top
from benchmarks import devices as devices_lib
from benchmarks import nam_train
from emu import cli
from emu import workdir as workdir_lib

FLAGS = flags.FLAGS

# NAM's published verdicts on an ESR (nam/train/core.py).
VERDICTS = ((0.01, "great"), (0.035, "not bad"), (0.1, "may sound ok"),
            (0.3, "probably won't sound great"))


def _define_flags():
  flags.DEFINE_list("devices", list(devices_lib.DEVICES),
                    "Stand-in devices (benchmarks/devices.py DEVICES).")
  flags.DEFINE_float("seconds", 60.0, "Length of the recorded test signal.")
  flags.DEFINE_integer("sample_rate", 44100, "Hz of the recording.")
  flags.DEFINE_float("budget_s", 600.0,
                     "Training wall-clock budget of each model, seconds.")
  flags.DEFINE_list("nam_models", ["lstm_standard", "wavenet_standard"],
                    f"NAM presets to train ({', '.join(nam_train.PRESETS)}).")
  flags.DEFINE_bool("skip_nam", False, "Train and score emu only.")
  flags.DEFINE_bool("skip_emu", False, "Train and score NAM only (e.g. on "
                    "the other core, beside an emu-only bench in the same "
                    "--workdir).")
  flags.DEFINE_bool("prepare_only", False,
                    "Record each device and its held-out targets into "
                    "--workdir, then stop (later runs reuse them).")
  flags.DEFINE_bool("score_only", False,
                    "Train nothing: score the emu run already in its "
                    "folder (--emu_label) and its model.nam again.")
  flags.DEFINE_string("emu_label", "emu",
                      "The emu row's name and run folder (to bench several "
                      "recipes on one recording).")
  flags.DEFINE_string("nam_python", None,
                      "NAM venv's python (default $EMU_NAM_PYTHON or "
                      f"{capture.DEFAULT_NAM_PYTHON}).")
  flags.DEFINE_string("emu_flagfile",
                      os.path.join(capture.ROOT, "experiments",
                                   "capture_families.flags"),
                      "emu's recipe (run.py --flagfile).")
  flags.DEFINE_multi_string(
      "emu_flag", ["--stream_blocks=64"],
      "A run.py flag after the flagfile, one per --emu_flag (e.g. "
      "--emu_flag=--model=lstm); --stream_blocks=64 keeps the report's "
      "speed check short.")
  flags.DEFINE_float("material_seconds", 0.0,
                     "Score on only the first this many seconds of each "
                     "held-out part (0 = all; for quick checks).")
  flags.DEFINE_float("rtf_seconds", 10.0,
                     "Audio timed for each model's real-time factor.")
  flags.DEFINE_integer(
      "threads", None,
      "Cores for each side (default: all usable). Both run confined to the "
      "first N usable cores, torch with N threads, XLA with its one-thread "
      "flags when N = 1. On a shared, loaded machine 1 is faster for both: "
      "at load 14 on 2 cores, NAM's LSTM made 50 steps in 60 s on 1 thread, "
      "3 on 2 (its 6 s validation pass alone took 85 s), emu 154k against "
      "95k samples/s.")
  flags.DEFINE_string("workdir", None,
                      "Folder for the runs (default: a new temporary one).")
  flags.DEFINE_string("out", None, "JSON of the results (default "
                      "WORKDIR/capture_bench.json).")


def verdict(esr: float) -> str:
  """NAM's word for an ESR."""
  for limit, word in VERDICTS:
    if esr < limit:
      return word
  return "something is wrong"


def _load() -> str:
  return "/".join(f"{v:.1f}" for v in os.getloadavg())


def emu_row(rec, held, lag, folder, threads) -> dict:
  """Trains emu on the recording, predicts the held-out set, scores it."""
  started = _load()
  run = os.path.join(folder, FLAGS.emu_label)
  if FLAGS.score_only:
    done = {"report": workdir_lib.read_json(run, workdir_lib.REPORT),
            "wall_s": None}
  else:
    done = capture.train_emu(rec, run, FLAGS.budget_s, FLAGS.emu_flagfile,
                             FLAGS.emu_flag, threads)
  ended = _load()
  report = done["report"]
  predicted = capture.predict_emu(
      run, os.path.join(folder, "inputs.npz"),
      os.path.join(folder, f"{FLAGS.emu_label}_outputs.npz"),
      FLAGS.rtf_seconds)
  return {"model": f"{FLAGS.emu_label} {report['model']}",
          "parameters": predicted["parameters"],
          "epochs": report.get("epochs"),
          "train_s": report.get("train_seconds"), "wall_s": done["wall_s"],
          "rtf": predicted["rtf_offline_1thread"],
          "load": f"{started} -> {ended}",
          **capture.score(held, predicted["predictions"], lag)}


def plugin_row(held, lag, folder, emu) -> dict:
  """The emu run's model.nam (the capture's plugin file) played by NAM's
  own package on the held-out audio; None (saying why) without one."""
  run = os.path.join(folder, FLAGS.emu_label)
  path = workdir_lib.path(run, workdir_lib.PLUGIN_FILE)
  python = FLAGS.nam_python or capture.nam_python()
  if not os.path.isfile(path) or not os.path.exists(python):
    print(f"no plugin row: {path if not os.path.isfile(path) else python} "
          "is missing", flush=True)
    return None
  entry = workdir_lib.read_json(run, workdir_lib.REPORT).get("plugin", {})
  played = capture.play_nam_file(
      path, os.path.join(folder, f"{FLAGS.emu_label}_plugin"),
      os.path.join(folder, "inputs.npz"), python, FLAGS.rtf_seconds)
  return {"model": f"{FLAGS.emu_label} model.nam ({entry.get('how')}, "
                   "NAM's package)",
          "parameters": played["parameters"], "epochs": entry.get(
              "student_epochs", emu["epochs"]),
          "train_s": entry.get("student_train_seconds", 0.0),
          "wall_s": entry.get("seconds", 0.0),
          "rtf": played["rtf_offline_1thread"], "load": _load(),
          "plugin": entry, **capture.score(held, played["predictions"], lag)}


def nam_row(rec, held, lag, folder, preset, threads) -> dict:
  """Trains one NAM preset on the recording, scores its outputs."""
  started = _load()
  done = capture.train_nam(rec, os.path.join(folder, f"nam_{preset}"),
                           preset, FLAGS.budget_s, threads, lag,
                           os.path.join(folder, "inputs.npz"),
                           FLAGS.nam_python, FLAGS.rtf_seconds)
  return {"model": f"NAM {preset}", "parameters": done["parameters"],
          "epochs": done["epochs"], "train_s": done["train_seconds"],
          "wall_s": done["wall_s"], "rtf": done["rtf_offline_1thread"],
          "load": f"{started} -> {_load()}", "history": done["history"],
          **capture.score(held, done["predictions"], lag)}


def bench_device(name, material, root, threads) -> list:
  """Every model's row for one device."""
  dev = devices_lib.device(name)
  folder = os.path.join(root, f"{FLAGS.seconds:g}s", name)
  rec, held = capture.prepare(dev, folder, FLAGS.sample_rate, FLAGS.seconds,
                              material)
  lag = capture.latency(rec)
  print(f"{name}: {dev.description}; recorded {FLAGS.seconds:g} s at "
        f"{rec.sample_rate} Hz, latency {lag} samples (both sides "
        "compensate it alike)", flush=True)
  if FLAGS.prepare_only:
    return []
  rows = []
  if not FLAGS.skip_emu:
    rows.append(emu_row(rec, held, lag, folder, threads))
    print(table_line(name, rows[-1]), flush=True)
    plugin = plugin_row(held, lag, folder, rows[-1])
    if plugin is not None:
      rows.append(plugin)
      print(table_line(name, rows[-1]), flush=True)
  if not FLAGS.skip_nam:
    for preset in FLAGS.nam_models:
      rows.append(nam_row(rec, held, lag, folder, preset, threads))
      print(table_line(name, rows[-1]), flush=True)
  for row in rows:
    row.update(device=name, latency=lag)
  return rows


HEADER = ("| device | model | params | epochs | train s | voice ESR | "
          "music ESR | test-end ESR | verdict (voice+music) | RTF 1 thread | "
          "load 1/5/15 min (start -> end) |\n|" + "---|" * 11)


def table_line(device, row) -> str:
  g = row["groups"]
  real = (g["voice"] + g["music"]) / 2.0
  return (f"| {device} | {row['model']} | {row['parameters']:,} | "
          f"{row['epochs']} | {row['train_s']:.0f} | {g['voice']:.2e} | "
          f"{g['music']:.2e} | {g['test_end']:.2e} | {verdict(real)} | "
          f"{row['rtf']:.1f} | {row['load']} |")


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
  for name in FLAGS.devices:
    devices_lib.device(name)  # an unknown name fails before any work
  for preset in [] if FLAGS.skip_nam else FLAGS.nam_models:
    if preset not in nam_train.PRESETS:
      raise ValueError(f"unknown NAM preset {preset!r}; choose from "
                       f"{', '.join(nam_train.PRESETS)}")
  if FLAGS.threads is not None and FLAGS.threads < 1:
    raise ValueError(f"--threads must be at least 1, got {FLAGS.threads}")
  if FLAGS.budget_s <= 0:
    raise ValueError(f"--budget_s must be positive, got {FLAGS.budget_s}")
  if FLAGS.score_only and not FLAGS.skip_nam:
    raise ValueError("--score_only scores the emu run that is there: pass "
                     "--skip_nam too")
  if FLAGS.skip_nam and FLAGS.skip_emu:
    raise ValueError("--skip_nam and --skip_emu leave nothing to train; "
                     "--prepare_only records the devices alone")
  if not FLAGS.skip_nam and not FLAGS.prepare_only:
    python = FLAGS.nam_python or capture.nam_python()
    if not os.path.exists(python):
      raise FileNotFoundError(
          f"no NAM python at {python}: pass --nam_python, set "
          "EMU_NAM_PYTHON, or --skip_nam")
  capture.exit_on_sigterm()
  material = devices_lib.program_material(FLAGS.sample_rate)
  if FLAGS.material_seconds:
    keep = int(FLAGS.material_seconds * FLAGS.sample_rate)
    material = {k: v[:keep] for k, v in material.items()}
  root = FLAGS.workdir or tempfile.mkdtemp(prefix="capture_bench_")
  threads = capture.use_cores(FLAGS.threads)
  print(f"capture bench in {root}: budget {FLAGS.budget_s:g} s per model, "
        f"{threads} threads each, one model at a time; load {_load()}",
        flush=True)
  print(HEADER, flush=True)
  start = time.perf_counter()
  rows = []
  for name in FLAGS.devices:
    rows += bench_device(name, material, root, threads)
  print(f"\n{HEADER}")
  for row in rows:
    print(table_line(row["device"], row))
  out = FLAGS.out or os.path.join(root, "capture_bench.json")
  with open(out, "w") as f:
    json.dump({"flags": {k: FLAGS[k].value for k in (
        "devices", "seconds", "sample_rate", "budget_s", "nam_models",
        "skip_nam", "skip_emu", "emu_label", "emu_flagfile", "emu_flag",
        "material_seconds",
        "rtf_seconds")}, "threads": threads,
               "wall_s": time.perf_counter() - start, "rows": rows}, f,
              indent=1)
  print(f"wrote {out} ({time.perf_counter() - start:.0f} s in all)")
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
