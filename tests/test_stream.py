"""Streaming equals offline (knobs turned between blocks), its speed, and
the real-time dispatch switch."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emu import models
from emu import stream


@pytest.mark.parametrize("name, hparams", [
    ("lstm", {"hidden_size": 4}),
    ("gru", {"hidden_size": 4}),
    ("wavenet", {"channels": 3, "dilations": (1, 2, 4)}),
])
def test_knob_turned_between_blocks_matches_offline(name, hparams):
  model = models.create(name, **hparams)
  rng = np.random.default_rng(0)
  blocks = [rng.uniform(-0.5, 0.5, size).astype(np.float32)
            for size in (64, 1, 37, 64, 128)]
  settings = [0.0, 0.25, 0.25, 0.9, 0.5]
  audio = np.concatenate(blocks)
  knob = np.concatenate([np.full(len(b), s, np.float32)
                         for b, s in zip(blocks, settings)])
  x = jnp.asarray(np.stack([audio, knob], axis=-1))[None]
  params = model.init(jax.random.PRNGKey(0), x)
  offline, _ = model.apply(params, x, None)
  streamer = stream.Streamer(model, params)
  streamed = np.concatenate([streamer.process(b, knobs=[s])
                             for b, s in zip(blocks, settings)])
  np.testing.assert_allclose(streamed, np.asarray(offline).ravel(), atol=1e-6)
  # The knob matters: the same audio at one fixed setting differs.
  fixed = jnp.asarray(np.stack([audio, np.zeros_like(knob)], axis=-1))[None]
  assert np.abs(model.apply(params, fixed, None)[0] - offline).max() > 1e-4


def test_measure_reports_real_time_factor():
  model = models.create("lstm", hidden_size=4)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 1)))
  row = stream.measure(model, params, 32, seconds=0.05)
  assert row["block_size"] == 32 and row["blocks"] >= 1
  assert row["rtf"] > 0 and np.isclose(
      row["us_per_sample"], 1e6 / (44100 * row["rtf"]), rtol=1e-6)


_REALTIME_CHILD = r"""
import warnings
import numpy as np
from emu import stream
assert stream.realtime() is True          # before any JAX computation
from jax._src import xla_bridge
assert xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value is False
import jax, jax.numpy as jnp
from emu import models
model = models.create("lstm", hidden_size=4)
x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 96, 1)).astype(np.float32)
params = model.init(jax.random.PRNGKey(0), jnp.asarray(x))
offline = np.asarray(model.apply(params, jnp.asarray(x), None)[0]).ravel()
s = stream.Streamer(model, params)
streamed = np.concatenate([s.process(x[0, i:i + 32, 0]) for i in (0, 32, 64)])
np.testing.assert_allclose(streamed, offline, atol=1e-6)
assert stream.realtime() is True          # later calls repeat the answer
print("ok")
"""

_TOO_LATE_CHILD = r"""
import warnings
import jax.numpy as jnp
from emu import stream
jnp.zeros(3).block_until_ready()           # the CPU client exists now
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  assert stream.realtime() is False
assert any("before the first JAX computation" in str(w.message)
           for w in caught)
print("ok")
"""


@pytest.mark.parametrize("child", [_REALTIME_CHILD, _TOO_LATE_CHILD],
                         ids=["before", "too_late"])
def test_realtime_dispatch(child):
  # A fresh process each: the setting only counts before JAX's CPU client
  # exists, which in this test process it already does.
  result = subprocess.run([sys.executable, "-c", child], capture_output=True,
                          text=True, timeout=300, check=False,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().endswith("ok")
