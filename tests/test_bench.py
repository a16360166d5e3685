"""benchmarks/bench.py keeps running: one --tiny pass in a subprocess.

Checks the JSON's shape, not any time (speed is for the benchmark to print).
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_given_tiny_sizes_when_bench_runs_then_it_writes_every_part(tmp_path):
  out = tmp_path / "bench.json"
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"),
       "--tiny", "--models=lstm32", "--repeats=1", f"--out={out}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "| lstm32 |" in result.stdout
  data = json.loads(out.read_text())
  infer = data["infer"]["lstm32"]
  assert infer["offline"]["rtf"] > 0
  assert [s["block_size"] for s in infer["streaming"]] == [1, 16]
  assert len(infer["length"]) == 2
  assert data["train"]["lstm32"]["train_sps"] > 0
  assert data["devices"]["2"]["devices"] == 2
  assert data["train_1thread"]["lstm32"]["train_sps"] > 0


def test_given_an_unknown_model_when_bench_starts_then_one_error_line():
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"),
       "--models=nope"], cwd=ROOT, capture_output=True, text=True,
      timeout=120)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: unknown model(s) nope; choose from lstm24, lstm32, gru32, "
      "wavenet_feather, thesis_cnn_small, lru"]
