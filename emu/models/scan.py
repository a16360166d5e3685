"""One diagonal linear recurrence, h_t = a_t * h_{t-1} + b_t, two backends.

The state-space models (emu.models.lru) spend their time in this recurrence.
It runs along axis 1 (time) of `[batch, time, n]` arrays, in float32 or
complex64, with one of two backends that compute the same thing:

  'associative'  jax.lax.associative_scan: O(log time) depth, for training
                 and for whole signals on parallel hardware.
  'sequential'   jax.lax.scan: one step per sample; the cheapest for short
                 streaming blocks, and on a CPU often for everything.

Precision. In float32 a product of many decays close to 1 loses the decay's
digits (|a| = 0.9999 keeps only ~3 of them), so a plain associative scan is
off by ~1e-5 of the signal after 1 s at 44.1 kHz. For a time-invariant `a`
(the LRU's case) the associative backend therefore runs its own odd/even
recursion with the powers a^(2^k) held as unevaluated float32 pairs
(hi + lo, "double-float"), which brings it to ~4e-7. A time-varying `a` goes
through lax.associative_scan as it is (double-float there compiles for
minutes). The sequential backend uses each `a` as given and only rounds the
state, ~eps * sqrt(1 / (1 - |a|^2)): ~2e-6 at |a| = 0.9999.

Gradients come from a custom VJP: the adjoint of a linear recurrence is the
same recurrence run backwards in time, so training uses the chosen backend
in both directions and never stores the scan's intermediate tree.
"""

import functools

import jax
from jax import lax
import jax.numpy as jnp

BACKENDS = ("associative", "sequential")


def linear_recurrence(a, b, h0=None, backend="associative", unroll=1):
  """Runs h_t = a_t * h_{t-1} + b_t along axis 1.

  Args:
    a: decay, [batch, time, n], or anything broadcastable to it such as [n]
      for a time-invariant recurrence. float32 or complex64.
    b: input, [batch, time, n], float32 or complex64.
    h0: state before the first step, [batch, n]; zeros when None.
    backend: 'associative' (lax.associative_scan) or 'sequential' (lax.scan).
    unroll: steps unrolled per loop iteration of the 'sequential' backend.

  Returns:
    (h, h_last): every state, [batch, time, n], and the last one, [batch, n]
    (h0, or zeros, when time is 0). The dtype is that of `a * b`.
  """
  check_backend(backend)
  if b.ndim != 3:
    raise ValueError(f"b must be [batch, time, n], got shape {b.shape}")
  dtype = jnp.result_type(a, b)
  if dtype not in (jnp.float32, jnp.complex64):
    raise ValueError(f"expected float32 or complex64, got {dtype}")
  # Promoting here, outside the custom VJP, lets JAX handle the cotangent of
  # a real input mixed with a complex one.
  a = jnp.asarray(a, dtype)
  b = jnp.asarray(b, dtype)
  batch, time, n = b.shape
  h0 = jnp.zeros((batch, n), dtype) if h0 is None else jnp.asarray(h0, dtype)
  if time == 0:
    return b, h0
  return _recurrence(backend, unroll, a, b, h0)


def check_backend(backend):
  """Raises ValueError unless `backend` is one of BACKENDS."""
  if backend not in BACKENDS:
    raise ValueError(f"unknown backend {backend!r}; known: {BACKENDS}")


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _recurrence(backend, unroll, a, b, h0):
  if backend == "associative":
    h = _associative(a, b, h0)
  else:
    h = _sequential(a, b, h0, unroll)
  return h, h[:, -1]


def _recurrence_fwd(backend, unroll, a, b, h0):
  h, h_last = _recurrence(backend, unroll, a, b, h0)
  return (h, h_last), (a, h, h0)


def _recurrence_bwd(backend, unroll, residuals, cotangents):
  # With g_t the cotangent of h_t including everything downstream,
  # g_t = ct_t + a_{t+1} g_{t+1}: the same recurrence, reversed in time.
  # JAX cotangents are transposes, so complex factors appear unconjugated.
  a, h, h0 = residuals
  ct_h, ct_h_last = cotangents
  ct_h = ct_h.at[:, -1].add(ct_h_last)
  a_full = jnp.broadcast_to(a, h.shape)
  if a.ndim < 2 or a.shape[-2] == 1:
    a_reversed = a  # time-invariant: a_{t+1} == a_t
  else:
    a_next = jnp.concatenate(
        [a_full[:, 1:], jnp.zeros_like(a_full[:, :1])], axis=1)
    a_reversed = jnp.flip(a_next, axis=1)
  g, _ = _recurrence(backend, unroll, a_reversed, jnp.flip(ct_h, axis=1),
                     jnp.zeros_like(h0))
  g = jnp.flip(g, axis=1)
  h_prev = jnp.concatenate([h0[:, None], h[:, :-1]], axis=1)
  ct_a = _sum_to_shape(g * h_prev, a.shape)
  return ct_a, g, a_full[:, 0] * g[:, 0]


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _sum_to_shape(x, shape):
  """Sums `x` over the axes along which an array of `shape` was broadcast."""
  lead = x.ndim - len(shape)
  x = jnp.sum(x, axis=tuple(range(lead)))
  axes = tuple(i for i, size in enumerate(shape)
               if size == 1 and x.shape[i] != 1)
  return jnp.sum(x, axis=axes, keepdims=True).reshape(shape)


