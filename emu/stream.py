"""Block-by-block inference with carried state, and its speed.

The streaming path is the model contract itself: `model.apply(params, block,
state)` jitted once per block size, the state handed from block to block. It
gives the same output as one offline call (tests check it per model).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np


class Streamer:
  """Processes a mono stream in blocks, carrying the model's state.

    streamer = Streamer(model, params)
    for block in blocks:            # [block_size] float32
      out = streamer.process(block)  # [block_size]

  Knob values (conditioning channels) may change between blocks: pass
  `knobs` [channels - 1] to `process`.
  """

  def __init__(self, model, params):
    self.model = model
    self.params = params
    self._apply = jax.jit(lambda p, x, s: model.apply(p, x, s))
    self.reset()

  def reset(self):
    self.state = self.model.initial_state(1)

  def process(self, block, knobs=None) -> np.ndarray:
    """block: [time] float32 -> output [time] float32 (numpy)."""
    x = jnp.asarray(block, jnp.float32).reshape(1, -1, 1)
    if knobs is not None:
      knobs = jnp.broadcast_to(jnp.asarray(knobs, jnp.float32),
                               (1, x.shape[1], len(knobs)))
      x = jnp.concatenate([x, knobs], axis=-1)
    y, self.state = self._apply(self.params, x, self.state)
    return np.asarray(y).reshape(-1)


def measure(model, params, block_size: int, sample_rate: int = 44100,
            seconds: float = 2.0, max_blocks: int = 4000, seed: int = 0,
            channels: int = 1) -> dict:
  """Streaming speed at one block size.

  Runs `seconds` of noise (at most `max_blocks` blocks) through the jitted
  streaming step, waiting for each block's output before sending the next,
  as a real-time audio callback must.

  Returns:
    dict with block_size, blocks, rtf (seconds of audio per second of
    compute), us_per_sample, block_ms_mean and block_ms_p99 (compute time
    per block), and buffer_ms (the block's own length: the latency a block
    adds before any compute).
  """
  apply = jax.jit(lambda p, x, s: model.apply(p, x, s))
  blocks = max(1, min(int(seconds * sample_rate) // block_size, max_blocks))
  rng = np.random.default_rng(seed)
  audio = rng.uniform(-0.5, 0.5, (blocks, 1, block_size, channels))
  audio = jnp.asarray(audio, jnp.float32)
  state = model.initial_state(1)
  y, warm_state = apply(params, audio[0], state)  # compile
  jax.block_until_ready((y, warm_state))
  times = np.empty(blocks)
  for i in range(blocks):
    start = time.perf_counter()
    y, state = apply(params, audio[i], state)
    jax.block_until_ready(y)
    times[i] = time.perf_counter() - start
  total = float(times.sum())
  n = blocks * block_size
  return {
      "block_size": block_size,
      "blocks": blocks,
      "rtf": n / sample_rate / total,
      "us_per_sample": total / n * 1e6,
      "block_ms_mean": float(times.mean() * 1e3),
      "block_ms_p99": float(np.percentile(times, 99) * 1e3),
      "buffer_ms": block_size / sample_rate * 1e3,
  }


def offline_rtf(model, params, seconds: float = 10.0,
                sample_rate: int = 44100, repeats: int = 3,
                channels: int = 1) -> dict:
  """Whole-signal inference speed: one call on `seconds` of audio."""
  apply = jax.jit(lambda p, x: model.apply(p, x, None)[0])
  n = int(seconds * sample_rate)
  x = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (1, n, channels)),
                  jnp.float32)
  start = time.perf_counter()
  jax.block_until_ready(apply(params, x))
  compile_s = time.perf_counter() - start
  best = np.inf
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(apply(params, x))
    best = min(best, time.perf_counter() - start)
  return {"seconds": seconds, "rtf": seconds / best,
          "us_per_sample": best / n * 1e6, "compile_s": compile_s}
