"""Speed and time-to-quality benchmarks, side by side with NAM's numbers.

  python experiments/bench.py --out=benchmarks/cpu.json            # ~5 min
  python experiments/bench.py --quality --out=benchmarks/cpu.json  # + ~5 min
  python experiments/bench.py --tiny                               # CI, ~30 s
  python experiments/bench.py --ensemble_only                      # part 7, ~1 min
  python experiments/bench.py --ensemble_only --ensemble_runs=30   # + whole runs, ~10 min

Prints a table and writes JSON. For each model (LSTM 24 and 32, GRU 32, a
WaveNet of NAM FEATHER's size, a small thesis CNN, and `lru` when
`emu.models.create('lru')` works):

1. training: samples/s through the jitted `train_step` (the recipe of
   experiments/lstm.flags: its segment_length, warmup, batch_size, tbptt and
   loss), compile time apart; all of the machine's threads, one device.
2. offline inference: real-time factor (seconds of audio per second of
   compute) of one call on 10 s of 44.1 kHz audio, one stream, one thread.
3. streaming: `emu.stream.measure` (the `Streamer`'s own compiled step, state
   carried, numpy in and out as an audio callback has it) at 1, 16, 64 and
   256-sample blocks: real-time factor and compute time per block, one thread,
   with JAX's CPU dispatch inline (`emu.stream.realtime()`, as a real-time
   process should run; parts 2 and 5 run in the same child).
4. with --quality: seconds of training until val1 ESR first falls below
   1e-3, 1e-4, 6e-5 (NAM LSTM-32 after 10 minutes) and 2e-5, read from
   metrics.jsonl (elapsed_s) of `experiments/run.py --flagfile=
   experiments/lstm.flags`.
5. cost per sample of one offline call on 1, 10 and 100 s (linear in length
   if the per-sample time stays flat).
6. training samples/s of LSTM-32 with 1 and with 2 devices (2 forced CPU
   devices, XLA_FLAGS=--xla_force_host_platform_device_count=2).
7. ensembles (`--ensemble`, default 4 members of LSTM-32, the lstm.flags
   recipe): milliseconds per train step of one member, of E members in one
   step (`emu.train.make_ensemble_train_step`, what `--ensemble=E` runs), of
   the same E members by `jax.vmap` of the one-member step (the way before
   it), and of E separate runs (E x one member); wall and CPU time (CPU time
   is steadier on a shared machine), the variants interleaved in every
   repeat. Also offline and 64-sample streaming real-time factors of the
   ensemble against one member. All threads, like part 1. Then, in a child
   with 2 forced CPU devices: one member on 1 device and on 2 (the batch
   split), E members on 1 device and split over 2 (what `train.fit` does
   when the device count divides E). With --ensemble_runs=N, whole
   `experiments/run.py` runs of N epochs compare the same four ways
   end to end (one member on 1 and 2 devices, E members with run.py's
   default devices and on 1 device).

How threads are pinned: each part runs in a child process of this script.
The one-thread parts (2, 3, 5) start with XLA_FLAGS=
'--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1' (XLA
reads it when jax is imported, so it must be set before) and the child pins
itself to one core with os.sched_setaffinity before importing jax.
Timings on a shared machine are noisy: every number is the best of
--repeats runs.
"""

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ONE_THREAD = ("--xla_cpu_multi_thread_eigen=false "
              "intra_op_parallelism_threads=1")
TWO_DEVICES = "--xla_force_host_platform_device_count=2"

# name -> (registered model, hyperparameters). wavenet_feather: emu's
# WaveNet (NAM's standard 20 layers, kernel 3, dilations 1..512 twice) at
# 4 channels, 2,873 parameters, about NAM FEATHER's 3,025 (NAM's FEATHER
# has two layer arrays of different widths; emu's has one).
MODELS = {
    "lstm24": ("lstm", {"hidden_size": 24}),
    "lstm32": ("lstm", {"hidden_size": 32}),
    "gru32": ("gru", {"hidden_size": 32}),
    "wavenet_feather": ("wavenet", {"channels": 4}),
    "thesis_cnn_small": ("thesis_cnn", {"window": 64, "filters": 16,
                                        "kernel_size": 16, "groups": 2}),
    "lru": ("lru", {}),
}
TINY_MODELS = {
    "lstm32": ("lstm", {"hidden_size": 4}),
    "wavenet_feather": ("wavenet", {"channels": 2, "dilations": (1, 2)}),
}

