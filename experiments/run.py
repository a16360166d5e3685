"""Trains and evaluates one emu model: flags -> Config -> fit -> evaluate.

  python experiments/run.py --flagfile=experiments/lstm.flags --workdir=DIR

Later flags override earlier ones (`--flagfile=experiments/lstm.flags
--hidden_size=64`). Re-running into the same workdir resumes the run; a
workdir holding a run with another config is refused unless --overwrite.
"""

import glob
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax

# Runs from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu import config as config_lib  # pylint: disable=g-import-not-at-top
from emu import datareport
from emu import evaluate as evaluate_lib
from emu import models
from emu import report_html
from emu import train

_DEFAULT = config_lib.Config()

flags.DEFINE_string("workdir", None, "Folder for the run's outputs.")
flags.DEFINE_bool("dry_run", False,
                  "Print the config and the model's size, then exit.")
flags.DEFINE_bool("overwrite", False,
                  "Replace a run with a different config in --workdir.")

# Data.
flags.DEFINE_enum("dataset", _DEFAULT.dataset, config_lib.DATASETS,
                  "Synthetic thesis recipe or the user's own WAV files.")
flags.DEFINE_string("effect", _DEFAULT.effect,
                    "Effect applied to the synthetic recipe (emu.effects."
                    "EFFECTS; KNOB_EFFECTS for --dataset=knobs).")
flags.DEFINE_integer("sample_rate", _DEFAULT.sample_rate,
                     "Hz, for the synthetic recipe.")
flags.DEFINE_float("train_seconds", _DEFAULT.train_seconds,
                   "Use only this much of the training signal (0 = all).")
flags.DEFINE_float("val1_seconds", _DEFAULT.val1_seconds,
                   "Seconds of new recipe chunks in val1.")
flags.DEFINE_list("val2_files", [],
                  "Recorded voice WAVs (paths or glob patterns) for val2, "
                  "e.g. /usr/share/sounds/alsa/Front_*.wav from Debian's "
                  "alsa-utils.")
flags.DEFINE_string("train_input", "", "Input WAV (dataset=files).")
flags.DEFINE_string("train_target", "", "Target WAV (dataset=files).")
flags.DEFINE_bool("compensate_latency", False,
                  "Align a target that lags its input (dataset=files).")

# Model.
flags.DEFINE_enum("model", _DEFAULT.model, models.names(), "Model family.")
flags.DEFINE_integer("ensemble", 1, "Members trained together in one step; "
                     "the model is their mean.")
flags.DEFINE_integer("hidden_size", None, "Recurrent units (lstm, gru).")
flags.DEFINE_integer("num_layers", None, "Stacked layers (lstm, gru, lru).")
flags.DEFINE_bool("skip", None, "Add the input audio to the output.")
flags.DEFINE_integer("unroll", None, "lax.scan unroll (lstm, gru, lru).")
flags.DEFINE_float("forget_bias", None, "Initial forget-gate bias (lstm).")
flags.DEFINE_integer("channels", None, "Channels (wavenet).")
flags.DEFINE_integer("kernel_size", None, "Kernel size (wavenet, thesis_cnn).")
flags.DEFINE_list("dilations", None, "Dilations, comma-separated (wavenet).")
flags.DEFINE_bool("gated", None, "Gated tanh*sigmoid activations (wavenet).")
flags.DEFINE_integer("filters", None, "Filters of the first group "
                     "(thesis_cnn).")
flags.DEFINE_integer("groups", None, "Conv groups (thesis_cnn).")
flags.DEFINE_integer("state_size", None, "Complex modes (lru) or SVF "
                     "sections (svf) per layer.")
flags.DEFINE_integer("features", None,
                     "Hidden width between layers (lru, svf).")
flags.DEFINE_integer("knob_hidden", None, "Knob channels set the filters "
                     "through an MLP this wide; 0 = knobs are inputs (lru, "
                     "svf).")
flags.DEFINE_list("knob_sweep_hz", None, "LOW,HIGH: start each filter's "
                  "cutoff at LOW (knob 0) to HIGH (knob 1), log (lru, svf).")
flags.DEFINE_enum("backend", None, ["associative", "sequential"],
                  "Recurrence backend for long calls (lru, svf).")

# Training.
flags.DEFINE_enum("mode", _DEFAULT.mode, config_lib.MODES,
                  "seq2seq (truncated BPTT) or window (the thesis).")
flags.DEFINE_integer("segment_length", _DEFAULT.segment_length,
                     "Samples per training segment (seq2seq).")
flags.DEFINE_integer("warmup", _DEFAULT.warmup,
                     "Samples per segment run but not scored (seq2seq).")
flags.DEFINE_integer("tbptt", _DEFAULT.tbptt,
                     "Truncate gradients every N samples (0 = never).")
