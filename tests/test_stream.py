"""Streaming with knobs that change between blocks equals one offline call."""

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