# Reference numbers (shared/ANCHORS.md): NAM 0.13, PyTorch 2.13, 2-vCPU Zen 3.
NAM = {
    "lstm24": {"val1_esr_10min": 1.16e-4, "train_sps": 639e3,
               "offline_rtf": 18.6, "stream64_rtf": 7.2},
    "lstm32": {"val1_esr_10min": 5.98e-5, "train_sps": 518e3,
               "offline_rtf": 15.1, "stream64_rtf": 6.7},
    "wavenet_feather": {"val1_esr_10min": 2.56e-4, "train_sps": 284e3,
                        "offline_rtf": 19.8, "stream64_rtf": 0.5},
}
RTNEURAL_RTF = {"lstm24": 138, "lstm32": 99}

SAMPLE_RATE = 44100


def read_flagfile(path):
  """{'name': 'value'} of the `--name=value` lines of an absl flagfile."""
  flags = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line.startswith("--"):
        name, _, value = line[2:].partition("=")
        flags[name] = value
  return flags


def recipe(flagfile):
  """The training shapes and loss of a flagfile, as Config fields."""
  from emu import config as config_lib  # pylint: disable=import-outside-toplevel
  flags = read_flagfile(flagfile)
  default = config_lib.Config()
  fields = {"segment_length": int, "warmup": int, "batch_size": int,
            "tbptt": int}
  kwargs = {k: cast(flags.get(k, getattr(default, k)))
            for k, cast in fields.items()}
  kwargs["loss"] = config_lib.parse_weights(flags.get("loss", "esr=1"))
  return config_lib.Config(**kwargs)


# ------------------------------------------------------------- children


def pin_to_one_core():
  """Pins this process (and the threads it will start) to one core."""
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def build(name, spec, key_seed=0):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from emu import models  # pylint: disable=import-outside-toplevel
  family, kwargs = spec
  model = models.create(family, **kwargs)
  params = model.init(jax.random.PRNGKey(key_seed),
                      jnp.zeros((1, 256, 1), jnp.float32))
  count = sum(int(p.size) for p in jax.tree.leaves(params))
  return model, params, count


