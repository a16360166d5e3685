"""Training over 2 forced CPU devices equals one device: data-parallel (the
batch split) and, for an ensemble, members split over the devices. Two
processes on 127.0.0.1 (jax.distributed, gloo), one CPU device each, equal
one process with 2 devices, and only process 0 writes the run folder."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import json, sys, jax
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from emu import train
from test_train import tiny_config, tiny_dataset
ensemble = int(sys.argv[2])
result = train.fit(tiny_config(max_epochs=2, batch_size=4, ensemble=ensemble),
                   sys.argv[1], dataset=tiny_dataset())
members = [r.get("val1_esr_members") for r in result.history]
leaves = jax.tree.leaves(result.params)
print(json.dumps({{"devices": jax.device_count(), "parallel": result.parallel,
                  "loss": [r["train_loss"] for r in result.history],
                  "val": [r["val1_esr"] for r in result.history],
                  "members": members,
                  "param_sum": float(sum(abs(x).sum() for x in leaves))}}))
"""


LOAD = """
import json, sys, jax
sys.path.insert(0, {root!r})
from emu import workdir
from emu.train import restore
model, params, cfg = restore.load_params(sys.argv[1])
print(json.dumps({{"devices": jax.device_count(), "param_sum": float(
    sum(abs(x).sum() for x in jax.tree.leaves(params)))}}))
"""


