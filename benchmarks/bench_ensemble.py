"""The ensemble parts: E LSTM-32 members per train step, 1 and 2 devices.

`part_ensemble` (all threads, one device): ms per train step of one member,
of E members in one step (`train.make_ensemble_train_step`, what
`--ensemble=E` runs) and of the same E by `jax.vmap` of the one-member step
(the way before it); wall and CPU time; offline and 64-sample streaming
real-time factors of the ensemble against one member.
`part_ensemble_devices` (a child with 2 forced CPU devices): one member on
1 device and on 2 (the batch split), E members on 1 device and split over 2
(what `train.fit` does when the device count divides E).
"""

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import bench_options
from benchmarks import bench_timing
from emu import losses
from emu import models
from emu import train


def ensemble_setup(opts, specs):
  """What the ensemble parts share: the recipe for E LSTM-32 members, the
  one-member and E-member train steps, their initial states and a batch
  (numpy)."""
  family, kwargs = specs[bench_options.LSTM]
  size = opts.ensemble
  cfg = opts.config().replace(model=family, model_kwargs=kwargs,
                              ensemble=size)
  member = models.build_model(cfg.replace(ensemble=1))
  full = models.build_model(cfg)
  tx = train.make_optimizer(cfg, steps_per_epoch=100)
  loss_fn = losses.combined(cfg.loss)
  example = bench_timing.example()
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


def inference_rtf(opts, e, params):
  """Offline and 64-sample streaming RTFs of one member and the ensemble
  (params: their trained parameters)."""
  offline, stream64 = {}, {}
  for key, model in (("member", e.member), ("ensemble", e.full)):
    offline[key] = bench_timing.best_offline(
        model, params[key], opts.offline_seconds, opts.repeats)["rtf"]
    stream64[key] = bench_timing.best_stream(
        model, params[key], 64, opts.stream_seconds, opts.max_blocks(2000),
        opts.repeats)["rtf"]
  return offline, stream64


def part_ensemble(opts, specs):
  """ms per train step: one member, E in one step, E vmapped; inference."""
  e = ensemble_setup(opts, specs)
  variants = {
      "one_member": (e.one_step, e.one_init),
      "ensemble": (e.ensemble_step, e.stacked_init),
      "vmapped": (jax.vmap(e.one_step, in_axes=(0, None)), e.stacked_init),
  }
  batch = tuple(jnp.asarray(b) for b in e.batch)
  timed, compile_s = {}, {}
  for key, (step, init) in variants.items():
    state = init()
    compiled, compile_s[key] = bench_timing.compile_step(step, state, batch)
    timed[key] = bench_timing.Timed(
        compiled, bench_timing.first_run(compiled, state, batch), batch)
  wall, cpu = bench_timing.best_step_times(timed, opts.steps, opts.repeats)
  out = {"model": bench_options.LSTM, "members": e.size,
         "batch_size": e.cfg.batch_size,
         "segment_length": e.cfg.segment_length, "compile_s": compile_s,
         "train_ms": {k: v * 1e3 for k, v in wall.items()},
         "train_cpu_ms": {k: v * 1e3 for k, v in cpu.items()}}
  for times in (out["train_ms"], out["train_cpu_ms"]):
    times["separate"] = e.size * times["one_member"]
  out["ensemble_over_one"] = wall["ensemble"] / wall["one_member"]
  out["ensemble_over_one_cpu"] = cpu["ensemble"] / cpu["one_member"]
  out["offline_rtf"], out["stream64_rtf"] = inference_rtf(opts, e, {
      "member": timed["one_member"].state.params,
      "ensemble": train.ensemble_params(timed["ensemble"].state.params)})
  print(f"  ensemble of {e.size}: {out['ensemble_over_one']:.2f}x one "
        f"member per train step", file=sys.stderr)
  return out


def placed_step(step, init, mesh, split_members, batch):
  """A Timed step on `mesh`: the state replicated (or its members split
  over the devices), the batch split (or, members split, whole on each)."""
  if split_members:
    state = train.shard_members(init(), mesh)
  else:
    state = train.replicate(init(), mesh)
  placed = train.shard_batch(batch, mesh, split=not split_members)
  fn = jax.jit(step, donate_argnums=0)
  return bench_timing.Timed(fn, bench_timing.first_run(fn, state, placed),
                            placed,
                            sync=train.sync_each_step(mesh, split_members))


def part_ensemble_devices(opts, specs):
  """ms per train step on 1 and on 2 devices (a child with 2 forced CPU
  devices): one member (2 devices: the batch split), E members (2 devices:
  the members split, as `train.fit` runs an ensemble whose size the device
  count divides)."""
  e = ensemble_setup(opts, specs)
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
  timed = {key: placed_step(step, init, train.data_mesh(devices[:n]), split,
                            e.batch)
           for key, (step, init, n, split) in variants.items()}
  wall, _ = bench_timing.best_step_times(timed, opts.steps, opts.repeats)
  out = {"model": bench_options.LSTM, "members": e.size,
         "train_ms": {k: v * 1e3 for k, v in wall.items()}}
  ms = out["train_ms"]
  out["split_over_one_1dev"] = (ms["ensemble_2dev_members_split"]
                                / ms["one_member_1dev"])
  out["split_over_one_2dev"] = (ms["ensemble_2dev_members_split"]
                                / ms["one_member_2dev"])
  print(f"  ensemble of {e.size}, members split over 2 devices: "
        f"{out['split_over_one_1dev']:.2f}x one member on 1 device, "
        f"{out['split_over_one_2dev']:.2f}x one member on 2", file=sys.stderr)
  return out