flags.DEFINE_integer("window", _DEFAULT.window,
                     "Samples per window (window mode; thesis_cnn's K).")
flags.DEFINE_integer("windows_per_epoch", _DEFAULT.windows_per_epoch,
                     "Windows per epoch (window mode).")
flags.DEFINE_integer("batch_size", _DEFAULT.batch_size,
                     "Segments or windows per step.")
flags.DEFINE_float("gain_db", _DEFAULT.gain_db,
                   "Random gain per training segment, +-dB (linear effects "
                   "only).")
flags.DEFINE_string("loss", "esr=1", "Weighted losses, e.g. "
                    "'mse=1,esr_pre=1,mrstft=2e-4' (emu.losses.LOSSES).")
flags.DEFINE_float("learning_rate", _DEFAULT.learning_rate, "Adam's rate.")
flags.DEFINE_float("lr_decay", _DEFAULT.lr_decay,
                   "Learning rate factor per epoch.")
flags.DEFINE_float("grad_clip", _DEFAULT.grad_clip,
                   "Global-norm clip (0 = off).")
flags.DEFINE_integer("max_epochs", _DEFAULT.max_epochs, "Epoch limit.")
flags.DEFINE_integer("patience", _DEFAULT.patience,
                     "Early stopping: epochs without val1 improvement.")
flags.DEFINE_float("min_delta", _DEFAULT.min_delta,
                   "Early stopping: relative improvement that counts.")
flags.DEFINE_float("time_budget_s", _DEFAULT.time_budget_s,
                   "Stop training after this many seconds (0 = none).")
flags.DEFINE_integer("seed", _DEFAULT.seed, "The one random seed.")
flags.DEFINE_float("checkpoint_every_s", _DEFAULT.checkpoint_every_s,
                   "Save checkpoints at most this often (0 = every epoch).")
# Several hosts (jax.distributed); leave unset on one machine.
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0, to train over several hosts.")
flags.DEFINE_integer("num_processes", None, "Number of hosts.")
flags.DEFINE_integer("process_id", None, "This host's index, 0-based.")
flags.DEFINE_integer(
    "cpu_devices", None,
    "CPU devices JAX makes of this host's cores; an ensemble's members are "
    "split over them. Default: for --ensemble=E > 1, the largest divisor of "
    "E up to the usable cores (E = 4 on 2 cores: 2 devices, 2 members "
    "each); otherwise 1. Left alone when XLA_FLAGS sets "
    "--xla_force_host_platform_device_count.")
flags.DEFINE_list("stream_blocks", [str(b) for b in _DEFAULT.stream_blocks],
                  "Block sizes whose streaming speed the report measures.")

FLAGS = flags.FLAGS

# Flags that are model hyperparameters, with how to read them.
_MODEL_FLAGS = {
    "hidden_size": None, "num_layers": None, "skip": None, "unroll": None,
    "forget_bias": None, "channels": None, "kernel_size": None,
    "dilations": lambda v: tuple(int(d) for d in v), "gated": None,
    "filters": None, "groups": None, "state_size": None, "features": None,
    "knob_hidden": None, "backend": None,
    "knob_sweep_hz": lambda v: tuple(float(f) for f in v),
}


def model_kwargs_from_flags():
  """Hyperparameters set on the command line or in a flagfile.

  A flag that the chosen model does not take is an error, not ignored.
  """
  valid = models.hyperparameters(FLAGS.model)
  kwargs = {}
  for name, convert in _MODEL_FLAGS.items():
    if not FLAGS[name].present:
      continue
    if name not in valid:
      raise ValueError(
          f"--{name} does not apply to model {FLAGS.model!r}; its "
          f"hyperparameters are: {', '.join(valid)}")
    value = FLAGS[name].value
    kwargs[name] = convert(value) if convert else value
  if "window" in valid:  # thesis_cnn consumes exactly the training window
    kwargs["window"] = FLAGS.window
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


def config_from_flags() -> config_lib.Config:
  return config_lib.Config(
      dataset=FLAGS.dataset, effect=FLAGS.effect,
      sample_rate=FLAGS.sample_rate, train_seconds=FLAGS.train_seconds,
      val1_seconds=FLAGS.val1_seconds,
      val2_files=expand_paths(FLAGS.val2_files),
      train_input=FLAGS.train_input, train_target=FLAGS.train_target,
      compensate_latency=FLAGS.compensate_latency,
      model=FLAGS.model, model_kwargs=model_kwargs_from_flags(),
      ensemble=FLAGS.ensemble,
      mode=FLAGS.mode, segment_length=FLAGS.segment_length,
      warmup=FLAGS.warmup, tbptt=FLAGS.tbptt, window=FLAGS.window,
      windows_per_epoch=FLAGS.windows_per_epoch, batch_size=FLAGS.batch_size,
      gain_db=FLAGS.gain_db,
      loss=config_lib.parse_weights(FLAGS.loss),
      learning_rate=FLAGS.learning_rate, lr_decay=FLAGS.lr_decay,
      grad_clip=FLAGS.grad_clip, max_epochs=FLAGS.max_epochs,
      patience=FLAGS.patience, min_delta=FLAGS.min_delta,
      time_budget_s=FLAGS.time_budget_s, seed=FLAGS.seed,
      checkpoint_every_s=FLAGS.checkpoint_every_s,
      stream_blocks=tuple(int(b) for b in FLAGS.stream_blocks))


