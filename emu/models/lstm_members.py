"""E one-layer LSTMs (an ensemble's members) in one scan, chunked backward.

`lstm_members` runs the members of an `emu.models.ensemble.Ensemble` of
one-layer LSTMs: the cell of `emu.models.recurrent` (its `_lstm_update`,
imported, not copied) with a member axis E on every weight and state, so one
step is one batched matmul and one fused activation for all E. Its backward
pass (`_members_sequence`) recomputes the forward pass in chunks that stay in
cache rather than storing every step of every member.
"""

import functools

import jax
import jax.numpy as jnp

from emu.models import recurrent


def lstm_members(model, params, x, state):
  """E one-layer LSTMs (an ensemble's members) on the same input, in one scan.

  The members share `model`'s hyperparameters and x, and have their own
  weights: the cell carries the member axis itself (one batched matmul and
  one fused activation per step for all E). `jax.vmap` of the one-member
  `recurrent._lstm_sequence` stored every step's activations of all E (28 MB
  per 1,024 steps at E = 4, out of cache) and copied them between
  member-major and time-major layouts; here the backward pass recomputes the
  forward in chunks that stay in cache, see `_members_sequence`.
  tests/test_ensemble.py checks it against each member run alone and against
  autodiff.

  Args:
    model: the member, an `LSTM` with num_layers == 1.
    params: the member's parameters with a leading axis E on every leaf.
    x: [batch, time, channels], shared by every member.
    state: `model.initial_state(batch)` with a leading axis E: ((h, c),),
      each [E, batch, H].

  Returns:
    y [E, batch, time, 1] and the state after the last sample.
  """
  if not isinstance(model, recurrent.LSTM) or model.num_layers != 1:
    raise ValueError("lstm_members runs one-layer LSTMs; got "
                     f"{type(model).__name__} with "
                     f"{getattr(model, 'num_layers', None)} layers")
  (h0, c0), = state
  layer = (params["w_ih_0"], params["w_hh_0"], params["bias_0"])
  b_out = params["b_out"]
  if model.silent_rest:
    (layer,), b_out = model.silenced([layer], b_out)
  chunk = _members_chunk(h0.shape[0], x.shape[0], model.hidden_size,
                         x.shape[-1])
  y, h, c = _members_sequence(model.unroll, chunk, layer, params["w_out"],
                              b_out, jnp.swapaxes(x, 0, 1), h0, c0)
  y = jnp.transpose(y, (1, 2, 0, 3))  # -> [E, batch, time, 1]
  if model.skip:
    y = y + x[..., :1]
  return y, ((h, c),)


def _members_chunk(members, batch, hidden, channels):
  """Time steps per backward chunk: ~1 MiB of recomputed values (L2 here).

  E = 4, batch 8, H = 32 gives 16; 16 to 128 timed alike (one thread, 1,024
  steps), where storing every step instead made the gradient 2.6x slower.
  """
  per_step = 4 * members * batch * (10 * hidden + channels + 1)
  chunk = 8
  while chunk < 128 and 2 * chunk * per_step <= 2 ** 20:
    chunk *= 2
  return chunk


def _members_step(layer, carry, x_t):
  """`recurrent._lstm_step` for E members: layer leaves [E, ...], (h, c)
  [E, batch, H], x_t [batch, in] shared -> h, c, gates (activated), tanh(c).
  """
  w_ih, w_hh, bias = layer
  h, c = carry
  gates = (jnp.einsum("bi,eig->ebg", x_t, w_ih) + bias[:, None]
           + jnp.einsum("ebh,ehg->ebg", h, w_hh))
  return recurrent._lstm_update(gates, c)  # pylint: disable=protected-access


def _members_head(h, w_out, b_out):
  """h [E, batch, H] -> y [E, batch, 1]."""
  return jnp.einsum("ebh,eho->ebo", h, w_out) + b_out[:, None]