def train_throughput(model, cfg, window_mode, steps, repeats):
  """Samples/s through the compiled train_step (best of `repeats` runs)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from emu import losses, train  # pylint: disable=import-outside-toplevel
  if window_mode:
    cfg = cfg.replace(mode="window", window=model.window, batch_size=256,
                      loss={"esr": 1.0})
  mesh = train.data_mesh()
  tx = train.make_optimizer(cfg, steps_per_epoch=100)
  state = train.create_train_state(
      model, tx, jax.random.PRNGKey(0), jnp.zeros((1, 256, 1), jnp.float32))
  step = jax.jit(train.make_train_step(model, tx, losses.combined(cfg.loss),
                                       cfg), donate_argnums=0)
  rng = np.random.default_rng(0)
  if window_mode:
    x = rng.uniform(-0.5, 0.5, (cfg.batch_size, cfg.window, 1))
    t = rng.uniform(-0.5, 0.5, (cfg.batch_size, 1))
    samples = cfg.batch_size
  else:
    x = rng.uniform(-0.5, 0.5, (cfg.batch_size, cfg.segment_length, 1))
    t = rng.uniform(-0.5, 0.5, (cfg.batch_size, cfg.segment_length, 1))
    samples = cfg.batch_size * cfg.segment_length
  batch = train.shard_batch((x.astype(np.float32), t.astype(np.float32)),
                            mesh)
  state = train.replicate(state, mesh)
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  state, metrics = compiled(state, batch)  # first run: allocations
  jax.block_until_ready(metrics)
  best = float("inf")
  sync = train.sync_each_step(mesh)  # as train.fit runs it
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = compiled(state, batch)
      if sync:
        jax.block_until_ready(metrics)
    jax.block_until_ready(metrics)
    best = min(best, time.perf_counter() - start)
  return {"train_sps": steps * samples / best, "compile_s": compile_s,
          "devices": mesh.size, "batch_size": cfg.batch_size,
          "segment_length": 1 if window_mode else cfg.segment_length,
          "mode": cfg.mode}


def part_train(args, specs):
  import jax  # pylint: disable=import-outside-toplevel
  cfg = recipe(args.flagfile)
  if args.tiny:
    cfg = cfg.replace(segment_length=512, warmup=64, batch_size=4, tbptt=0)
  out = {}
  for name, spec in specs.items():
    model, _, _ = build(name, spec)
    out[name] = train_throughput(
        model, cfg, window_mode=spec[0] == "thesis_cnn",
        steps=2 if args.tiny else args.train_steps, repeats=args.repeats)
    out[name]["threads"] = "all" if "intra_op" not in os.environ.get(
        "XLA_FLAGS", "") else 1
    print(f"  train {name}: {out[name]['train_sps'] / 1e3:.0f}k samples/s "
          f"on {jax.device_count()} device(s)", file=sys.stderr)
  return out


def part_infer(args, specs):
  import numpy as np  # pylint: disable=import-outside-toplevel
  from emu import stream  # pylint: disable=import-outside-toplevel
  out = {}
  blocks = (1, 16) if args.tiny else (1, 16, 64, 256)
  for name, spec in specs.items():
    model, params, count = build(name, spec)
    row = {"family": spec[0], "hparams": spec[1], "params": count}
    seconds = 0.05 if args.tiny else 10.0
    row["offline"] = max(
        (stream.offline_rtf(model, params, seconds=seconds, repeats=1)
         for _ in range(args.repeats)), key=lambda r: r["rtf"])
    row["streaming"] = []
    for block in blocks:
      runs = [stream.measure(model, params, block,
                             seconds=0.05 if args.tiny else 2.0,
                             max_blocks=50 if args.tiny else 4000)
              for _ in range(args.repeats)]
      row["streaming"].append(max(runs, key=lambda r: r["rtf"]))
    lengths = (0.01, 0.1) if args.tiny else (1.0, 10.0, 100.0)
    if spec[0] == "thesis_cnn" and not args.tiny:
      lengths = (1.0, 10.0)  # 100 s is minutes: one CNN per output sample
    row["length"] = []
    for seconds in lengths:
      r = stream.offline_rtf(model, params, seconds=seconds,
                             repeats=1 if seconds >= 100 else args.repeats)
      row["length"].append({"seconds": seconds,
                            "ns_per_sample": r["us_per_sample"] * 1e3})
    per = [r["ns_per_sample"] for r in row["length"]]
    row["length_ratio"] = float(np.max(per) / np.min(per))
    out[name] = row
    print(f"  infer {name}: offline {row['offline']['rtf']:.1f}x", file=sys.stderr)
  return out


def ensemble_setup(args, specs):
  """What the ensemble parts share: the lstm.flags recipe for E LSTM-32
  members, the one-member and E-member train steps, their initial states
  and a batch (numpy)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from emu import losses, models, train  # pylint: disable=import-outside-toplevel
  family, kwargs = specs["lstm32"]
  size = args.ensemble
  cfg = recipe(args.flagfile).replace(model=family, model_kwargs=kwargs,
                                      ensemble=size)
  if args.tiny:
    cfg = cfg.replace(segment_length=512, warmup=64, batch_size=4, tbptt=0)
  member = models.build_model(cfg.replace(ensemble=1))
  full = models.build_model(cfg)
  tx = train.make_optimizer(cfg, steps_per_epoch=100)
  loss_fn = losses.combined(cfg.loss)
  example = jnp.zeros((1, 256, 1), jnp.float32)
  keys = jax.random.split(jax.random.PRNGKey(0), size)
  rng = np.random.default_rng(0)
  shape = (cfg.batch_size, cfg.segment_length, 1)
  return types.SimpleNamespace(
      cfg=cfg, size=size, member=member, full=full,
      one_step=train.make_train_step(member, tx, loss_fn, cfg),
      ensemble_step=train.make_ensemble_train_step(full, tx, loss_fn, cfg),
      one_init=lambda: train.create_train_state(member, tx, keys[0],
                                                example),
      stacked_init=lambda: jax.vmap(
          lambda k: train.create_train_state(member, tx, k, example))(keys),
      batch=tuple(rng.uniform(-0.5, 0.5, shape).astype(np.float32)
                  for _ in range(2)))


