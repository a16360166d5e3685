"""Compares finished runs: the thesis's Fig. 20 as a table and a bar plot.

  python benchmarks/compare.py runs/lstm runs/gru runs/cnn --out=runs/compare

Reads each DIR/report.json; writes OUT/comparison.md (and prints it) and
OUT/comparison.png (validation ESR per model, when matplotlib is installed).
"""

import os
import sys

from absl import app
from absl import flags

# Runs from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu import cli  # pylint: disable=g-import-not-at-top
from emu.report import plots
from emu import workdir

FLAGS = flags.FLAGS

TABLE = "comparison.md"
PLOT = "comparison.png"
COLUMNS = (("val1 ESR", "val1", "esr", "{:.3e}"),
           ("val1 acc12", "val1", "acc12", "{:.3f}"),
           ("val1 LSD dB", "val1", "lsd_db", "{:.2f}"),
           ("val2 ESR", "val2", "esr", "{:.3e}"),
           ("val2 acc12", "val2", "acc12", "{:.3f}"))


def _define_flags():
  flags.DEFINE_string("out", None, f"Folder for {TABLE} and {PLOT} "
                      "(default: print only).")


def load_reports(run_dirs):
  """[(run folder, its report)]; FileNotFoundError for an unfinished run."""
  reports = []
  for run_dir in run_dirs:
    if not os.path.exists(workdir.path(run_dir, workdir.REPORT)):
      raise FileNotFoundError(
          f"{run_dir} has no {workdir.REPORT}: is the run finished?")
    reports.append((run_dir, workdir.read_json(run_dir, workdir.REPORT)))
  return reports


def label(run_dir, report):
  return f"{report['model']} ({os.path.basename(os.path.normpath(run_dir))})"


def markdown_table(reports) -> str:
  head = ["run", "params", "epochs", "train s"] + [c[0] for c in COLUMNS]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for run_dir, report in reports:
    cells = [label(run_dir, report), f"{report['parameters']:,}",
             str(report.get("epochs", "")),
             f"{report.get('train_seconds', float('nan')):.0f}"]
    for _, part, key, fmt in COLUMNS:
      value = report.get(part, {}).get(key)
      cells.append(fmt.format(value) if value is not None else "-")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_outputs(out, reports, table):
  """OUT/comparison.md and, when matplotlib is installed, the bar plot."""
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, TABLE), "w") as f:
    f.write(table)
  if plots.available():
    plots.comparison_bars([label(w, r) for w, r in reports],
                          [r["val1"]["esr"] for _, r in reports],
                          os.path.join(out, PLOT), ylabel="val1 ESR")


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("name at least one run directory")
  reports = load_reports(argv[1:])
  table = markdown_table(reports)
  print(table)
  if FLAGS.out:
    write_outputs(FLAGS.out, reports, table)
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