def _sequential(a, b, h0, unroll):
  b_t = jnp.moveaxis(b, 1, 0)
  if a.ndim < 2 or a.shape[-2] == 1:
    # A time-invariant decay stays a loop constant instead of being
    # materialised for every step.
    a_const = jnp.broadcast_to(a, (b.shape[0], 1, b.shape[2]))[:, 0]

    def step(h, b_now):
      h = a_const * h + b_now
      return h, h

    _, h = lax.scan(step, h0, b_t, unroll=unroll)
  else:
    a_t = jnp.moveaxis(jnp.broadcast_to(a, b.shape), 1, 0)

    def step(h, ab_now):
      a_now, b_now = ab_now
      h = a_now * h + b_now
      return h, h

    _, h = lax.scan(step, h0, (a_t, b_t), unroll=unroll)
  return jnp.moveaxis(h, 0, 1)


def _associative(a, b, h0):
  time_invariant = a.ndim < 2 or a.shape[-2] == 1
  a = jnp.broadcast_to(a, (b.shape[0], 1 if time_invariant else b.shape[1],
                           b.shape[2]))
  # Folding h0 into the first input keeps the scan the length of the signal:
  # h_0 = a_0 * h0 + b_0.
  b = b.at[:, 0].add(a[:, 0] * h0)
  if time_invariant:
    return _scan_time_invariant(a, b)
  return lax.associative_scan(_compose, (a, b), axis=1)[1]


def _compose(earlier, later):
  # Applying (a1, b1) and then (a2, b2) maps h to
  # a2 * (a1 * h + b1) + b2 = (a2 * a1) * h + (a2 * b1 + b2).
  a1, b1 = earlier
  a2, b2 = later
  return a2 * a1, a2 * b1 + b2


def _scan_time_invariant(a, b):
  """The odd/even recursion of lax.associative_scan for a constant `a`.

  a: [batch, 1, n]; b: [batch, time, n]. With `a` the same at every step,
  level k of the recursion multiplies by a^(2^k) only, so those powers are
  computed once (in double-float) instead of for every element: less work,
  and no broadcast `a` for XLA's simplifier to chase around the tree.
  """
  levels = max(b.shape[1] - 1, 1).bit_length()
  # A loop rather than unrolled squarings: XLA compiles a long unrolled
  # chain of these exact products very slowly.
  _, powers = lax.scan(lambda p, _: (_square(*p), p),
                       (a, jnp.zeros_like(a)), None, length=levels)
  return _odd_even(powers, 0, b)


def _odd_even(powers, level, b):
  time = b.shape[1]
  if time < 2:
    return b
  a_hi, a_lo = powers[0][level], powers[1][level]
  mul = lambda x: a_hi * x + a_lo * x
  # Pairs (b_0, b_1), (b_2, b_3), ... collapse into one step each, with
  # decay a^2; their states are the states at the odd positions.
  odd = _odd_even(powers, level + 1, mul(b[:, 0:time - 1:2]) + b[:, 1::2])
  even = b[:, 0::2]
  even = jnp.concatenate(
      [even[:, :1], mul(odd[:, :even.shape[1] - 1]) + even[:, 1:]], axis=1)
  pairs = jnp.stack([even[:, :odd.shape[1]], odd], axis=2)
  h = pairs.reshape(b.shape[0], 2 * odd.shape[1], b.shape[2])
  return jnp.concatenate([h, even[:, odd.shape[1]:]], axis=1)


def _square(a_hi, a_lo):
  """(a_hi + a_lo)^2 as a double-float pair (hi, lo)."""
  if not jnp.iscomplexobj(a_hi):
    p, p_err = _two_prod(a_hi, a_hi)
    return _two_sum(p, p_err + 2 * a_hi * a_lo)
  x, y = a_hi.real, a_hi.imag
  # (x + iy)^2 = (x^2 - y^2) + i 2xy, each product exact, then the lo part.
  xx, xx_err = _two_prod(x, x)
  yy, yy_err = _two_prod(y, y)
  xy, xy_err = _two_prod(x, y)
  re, re_err = _two_sum(xx, -yy)
  cross = 2 * a_hi * a_lo
  re, re_lo = _two_sum(re, (xx_err - yy_err + re_err) + cross.real)
  im, im_lo = _two_sum(2 * xy, 2 * xy_err + cross.imag)
  return lax.complex(re, im), lax.complex(re_lo, im_lo)


def _split(x):
  """x = hi + lo exactly, each with at most 12 significant bits."""
  # Masking the low mantissa bits (rather than Dekker's 4097 * x trick) is
  # immune to compiler rewrites of floating-point expressions.
  bits = lax.bitcast_convert_type(x, jnp.uint32) & jnp.uint32(0xFFFFF000)
  hi = lax.bitcast_convert_type(bits, jnp.float32)
  return hi, x - hi


def _two_prod(x, y):
  """(p, e) with p = fl(x * y) and p + e == x * y exactly."""
  p = x * y
  x_hi, x_lo = _split(x)
  y_hi, y_lo = _split(y)
  return p, ((x_hi * y_hi - p) + x_hi * y_lo + x_lo * y_hi) + x_lo * y_lo


def _two_sum(x, y):
  """(s, e) with s = fl(x + y) and s + e == x + y exactly (Knuth)."""
  s = x + y
  y_virtual = s - x
  return s, (x - (s - y_virtual)) + (y - y_virtual)