def part_ensemble(args, specs):
  """ms per train step: one member, E in one step, E vmapped; inference."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from emu import stream, train  # pylint: disable=import-outside-toplevel
  name = "lstm32"
  e = ensemble_setup(args, specs)
  size, member, full = e.size, e.member, e.full
  variants = {
      "one_member": (e.one_step, e.one_init),
      "ensemble": (e.ensemble_step, e.stacked_init),
      "vmapped": (jax.vmap(e.one_step, in_axes=(0, None)), e.stacked_init),
  }
  batch = tuple(jnp.asarray(b) for b in e.batch)
  compiled, states, compile_s = {}, {}, {}
  for key, (step, init) in variants.items():
    start = time.perf_counter()
    compiled[key] = jax.jit(step, donate_argnums=0).lower(
        init(), batch).compile()
    compile_s[key] = time.perf_counter() - start
    states[key], metrics = compiled[key](init(), batch)
    jax.block_until_ready(metrics)
  steps = 2 if args.tiny else args.train_steps
  wall = {k: float("inf") for k in variants}
  cpu = dict(wall)
  for _ in range(args.repeats):
    for key in variants:  # interleaved: the load changes between repeats
      start, start_cpu = time.perf_counter(), time.process_time()
      for _ in range(steps):
        states[key], metrics = compiled[key](states[key], batch)
      jax.block_until_ready(metrics)
      wall[key] = min(wall[key], (time.perf_counter() - start) / steps)
      cpu[key] = min(cpu[key], (time.process_time() - start_cpu) / steps)
  out = {"model": name, "members": size, "batch_size": e.cfg.batch_size,
         "segment_length": e.cfg.segment_length, "compile_s": compile_s,
         "train_ms": {k: v * 1e3 for k, v in wall.items()},
         "train_cpu_ms": {k: v * 1e3 for k, v in cpu.items()}}
  for times in (out["train_ms"], out["train_cpu_ms"]):
    times["separate"] = size * times["one_member"]
  out["ensemble_over_one"] = wall["ensemble"] / wall["one_member"]
  out["ensemble_over_one_cpu"] = cpu["ensemble"] / cpu["one_member"]
  params = {"member": (member, states["one_member"].params),
            "ensemble": (full, train.ensemble_params(
                states["ensemble"].params))}
  out["offline_rtf"], out["stream64_rtf"] = {}, {}
  for key, (model, p) in params.items():
    out["offline_rtf"][key] = max(
        stream.offline_rtf(model, p, seconds=0.05 if args.tiny else 10.0,
                           repeats=1)["rtf"] for _ in range(args.repeats))
    out["stream64_rtf"][key] = max(
        stream.measure(model, p, 64, seconds=0.05 if args.tiny else 2.0,
                       max_blocks=50 if args.tiny else 2000)["rtf"]
        for _ in range(args.repeats))
  print(f"  ensemble of {size}: {out['ensemble_over_one']:.2f}x one member "
        f"per train step", file=sys.stderr)
  return out


def part_ensemble_devices(args, specs):
  """ms per train step on 1 and on 2 devices (a child with 2 forced CPU
  devices): one member (2 devices: the batch split), E members (2 devices:
  the members split, as `train.fit` runs an ensemble whose size the device
  count divides)."""
  import jax  # pylint: disable=import-outside-toplevel
  from emu import train  # pylint: disable=import-outside-toplevel
  e = ensemble_setup(args, specs)
  size, batch = e.size, e.batch
  devices = jax.devices()
  if len(devices) < 2:
    raise RuntimeError("part ensemble_devices needs 2 devices")
  variants = {  # name: (step, init, devices, members split)
      "one_member_1dev": (e.one_step, e.one_init, 1, False),
      "one_member_2dev": (e.one_step, e.one_init, 2, False),
      "ensemble_1dev": (e.ensemble_step, e.stacked_init, 1, False),
      "ensemble_2dev_members_split": (e.ensemble_step, e.stacked_init, 2,
                                      True),
  }
  running = {}
  for key, (step, init, n, split_members) in variants.items():
    mesh = train.data_mesh(devices[:n])
    if split_members:
      state = train.shard_members(init(), mesh)
    else:
      state = train.replicate(init(), mesh)
    placed = train.shard_batch(batch, mesh, split=not split_members)
    fn = jax.jit(step, donate_argnums=0)
    state, metrics = fn(state, placed)
    jax.block_until_ready(metrics)
    running[key] = [fn, state, placed,
                    train.sync_each_step(mesh, split_members)]
  steps = 2 if args.tiny else args.train_steps
  wall = {k: float("inf") for k in variants}
  for _ in range(args.repeats):
    for key, item in running.items():  # interleaved
      fn, state, placed, sync = item
      start = time.perf_counter()
      for _ in range(steps):
        state, metrics = fn(state, placed)
        if sync:  # as train.fit runs it
          jax.block_until_ready(metrics)
      jax.block_until_ready(metrics)
      item[1] = state
      wall[key] = min(wall[key], (time.perf_counter() - start) / steps)
  out = {"model": "lstm32", "members": size,
         "train_ms": {k: v * 1e3 for k, v in wall.items()}}
  ms = out["train_ms"]
  out["split_over_one_1dev"] = (ms["ensemble_2dev_members_split"]
                                / ms["one_member_1dev"])
  out["split_over_one_2dev"] = (ms["ensemble_2dev_members_split"]
                                / ms["one_member_2dev"])
  print(f"  ensemble of {size}, members split over 2 devices: "
        f"{out['split_over_one_1dev']:.2f}x one member on 1 device, "
        f"{out['split_over_one_2dev']:.2f}x one member on 2", file=sys.stderr)
  return out


def run_child(part, args, env_flags, pin):
  """Runs this script for one part in a fresh process; returns its JSON."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if env_flags:
    env["XLA_FLAGS"] = env_flags
  else:
    env.pop("XLA_FLAGS", None)
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
    path = f.name
  argv = [sys.executable, os.path.abspath(__file__), f"--part={part}",
          f"--part_out={path}", f"--flagfile={args.flagfile}",
          f"--repeats={args.repeats}", f"--train_steps={args.train_steps}",
          f"--models={','.join(args.models)}", f"--ensemble={args.ensemble}"]
  if args.tiny:
    argv.append("--tiny")
  if pin:
    argv.append("--pin")
  result = subprocess.run(argv, env=env, cwd=ROOT, check=False)
  if result.returncode:
    raise RuntimeError(f"bench part {part!r} failed ({result.returncode})")
  with open(path) as f:
    data = json.load(f)
  os.remove(path)
  return data


