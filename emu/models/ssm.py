"""Shared machinery of the state-space stacks emu.models.lru and .svf.

Both models are a stack of filter layers (`Stack`), each layer mapping
u [batch, time, d_in] to y [batch, time, d_out] through a linear
recurrence whose coefficients knobs may set per sample:

  z = layer_0(x)                                   channels -> features
  z = layer_l(z + mix_l(gelu(z)))  l = 1..L-1      features -> features (1)

This module holds what the two share: the hyperparameters both declare
(`FilterFields`, with `Layer` and `Stack` on top of them), the stack
runner (`Stack.__call__`), the knob MLP (`KnobFiLM`) and its
initialisation as a frequency sweep (`sweep_init`, `check_sweep`), the
log-frequency spread of initial poles or cutoffs, and the normal
initializer. The filters themselves (the LRU's complex modes, the SVF's
2-state sections) stay in their modules.

Frequencies are in Hz throughout and become angles through the
`sample_rate` hyperparameter (Hz), whose default, 44100, is the only
place a sample rate is written down.
"""

import dataclasses
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp


def normal(stddev):
  """An initializer (key, shape) -> float32 normal samples of `stddev`."""
  return lambda key, shape: stddev * jax.random.normal(key, shape)


def log_spaced_hz(key, n, f_min_hz, f_max_hz):
  """[n] frequencies (Hz) spread over [f_min_hz, f_max_hz] in log-frequency:
  one uniform random point in each of n equal log strata, so that even a
  few poles or cutoffs span the band."""
  u = (jnp.arange(n) + jax.random.uniform(key, (n,))) / n
  return f_min_hz * (f_max_hz / f_min_hz)**u


def sweep_init(sweep, rows):
  """KnobFiLM's linear kernel init: zeros, or with `sweep` = (low, high)
  the first knob adding log(high / low) to the first `rows` offsets (the
  log-frequencies), so that the knob sweeps them from low to high."""
  if not sweep:
    return nn.initializers.zeros

  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.zeros(shape, dtype).at[0, :rows].set(
        math.log(sweep[1] / sweep[0]))
  return init


def check_sweep(sweep):
  """Raises ValueError unless `sweep` is () or (low, high) with both > 0."""
  if len(sweep) not in (0, 2) or any(f <= 0 for f in sweep):
    raise ValueError(f"knob_sweep_hz must be empty or (low, high) in Hz, "
                     f"both > 0; got {tuple(sweep)}")


def conditioned_layer(layer_params, knobs):
  """Whether a one-layer model's parameters have a knob MLP; raises
  ValueError unless `knobs` is given exactly when they do."""
  conditioned = "film" in layer_params
  if conditioned != (knobs is not None):
    raise ValueError("knobs are needed by, and only by, a conditioned "
                     "model (one trained with knob_hidden > 0 on knobs)")
  return conditioned


class KnobFiLM(nn.Module):
  """knobs [..., K] in [0, 1] -> {name: offsets [..., *shape]} for each
  (name, shape) of `layout`, all zero at init.

  offsets = W_lin k + W_out tanh(W_hid (2k - 1) + b_hid) / hidden: a
  linear path (a log-taper frequency knob moves log-frequencies linearly)
  plus one tanh layer of `hidden` units for the rest (0: the linear path
  alone). Both output kernels start at zero, so a fresh conditioned layer
  is the unconditioned filter at every setting. No output bias: the
  layer's own parameters are the offsets' bias. The 1 / hidden keeps an
  Adam step (which moves every weight by about the learning rate) from
  moving an offset by `hidden` times as much as it moves the layer's own
  parameters; at 16 units without it, a rate of 0.03 never settled.
  """
  layout: tuple
  hidden: int = 16
  linear_init: Callable = nn.initializers.zeros

  @nn.compact
  def __call__(self, knobs):
    zeros = nn.initializers.zeros
    features = sum(math.prod(shape) for _, shape in self.layout)
    out = nn.Dense(features, use_bias=False,
                   kernel_init=self.linear_init, name="linear")(knobs)
    if self.hidden:
      z = nn.Dense(self.hidden, bias_init=nn.initializers.normal(1.),
                   name="hidden")(2. * knobs - 1.)
      out = out + nn.Dense(features, use_bias=False, kernel_init=zeros,
                           name="out")(jnp.tanh(z) / self.hidden)
    offsets, start = {}, 0
    for name, shape in self.layout:
      size = math.prod(shape)
      offsets[name] = out[..., start:start + size].reshape(
          out.shape[:-1] + shape)
      start += size
    return offsets

  @classmethod
  def at(cls, layer_params, layout, hidden, knobs):
    """The offsets of a trained layer's MLP (`layer_params['film']`) at
    knob values `knobs` [K] (for frequency responses)."""
    return cls(layout, hidden, parent=None).apply(
        {"params": layer_params["film"]}, jnp.asarray(knobs, jnp.float32))


class Recurrence(nn.Module):
  """The hyperparameters of a model that runs linear recurrences, and its
  receptive field (infinite). `Stack` and emu.models.wiener declare them.

  Attributes:
    backend: recurrence backend for calls longer than stream_max_len
      samples: 'associative' (parallel) or 'sequential' (a loop).
    stream_backend: backend for calls of at most stream_max_len samples
      (streaming blocks), where a plain loop is cheapest.
    stream_max_len: the block length (samples) up to which stream_backend
      is used. Both backends compute the same recurrence, so the choice
      never changes the output beyond float32 rounding.
    unroll: loop unrolling of the sequential backend.
  """
  backend: str = "sequential"
  stream_backend: str = "sequential"
  stream_max_len: int = 64
  unroll: int = 1

  @property
  def receptive_field(self):
    return math.inf


