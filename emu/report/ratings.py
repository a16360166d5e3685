"""Aggregates the ratings that a listening test page exports.

  python -m emu.report.ratings ratings_*.json ratings_*.csv [--by_set] [--json=OUT]

The page is `listening_test.html` (`emu.report.listening_test`). As the thesis
reported its listening test: per model, the number of ratings, their mean
(and standard deviation) on the 4-point scale (1 not similar at all, 2 some
similarities, 3 almost the same, 4 the same), and how many pairs got each
score. The control row (the target against itself)
shows how much the raters can be trusted: it should be near 4.

A named rater who exported a pair twice (JSON and CSV, or again later) is
counted once: for each (rater, model, set, clip) the file given last wins.
Anonymous exports are all counted. Unrated pairs are counted apart, not as
a score.
"""

import csv
import json
import math
import os
import sys

from absl import flags

from emu import cli
from emu.report import listening_test

FLAGS = flags.FLAGS
SCORES = (1, 2, 3, 4)


class RatingsError(ValueError):
  """A ratings file cannot be read (says which and why)."""


def _score(value, path):
  if value in (None, ""):
    return None
  try:
    score = int(float(value))
  except ValueError:
    raise RatingsError(f"{path}: score {value!r} is not a number") from None
  if score not in SCORES:
    raise RatingsError(f"{path}: score {score} is outside 1-4")
  return score


def read_ratings(path):
  """Rows of one exported file (JSON or CSV).

  Returns:
    list of {"page_id", "rater", "trial", "model", "set", "clip_start_s",
    "score" (1-4 or None), "note"}.
  """
  if not os.path.exists(path):
    raise RatingsError(f"{path}: file not found")
  with open(path, newline="", encoding="utf-8") as f:
    text = f.read()
  if path.lower().endswith(".json") or text.lstrip().startswith("{"):
    try:
      d = json.loads(text)
    except json.JSONDecodeError as e:
      raise RatingsError(f"{path}: not valid JSON ({e})") from None
    if d.get("format") != listening_test.RATINGS_FORMAT:
      raise RatingsError(f"{path}: not an emu ratings export (format "
                         f"{d.get('format')!r})")
    page, rater, records = d.get("page_id", ""), d.get("rater", ""), d[
        "ratings"]
  else:
    records = list(csv.DictReader(text.splitlines()))
    if records and "score" not in records[0]:
      raise RatingsError(f"{path}: a CSV export needs a 'score' column")
    page, rater = "", None
  rows = []
  for r in records:
    rows.append({
        "page_id": page, "rater": rater if rater is not None else r.get(
            "rater", ""),
        "trial": int(r["trial"]), "model": r["model"], "set": r.get("set", ""),
        "clip_start_s": float(r.get("clip_start_s") or 0.0),
        "score": _score(r.get("score"), path), "note": r.get("note", "")})
  return rows


def latest(rows):
  """Keeps a named rater's last row per pair: re-exports replace."""
  kept = {}
  for i, row in enumerate(rows):
    who = row["rater"].strip() or f"(anonymous {i})"
    kept[(who, row["model"], row["set"], round(row["clip_start_s"], 3))] = row
  return list(kept.values())


def aggregate(rows, by=("model",)):
  """Per group: n, mean, std, counts per score, unrated.

  Args:
    rows: as `read_ratings` returns (after `latest`).
    by: the keys that make a group, e.g. ("model",) or ("model", "set").

  Returns:
    list of dicts sorted by group: {**group, "n", "mean", "std",
    "counts": {1: ..., 4: ...}, "unrated"}.
  """
  groups = {}
  for row in rows:
    groups.setdefault(tuple(row[k] for k in by), []).append(row)
  out = []
  for key in sorted(groups):
    scores = [r["score"] for r in groups[key] if r["score"] is not None]
    n = len(scores)
    mean = sum(scores) / n if n else math.nan
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1)) if (
        n > 1) else math.nan
    out.append({**dict(zip(by, key)), "n": n, "mean": mean, "std": std,
                "counts": {s: scores.count(s) for s in SCORES},
                "unrated": len(groups[key]) - n})
  return out


def format_table(summary, by=("model",)):
  """A markdown table of `aggregate`'s result."""
  head = list(by) + ["n", "mean", "std"] + [
      f"{s} {listening_test.SCALE[s]}" for s in SCORES] + ["unrated"]
  lines = ["| " + " | ".join(head) + " |",
           "|" + "|".join(["---"] * len(by) + ["---:"] * (len(head) - len(
               by))) + "|"]
  for g in summary:
    cells = [str(g[k]) for k in by] + [
        str(g["n"]), "-" if math.isnan(g["mean"]) else f"{g['mean']:.2f}",
        "-" if math.isnan(g["std"]) else f"{g['std']:.2f}"] + [
            str(g["counts"][s]) for s in SCORES] + [str(g["unrated"])]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  paths = argv[1:]
  if not paths:
    print("usage: python -m emu.report.ratings FILES... [--by_set] [--json=OUT]",
          file=sys.stderr)
    return 2
  rows = latest([row for path in paths for row in read_ratings(path)])
  by = ("model", "set") if FLAGS.by_set else ("model",)
  summary = aggregate(rows, by)
  raters = sorted({r["rater"] or "(anonymous)" for r in rows})
  print(f"{len(rows)} pairs from {len(raters)} rater(s): "
        f"{', '.join(raters)}\n")
  print(format_table(summary, by))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump([{**g, "mean": None if math.isnan(g["mean"]) else g["mean"],
                  "std": None if math.isnan(g["std"]) else g["std"]}
                 for g in summary], f, indent=1)
  return 0


def _define_flags():
  flags.DEFINE_bool("by_set", False, "One row per model and validation set.")
  flags.DEFINE_string("json", None, "Also write the summary to this file.")


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