def quality(args, name):
  """Seconds of training to val1 ESR thresholds, from a real run."""
  family, kwargs = MODELS[name]
  workdir = tempfile.mkdtemp(prefix=f"emu_bench_{name}_")
  argv = [sys.executable, os.path.join(ROOT, "experiments", "run.py"),
          f"--flagfile={args.flagfile}", f"--workdir={workdir}",
          f"--model={family}", "--stream_blocks=64"]
  argv += [f"--{k}={v}" for k, v in kwargs.items()]
  argv += args.quality_flags
  start = time.perf_counter()
  result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                          check=False)
  wall = time.perf_counter() - start
  if result.returncode:
    raise RuntimeError(f"quality run failed:\n{result.stderr[-3000:]}")
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  out = {"workdir": workdir, "flags": argv[2:], "epochs": len(rows),
         "train_s": rows[-1]["elapsed_s"], "run_wall_s": wall,
         "best_val1_esr": min(r["val1_esr"] for r in rows),
         "final_val1_esr": rows[-1]["val1_esr"]}
  for threshold in (1e-3, 1e-4, 6e-5, 2e-5):
    hit = next((r for r in rows if r["val1_esr"] < threshold), None)
    out[f"s_to_{threshold:.0e}"] = hit["elapsed_s"] if hit else None
  with open(os.path.join(workdir, "report.json")) as f:
    report = json.load(f)
  out["report_val1_esr"] = report["val1"]["esr"]
  if "val2" in report:
    out["report_val2_esr"] = report["val2"]["esr"]
  return out


