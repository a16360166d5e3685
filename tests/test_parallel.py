"""Data-parallel training over 2 forced CPU devices equals one device."""

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
result = train.fit(tiny_config(max_epochs=2, batch_size=4), sys.argv[1],
                   dataset=tiny_dataset())
print(json.dumps({{"devices": jax.device_count(),
                  "loss": [r["train_loss"] for r in result.history],
                  "val": [r["val1_esr"] for r in result.history]}}))
"""


def fit_on(devices, workdir):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  script = SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"))
  result = subprocess.run([sys.executable, "-c", script, str(workdir)],
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
