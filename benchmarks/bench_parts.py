"""The benchmark's child processes: one part each, its JSON to a file.

`benchmarks/bench.py --part=NAME --part_out=FILE [--pin]` runs one part
in a process of its own (the parent, `bench_runs.run_child`, sets its
XLA_FLAGS and JAX_PLATFORMS first): `train` (samples/s through the jitted
train step), `infer` (offline, streaming and cost per sample, one thread
with inline dispatch), and the ensemble parts of `bench_ensemble`. These
flags are the parent's business: they are not in --help (--helpfull
lists them).
"""

import json
import os
import sys

from absl import flags
import jax
import numpy as np

from benchmarks import bench_ensemble
from benchmarks import bench_timing
from emu import losses
from emu import stream
from emu.report import speed
from emu import train


def define_child_flags():
  flags.DEFINE_string("part", None, "Run one part (a child process).")
  flags.DEFINE_string("part_out", None, "Where the part writes its JSON.")
  flags.DEFINE_bool("pin", False, "Pin the part to one core.")


def random_batch(cfg, window_mode):
  """((x, t) float32 noise of the recipe's shapes, samples per batch)."""
  rng = np.random.default_rng(0)
  if window_mode:
    x = rng.uniform(-0.5, 0.5, (cfg.batch_size, cfg.window, 1))
    t = rng.uniform(-0.5, 0.5, (cfg.batch_size, 1))
    samples = cfg.batch_size
  else:
    x = rng.uniform(-0.5, 0.5, (cfg.batch_size, cfg.segment_length, 1))
    t = rng.uniform(-0.5, 0.5, (cfg.batch_size, cfg.segment_length, 1))
    samples = cfg.batch_size * cfg.segment_length
  return (x.astype(np.float32), t.astype(np.float32)), samples


def train_throughput(model, cfg, window_mode, opts):
  """Samples/s through the compiled train_step (best of opts.repeats)."""
  if window_mode:
    cfg = cfg.replace(mode="window", window=model.window, batch_size=256,
                      loss={"esr": 1.0})
  mesh = train.data_mesh()
  tx = train.make_optimizer(cfg, steps_per_epoch=100)
  state = train.create_train_state(model, tx, jax.random.PRNGKey(0),
                                   bench_timing.example())
  step = train.make_train_step(model, tx, losses.combined(cfg.loss), cfg)
  batch, samples = random_batch(cfg, window_mode)
  batch = train.shard_batch(batch, mesh)
  state = train.replicate(state, mesh)
  compiled, compile_s = bench_timing.compile_step(step, state, batch)
  timed = bench_timing.Timed(compiled,
                             bench_timing.first_run(compiled, state, batch),
                             batch, sync=train.sync_each_step(mesh))
  wall, _ = bench_timing.best_step_times({"train": timed}, opts.steps,
                                         opts.repeats)
  return {"train_sps": samples / wall["train"], "compile_s": compile_s,
          "devices": mesh.size, "batch_size": cfg.batch_size,
          "segment_length": 1 if window_mode else cfg.segment_length,
          "mode": cfg.mode}


def part_train(opts, specs):
  cfg = opts.config()
  threads = "all" if "intra_op" not in os.environ.get("XLA_FLAGS", "") else 1
  out = {}
  for name, spec in specs.items():
    model, _, _ = bench_timing.build(spec)
    out[name] = train_throughput(model, cfg, spec[0] == "thesis_cnn", opts)
    out[name]["threads"] = threads
    print(f"  train {name}: {out[name]['train_sps'] / 1e3:.0f}k samples/s "
          f"on {jax.device_count()} device(s)", file=sys.stderr)
  return out


def infer_row(opts, spec):
  """Offline, streaming and cost-per-sample numbers of one model."""
  model, params, count = bench_timing.build(spec)
  row = {"family": spec[0], "hparams": spec[1], "params": count}
  row["offline"] = bench_timing.best_offline(
      model, params, opts.offline_seconds, opts.repeats)
  row["streaming"] = [
      bench_timing.best_stream(model, params, block, opts.stream_seconds,
                               opts.max_blocks(speed.MAX_BLOCKS),
                               opts.repeats)
      for block in opts.blocks]
  row["length"] = []
  for seconds in opts.lengths(spec[0]):
    r = speed.offline_rtf(model, params, seconds=seconds,
                           repeats=1 if seconds >= 100 else opts.repeats)
    row["length"].append({"seconds": seconds,
                          "ns_per_sample": r["us_per_sample"] * 1e3})
  per = [r["ns_per_sample"] for r in row["length"]]
  row["length_ratio"] = float(np.max(per) / np.min(per))
  return row


def part_infer(opts, specs):
  out = {}
  for name, spec in specs.items():
    out[name] = infer_row(opts, spec)
    print(f"  infer {name}: offline {out[name]['offline']['rtf']:.1f}x",
          file=sys.stderr)
  return out


PARTS = {"train": part_train, "infer": part_infer,
         "ensemble": bench_ensemble.part_ensemble,
         "ensemble_devices": bench_ensemble.part_ensemble_devices}


def working_specs(opts):
  """The chosen models' specs, less `lru` where it cannot be built."""
  specs = opts.specs()
  if "lru" in specs:
    try:
      bench_timing.build(specs["lru"])
    except Exception as e:  # pylint: disable=broad-except
      print(f"  lru skipped: {type(e).__name__}: {e}", file=sys.stderr)
      del specs["lru"]
  return specs


def run_part(opts, part, part_out, pin):
  """One part (this process is a child): its results as JSON to part_out."""
  if part not in PARTS:
    raise ValueError(f"unknown --part {part!r}; choose from "
                     f"{', '.join(PARTS)}")
  if not part_out:
    raise ValueError("--part needs --part_out, the file for its JSON")
  if pin:
    bench_timing.pin_to_one_core()  # before jax starts its threads
  if part == "infer" and not stream.realtime():
    # Inline dispatch, as a real-time process runs; it must come before the
    # first JAX computation of this child.
    raise RuntimeError("JAX started before the infer part could set inline "
                       "dispatch (emu.stream.realtime)")
  results = PARTS[part](opts, working_specs(opts))
  with open(part_out, "w") as f:
    json.dump(results, f)
  return 0