def ensemble_runs(args):
  """Whole training runs: one member against E members, as run.py runs them.

  `experiments/run.py` on the flagfile for --ensemble_runs epochs (no time
  budget, no early stopping), each in its own process with JAX's default
  devices unless --cpu_devices says otherwise: one member (1 device), one
  member with the batch split over 2 CPU devices, E members (run.py's
  default: the members split over min(E, cores) CPU devices) and E members
  on 1 device. train_s is the training time run.py records (steps and the
  per-epoch validation; evaluation and compilation excluded). The variants
  take turns in every repeat; the best of --runs_repeats is kept.
  """
  size, epochs = args.ensemble, args.ensemble_runs
  variants = {"one_member": [], "one_member_2dev": ["--cpu_devices=2"],
              "ensemble": [f"--ensemble={size}"],
              "ensemble_1dev": [f"--ensemble={size}", "--cpu_devices=1"]}
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  out = {"members": size, "epochs": epochs, "train_s": {}, "runs": {}}
  for _ in range(args.runs_repeats):
    for key, extra in variants.items():
      workdir = tempfile.mkdtemp(prefix=f"emu_bench_{key}_")
      argv = [sys.executable, os.path.join(ROOT, "experiments", "run.py"),
              f"--flagfile={args.flagfile}", f"--workdir={workdir}",
              f"--max_epochs={epochs}", "--time_budget_s=0",
              f"--patience={epochs + 1}", "--stream_blocks=64", *extra]
      result = subprocess.run(argv, cwd=ROOT, capture_output=True,
                              text=True, env=env, check=False)
      if result.returncode:
        raise RuntimeError(f"run {key} failed:\n{result.stderr[-3000:]}")
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
      with open(os.path.join(workdir, "report.json")) as f:
        report = json.load(f)
      shutil.rmtree(workdir, ignore_errors=True)
      train_s = rows[-1]["elapsed_s"]
      out["runs"].setdefault(key, []).append(
          {"train_s": train_s, "devices": report["devices"],
           "parallel": report["parallel"],
           "val1_esr": report["val1"]["esr"]})
      out["train_s"][key] = min(out["train_s"].get(key, math.inf), train_s)
      print(f"  {key}: {train_s:.1f} s for {epochs} epochs on "
            f"{report['devices']} device(s)", file=sys.stderr)
  t = out["train_s"]
  out["ensemble_over_one"] = t["ensemble"] / t["one_member"]
  out["ensemble_over_one_2dev"] = t["ensemble"] / t["one_member_2dev"]
  out["ensemble_over_best_one"] = t["ensemble"] / min(
      t["one_member"], t["one_member_2dev"])
  return out


# ------------------------------------------------------------- the table


def fmt(value, spec):
  return "-" if value is None else format(value, spec)


def ensemble_line(ens):
  ms, cpu = ens["train_ms"], ens["train_cpu_ms"]
  size = ens["members"]
  return (
      f"Ensemble of {size} {ens['model']}, ms per train step (wall / CPU): "
      f"one member {ms['one_member']:.1f} / {cpu['one_member']:.1f}; "
      f"{size} in one step {ms['ensemble']:.1f} / {cpu['ensemble']:.1f} "
      f"({ens['ensemble_over_one']:.2f}x / "
      f"{ens['ensemble_over_one_cpu']:.2f}x one member); {size} vmapped "
      f"{ms['vmapped']:.1f} / {cpu['vmapped']:.1f}; {size} separate runs "
      f"{ms['separate']:.1f} / {cpu['separate']:.1f}. Offline RTF "
      f"{ens['offline_rtf']['ensemble']:.1f} (one member "
      f"{ens['offline_rtf']['member']:.1f}), 64-sample streaming RTF "
      f"{ens['stream64_rtf']['ensemble']:.1f} (one member "
      f"{ens['stream64_rtf']['member']:.1f})")


def ensemble_runs_line(runs):
  t = runs["train_s"]
  size = runs["members"]
  return (
      f"Whole runs of {runs['epochs']} epochs (run.py, training seconds, "
      f"best of {len(runs['runs']['one_member'])}): one member "
      f"{t['one_member']:.1f} (1 device), {t['one_member_2dev']:.1f} (batch "
      f"split over 2); {size} members {t['ensemble']:.1f} (run.py's default "
      f"devices), {t['ensemble_1dev']:.1f} (1 device); the ensemble costs "
      f"{runs['ensemble_over_one']:.2f}x one member on 1 device, "
      f"{runs['ensemble_over_best_one']:.2f}x the faster one-member run")


def ensemble_devices_line(ens):
  ms = ens["train_ms"]
  size = ens["members"]
  return (
      f"Ensemble of {size} {ens['model']} on 2 forced CPU devices, ms per "
      f"train step (wall): one member on 1 device "
      f"{ms['one_member_1dev']:.1f}, on 2 (batch split) "
      f"{ms['one_member_2dev']:.1f}; {size} members on 1 device "
      f"{ms['ensemble_1dev']:.1f}, split over 2 devices "
      f"{ms['ensemble_2dev_members_split']:.1f} "
      f"({ens['split_over_one_1dev']:.2f}x one member on 1 device, "
      f"{ens['split_over_one_2dev']:.2f}x one member on 2)")


