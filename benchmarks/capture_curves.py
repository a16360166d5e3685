"""Capture bench curves: validation ESR against training seconds, per family.

  python benchmarks/capture_curves.py /tmp/cb/60s [--out=curves.png]

Reads what benchmarks/capture_bench.py left in each device folder of the
given directory: every emu run (its own metrics.jsonl and, for a recipe
with an audition, each candidate's in audition/<label>/), and every NAM
run (nam_<preset>/result.json's history). Each curve is one model's
validation ESR (emu's val1 and NAM's validation pass: the same last 10 %
of the recording) against its own training seconds, so an auditioned
family's curve ends where the halving stopped it. Prints, per device and
curve, the ESR at 40, 120, 300 and 600 s and the last one; writes one
plot per device side by side (log ESR, NAM dashed).
"""

import glob
import json
import os
import sys

import numpy as np

MARKS = (40.0, 120.0, 300.0, 600.0)


def _emu_curve(metrics_path):
  """(seconds, val1 ESR) of an emu run's metrics.jsonl rows."""
  rows = []
  with open(metrics_path) as f:
    for line in f:
      row = json.loads(line)
      if row.get("val1_esr") is not None and "elapsed_s" in row:
        rows.append((float(row["elapsed_s"]), float(row["val1_esr"])))
  return rows


def _nam_curve(result_path):
  with open(result_path) as f:
    history = json.load(f).get("history", [])
  return [(float(r["elapsed_s"]), float(r["val_esr"])) for r in history
          if r.get("val_esr") is not None]


def curves(device_dir: str) -> dict:
  """label -> [(seconds, ESR)] for every run in one device folder."""
  out = {}
  for metrics in sorted(glob.glob(os.path.join(device_dir, "*",
                                               "metrics.jsonl"))):
    run = os.path.basename(os.path.dirname(metrics))
    out[run] = _emu_curve(metrics)
    for cand in sorted(glob.glob(os.path.join(
        os.path.dirname(metrics), "audition", "*", "metrics.jsonl"))):
      label = os.path.basename(os.path.dirname(cand))
      out[f"{run}: {label}"] = _emu_curve(cand)
  for result in sorted(glob.glob(os.path.join(device_dir, "nam_*",
                                              "result.json"))):
    out[os.path.basename(os.path.dirname(result))] = _nam_curve(result)
  return {k: v for k, v in out.items() if v}


def best_by(curve, seconds):
  """The lowest ESR reached within `seconds`, or None before the first."""
  seen = [e for s, e in curve if s <= seconds]
  return min(seen) if seen else None


def _plot(all_curves: dict, out: str):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(all_curves), squeeze=False,
                           figsize=(5.5 * len(all_curves), 4.2))
  for ax, (device, runs) in zip(axes[0], sorted(all_curves.items())):
    for label, curve in sorted(runs.items()):
      s, e = np.array(curve).T
      ax.plot(s, np.minimum.accumulate(e), "--" if label.startswith("nam_")
              else "-", marker="o", ms=2.5, label=label, lw=1.2)
    ax.set(xscale="log", yscale="log", title=device,
           xlabel="training seconds", ylabel="best val1 ESR so far")
    ax.axhline(1e-2, color="grey", lw=0.6)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  print(f"wrote {out}")


def main(argv):
  if len(argv) < 2 or argv[1].startswith("--"):
    sys.exit("usage: python benchmarks/capture_curves.py BENCH_DIR/<seconds>s "
             "[--out=curves.png]")
  root = argv[1]
  out = next((a.split("=", 1)[1] for a in argv[2:] if a.startswith(
      "--out=")), os.path.join(root, "curves.png"))
  all_curves = {}
  for device_dir in sorted(glob.glob(os.path.join(root, "*"))):
    if os.path.isdir(device_dir):
      runs = curves(device_dir)
      if runs:
        all_curves[os.path.basename(device_dir)] = runs
  if not all_curves:
    sys.exit(f"no runs under {root}/*/: run benchmarks/capture_bench.py "
             "first")
  head = " | ".join(f"<= {m:g} s" for m in MARKS)
  print(f"| device | run | {head} | last (s) |\n|" + "---|" * (len(MARKS) + 3))
  for device, runs in sorted(all_curves.items()):
    for label, curve in sorted(runs.items()):
      cells = " | ".join("" if best_by(curve, m) is None else
                         f"{best_by(curve, m):.2e}" for m in MARKS)
      print(f"| {device} | {label} | {cells} | {min(e for _, e in curve):.2e}"
            f" ({curve[-1][0]:.0f}) |")
  _plot(all_curves, out)


if __name__ == "__main__":
  main(sys.argv)