def _members_output_step(layer, w_out, b_out, carry, x_t):
  """The forward scan's step: (h, c), x_t -> (h, c), y_t [E, batch, 1]."""
  h, c, _, _ = _members_step(layer, carry, x_t)
  return (h, c), _members_head(h, w_out, b_out)


def _chunks(time, chunk):
  """(chunk length C, leading remainder r, chunk count n): time = r + n C."""
  chunk = max(1, min(chunk, time))
  rest = time % chunk
  return chunk, rest, (time - rest) // chunk


def _members_forward(unroll, layer, w_out, b_out, x, h0, c0):
  """y [time, E, batch, 1], h, c: one scan that stores only y."""
  step = functools.partial(_members_output_step, layer, w_out, b_out)
  (h, c), y = jax.lax.scan(step, (h0, c0), x, unroll=unroll)
  return y, h, c


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _members_sequence(unroll, chunk, layer, w_out, b_out, x, h0, c0):
  """E LSTM layers and heads over x [time, batch, in]: `_members_forward`.

  The backward pass is `recurrent._lstm_sequence`'s (the reverse loop
  carries only (dh, dc); weight gradients are matmuls over many steps at
  once) with the memory of E members in mind: the forward pass keeps (h, c)
  at the start of every `chunk` steps and nothing else; the backward pass
  recomputes one chunk's activations at a time into buffers that stay in
  cache, runs the reverse loop over it, and adds the chunk's weight
  gradients with one batched matmul [E, H + in + 1, steps x batch] x
  [E, steps x batch, 4H] (rows h_{t-1}, x_t and 1: w_hh, w_ih and the bias
  at once). Storing every step's activations instead, as
  `recurrent._lstm_sequence` does, left E = 4 memory-bound (28 MB per 1,024
  steps, out of cache): its gradient cost 5.5x one member's, the chunked one
  2.2-2.5x, although it runs the forward pass twice (one thread of the
  shared 2-core CPU, batch 8, H = 32).
  """
  return _members_forward(unroll, layer, w_out, b_out, x, h0, c0)


def _members_sequence_fwd(unroll, chunk, layer, w_out, b_out, x, h0, c0):
  """`_members_forward` keeping (h, c) at the start of every chunk."""
  step = functools.partial(_members_output_step, layer, w_out, b_out)

  def run_chunk(carry, x_chunk):
    end, y = jax.lax.scan(step, carry, x_chunk, unroll=unroll)
    return end, (carry, y)

  length, rest, count = _chunks(x.shape[0], chunk)
  (h, c), y_rest = jax.lax.scan(step, (h0, c0), x[:rest], unroll=unroll)
  (h, c), (starts, y) = jax.lax.scan(
      run_chunk, (h, c), x[rest:].reshape((count, length) + x.shape[1:]))
  y = jnp.concatenate([y_rest, y.reshape((-1,) + y.shape[2:])], axis=0)
  return (y, h, c), (layer, w_out, x, h0, c0, starts, h)