def load_on(devices, workdir):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  result = subprocess.run(
      [sys.executable, "-c", LOAD.format(root=ROOT), str(workdir)],
      capture_output=True, text=True, timeout=300, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def fit_on(devices, workdir, ensemble=1):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  script = SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
  result = subprocess.run([sys.executable, "-c", script, str(workdir),
                           str(ensemble)],
                          capture_output=True, text=True, timeout=300,
                          env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
  """The tiny run in one process with 2 forced CPU devices."""
  return fit_on(2, tmp_path_factory.mktemp("two_devices"))


def test_two_devices_give_the_single_device_loss_curve(tmp_path, two_devices):
  one = fit_on(1, tmp_path / "one")
  two = two_devices
  assert one["devices"] == 1 and two["devices"] == 2
  np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
  np.testing.assert_allclose(two["val"], one["val"], rtol=1e-4)


def test_ensemble_with_members_split_over_two_devices_equals_one_device(
    tmp_path):
  # Given an ensemble of 2 (one member per device when there are two),
  one = fit_on(1, tmp_path / "one", ensemble=2)
  two = fit_on(2, tmp_path / "two", ensemble=2)
  assert one["devices"] == 1 and two["devices"] == 2
  # when two devices split the members,
  assert two["parallel"] == "members" and one["parallel"] == "data"
  # then every member's curve and the final parameters match one device.
  np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
  np.testing.assert_allclose(two["members"], one["members"], rtol=1e-4)
  np.testing.assert_allclose(two["val"], one["val"], rtol=1e-4)
  np.testing.assert_allclose(two["param_sum"], one["param_sum"], rtol=1e-4)
  # and the members differ from each other (two runs, not one twice).
  assert abs(one["members"][-1][0] - one["members"][-1][1]) > 1e-6 * max(
      one["members"][-1])
  # And the checkpoint written with the members split loads in a
  # one-device process (orbax refuses a different topology unless told).
  loaded = load_on(1, tmp_path / "two")
  assert loaded["devices"] == 1
  np.testing.assert_allclose(loaded["param_sum"], two["param_sum"],
                             rtol=1e-6)


MANY_STEPS = """
import json, sys, jax
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
from emu import train
from test_train import tiny_config, tiny_dataset
cfg = tiny_config(max_epochs=1, batch_size=4, segment_length=256, warmup=32,
                  model_kwargs={{"hidden_size": 32}})
dataset = tiny_dataset(seconds=4.0)
result = train.fit(cfg, sys.argv[1], dataset=dataset)
print(json.dumps({{"devices": jax.device_count(), "parallel": result.parallel,
                  "steps": train.steps_per_epoch(cfg, len(dataset.train.input)),
                  "loss": result.history[-1]["train_loss"]}}))
"""


def test_a_long_data_parallel_epoch_does_not_hang(tmp_path):
  # Given an epoch of 172 steps with the batch split over 2 CPU devices
  # (without a wait per step, XLA:CPU's all-reduce hung there within ~100
  # queued steps and aborted after its 40 s rendezvous timeout),
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  script = MANY_STEPS.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
  result = subprocess.run([sys.executable, "-c", script, str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env=env)
  # then the epoch finishes with a finite loss.
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["devices"] == 2 and out["parallel"] == "data"
  assert out["steps"] >= 150 and np.isfinite(out["loss"])


# ------------------------------------------------- several processes (hosts)


def test_with_one_process_the_multi_process_helpers_are_the_plain_calls():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from emu import workdir  # pylint: disable=g-import-not-at-top
  from emu.train import parallel  # pylint: disable=g-import-not-at-top
  tree = {"a": jnp.ones(3), "b": np.zeros(2), "c": 1.5}
  assert parallel.host_local(tree)["a"] is tree["a"]
  assert parallel.same_as_process_zero(tree) is tree
  assert parallel.on_process_zero(lambda: tree) is tree
  with pytest.raises(ZeroDivisionError):
    parallel.on_process_zero(lambda: 1 / 0)
  parallel.end_if_failed_alone(ValueError("a lone process's error"))
  assert workdir.writes_here() and parallel.is_process_zero()


DISTRIBUTED = """
import json, os, sys, traceback
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
sys.path.insert(0, {root!r})
sys.path.insert(0, {tests!r})
address, process_id, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
jax.distributed.initialize(address, 2, process_id, initialization_timeout=120,
                           heartbeat_timeout_seconds=60)
try:
  from emu import train
  from test_train import tiny_config, tiny_dataset
  cfg = tiny_config(max_epochs=2, batch_size=4)
  first = train.fit(cfg, workdir, dataset=tiny_dataset(), stop_after_epochs=1)
  result = train.fit(cfg, workdir, dataset=tiny_dataset())  # resumes
  leaves = jax.tree.leaves(result.params)
  print(json.dumps({{
      "processes": jax.process_count(), "process": jax.process_index(),
      "devices": jax.device_count(), "local": jax.local_device_count(),
      "first": [r["train_loss"] for r in first.history],
      "loss": [r["train_loss"] for r in result.history],
      "val": [r["val1_esr"] for r in result.history],
      "stop": result.stop_reason,
      "param_sum": float(sum(abs(x).sum() for x in leaves))}}))
except BaseException:
  traceback.print_exc()
  sys.stderr.flush()
  os._exit(1)  # gone, it fails the other's collectives at once
"""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_together(commands, cwds, timeout=400):
  """Runs the commands as processes at once, each in its folder with one CPU
  device; [(returncode, stdout, stderr)], all killed past `timeout` s."""
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  procs = []
  for i, (command, cwd) in enumerate(zip(commands, cwds)):
    os.makedirs(cwd, exist_ok=True)
    out = open(os.path.join(str(cwd), os.pardir, f"stdout{i}.txt"), "w+")
    err = open(os.path.join(str(cwd), os.pardir, f"stderr{i}.txt"), "w+")
    procs.append((subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                   stderr=err), out, err))
  deadline = time.monotonic() + timeout
  try:
    for proc, _, _ in procs:
      proc.wait(timeout=max(deadline - time.monotonic(), 1))
  except subprocess.TimeoutExpired:
    pass
  finally:
    for proc, _, _ in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  results = []
  for proc, out, err in procs:
    out.seek(0)
    err.seek(0)
    results.append((proc.returncode, out.read(), err.read()))
    out.close()
    err.close()
  return results


def check_ran(results):
  for i, (code, _, err) in enumerate(results):
    assert code == 0, f"process {i} ended with {code}:\n{err[-4000:]}"


def max_relative_difference(a, b) -> float:
  a, b = np.asarray(a), np.asarray(b)
  return float(np.max(np.abs(a - b) / np.abs(b)))


def test_two_processes_train_like_one_process_with_two_devices(
    tmp_path, two_devices):
  # Given two processes on 127.0.0.1, one CPU device each, training the tiny
  # config with its batch split over both (interrupted after epoch 1, then
  # resumed from process 0's checkpoint), process 1 given its own workdir,
  address = f"127.0.0.1:{free_port()}"
  script = DISTRIBUTED.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
  workdirs = [tmp_path / "workdir0", tmp_path / "workdir1"]
  cwds = [tmp_path / "p0" / "cwd", tmp_path / "p1" / "cwd"]
  results = run_together(
      [[sys.executable, "-c", script, address, str(i), str(workdirs[i])]
       for i in range(2)], cwds)
  check_ran(results)
  outs = [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results]
  # then each saw 2 devices of which 1 its own,
  for i, out in enumerate(outs):
    assert (out["processes"], out["process"]) == (2, i)
    assert (out["devices"], out["local"]) == (2, 1)
    assert out["stop"] == "max_epochs" and len(out["first"]) == 1
  # both hold the same curve and parameters,
  assert outs[1] == dict(outs[0], process=1)
  # and it is the one process's with 2 devices (interrupted or not).
  two = two_devices
  difference = max(max_relative_difference(outs[0]["loss"], two["loss"]),
                   max_relative_difference(outs[0]["val"], two["val"]))
  print(f"2 processes against 1 process with 2 devices: max relative "
        f"difference of the loss and val1 curves {difference:.3g}")
  np.testing.assert_allclose(outs[0]["loss"], two["loss"], rtol=1e-4)
  np.testing.assert_allclose(outs[0]["val"], two["val"], rtol=1e-4)
  np.testing.assert_allclose(outs[0]["param_sum"], two["param_sum"],
                             rtol=1e-4)
  # Process 0 wrote the run folder, process 1 nothing, not even a folder;
  rows = [json.loads(line) for line in
          (workdirs[0] / "metrics.jsonl").read_text().splitlines()]
  assert [r["train_loss"] for r in rows] == outs[0]["loss"]
  assert {"config.json", "dataset.json", "checkpoints"} <= set(
      os.listdir(workdirs[0]))
  assert sorted(os.listdir(workdirs[0] / "checkpoints")) == ["best", "last"]
  assert not workdirs[1].exists() and os.listdir(cwds[1]) == []
  # and its checkpoint loads in one process with one device.
  loaded = load_on(1, workdirs[0])
  np.testing.assert_allclose(loaded["param_sum"], outs[0]["param_sum"],
                             rtol=1e-6)


RUN_PY = os.path.join(ROOT, "experiments", "run.py")


def test_run_py_over_two_processes_leaves_one_run_folder_by_process_0(
    tmp_path):
  # Given experiments/run.py started as process 0 and 1 of 2 on 127.0.0.1,
  # each with its own --workdir and working folder,
  address = f"127.0.0.1:{free_port()}"
  workdirs = [tmp_path / "run0", tmp_path / "run1"]
  cwds = [tmp_path / "p0" / "cwd", tmp_path / "p1" / "cwd"]
  results = run_together(
      [[sys.executable, RUN_PY,
        "--flagfile=" + os.path.join(ROOT, "experiments", "tiny.flags"),
        "--max_epochs=1", "--stream_blocks=", f"--workdir={workdirs[i]}",
        f"--coordinator_address={address}", "--num_processes=2",
        f"--process_id={i}"] for i in range(2)], cwds)
  check_ran(results)
  # then process 0 trained over both processes' devices and wrote every
  # file of the run,
  report = json.loads((workdirs[0] / "report.json").read_text())
  assert (report["processes"], report["devices"]) == (2, 2)
  assert report["epochs"] == 1 and report["parallel"] == "data"
  for name in ("config.json", "flags.txt", "dataset.json", "metrics.jsonl",
               "checkpoints", "report.html", "listening_test.html", "audio",
               "plots"):
    assert (workdirs[0] / name).exists(), name
  assert "val1 ESR" in results[0][1]
  # and process 1 trained along and wrote nothing at all.
  assert "process 1 of 2: trained in lockstep" in results[1][1]
  assert "epoch 1/1" in results[1][2]
  assert not workdirs[1].exists() and os.listdir(cwds[1]) == []


@pytest.mark.parametrize("flags, message", [
    (["--num_processes=2", "--process_id=0"],
     "--num_processes needs --coordinator_address"),
    (["--coordinator_address=127.0.0.1:1", "--num_processes=2",
      "--process_id=2"], "--process_id must be 0 to 1"),
])
def test_run_py_names_the_multi_process_flag_to_fix(tmp_path, flags,
                                                    message):
  result = subprocess.run(
      [sys.executable, RUN_PY, "--model=lstm", f"--workdir={tmp_path}/w",
       *flags], capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode != 0 and message in result.stderr, result.stderr
  assert not (tmp_path / "w").exists()


def test_a_process_that_fails_alone_ends_both_instead_of_hanging(tmp_path):
  # Given process 1 of 2 pointed at an audio file that is not there,
  address = f"127.0.0.1:{free_port()}"
  missing = str(tmp_path / "missing.wav")
  extra = [[], ["--dataset=files", f"--train_input={missing}",
                f"--train_target={missing}"]]
  results = run_together(
      [[sys.executable, RUN_PY,
        "--flagfile=" + os.path.join(ROOT, "experiments", "tiny.flags"),
        f"--workdir={tmp_path / f'run{i}'}", "--stream_blocks=",
        f"--coordinator_address={address}", "--num_processes=2",
        f"--process_id={i}", *extra[i]] for i in range(2)],
      [tmp_path / "p0" / "cwd", tmp_path / "p1" / "cwd"], timeout=240)
  # then it says why in one line and ends, and so does process 0 (its next
  # collective fails), well before any timeout.
  (code0, _, err0), (code1, _, err1) = results
  assert code1 == 2 and f"error: process 1 of 2: {missing}" in err1, err1
  assert code0 == 2 and "error: process 0 of 2:" in err0, err0[-3000:]
