"""emu.models.scan: both backends compute h_t = a_t h_{t-1} + b_t."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emu.models import scan

BACKENDS = ("associative", "sequential")
DTYPES = (np.float32, np.complex64)
ONE_SECOND = 44100  # samples at 44.1 kHz


def _random(rng, shape, dtype):
  x = rng.normal(size=shape)
  if dtype == np.complex64:
    x = x + 1j * rng.normal(size=shape)
  return x.astype(dtype)


@functools.lru_cache(maxsize=None)
def _problem(length, dtype, time_varying=False, batch=2, n=4):
  """Poles near |a| = 0.9999 (memory ~1e4 samples), random b and h0."""
  rng = np.random.default_rng(length)
  shape = (batch, length, n) if time_varying else (n,)
  radius = rng.uniform(0.9995, 0.9999, shape)
  a = radius * (np.exp(1j * rng.uniform(0.001, 0.5, shape))
                if dtype == np.complex64 else 1)
  a, b, h0 = (a.astype(dtype), _random(rng, (batch, length, n), dtype),
              _random(rng, (batch, n), dtype))
  return a, b, h0, _float64_loop(a, b, h0)


def _float64_loop(a, b, h0):
  """The reference: the recurrence in float64 on the same float32 inputs."""
  wide = np.complex128 if np.iscomplexobj(b) else np.float64
  a = np.broadcast_to(a, b.shape).astype(wide)
  h, out = h0.astype(wide), np.empty(b.shape, wide)
  for t in range(b.shape[1]):
    h = a[:, t] * h + b[:, t]
    out[:, t] = h
  return out


def _relative_error(x, reference):
  """Worst error relative to the signal's scale (its peak magnitude)."""
  return np.max(np.abs(np.asarray(x) - reference)) / np.max(np.abs(reference))


