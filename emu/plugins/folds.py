"""Rewrites a trained model into an equal one that a plugin format can carry.

`emu.plugins.export` applies these before writing a file; each returns a new
(model, params) and leaves the input alone.

- `fix_knobs`: a knob-conditioned model at fixed knob values. The plugins
  feed audio only; constant knob channels contribute a constant to the
  first layer's pre-activations, which moves into its bias (exact up to
  float32 rounding of one addition).
- `fold_skip`: an LSTM or GRU with the dry-input skip (y = RNN(x) + x, emu's
  default) as one without it and one more unit, which carries x to the head:
  its input weight is EPS = 2^-16 on the audio (or 1 on the previous layer's
  carrier), its forget/update gate is held shut and its input and output
  gates open by biases of +-30 (sigmoid(30) rounds to 1 in float32), no
  recurrent weights in or out, and a head weight of 1/EPS. The unit then
  outputs tanh(tanh(EPS x)) (LSTM) or tanh(EPS x) (GRU), which for
  |x| <= 16 rounds to EPS x in float32 (the cubic term is below half an
  ulp), so the head adds x back to within float32 rounding; beyond that the
  relative error grows as (2/3)(EPS x)^2. Measured (10 s of the alsa voice
  clips and of uniform noise in [-1, 1], LSTM-32 and GRU-32, 1 and 2 layers,
  trained and untrained): max abs 1.5e-7 on voice, 2.4e-7 on noise, under
  1/100 of a 16-bit step (2^-15); tests/test_plugin_folds.py holds it below
  1/50 of one. `sign=-1` carries -x instead: GuitarML's
  plugins add x themselves, so a model without the skip gets -x.
- `wavenet_as_nam`: emu's `wavenet` as an `emu.models.nam_wavenet` (NAM's
  layout): per-layer skip 1x1s become NAM's head1x1, residual 1x1s its
  layer1x1 (zero in the last layer, which emu has none of), the input's bias
  moves into every layer's convolution bias (sum of taps x bias: the
  residual stream of NAM is emu's minus that constant), and the dry skip is
  one extra layer of kernel 1 whose input mixer writes x and -x into two
  ReLU channels, relu(x) - relu(-x) = x exactly, summed into one extra head
  channel of weight 1. emu's `wavenet` starts from zero histories, NAM from
  silence, so the two agree once emu is started on silence
  (`warmed_on_silence`) and differ in the first receptive field otherwise.
"""


import jax
import jax.numpy as jnp
import numpy as np

from emu import models
from emu.models import nam_wavenet

EPS = 2.0 ** -16
# sigmoid(+-GATE) is 1 or 0 in float32 (emu's tanh form gives exactly 0/1).
GATE = 30.0


class ExportError(ValueError):
  """A model cannot be written in the requested format (says why)."""


def numpy_tree(params):
  """numpy float32 copies of any parameter tree, without its "params"."""
  return jax.tree.map(lambda a: np.array(a, np.float32),
                      params["params"] if "params" in params else params)


def float_list(a):
  """float32 numbers as JSON floats: float32 -> float64 is exact, and so is
  the way back, so a file holds each weight exactly."""
  return np.asarray(a, np.float32).astype(np.float64).tolist()


def wrap(tree):
  """A parameter tree as Flax params ({"params": ...}, jnp float32)."""
  return {"params": jax.tree.map(lambda a: jnp.asarray(a, jnp.float32),
                                 tree)}


def _tree(params):
  """numpy float32 copies of a flat (recurrent) parameter dict."""
  p = params["params"] if "params" in params else params
  return {k: np.array(v, np.float32) for k, v in p.items()}


def input_channels(model, params):
  """Input channels (audio + knobs) a model's parameters read."""
  p = params["params"] if "params" in params else params
  name = type(model).__name__
  if name in ("LSTM", "GRU"):
    return int(p["w_ih_0"].shape[0])
  if name == "WaveNet":
    return int(p["input"]["kernel"].shape[0])
  if name == "NamWaveNet":
    return int(p["a0_rechannel"].shape[0])
  return None


