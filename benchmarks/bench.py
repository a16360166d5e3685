"""Speed and time-to-quality benchmarks, side by side with NAM's numbers.

  python benchmarks/bench.py --out=benchmarks/cpu.json            # ~5 min
  python benchmarks/bench.py --quality --out=benchmarks/cpu.json  # + ~5 min
  python benchmarks/bench.py --tiny                               # CI, ~30 s
  python benchmarks/bench.py --ensemble_only                      # part 7, ~1 min
  python benchmarks/bench.py --ensemble_only --ensemble_runs=30   # + whole runs, ~10 min

Prints a table and writes JSON. For each model (LSTM 24 and 32, GRU 32, a
WaveNet of NAM FEATHER's size, a small thesis CNN, and `lru` when
`emu.models.create('lru')` works):

1. training: samples/s through the jitted `train_step` (the recipe of
   --recipe, default experiments/lstm.flags: its segment_length, warmup,
   batch_size, tbptt and loss), compile time apart; all of the machine's
   threads, one device.
2. offline inference: real-time factor (seconds of audio per second of
   compute) of one call on 10 s of 44.1 kHz audio, one stream, one thread.
3. streaming: `emu.report.speed.measure` (the `Streamer`'s own compiled step, state
   carried, numpy in and out as an audio callback has it) at 1, 16, 64 and
   256-sample blocks: real-time factor and compute time per block, one thread,
   with JAX's CPU dispatch inline (`emu.stream.realtime()`, as a real-time
   process should run; parts 2 and 5 run in the same child).
4. with --quality: seconds of training until val1 ESR first falls below
   1e-3, 1e-4, 6e-5 (NAM LSTM-32 after 10 minutes) and 2e-5, read from
   metrics.jsonl (elapsed_s) of `experiments/run.py --flagfile=
   experiments/lstm.flags` (the --recipe).
5. cost per sample of one offline call on 1, 10 and 100 s (linear in length
   if the per-sample time stays flat).
6. training samples/s of LSTM-32 with 1 and with 2 devices (2 forced CPU
   devices, XLA_FLAGS=--xla_force_host_platform_device_count=2).
7. ensembles (`--ensemble`, default 4 members of LSTM-32, the lstm.flags
   recipe): milliseconds per train step of one member, of E members in one
   step (`emu.train.make_ensemble_train_step`, what `--ensemble=E` runs), of
   the same E members by `jax.vmap` of the one-member step (the way before
   it), and of E separate runs (E x one member); wall and CPU time (CPU time
   is steadier on a shared machine), the variants interleaved in every
   repeat. Also offline and 64-sample streaming real-time factors of the
   ensemble against one member. All threads, like part 1. Then, in a child
   with 2 forced CPU devices: one member on 1 device and on 2 (the batch
   split), E members on 1 device and split over 2 (what `train.fit` does
   when the device count divides E). With --ensemble_runs=N, whole
   `experiments/run.py` runs of N epochs compare the same four ways
   end to end (one member on 1 and 2 devices, E members with run.py's
   default devices and on 1 device).

How threads are pinned: each part runs in a child process of this script
(`--part`, benchmarks/bench_parts.py). The one-thread parts (2, 3, 5) start
with XLA_FLAGS='--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1' (XLA reads it when jax is imported, so it
must be set before) and the child pins itself to one core with
os.sched_setaffinity before JAX starts its threads. Timings on a shared
machine are noisy: every number is the best of --repeats runs.

The code is in benchmarks/bench_*.py; this file is its command line.
"""
import os
import sys

from absl import app
from absl import flags

# Runs from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top
from benchmarks import bench_options
from benchmarks import bench_parts
from benchmarks import bench_report
from benchmarks import bench_runs
from emu import cli

FLAGS = flags.FLAGS
LSTM = bench_options.LSTM


def _define_flags():
  flags.DEFINE_string("out", None, "Write the results as JSON here.")
  flags.DEFINE_bool("tiny", False,
                    "Tiny sizes and lengths: checks the script runs.")
  flags.DEFINE_bool("quality", False,
                    "Also train to measure time to quality (minutes).")
  flags.DEFINE_list("quality_models", [LSTM],
                    "Models to train for --quality (names as in --models).")
  flags.DEFINE_multi_string(
      "quality_flags", [],
      "An extra run.py flag for --quality, e.g. "
      "--quality_flags=--max_epochs=5")
  flags.DEFINE_string(
      "recipe", bench_options.DEFAULT_RECIPE,
      "Flagfile whose training shapes and loss the training parts use, and "
      "which --quality and --ensemble_runs train (absl's own --flagfile "
      "reads this script's flags from a file).")
  flags.DEFINE_list("models", None,
                    "Subset of the models (default: all; --tiny: its own).")
  flags.DEFINE_integer("repeats", 3, "Timed runs per number; the best is "
                       "kept.", lower_bound=1)
  flags.DEFINE_integer("train_steps", 10, "Train steps per timed run.",
                       lower_bound=1)
  flags.DEFINE_integer("ensemble", 4, "Members for the ensemble part "
                       "(LSTM-32).", lower_bound=2)
  flags.DEFINE_bool("ensemble_only", False,
                    "Run only the ensemble part (about a minute).")
  flags.DEFINE_integer("ensemble_runs", 0,
                       "Also time whole run.py runs of this many epochs: one "
                       "member against the ensemble (~4 min at 30).",
                       lower_bound=0)
  flags.DEFINE_integer("runs_repeats", 2, "Repeats of --ensemble_runs (the "
                       "best is kept).", lower_bound=1)
  bench_parts.define_child_flags()


