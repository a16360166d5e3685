"""The LSTM's hand-written backward pass equals autodiff of its forward pass.

Given random weights, input and initial state, when the one-layer LSTM
sequence (emu.models.recurrent._lstm_sequence, used in training) is
differentiated, then every gradient matches jax.grad of the plain scan.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emu.models import recurrent


@pytest.mark.parametrize("channels", [1, 2])
def test_given_a_loss_on_y_and_final_state_then_gradients_match_autodiff(
    channels):
  hidden, batch, time = 6, 3, 40
  keys = jax.random.split(jax.random.key(0), 8)
  layer = (jax.random.normal(keys[0], (channels, 4 * hidden)) * 0.5,
           jax.random.normal(keys[1], (hidden, 4 * hidden)) * 0.5,
           jax.random.normal(keys[2], (4 * hidden,)) * 0.5)
  w_out = jax.random.normal(keys[3], (hidden, 1))
  b_out = jnp.ones((1,))
  x = jax.random.normal(keys[4], (time, batch, channels))
  h0 = jax.random.normal(keys[5], (batch, hidden)) * 0.3
  c0 = jax.random.normal(keys[6], (batch, hidden)) * 0.3

  def loss(sequence):
    def value(layer, w_out, b_out, x, h0, c0):
      y, h, c = sequence(1, layer, w_out, b_out, x, h0, c0)
      return jnp.sum(jnp.sin(3 * y)) + jnp.sum(1.3 * h) + jnp.sum(c ** 2)
    return jax.grad(value, argnums=tuple(range(6)))

  args = (layer, w_out, b_out, x, h0, c0)
  want = loss(recurrent._lstm_forward)(*args)  # pylint: disable=protected-access
  got = loss(recurrent._lstm_sequence)(*args)  # pylint: disable=protected-access
  for w, g in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