def run(workdir, overwrite=False):
  """Trains and evaluates the flags' config; returns the report."""
  cfg = config_from_flags()
  if cfg.dataset == "files":
    # Levels, latency and the device's repeatability, before any training.
    os.makedirs(workdir, exist_ok=True)
    datareport.report_files(cfg.train_input, cfg.train_target,
                            workdir=workdir)
  result = train.fit(cfg, workdir, overwrite=overwrite)
  with open(os.path.join(workdir, "flags.txt"), "w") as f:
    f.write(FLAGS.flags_into_string())
  info = {"train_seconds": result.train_seconds, "epochs": result.epochs,
          "best_epoch": result.best_epoch, "stop_reason": result.stop_reason,
          "devices": len(jax.devices()), "parallel": result.parallel}
  report = evaluate_lib.evaluate(
      result.model, result.params, result.dataset, workdir, cfg=cfg,
      history=result.history, train_info=info,
      stream_blocks=cfg.stream_blocks)
  logging.info("report: %s", report_html.write_report_html(workdir))
  return report


def dry_run():
  """Checks the flags: prints the Config and the model's parameter count."""
  cfg = config_from_flags()
  channels = 1
  if cfg.dataset == "knobs":
    from emu import effects  # pylint: disable=g-import-not-at-top
    channels += len(effects.knob_effect(cfg.effect).knobs)
  model = train.build_model(cfg, channels)
  length = cfg.window if cfg.mode == "window" else 256
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jax.ShapeDtypeStruct((1, length, channels),
                                               "float32"))
  count = sum(int(s.size) for s in jax.tree.leaves(shapes))
  print(cfg.to_json())
  print(f"model {cfg.model}: {count} parameters")
  return 0


def cpu_device_count(ensemble, requested, cores, xla_flags):
  """How many CPU devices to ask JAX for, or None to leave its default.

  requested: --cpu_devices (None: choose). An ensemble's members train
  apart when the device count divides E (`emu.train.fit`), so the choice is
  the largest divisor of E up to the cores; one member keeps one device,
  whose matmuls already use every thread. XLA_FLAGS that force a device
  count win over the choice (not over an explicit request).
  """
  if requested is not None:
    if requested < 1:
      raise app.UsageError(f"--cpu_devices must be at least 1, got "
                           f"{requested}")
    return requested
  if "xla_force_host_platform_device_count" in (xla_flags or ""):
    return None
  if ensemble <= 1:
    return None
  return max(d for d in range(1, min(ensemble, max(cores, 1)) + 1)
             if ensemble % d == 0)


def usable_cores():
  """The cores this process may run on (all of them where the OS cannot
  say: macOS has no sched_getaffinity)."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def set_cpu_devices():
  """Applies `cpu_device_count` before JAX starts its backends."""
  count = cpu_device_count(FLAGS.ensemble, FLAGS.cpu_devices, usable_cores(),
                           os.environ.get("XLA_FLAGS"))
  if count is not None:
    jax.config.update("jax_num_cpu_devices", count)
    logging.info("%d CPU device(s)", count)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required: the folder for the run")
  set_cpu_devices()
  if FLAGS.coordinator_address:
    # Every device of every host joins the 'data' mesh in emu.train.
    jax.distributed.initialize(FLAGS.coordinator_address,
                               FLAGS.num_processes, FLAGS.process_id)
  try:
    if FLAGS.dry_run:
      return dry_run()
    report = run(FLAGS.workdir, overwrite=FLAGS.overwrite)
  except (ValueError, FileNotFoundError) as e:
    # Bad input is the user's to fix: the message, not a traceback.
    print(f"error: {e}", file=sys.stderr)
    return 2
  line = [f"{FLAGS.workdir}: {report['model']} ({report['parameters']} "
          f"parameters), {report['epochs']} epochs in "
          f"{report['train_seconds']:.0f} s"]
  for name in ("val1", "val2"):
    if name in report:
      line.append(f"{name} ESR {report[name]['esr']:.3e}, acc12 "
                  f"{report[name]['acc12']:.3f}")
  print("; ".join(line))
  return 0


if __name__ == "__main__":
  app.run(main)