def options_from_flags() -> bench_options.Options:
  available = (bench_options.TINY_MODELS if FLAGS.tiny
               else bench_options.MODELS)
  return bench_options.Options(
      recipe=FLAGS.recipe, tiny=FLAGS.tiny,
      models=tuple(FLAGS.models or available), repeats=FLAGS.repeats,
      train_steps=FLAGS.train_steps, ensemble=FLAGS.ensemble,
      ensemble_runs=FLAGS.ensemble_runs, runs_repeats=FLAGS.runs_repeats,
      quality_models=tuple(FLAGS.quality_models),
      quality_flags=tuple(FLAGS.quality_flags))


def log(message):
  print(message, file=sys.stderr)


def ensemble_parts(opts, results):
  """Part 7 (one device, then 2 forced devices) into results."""
  sub = opts.only(LSTM)
  results["ensemble"] = bench_runs.run_child("ensemble", sub, None, pin=False)
  results["ensemble_devices"] = bench_runs.run_child(
      "ensemble_devices", sub, bench_options.TWO_DEVICES, pin=False)


def measure_ensemble_only(opts, results):
  """--ensemble_only: part 7 (and --ensemble_runs); prints its lines."""
  ensemble_parts(opts, results)
  if opts.ensemble_runs:
    results["ensemble_runs"] = bench_runs.ensemble_runs(opts)
  results["machine"]["load_after"] = os.getloadavg()
  print("\n".join(bench_report.ensemble_lines(results)))


def measure_lstm_parts(opts, results):
  """Parts 6 and 7: LSTM-32 on one thread and on 2 devices; ensembles."""
  sub = opts.only(LSTM)
  log("training LSTM-32 on one thread and on 2 devices ...")
  results["train_1thread"] = bench_runs.run_child(
      "train", sub, bench_options.ONE_THREAD, pin=True)
  results["devices"] = {
      "1": results["train"][LSTM],
      "2": bench_runs.run_child("train", sub, bench_options.TWO_DEVICES,
                                pin=False)[LSTM]}
  log(f"ensemble of {opts.ensemble} LSTM-32, all threads ...")
  ensemble_parts(opts, results)


def measure_all(opts, results, quality):
  """Every part (the whole runs and time to quality unless --tiny); prints
  the table."""
  log("inference, one thread, pinned ...")
  results["infer"] = bench_runs.run_child("infer", opts,
                                          bench_options.ONE_THREAD, pin=True)
  results["infer_dispatch"] = "inline (emu.stream.realtime)"
  log("training, all threads, one device ...")
  results["train"] = bench_runs.run_child("train", opts, None, pin=False)
  if LSTM in opts.models:
    measure_lstm_parts(opts, results)
  if opts.ensemble_runs and not opts.tiny:
    log(f"whole runs, one member and {opts.ensemble} members ...")
    results["ensemble_runs"] = bench_runs.ensemble_runs(opts)
  if quality and not opts.tiny:
    results["quality"] = {}
    for name in opts.quality_models:
      log(f"time to quality, {name} (minutes) ...")
      results["quality"][name] = bench_runs.quality(opts, name)
  results["machine"]["load_after"] = os.getloadavg()
  print(bench_report.table(results))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  opts = options_from_flags()
  if FLAGS.part:  # a child: one part, JSON to --part_out
    return bench_parts.run_part(opts, FLAGS.part, FLAGS.part_out, FLAGS.pin)
  opts.config()  # the recipe reads (a bad one fails here, not in a child)
  results = {"machine": bench_report.machine(), "flagfile": opts.recipe,
             "command": " ".join(sys.argv), "nam": bench_options.NAM,
             "rtneural_rtf": bench_options.RTNEURAL_RTF}
  if FLAGS.ensemble_only:
    measure_ensemble_only(opts, results)
  else:
    measure_all(opts, results, FLAGS.quality)
  bench_report.write_json(FLAGS.out, results)
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
