"""Training over 2 forced CPU devices equals one device: data-parallel (the
batch split) and, for an ensemble, members split over the devices."""

import json
import os
import subprocess
import sys

import numpy as np

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
model, params, cfg = workdir.load_params(sys.argv[1])
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


def test_two_devices_give_the_single_device_loss_curve(tmp_path):
  one = fit_on(1, tmp_path / "one")
  two = fit_on(2, tmp_path / "two")
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