def fix_knobs(model, params, knobs):
  """(model, params) reading audio only, its knob channels held at `knobs`.

  Args:
    knobs: normalised knob values, one per knob channel.

  Raises:
    ValueError: the count does not match, or the family has no fold.
  """
  knobs = np.asarray(knobs, np.float32).reshape(-1)
  n = input_channels(model, params)
  if n is None or n - 1 != knobs.size:
    knob_channels = None if n is None else n - 1
    raise ExportError(
        f"the model reads {n} input channels (audio + {knob_channels} "
        f"knobs); --knobs gave {knobs.size} value(s)")
  name = type(model).__name__
  if name in ("LSTM", "GRU"):
    p = _tree(params)
    bias = "bias_0" if name == "LSTM" else "b_ih_0"
    p[bias] = p[bias] + knobs @ p["w_ih_0"][1:]
    p["w_ih_0"] = p["w_ih_0"][:1]
    return model, wrap(p)
  if name == "WaveNet":
    p = numpy_tree(params)
    p["input"]["bias"] = p["input"]["bias"] + knobs @ p["input"]["kernel"][1:]
    p["input"]["kernel"] = p["input"]["kernel"][:1]
    return model, wrap(p)
  raise ExportError(f"knob channels of a {name} cannot be fixed for export")


def fold_skip(model, params, sign=1.0):
  """An LSTM/GRU with skip=True as an equal one with skip=False and one
  more unit carrying sign * x to the head (see the module docstring)."""
  name = type(model).__name__
  gates = 4 if name == "LSTM" else 3
  p, h = _tree(params), model.hidden_size
  out = {}
  for k in range(model.num_layers):
    w_ih, w_hh = p[f"w_ih_{k}"], p[f"w_hh_{k}"]
    n_in = w_ih.shape[0] + (0 if k == 0 else 1)
    new_ih = np.zeros((n_in, gates * (h + 1)), np.float32)
    new_hh = np.zeros((h + 1, gates * (h + 1)), np.float32)
    for g in range(gates):
      new_ih[:w_ih.shape[0], g * (h + 1):g * (h + 1) + h] = (
          w_ih[:, g * h:(g + 1) * h])
      new_hh[:h, g * (h + 1):g * (h + 1) + h] = w_hh[:, g * h:(g + 1) * h]
    carrier = 2 * (h + 1) + h  # gate 2: LSTM g, GRU n
    new_ih[0 if k == 0 else n_in - 1, carrier] = EPS if k == 0 else 1.0
    out[f"w_ih_{k}"], out[f"w_hh_{k}"] = new_ih, new_hh
    biases = ("bias",) if name == "LSTM" else ("b_ih", "b_hh")
    for b in biases:
      old = p[f"{b}_{k}"]
      new = np.zeros(gates * (h + 1), np.float32)
      for g in range(gates):
        new[g * (h + 1):g * (h + 1) + h] = old[g * h:(g + 1) * h]
      if b in ("bias", "b_ih"):
        unit = [GATE, -GATE, 0.0, GATE] if name == "LSTM" else [0.0, -GATE,
                                                                0.0]
        new[h::h + 1] = unit
      out[f"{b}_{k}"] = new
  out["w_out"] = np.concatenate([p["w_out"].reshape(h, 1),
                                 [[sign / EPS]]]).astype(np.float32)
  out["b_out"] = p["b_out"].reshape(1)
  folded = models.create(name.lower(), hidden_size=h + 1,
                         num_layers=model.num_layers, skip=False)
  return folded, wrap(out)


def warmed_on_silence(model, params, knobs=(), batch=1):
  """The state after receptive_field - 1 samples of silence (knob channels
  held at `knobs`): a finite-memory model started as NAM starts its models."""
  state = model.initial_state(batch)
  n = int(model.receptive_field) - 1
  if n > 0:
    x = jnp.broadcast_to(jnp.asarray([0.0, *knobs], jnp.float32),
                         (batch, n, 1 + len(knobs)))
    _, state = jax.jit(model.apply)(params, x, state)
  return state


