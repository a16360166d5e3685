"""How a recipe's result depends on the seed: run.py once per seed, a table.

  python benchmarks/ssm_seeds.py --recipe=experiments/ssm.flags \
      --seeds=0-19 --out=/tmp/ssm_seeds

runs `python experiments/run.py --flagfile=RECIPE --seed=S
--workdir=OUT/seed_S` for each seed in turn (one at a time, so the runs do
not share the cores), reads each run's report.json and prints one row per
seed: val1 and val2 ESR, the run's own training seconds and epochs, and
the 1-minute load average when the run ended (the machine's other work).
A run already in OUT is read, not rerun. The last line counts the seeds at
or below --target. Extra run.py flags follow `--` (e.g. `--
--time_budget_s=60`).
"""
import json
import os
import subprocess
import sys

from absl import app
from absl import flags

# Runs from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu import cli  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
_RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.py")


def _define_flags():
  flags.DEFINE_string("recipe", "experiments/ssm.flags", "The flagfile.")
  flags.DEFINE_string("seeds", "0-19", "Seeds: 'A-B' or comma-separated.")
  flags.DEFINE_string("out", None, "Folder for the runs (OUT/seed_S).")
  flags.DEFINE_float("target", 1e-8, "val1 ESR counted as converged.")
  flags.DEFINE_string("run_py", _RUN, "The run.py to call (a wrapper of "
                      "it, to try a trainer change).")
  flags.mark_flag_as_required("out")


def parse_seeds(text):
  """'0-3' -> [0, 1, 2, 3]; '1,5' -> [1, 5]."""
  if "-" in text:
    low, high = (int(v) for v in text.split("-"))
    return list(range(low, high + 1))
  return [int(v) for v in text.split(",")]


def run_seed(run_py, recipe, seed, workdir, extra):
  """Runs (or reads) one seed; its table row as a dict."""
  report = os.path.join(workdir, "report.json")
  if not os.path.exists(report):
    subprocess.run([sys.executable, run_py, f"--flagfile={recipe}",
                    f"--seed={seed}", f"--workdir={workdir}", "--overwrite",
                    *extra], check=True, stdout=subprocess.DEVNULL)
  with open(report) as f:
    result = json.load(f)
  return {"seed": seed, "val1": result["val1"]["esr"],
          "val2": result.get("val2", {}).get("esr"),
          "train_s": result["train_seconds"], "epochs": result["epochs"],
          "load": os.getloadavg()[0]}


def main(argv):
  extra = argv[1:]
  if not os.path.exists(FLAGS.recipe):
    raise FileNotFoundError(f"recipe {FLAGS.recipe} does not exist")
  print("| seed | val1 ESR | val2 ESR | train s | epochs | load |")
  print("|---|---|---|---|---|---|")
  rows = []
  for seed in parse_seeds(FLAGS.seeds):
    row = run_seed(FLAGS.run_py, FLAGS.recipe, seed,
                   os.path.join(FLAGS.out, f"seed_{seed}"), extra)
    rows.append(row)
    val2 = "-" if row["val2"] is None else f"{row['val2']:.1e}"
    print(f"| {seed} | {row['val1']:.1e} | {val2} | {row['train_s']:.0f} | "
          f"{row['epochs']} | {row['load']:.1f} |", flush=True)
  hits = sum(r["val1"] <= FLAGS.target for r in rows)
  print(f"{hits} of {len(rows)} seeds at val1 ESR <= {FLAGS.target:g}")
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
