"""Fixtures shared by the model tests: parameters and compiled applies.

XLA compilation dominates these tests, and every distinct model, input
shape or static argument compiles again; running a model op by op
(un-jitted) compiles each of its operations instead, which is slower still.
So tests get a model's apply through `jitted` (one jax.jit per distinct
model, hence one compile per model and shape in the session, whichever
test asks first) and its parameters through `init`.
"""

import atexit
import functools
import os
import shutil
import tempfile


def _share_compilations():
  """One persistent XLA compilation cache for the session and every child
  it starts (run.py, bench, stream children inherit the environment), so
  the same tiny model compiles once per run of the suite, not once per
  process. A fresh folder each session (removed at exit) unless
  JAX_COMPILATION_CACHE_DIR is set; JAX keys entries by the computation,
  the jax/XLA version and flags, so a hit is the same executable."""
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    folder = tempfile.mkdtemp(prefix="emu_tests_xla_cache_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


_share_compilations()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top


@functools.lru_cache(maxsize=None)
def _jitted_apply(model):
  return jax.jit(model.apply)


@functools.lru_cache(maxsize=None)
def _parameters(model, shape, seed):
  # lazy_init runs only what the parameters need (not the forward pass) and
  # gives the same values as model.init.
  return model.lazy_init(jax.random.PRNGKey(seed),
                         jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.fixture(scope="session")
def jitted():
  """jitted(model) -> jax.jit(model.apply), the same function for equal
  models (flax modules compare by their fields)."""
  return _jitted_apply


@pytest.fixture(scope="session")
def init():
  """init(model, x, seed=0) -> model.init(PRNGKey(seed), x[:, :8]), once
  per model, shape and seed in the session. Each call returns fresh dicts
  (over the same arrays), so a test may set entries of its copy."""

  def init_params(model, x, seed=0):
    params = _parameters(model, tuple(x[:, :8].shape), seed)
    return jax.tree.map(lambda a: a, params)

  return init_params