def _wavenet_layers(model, p, c, rb):
  """Canonical NAM layer-array pieces and params of emu's wavenet layers."""
  names, params = [], {}
  bias_in, last = p["input"]["bias"], len(model.dilations) - 1
  m = c * (2 if model.gated else 1)
  for j in range(len(model.dilations)):
    pre = f"a0_l{j}_"
    kernel = p[f"conv_{j}_kernel"]
    params[pre + "conv"] = kernel
    params[pre + "conv_bias"] = p[f"conv_{j}_bias"] + bias_in @ kernel.sum(0)
    params[pre + "mixer"] = np.zeros((1, m), np.float32)
    res = p.get(f"residual_{j}") if j < last else None
    params[pre + "layer1x1"] = (res["kernel"] if res else
                                np.zeros((c, c), np.float32))
    params[pre + "layer1x1_bias"] = (res["bias"] if res else
                                     np.zeros(c, np.float32))
    skip = p[f"skip_{j}"]
    params[pre + "head1x1"] = np.pad(skip["kernel"], ((0, 0), (0, rb)))
    params[pre + "head1x1_bias"] = np.pad(skip["bias"], (0, rb))
    names.append(("gated", {"type": "Sigmoid"}) if model.gated else (
        "none", None))
  return names, params


def wavenet_as_nam(model, params):
  """emu's `wavenet` (audio input only: `fix_knobs` first) as a NamWaveNet
  whose output from silence equals emu's from silence."""
  p = numpy_tree(params)
  if p["input"]["kernel"].shape[0] != 1:
    raise ExportError("fix the knob channels first (fix_knobs)")
  c, n = model.channels, len(model.dilations)
  if model.skip and c < 2:
    raise ExportError("a wavenet with skip needs channels >= 2 to carry the "
                     "dry input in NAM's layout (relu(x) - relu(-x))")
  rb = 1 if model.skip else 0
  modes, tree = _wavenet_layers(model, p, c, rb)
  tree["a0_rechannel"] = p["input"]["kernel"]
  kernels, dilations = [model.kernel_size] * n, list(model.dilations)
  acts = [{"type": "Tanh"}] * n
  if model.skip:
    pre = f"a0_l{n}_"
    tree[pre + "conv"] = np.zeros((1, c, c), np.float32)
    tree[pre + "conv_bias"] = np.zeros(c, np.float32)
    mixer = np.zeros((1, c), np.float32)
    mixer[0, :2] = [1.0, -1.0]
    tree[pre + "mixer"] = mixer
    tree[pre + "layer1x1"] = np.zeros((c, c), np.float32)
    tree[pre + "layer1x1_bias"] = np.zeros(c, np.float32)
    head1x1 = np.zeros((c, c + 1), np.float32)
    head1x1[:2, c] = [1.0, -1.0]
    tree[pre + "head1x1"] = head1x1
    tree[pre + "head1x1_bias"] = np.zeros(c + 1, np.float32)
    kernels, dilations = kernels + [1], dilations + [1]
    acts = acts + [{"type": "ReLU"}]
    modes = modes + [("none", None)]
  head = p["head"]["kernel"].reshape(c, 1)
  if model.skip:
    head = np.concatenate([head, [[1.0]]]).astype(np.float32)
  tree["a0_head"] = head.reshape(1, c + rb, 1)
  tree["a0_head_bias"] = p["head"]["bias"].reshape(1)
  # The gated layers' conv makes 2C channels; a ReLU layer's C.
  config = {"layers": [{
      "input_size": 1, "condition_size": 1,
      "head": {"out_channels": 1, "kernel_size": 1, "bias": True},
      "channels": c, "bottleneck": c, "kernel_sizes": kernels,
      "dilations": dilations, "activation": acts,
      "gating_mode": [m for m, _ in modes],
      "secondary_activation": [s for _, s in modes],
      "head1x1": {"active": True, "out_channels": c + rb, "groups": 1},
      "layer1x1": {"active": True, "groups": 1}}],
            "head": None, "head_scale": 1.0}
  nam = nam_wavenet.NamWaveNet(config=nam_wavenet.dumps(config))
  expected = nam_wavenet.param_shapes(nam.spec)
  assert {k: v.shape for k, v in tree.items()} == expected, "layout"
  return nam, wrap(tree)