def _members_sequence_bwd(unroll, chunk, residuals, cotangents):
  """The backward pass of `_members_sequence`: chunks in reverse order, the
  leading remainder (steps before the first full chunk) last."""
  layer, w_out, x, h0, c0, starts, h_last = residuals
  dy, dh_last, dc_last = cotangents
  members, batch, hidden = h0.shape
  channels = x.shape[-1]
  length, rest, count = _chunks(x.shape[0], chunk)
  w_hh_t = jnp.swapaxes(layer[1], 1, 2)
  # The recompute stores h_{t-1} at step t, so w_out's gradient, the sum of
  # h_t dy_t, pairs it with dy_{t-1}; the last step's term comes at the end.
  dy_before = jnp.concatenate([jnp.zeros_like(dy[:1]), dy[:-1]], axis=0)
  ones = jnp.ones((members, 1, batch), x.dtype)
  chunk_bwd = functools.partial(_members_chunk_bwd, unroll, layer, w_out,
                                w_hh_t, ones)

  def chunked(a):
    return a[rest:].reshape((count, length) + a.shape[1:])

  carry = (dh_last, dc_last,
           jnp.zeros((members, hidden + channels + 1, 4 * hidden), x.dtype),
           jnp.zeros_like(w_out), _members_buffers(length, h0, x))
  carry, dx = jax.lax.scan(
      chunk_bwd, carry,
      (starts[0], starts[1], chunked(x), chunked(dy), chunked(dy_before)),
      reverse=True)
  dx = dx.reshape((-1,) + x.shape[1:])
  if rest:  # the leading steps before the first full chunk
    carry, dx_rest = chunk_bwd(
        carry[:4] + (_members_buffers(rest, h0, x),),
        (h0, c0, x[:rest], dy[:rest], dy_before[:rest]))
    dx = jnp.concatenate([dx_rest, dx], axis=0)
  dh0, dc0, d_weights, d_w_out, _ = carry
  d_layer = (d_weights[:, hidden:hidden + channels],
             d_weights[:, :hidden],
             d_weights[:, hidden + channels])
  d_w_out = d_w_out + jnp.einsum("ebh,ebo->eho", h_last, dy[-1])
  d_b_out = jnp.sum(dy, axis=(0, 2))
  return d_layer, d_w_out, d_b_out, dx, dh0, dc0


_members_sequence.defvjp(_members_sequence_fwd, _members_sequence_bwd)


def _members_buffers(steps, h0, x):
  """One chunk's values, filled anew by every chunk: z_t = [h_{t-1}; x_t; 1]
  (rows first, as the weight matmul reads it), d gates / d [dc, dc, dc, dh],
  o (1 - tanh^2 c) (d c_t / d c_t through h), f, and d gates.

  h0 [E, batch, H] and x [..., in] give the sizes; the values are zeros.
  """
  members, batch, hidden = h0.shape
  rows, gates = hidden + x.shape[-1] + 1, 4 * hidden
  return (jnp.zeros((members, rows, steps, batch), x.dtype),
          jnp.zeros((steps, members, batch, gates), x.dtype),
          jnp.zeros((steps, members, batch, hidden), x.dtype),
          jnp.zeros((steps, members, batch, hidden), x.dtype),
          jnp.zeros((members, steps, batch, gates), x.dtype))


def _members_chunk_bwd(unroll, layer, w_out, w_hh_t, ones, carry, inputs):
  """The backward pass over one chunk of steps, a step of the reverse scan.

  Recomputes the chunk's forward values (`_members_recompute`), runs the
  reverse loop over them (`_members_reverse`) and adds the chunk's weight
  gradients.

  Args:
    unroll: time steps per `lax.scan` iteration.
    layer: (w_ih, w_hh, bias), each with a leading member axis E.
    w_out: the heads [E, H, 1].
    w_hh_t: w_hh with its last two axes swapped, [E, 4H, H].
    ones: [E, 1, batch] ones, the bias row of z_t.
    carry: (dh, dc) [E, batch, H] after the chunk, the weight gradients so
      far ([E, H + in + 1, 4H] for w_hh, w_ih and bias; [E, H, 1] for w_out)
      and the buffers of `_members_buffers`, of the chunk's length.
    inputs: (h, c) at the chunk's start, its x [steps, batch, in], dy and
      dy_{t-1} [steps, E, batch, 1].

  Returns:
    The carry before the chunk, and dx [steps, batch, in].
  """
  dh, dc, d_weights, d_w_out, bufs = carry
  h_start, c_start, x_chunk, dy_chunk, dy_before_chunk = inputs
  steps = x_chunk.shape[0]
  members, rows, _, batch = bufs[0].shape
  hidden = h_start.shape[-1]
  bufs = _members_recompute(unroll, layer, ones, h_start, c_start, x_chunk,
                            bufs)
  zs, gate_factor, out_factor, forget, d_gates = bufs
  dh, dc, d_gates = _members_reverse(unroll, w_out, w_hh_t, (dh, dc),
                                     dy_chunk, bufs)
  # w_hh, w_ih and bias at once: [E, rows, steps x batch] @ [E, ..., 4H].
  d_weights = d_weights + jnp.matmul(
      zs.reshape(members, rows, steps * batch),
      d_gates.reshape(members, steps * batch, 4 * hidden))
  d_w_out = d_w_out + jnp.einsum("ehcb,cebo->eho", zs[:, :hidden],
                                 dy_before_chunk)
  dx = jnp.einsum("ecbg,eig->cbi", d_gates, layer[0])
  bufs = (zs, gate_factor, out_factor, forget, d_gates)
  return (dh, dc, d_weights, d_w_out, bufs), dx


