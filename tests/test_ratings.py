"""emu.report.ratings: the thesis's per-model table from JSON and CSV exports."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from emu.report import listening_test
from emu.report import ratings

CONTROL = listening_test.CONTROL


def _json_export(path, rater, scores, page="0-x"):
  """An export as listening_test.html writes it; scores: [(model, s)]."""
  rows = [{"trial": i + 1, "model": model, "set": "val1",
           "clip_start_s": 0.5 + i, "clip_end_s": 4.5 + i,
           "order": "target-output", "score": score, "note": ""}
          for i, (model, score) in enumerate(scores)]
  with open(path, "w") as f:
    json.dump({"format": listening_test.RATINGS_FORMAT, "version": 1,
               "page_id": page, "seed": 0, "rater": rater,
               "ratings": rows}, f)
  return str(path)


def _csv_export(path, rater, scores):
  head = ["trial", "model", "set", "clip_start_s", "clip_end_s", "order",
          "score", "note", "rater"]
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(head)
    for i, (model, score) in enumerate(scores):
      writer.writerow([i + 1, model, "val1", 0.5 + i, 4.5 + i,
                       "output-target", "" if score is None else score,
                       'said "ok", then left', rater])
  return str(path)


def test_aggregate_counts_and_means_per_model(tmp_path):
  # Given two raters, one in JSON and one in CSV, one pair left unrated
  files = [
      _json_export(tmp_path / "a.json", "ann",
                   [("lstm", 4), ("lstm", 3), ("gru", 2), (CONTROL, 4)]),
      _csv_export(tmp_path / "b.csv", "bob",
                  [("lstm", 3), ("lstm", None), ("gru", 1), (CONTROL, 4)]),
  ]
  rows = ratings.latest([r for f in files for r in ratings.read_ratings(f)])
  summary = {g["model"]: g for g in ratings.aggregate(rows)}
  # Then each model has its count per score, mean and unrated pairs
  assert summary["lstm"]["n"] == 3 and summary["lstm"]["unrated"] == 1
  assert summary["lstm"]["mean"] == pytest.approx(10 / 3)
  assert summary["lstm"]["counts"] == {1: 0, 2: 0, 3: 2, 4: 1}
  assert summary["gru"]["mean"] == 1.5
  assert summary["gru"]["std"] == pytest.approx(math.sqrt(0.5))
  assert summary[CONTROL]["mean"] == 4.0
  table = ratings.format_table(ratings.aggregate(rows))
  assert "| lstm | 3 | 3.33 |" in table and "4 the same" in table
  assert rows[-1]["note"] == 'said "ok", then left'


def test_a_re_export_replaces_and_sets_split(tmp_path):
  first = _json_export(tmp_path / "1.json", "ann", [("lstm", 1)])
  again = _json_export(tmp_path / "2.json", "ann", [("lstm", 4)])
  anon = [_json_export(tmp_path / f"anon{i}.json", "", [("lstm", 2)])
          for i in range(2)]
  rows = ratings.latest([r for f in [first, again] + anon
                         for r in ratings.read_ratings(f)])
  (group,) = ratings.aggregate(rows, by=("model", "set"))
  assert group["set"] == "val1"
  assert group["counts"] == {1: 0, 2: 2, 3: 0, 4: 1}  # ann's 1 replaced


def test_bad_files_are_refused_by_name(tmp_path):
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({"format": "other"}))
  with pytest.raises(ratings.RatingsError, match="bad.json"):
    ratings.read_ratings(str(bad))
  wrong = _csv_export(tmp_path / "w.csv", "x", [("lstm", 7)])
  with pytest.raises(ratings.RatingsError, match="outside 1-4"):
    ratings.read_ratings(wrong)
  with pytest.raises(ratings.RatingsError, match="not found"):
    ratings.read_ratings(str(tmp_path / "missing.csv"))


def test_cli_prints_the_table_and_writes_json(tmp_path):
  path = _json_export(tmp_path / "a.json", "ann", [("lstm", 3), ("gru", 4)])
  out = str(tmp_path / "summary.json")
  done = subprocess.run(
      [sys.executable, "-m", "emu.report.ratings", path, f"--json={out}"],
      capture_output=True, text=True, check=False,
      env=dict(os.environ, PYTHONPATH=os.getcwd()))
  assert done.returncode == 0, done.stderr
  assert "2 pairs from 1 rater(s): ann" in done.stdout
  assert "| gru | 1 | 4.00 | - |" in done.stdout
  with open(out) as f:
    assert [g["model"] for g in json.load(f)] == ["gru", "lstm"]
