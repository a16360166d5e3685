"""Trains and evaluates one emu model: flags -> Config -> emu.pipeline.

  python experiments/run.py --flagfile=experiments/lstm.flags --workdir=DIR

Every Config field is a flag of the same name, help and default
(`emu.cli`). Later flags override earlier ones (`--flagfile=experiments/
lstm.flags --hidden_size=64`). Re-running into the same workdir resumes the
run (after Ctrl-C too: exit status 130); a workdir holding a run with
another config, or one trained on input files changed since, is refused
unless --overwrite, and so is one another process is running in.

Several processes (one per host or per GPU) train one run data-parallel
through JAX's own runtime: start the same command on each with
--coordinator_address=HOST0:PORT --num_processes=N --process_id=I; process
0 writes --workdir (BUILD.md, "Several processes").
"""

import inspect
import os
import signal
import sys
import threading

from absl import app
from absl import flags
from absl import logging
import jax

# Runs from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu.capture import audition  # pylint: disable=g-import-not-at-top
from emu import cli
from emu import pipeline
from emu.train import parallel

FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string("workdir", None, "Folder for the run's outputs.")
  flags.DEFINE_bool("dry_run", False,
                    "Print the config and the model's size, then exit.")
  flags.DEFINE_bool("overwrite", False,
                    "Replace a run with a different config in --workdir.")
  cli.define_config_flags()
  # Several processes (jax.distributed); leave unset for one.
  flags.DEFINE_string(
      "coordinator_address", None,
      "host:port that process 0 listens on and every process can reach, to "
      "train one run over several processes (hosts or GPUs); with "
      "--num_processes and --process_id.")
  flags.DEFINE_integer("num_processes", None,
                       "How many processes train the run together.")
  flags.DEFINE_integer(
      "process_id", None,
      "This process's index, 0 to --num_processes - 1; process 0 writes "
      "--workdir, the others write nothing.")
  flags.DEFINE_integer(
      "cpu_devices", None,
      "CPU devices JAX makes of this host's cores; an ensemble's members "
      "are split over them. Default: for --ensemble=E > 1, the largest "
      "divisor of E up to the usable cores (E = 4 on 2 cores: 2 devices, 2 "
      "members each); otherwise 1. Left alone when XLA_FLAGS sets "
      "--xla_force_host_platform_device_count.")


def set_cpu_devices():
  """Applies `parallel.cpu_device_count` before JAX starts its backends."""
  count = parallel.cpu_device_count(
      FLAGS.ensemble, FLAGS.cpu_devices, parallel.usable_cores(),
      os.environ.get("XLA_FLAGS"))
  if count is not None:
    jax.config.update("jax_num_cpu_devices", count)
    logging.info("%d CPU device(s)", count)


def start_distributed():
  """Joins the processes of a multi-process run (`jax.distributed`), or
  does nothing without --coordinator_address; before JAX's backends start.

  Every device of every process joins the 'data' mesh in emu.train. On CPU
  the collectives between processes are gloo's, over TCP.
  """
  given = [name for name in ("coordinator_address", "num_processes",
                             "process_id") if FLAGS[name].value is not None]
  if not given:
    return
  missing = [f"--{name}" for name in ("coordinator_address", "num_processes",
                                      "process_id") if name not in given]
  if missing:
    raise app.UsageError(
        f"--{given[0]} needs {' and '.join(missing)}: a multi-process run "
        "takes --coordinator_address=HOST:PORT, --num_processes=N and "
        "--process_id=I on every process")
  if FLAGS.num_processes < 1:
    raise app.UsageError(
        f"--num_processes must be at least 1, got {FLAGS.num_processes}")
  if not 0 <= FLAGS.process_id < FLAGS.num_processes:
    raise app.UsageError(
        f"--process_id must be 0 to {FLAGS.num_processes - 1} "
        f"(--num_processes={FLAGS.num_processes}), got {FLAGS.process_id}")
  if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  options = {}
  if "shutdown_timeout_seconds" in inspect.signature(
      jax.distributed.initialize).parameters:
    # Process 0 evaluates and writes the report after training while the
    # others wait for it at exit: an hour rather than jax's 5 minutes.
    options["shutdown_timeout_seconds"] = 3600
  jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                             FLAGS.process_id, **options)
  logging.info("process %d of %d: %d of %d devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(),
               jax.device_count())


def redeliver_dropped_interrupts():
  """A Ctrl-C that lands in a callback Python cannot raise from (JAX's
  garbage-collection hook) would be printed as an ignored exception and
  dropped, the run going on: send it again, to stop the run a moment
  later where it can."""
  default = sys.unraisablehook

  def hook(unraisable):
    if unraisable.exc_type and issubclass(unraisable.exc_type,
                                          KeyboardInterrupt):
      threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
      return
    default(unraisable)

  sys.unraisablehook = hook


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.workdir and not FLAGS.dry_run:
    raise app.UsageError("--workdir is required: the folder for the run")
  cfg = cli.config_from_flags()
  set_cpu_devices()
  start_distributed()
  if FLAGS.dry_run:
    print(cfg.to_json())
    print(f"model {cfg.model}: {pipeline.parameter_count(cfg)} parameters")
    for label, candidate in audition.candidates(cfg):
      print(f"audition candidate {label}: "
            f"{pipeline.parameter_count(candidate)} parameters")
    return 0
  redeliver_dropped_interrupts()
  try:
    report = pipeline.run(cfg, FLAGS.workdir, overwrite=FLAGS.overwrite,
                          flags_text=FLAGS.flags_into_string())
  except KeyboardInterrupt:  # Ctrl-C: the lock is released, no traceback
    print(f"interrupted: the run in {FLAGS.workdir} stopped; run the same "
          "command again to resume it from its last checkpoint",
          file=sys.stderr)
    return 130
  except Exception as error:  # pylint: disable=broad-except
    # Else the other processes would wait for this one.
    parallel.end_if_failed_alone(error, brief=isinstance(
        error, cli.USER_ERRORS) and not FLAGS.debug)
    raise
  if report is None:  # another process than 0 of a multi-process run
    print(f"process {jax.process_index()} of {jax.process_count()}: trained "
          "in lockstep; process 0 wrote the run folder (its --workdir)")
  else:
    print(pipeline.summary_line(FLAGS.workdir, report, cfg))
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