def _members_recompute(unroll, layer, ones, h_start, c_start, x_chunk, bufs):
  """The chunk's forward pass again from (h, c) at its start, filling the
  buffers of `_members_buffers` (all but d gates) with every step's values.
  """
  steps, _, channels = x_chunk.shape
  members = ones.shape[0]
  scale, offset = recurrent._lstm_gate_affine(h_start.shape[-1])  # pylint: disable=protected-access
  scale2 = scale * scale

  def step(carry, inputs):
    h, c, (zs, gate_factor, out_factor, forget, d_gates) = carry
    t, x_t = inputs
    h_new, c_new, act, tanh_c = _members_step(layer, (h, c), x_t)
    i, f, g, o = jnp.split(act, 4, axis=-1)
    z = jnp.concatenate(
        [jnp.swapaxes(h, 1, 2),
         jnp.broadcast_to(x_t.T[None], (members, channels, x_t.shape[0])),
         ones],
        axis=1)
    # d act / d gates for act = tanh(v * s) * s + o: s^2 - (act - o)^2.
    factor = (jnp.concatenate([g, c, i, tanh_c], axis=-1)
              * (scale2 - jnp.square(act - offset)))
    update = jax.lax.dynamic_update_index_in_dim
    bufs = (update(zs, z, t, axis=2),
            update(gate_factor, factor, t, axis=0),
            update(out_factor, o * (1.0 - tanh_c * tanh_c), t, axis=0),
            update(forget, f, t, axis=0), d_gates)
    return (h_new, c_new, bufs), None

  (_, _, bufs), _ = jax.lax.scan(step, (h_start, c_start, bufs),
                                 (jnp.arange(steps), x_chunk), unroll=unroll)
  return bufs


def _members_reverse(unroll, w_out, w_hh_t, dh_dc, dy_chunk, bufs):
  """The reverse loop over one recomputed chunk: (dh, dc) after it and dy
  [steps, E, batch, 1] -> (dh, dc) before it and d gates [E, steps, batch,
  4H], written into the last buffer of `_members_buffers`."""
  _, gate_factor, out_factor, forget, d_gates = bufs

  def step(carry, inputs):
    dh, dc, d_gates = carry
    t, dy_t = inputs
    dh = dh + jnp.einsum("ebo,eho->ebh", dy_t, w_out)
    dc = dc + dh * out_factor[t]
    d_gate = (jnp.concatenate([dc, dc, dc, dh], axis=-1)
              * gate_factor[t])
    d_gates = jax.lax.dynamic_update_index_in_dim(d_gates, d_gate, t,
                                                  axis=1)
    return (jnp.einsum("ebg,egh->ebh", d_gate, w_hh_t),
            dc * forget[t], d_gates), None

  (dh, dc, d_gates), _ = jax.lax.scan(
      step, dh_dc + (d_gates,), (jnp.arange(dy_chunk.shape[0]), dy_chunk),
      reverse=True, unroll=unroll)
  return dh, dc, d_gates