def table(results):
  blocks = [r["block_size"] for r in
            next(iter(results["infer"].values()))["streaming"]]
  lines = []
  head = (["model", "params", "train ksamples/s", "compile s",
           "offline RTF (1 thr)"]
          + [f"stream RTF {b}" for b in blocks]
          + [f"block {b} ms (p99)" for b in blocks]
          + ["ns/sample 1 s, 10 s, 100 s"])
  lines.append("| " + " | ".join(head) + " |")
  lines.append("|" + "---|" * len(head))
  for name, inf in results["infer"].items():
    tr = results["train"].get(name, {})
    cells = [name, f"{inf['params']:,}",
             fmt(tr.get("train_sps", None) and tr["train_sps"] / 1e3, ".0f"),
             fmt(tr.get("compile_s"), ".1f"),
             f"{inf['offline']['rtf']:.1f}"]
    cells += [f"{s['rtf']:.1f}" for s in inf["streaming"]]
    cells += [f"{s['block_ms_mean']:.3f} ({s['block_ms_p99']:.3f})"
              for s in inf["streaming"]]
    cells.append(", ".join(f"{r['ns_per_sample']:.0f}"
                           for r in inf["length"]))
    lines.append("| " + " | ".join(cells) + " |")
  if "devices" in results:
    lines.append("")
    lines.append("Training LSTM-32, samples/s by device count: " + ", ".join(
        f"{k}: {v['train_sps'] / 1e3:.0f}k"
        for k, v in results["devices"].items()))
  if "ensemble" in results:
    lines.append(ensemble_line(results["ensemble"]))
  if "ensemble_devices" in results:
    lines.append(ensemble_devices_line(results["ensemble_devices"]))
  if "ensemble_runs" in results:
    lines.append(ensemble_runs_line(results["ensemble_runs"]))
  if "train_1thread" in results:
    lines.append("Training LSTM-32 on one thread: " + ", ".join(
        f"{v['train_sps'] / 1e3:.0f}k samples/s"
        for v in results["train_1thread"].values()))
  for name, q in results.get("quality", {}).items():
    lines.append("")
    lines.append(
        f"Time to quality, {name} ({' '.join(q['flags'][:1])}): "
        + ", ".join(f"ESR<{t}: {fmt(q['s_to_' + t], '.0f')} s"
                    for t in ("1e-03", "1e-04", "6e-05", "2e-05"))
        + f"; best val1 ESR {q['best_val1_esr']:.2e} after "
        f"{q['epochs']} epochs, {q['train_s']:.0f} s")
  lines.append("")
  lines.append("NAM 0.13 (ANCHORS.md): " + "; ".join(
      f"{k} train {v['train_sps'] / 1e3:.0f}k/s, offline {v['offline_rtf']}x,"
      f" stream64 {v['stream64_rtf']}x, 10-min ESR {v['val1_esr_10min']:.2e}"
      for k, v in NAM.items()))
  return "\n".join(lines)


