"""Trains and evaluates one emu model: flags -> Config -> emu.pipeline.

  python experiments/run.py --flagfile=experiments/lstm.flags --workdir=DIR

Every Config field is a flag of the same name, help and default
(`emu.cli`). Later flags override earlier ones (`--flagfile=experiments/
lstm.flags --hidden_size=64`). Re-running into the same workdir resumes the
run; a workdir holding a run with another config is refused unless
--overwrite.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax

# Runs from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu import cli  # pylint: disable=g-import-not-at-top
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
  # Several hosts (jax.distributed); leave unset on one machine.
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0, to train over several hosts.")
  flags.DEFINE_integer("num_processes", None, "Number of hosts.")
  flags.DEFINE_integer("process_id", None, "This host's index, 0-based.")
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.workdir and not FLAGS.dry_run:
    raise app.UsageError("--workdir is required: the folder for the run")
  cfg = cli.config_from_flags()
  set_cpu_devices()
  if FLAGS.coordinator_address:
    # Every device of every host joins the 'data' mesh in emu.train.
    jax.distributed.initialize(FLAGS.coordinator_address,
                               FLAGS.num_processes, FLAGS.process_id)
  if FLAGS.dry_run:
    print(cfg.to_json())
    print(f"model {cfg.model}: {pipeline.parameter_count(cfg)} parameters")
    return 0
  report = pipeline.run(cfg, FLAGS.workdir, overwrite=FLAGS.overwrite,
                        flags_text=FLAGS.flags_into_string())
  print(pipeline.summary_line(FLAGS.workdir, report))
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