class FilterFields(nn.Module):
  """The hyperparameters every state-space layer and stack declares.

  Attributes:
    f_min_hz, f_max_hz: initial pole frequencies or cutoffs (Hz), spread
      over [f_min_hz, f_max_hz] by `log_spaced_hz`.
    sample_rate: Hz of the signal, which turns frequencies into angles
      (initialisation, knob sweeps, frequency responses).
    knob_hidden: tanh units of each layer's knob MLP (`KnobFiLM`). In a
      `Stack`, > 0 makes channels 1: of x knobs that set every layer's
      filter per sample (the first layer's input is then the audio
      alone), and 0 makes them signals like the audio, into the first
      layer, every filter time-invariant. A one-channel input is the
      same either way.
    knob_sweep_hz: () or (low, high) Hz: with knobs, start every pole or
      cutoff at `low` for knob 0 moving log-linearly to `high` at knob 1
      (the first knob), instead of spread over [f_min_hz, f_max_hz].
  """
  f_min_hz: float = 20.
  f_max_hz: float = 20000.
  sample_rate: float = 44100.
  knob_hidden: int = 16
  knob_sweep_hz: tuple = ()


class Layer(FilterFields):
  """A filter layer, u [batch, time, d_in] -> y [batch, time, d_out].

  Attributes:
    out_features: d_out, the readout width (keyword-only).
    (the rest: FilterFields)
  """
  out_features: int = dataclasses.field(kw_only=True)

  def _sweep(self, knobs):
    """knob_sweep_hz when the layer is called with knobs, else ()."""
    return self.knob_sweep_hz if knobs is not None else ()

  def _film(self, layout, knobs, sweep_rows):
    """The knob MLP's offsets per sample, {name: [batch, time, *shape]},
    with its first `sweep_rows` offsets (the log-frequencies) following
    the knob sweep."""
    return KnobFiLM(layout, self.knob_hidden,
                    linear_init=sweep_init(self._sweep(knobs), sweep_rows),
                    name="film")(knobs)


class Stack(FilterFields, Recurrence):
  """A stack of filter layers under the emu model contract.

  y, state = model.apply(params, x, state), x: [batch, time, channels]
  float32 (channel 0 audio, the rest conditioning), y: [batch, time, 1].
  Subclasses give `_layer`, `initial_state` and `frequency_response`.

  Attributes:
    state_size: filter modes or sections per layer (one = one biquad).
    num_layers: 1 is a purely linear filter; more layers add gelu + Dense
      mixing with a residual between the filters.
    features: hidden width between layers (num_layers > 1).
    skip: add the input audio (channel 0) to the output.
    (the rest: FilterFields and Recurrence)
  """
  state_size: int = 1
  num_layers: int = 1
  features: int = 8
  skip: bool = False

  def _layer(self, index, out_features):
    """The Layer module `layer_{index}` with readout width out_features."""
    raise NotImplementedError

  def _layer_fields(self):
    """The FilterFields of this stack, as keyword arguments of a Layer."""
    fields = {f.name: getattr(self, f.name)
              for f in dataclasses.fields(FilterFields)
              if f.init and f.name not in ("parent", "name")}
    fields["knob_sweep_hz"] = tuple(self.knob_sweep_hz)
    return fields

  @nn.compact
  def __call__(self, x, state=None):
    """x: [batch, time, channels] -> (y [batch, time, 1], new state).

    layer_0 takes the audio (the knobs then set the filters) or every
    channel (knobs as signals); gelu + Dense mixing with a residual runs
    between layers, and `skip` adds the input audio at the end.
    """
    if self.num_layers < 1:
      raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
    if self.knob_hidden < 0:
      raise ValueError(f"knob_hidden must be >= 0, got {self.knob_hidden}")
    check_sweep(self.knob_sweep_hz)
    if state is None:
      state = self.initial_state(x.shape[0])
    backend = (self.stream_backend if x.shape[1] <= self.stream_max_len
               else self.backend)
    knobs = x[..., 1:] if self.knob_hidden and x.shape[-1] > 1 else None
    run = lambda i, width, u: self._layer(i, width)(
        u, state[i], backend, self.unroll, knobs)
    last = self.num_layers - 1
    z, h = run(0, 1 if last == 0 else self.features,
               x if knobs is None else x[..., :1])
    new_state = [h]
    for i in range(1, self.num_layers):
      z = z + nn.Dense(self.features, name=f"mix_{i}")(nn.gelu(z))
      z, h = run(i, 1 if i == last else self.features, z)
      new_state.append(h)
    if self.skip:
      z = z + x[..., :1]
    return z, tuple(new_state)

  def _linear_layer(self, params, knobs, layout_of):
    """(layer_0's parameters, its knob offsets at `knobs` or None) of a
    one-layer model, for frequency_response.

    params: the model's variables or their 'params'; knobs: [K] or None;
    layout_of(layer_params) -> the layer's KnobFiLM layout.
    """
    if self.num_layers != 1:
      raise ValueError("frequency_response needs a linear model "
                       f"(num_layers == 1), got num_layers={self.num_layers}")
    params = params.get("params", params)["layer_0"]
    film = None
    if conditioned_layer(params, knobs):
      film = KnobFiLM.at(params, layout_of(params), self.knob_hidden, knobs)
    return params, film
