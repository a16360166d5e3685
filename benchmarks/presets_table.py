"""Size presets' table from capture benches: one row per recipe and device.

  python benchmarks/presets_table.py BENCH_DIR [BENCH_DIR ...]

Each BENCH_DIR is the --workdir of one `benchmarks/capture_bench.py
--skip_nam --emu_flagfile=RECIPE` run. Prints, per recipe and device, what
README's "Size presets" table holds: parameters, training samples/s (the
median epoch of metrics.jsonl), the streaming real-time factor of
64-sample blocks (report.json's, measured in a pinned one-thread child),
the offline one-thread factor and held-out voice and music ESR (the
bench's).
"""

import json
import os
import statistics
import sys


def rows(bench_dir: str):
  """(recipe, device, params, samples/s, stream RTF, offline RTF, voice,
  music) for each emu row of one bench folder."""
  with open(os.path.join(bench_dir, "capture_bench.json")) as f:
    bench = json.load(f)
  recipe = os.path.basename(bench["flags"]["emu_flagfile"])
  seconds = bench["flags"]["seconds"]
  for row in bench["rows"]:
    if not row["model"].startswith("emu"):
      continue
    run = os.path.join(bench_dir, f"{seconds:g}s", row["device"], "emu")
    with open(os.path.join(run, "report.json")) as f:
      report = json.load(f)
    with open(os.path.join(run, "metrics.jsonl")) as f:
      speeds = [json.loads(line)["samples_per_s"] for line in f]
    stream = {s["block_size"]: s["rtf"] for s in report.get("streaming", [])}
    yield (recipe, row["device"], row["parameters"],
           statistics.median(speeds), stream.get(64), row["rtf"],
           row["groups"]["voice"], row["groups"]["music"])


def main(argv):
  if len(argv) < 2:
    raise SystemExit(__doc__)
  print("| recipe | device | params | train samples/s | streaming RTF (64) "
        "| offline RTF | voice ESR | music ESR |")
  print("|---|---|---|---|---|---|---|---|")
  for bench_dir in argv[1:]:
    for recipe, device, params, speed, stream, offline, voice, music in rows(
        bench_dir):
      stream_text = f"{stream:.0f}x" if stream else "not measured"
      print(f"| `{recipe}` | {device} | {params:,} | {speed / 1e3:,.0f}k | "
            f"{stream_text} | {offline:.0f}x | {voice:.2e} | {music:.2e} |")


if __name__ == "__main__":
  main(sys.argv)
