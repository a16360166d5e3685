"""Compares finished runs: the thesis's Fig. 20 as a table and a bar plot.

  python experiments/compare.py runs/lstm runs/gru runs/cnn --out=runs/compare

Reads each DIR/report.json; writes OUT/comparison.md (and prints it) and
OUT/comparison.png (validation ESR per model, when matplotlib is installed).
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emu import plots  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("out", None, "Folder for comparison.md and .png "
                    "(default: print only).")
FLAGS = flags.FLAGS

COLUMNS = (("val1 ESR", "val1", "esr", "{:.3e}"),
           ("val1 acc12", "val1", "acc12", "{:.3f}"),
           ("val1 LSD dB", "val1", "lsd_db", "{:.2f}"),
           ("val2 ESR", "val2", "esr", "{:.3e}"),
           ("val2 acc12", "val2", "acc12", "{:.3f}"))


def load_reports(workdirs):
  reports = []
  for workdir in workdirs:
    path = os.path.join(workdir, "report.json")
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"{workdir} has no report.json: is the run finished?")
    with open(path) as f:
      reports.append((workdir, json.load(f)))
  return reports


def label(workdir, report):
  return f"{report['model']} ({os.path.basename(os.path.normpath(workdir))})"


def markdown_table(reports) -> str:
  head = ["run", "params", "epochs", "train s"] + [c[0] for c in COLUMNS]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for workdir, report in reports:
    cells = [label(workdir, report), f"{report['parameters']:,}",
             str(report.get("epochs", "")),
             f"{report.get('train_seconds', float('nan')):.0f}"]
    for _, part, key, fmt in COLUMNS:
      value = report.get(part, {}).get(key)
      cells.append(fmt.format(value) if value is not None else "-")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("name at least one run directory")
  try:
    reports = load_reports(argv[1:])
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  table = markdown_table(reports)
  print(table)
  if FLAGS.out:
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "comparison.md"), "w") as f:
      f.write(table)
    if plots.available():
      plots.comparison_bars([label(w, r) for w, r in reports],
                            [r["val1"]["esr"] for _, r in reports],
                            os.path.join(FLAGS.out, "comparison.png"),
                            ylabel="val1 ESR")
  return 0


if __name__ == "__main__":
  app.run(main)