run = jax.jit(scan.linear_recurrence, static_argnames=("backend", "unroll"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("length", [1, 5, 1000, ONE_SECOND])
def test_matches_float64_loop(length, dtype, backend):
  # Given poles near |a| = 0.9999 and a float64 loop on the same inputs,
  a, b, h0, reference = _problem(length, dtype)
  # when the recurrence runs in float32 / complex64,
  h, h_last = run(a, b, h0, backend=backend)
  # then it matches to 1e-6 of the signal; the sequential backend's state
  # rounding grows as eps * sqrt(memory), ~2e-6 after 1 s (its float32 floor).
  tolerance = 1e-6 if backend == "associative" or length < ONE_SECOND else 4e-6
  assert h.dtype == dtype and h.shape == b.shape
  assert _relative_error(h, reference) < tolerance
  np.testing.assert_array_equal(h_last, h[:, -1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("length", [5, ONE_SECOND])  # compiled above
def test_backends_agree(length, dtype):
  # Given one recurrence,
  a, b, h0, reference = _problem(length, dtype)
  # when both backends run it,
  h_parallel, _ = run(a, b, h0, backend="associative")
  h_loop, _ = run(a, b, h0, backend="sequential")
  # then they agree to the float32 floor (see test_matches_float64_loop).
  assert _relative_error(h_parallel, np.asarray(h_loop)) < 4e-6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("time_varying", [False, True])
def test_split_with_carried_state_equals_whole(time_varying, dtype, backend):
  # Given a sequence and a split point (halves: one shape, one compile),
  a, b, h0, reference = _problem(300, dtype, time_varying)
  a_parts = np.split(a, [150], axis=1) if time_varying else (a, a)
  # when the second part starts from the first part's h_last,
  first, h_mid = run(a_parts[0], b[:, :150], h0, backend=backend)
  second, h_last = run(a_parts[1], b[:, 150:], h_mid, backend=backend)
  whole, whole_last = run(a, b, h0, backend=backend)
  # then the pieces equal the whole.
  pieces = np.concatenate([first, second], axis=1)
  assert _relative_error(pieces, np.asarray(whole)) < 1e-6
  assert _relative_error(pieces, reference) < 1e-6
  assert _relative_error(h_last, np.asarray(whole_last)) < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_time_varying_decay(dtype, backend):
  # Given a decay that changes every step (plain associative scan there,
  # ~1e-5 worst case at |a| = 0.9999 over 1 s, much less over 1000 steps),
  a, b, h0, reference = _problem(1000, dtype, time_varying=True)
  # when the recurrence runs,
  h, _ = run(a, b, h0, backend=backend)
  # then it matches the loop.
  assert _relative_error(h, reference) < 2e-6


def _loop(a, b, h0, backend=None):
  """The recurrence as a plain loop, for autodiff (backend ignored)."""
  del backend
  a, h, out = jnp.broadcast_to(a, b.shape), h0, []
  for t in range(b.shape[1]):
    h = a[:, t] * h + b[:, t]
    out.append(h)
  return jnp.stack(out, axis=1), h


def _gradient_problem(a_shape, dtype):
  """(a, b, h0, w, w_last) of the gradient test."""
  rng = np.random.default_rng(0)
  a = (0.9 * _random(rng, a_shape, dtype) / 2).astype(dtype)
  b, h0 = _random(rng, (2, 9, 3), dtype), _random(rng, (2, 3), dtype)
  w, w_last = _random(rng, (2, 9, 3), dtype), _random(rng, (2, 3), dtype)
  return a, b, h0, w, w_last


def _loss_gradients(recurrence, backend, a_shape, dtype):
  """d/d(a, b, h0) of a loss of the states and of the last state."""
  a, b, h0, w, w_last = _gradient_problem(a_shape, dtype)

  def loss(a, b, h0):
    h, h_last = recurrence(a, b, h0, backend=backend)
    return jnp.sum(jnp.abs(h * w)**2) + jnp.sum(jnp.real(h_last * w_last))

  return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(a, b, h0)


@functools.lru_cache(maxsize=None)
def _loop_gradients(a_shape, dtype):
  """The reference gradients, the same for both backends: compiled once."""
  return _loss_gradients(_loop, None, a_shape, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_shape", [(3,), (2, 9, 3)])
def test_gradient_matches_autodiff_of_a_loop(a_shape, dtype, backend):
  # Given a loss of the states and of the last state,
  # when differentiated through the custom VJP and through the plain loop,
  grads = _loss_gradients(scan.linear_recurrence, backend, a_shape, dtype)
  expected = _loop_gradients(a_shape, dtype)
  # then the gradients agree.
  for got, want in zip(grads, expected):
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5,
                               atol=1e-5 * np.max(np.abs(want)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_defaults_and_edge_cases(backend):
  # Given zero-length and state-less calls,
  b = np.ones((2, 0, 3), np.float32)
  h0 = np.full((2, 3), 5., np.float32)
  # then a zero-length call returns h0, and None means a zero state.
  h, h_last = scan.linear_recurrence(0.5, b, h0, backend=backend)
  assert h.shape == (2, 0, 3)
  np.testing.assert_array_equal(h_last, h0)
  h, _ = scan.linear_recurrence(np.float32(0.5), np.ones((1, 3, 1),
                                                          np.float32),
                                backend=backend)
  np.testing.assert_allclose(h[0, :, 0], [1., 1.5, 1.75])


def test_sequential_unroll_changes_nothing():
  a, b, h0, _ = _problem(1000, np.complex64)
  plain, _ = run(a, b, h0, backend="sequential")
  unrolled, _ = run(a, b, h0, backend="sequential", unroll=8)
  assert _relative_error(unrolled, np.asarray(plain)) < 1e-6


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="unknown backend"):
    scan.linear_recurrence(0.5, np.ones((1, 3, 1), np.float32),
                           backend="pallas")
  with pytest.raises(ValueError, match=r"\[batch, time, n\]"):
    scan.linear_recurrence(0.5, np.ones((3, 1), np.float32))