def machine():
  info = {"platform": platform.platform(), "cpus": os.cpu_count(),
          "python": platform.python_version()}
  try:
    with open("/proc/cpuinfo") as f:
      info["cpu"] = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    info["load_before"] = os.getloadavg()
  except (OSError, StopIteration):
    pass
  return info


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", help="write the results as JSON here")
  parser.add_argument("--tiny", action="store_true",
                      help="tiny sizes and lengths: checks the script runs")
  parser.add_argument("--quality", action="store_true",
                      help="also train to measure time to quality (minutes)")
  parser.add_argument("--quality_models", default="lstm32",
                      help="comma-separated names (lstm/gru) for --quality")
  parser.add_argument("--quality_flags", nargs="*", default=[],
                      help="extra run.py flags for --quality")
  parser.add_argument("--flagfile",
                      default=os.path.join(ROOT, "experiments", "lstm.flags"))
  parser.add_argument("--models", default=None,
                      help="comma-separated subset of the models")
  parser.add_argument("--repeats", type=int, default=3,
                      help="timed runs per number; the best is kept")
  parser.add_argument("--train_steps", type=int, default=10,
                      help="train steps per timed run")
  parser.add_argument("--ensemble", type=int, default=4,
                      help="members for the ensemble part (LSTM-32)")
  parser.add_argument("--ensemble_only", action="store_true",
                      help="run only the ensemble part (about a minute)")
  parser.add_argument("--ensemble_runs", type=int, default=0,
                      help="also time whole run.py runs of this many epochs:"
                      " one member against the ensemble (~4 min at 30)")
  parser.add_argument("--runs_repeats", type=int, default=2,
                      help="repeats of --ensemble_runs (the best is kept)")
  parser.add_argument("--part", help=argparse.SUPPRESS)
  parser.add_argument("--part_out", help=argparse.SUPPRESS)
  parser.add_argument("--pin", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()

  available = TINY_MODELS if args.tiny else MODELS
  if args.models:
    args.models = args.models.split(",")
    unknown = sorted(set(args.models) - set(available))
    if unknown:
      parser.error(f"unknown model(s) {', '.join(unknown)}; choose from "
                   f"{', '.join(available)}")
  else:
    args.models = list(available)

  if args.part:  # a child: one part, JSON to --part_out
    if args.pin:
      pin_to_one_core()  # before jax starts its threads
    if args.part == "infer":
      # Inline dispatch, as a real-time process runs (emu.stream.realtime);
      # before the first JAX computation of this child.
      from emu import stream  # pylint: disable=import-outside-toplevel
      stream.realtime()
    specs = {n: available[n] for n in args.models}
    if "lru" in specs:
      try:
        build("lru", specs["lru"])
      except Exception as e:  # pylint: disable=broad-except
        print(f"  lru skipped: {type(e).__name__}: {e}", file=sys.stderr)
        del specs["lru"]
    part = {"train": part_train, "infer": part_infer,
            "ensemble": part_ensemble,
            "ensemble_devices": part_ensemble_devices}[args.part.split(":")[0]]
    with open(args.part_out, "w") as f:
      json.dump(part(args, specs), f)
    return 0

  results = {"machine": machine(), "flagfile": args.flagfile,
             "command": " ".join(sys.argv), "nam": NAM,
             "rtneural_rtf": RTNEURAL_RTF}
  if args.ensemble_only:
    sub = argparse.Namespace(**{**vars(args), "models": ["lstm32"]})
    results["ensemble"] = run_child("ensemble", sub, None, pin=False)
    results["ensemble_devices"] = run_child("ensemble_devices", sub,
                                            TWO_DEVICES, pin=False)
    if args.ensemble_runs:
      results["ensemble_runs"] = ensemble_runs(args)
    results["machine"]["load_after"] = os.getloadavg()
    print(ensemble_line(results["ensemble"]))
    print(ensemble_devices_line(results["ensemble_devices"]))
    if args.ensemble_runs:
      print(ensemble_runs_line(results["ensemble_runs"]))
    write_json(args.out, results)
    return 0
  print("inference, one thread, pinned ...", file=sys.stderr)
  results["infer"] = run_child("infer", args, ONE_THREAD, pin=True)
  results["infer_dispatch"] = "inline (emu.stream.realtime)"
  print("training, all threads, one device ...", file=sys.stderr)
  results["train"] = run_child("train", args, None, pin=False)
  lstm = "lstm32"
  if lstm in args.models:
    sub = argparse.Namespace(**{**vars(args), "models": [lstm]})
    print("training LSTM-32 on one thread and on 2 devices ...",
          file=sys.stderr)
    results["train_1thread"] = run_child("train", sub, ONE_THREAD, pin=True)
    results["devices"] = {
        "1": results["train"][lstm],
        "2": run_child("train", sub, TWO_DEVICES, pin=False)[lstm]}
    print(f"ensemble of {args.ensemble} LSTM-32, all threads ...",
          file=sys.stderr)
    results["ensemble"] = run_child("ensemble", sub, None, pin=False)
    results["ensemble_devices"] = run_child("ensemble_devices", sub,
                                            TWO_DEVICES, pin=False)
  if args.ensemble_runs and not args.tiny:
    print(f"whole runs, one member and {args.ensemble} members ...",
          file=sys.stderr)
    results["ensemble_runs"] = ensemble_runs(args)
  if args.quality and not args.tiny:
    results["quality"] = {}
    for name in args.quality_models.split(","):
      print(f"time to quality, {name} (minutes) ...", file=sys.stderr)
      results["quality"][name] = quality(args, name)
  results["machine"]["load_after"] = os.getloadavg()
  print(table(results))
  write_json(args.out, results)
  return 0


def write_json(path, results):
  """results -> path (no-op when no --out was given)."""
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  sys.exit(main())
