"""NAM's WaveNet (Neural Amp Modeler) as an emu model, layer for layer.

The model NAM trains and its plugin runs (neural-amp-modeler 0.13,
nam/models/wavenet/_layer_array.py and _wavenet.py; NeuralAmpModelerCore
NAM/wavenet/model.cpp), under emu's model contract. Its one hyperparameter
is `config`: the "config" object of a `.nam` file (format 0.7.0) as JSON
text; the default is NAM's classic "standard" WaveNet (two layer arrays of
16 and 8 channels, dilations 1..512 each, Tanh, head_scale 0.02).

  c = x                                       # the condition: the input
  for each layer array (input y: x first, then the previous residual):
    h = rechannel(y)                          # 1x1, no bias
    for each layer (kernel k, dilation d, activation):
      z = conv_k,d(h) + bias + mixer(c)       # mixer: 1x1 of c, no bias
      a = act(z)   # gated: p(z1) * s(z2); blended: s(z2) p(z1) + (1 - s) z1
      h = h + layer1x1(a)    (or h + a)       # the residual stream
      head += head1x1(a)     (or head += a)
    head = head_rechannel(head)               # causal conv, optional bias
  y = head_scale * head   (then the optional post head: act -> conv blocks)

Start: NAM runs a fresh model as if it had heard silence forever (its
Python pads the input with receptive_field - 1 zeros, its plugin pre-warms
on silence). So does this module: the zero initial state means "not
started", and the first call fills every convolution's history with that
convolution's input under silence, a constant per channel computed from the
parameters. Streaming is exact as in emu's `wavenet` (each convolution keeps
its last (k - 1) d inputs).

The parameters follow NAM's, transposed to emu's [in, out] and [taps, in,
out] (`param_shapes`); the input's channels set the input and condition
sizes. Not carried (a file that uses them is refused, naming it): FiLM,
condition DSPs, grouped convolutions, slimmable or packed models, head
dilation.
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp

from emu.models import common

_NONE = "none"


def _act(spec):
  """jnp function of one NAM activation, from its .nam dict."""
  kind = spec["type"]
  if kind == "Tanh":
    return jnp.tanh
  if kind == "Sigmoid":
    return jax.nn.sigmoid
  if kind == "ReLU":
    return jax.nn.relu
  if kind == "LeakyReLU":
    slope = spec.get("negative_slope", 0.01)
    return lambda z: jnp.where(z > 0, z, slope * z)
  if kind == "Hardtanh":
    lo, hi = spec.get("min_val", -1.0), spec.get("max_val", 1.0)
    return lambda z: jnp.clip(z, lo, hi)
  if kind == "LeakyHardtanh":
    lo, hi = spec.get("min_val", -1.0), spec.get("max_val", 1.0)
    s_lo, s_hi = spec.get("min_slope", 0.01), spec.get("max_slope", 0.01)
    return lambda z: jnp.where(z < lo, (z - lo) * s_lo + lo, jnp.where(
        z > hi, (z - hi) * s_hi + hi, z))
  if kind == "SiLU":
    return jax.nn.silu
  if kind == "Hardswish":
    return lambda z: z * jnp.clip(z + 3.0, 0.0, 6.0) / 6.0
  if kind == "Softsign":
    return lambda z: z / (1.0 + jnp.abs(z))
  raise ValueError(
      f"activation {spec!r} is not one emu runs; NAM WaveNets with Tanh, "
      f"Sigmoid, ReLU, LeakyReLU, Hardtanh, LeakyHardtanh, SiLU, Hardswish "
      f"or Softsign activations load")


def activation_dict(a):
  """A .nam activation ("Tanh", {"name": ..}, {"type": ..}) as {"type": ..}."""
  if isinstance(a, str):
    return {"type": a}
  a = dict(a)
  if "type" not in a:
    a["type"] = a.pop("name")
  if a["type"] == "PReLU":
    raise ValueError("PReLU activations are not read (their slopes are not "
                     "in NAM's weights); retrain with LeakyReLU")
  _act(a)  # refuses the unknown ones
  return a


def _per_layer(value, n, what):
  values = list(value) if isinstance(value, (list, tuple)) else [value] * n
  if len(values) != n:
    raise ValueError(f"{what} has {len(values)} entries for {n} layers")
  return values


def _refuse(lc, i):
  """Raises ValueError for the layer-array features emu does not run."""
  where = f"layer array {i}"
  for key in ("groups_input", "groups_input_mixin"):
    if lc.get(key, 1) != 1:
      raise ValueError(f"{where}: {key}={lc[key]} (grouped convolutions) "
                       "is not carried; retrain with groups 1")
  for key in ("layer1x1", "head1x1"):
    if (lc.get(key) or {}).get("groups", 1) != 1:
      raise ValueError(f"{where}: {key} groups != 1 is not carried")
  for key, film in lc.items():
    if key.endswith("_film") and film and (film is True or film.get(
        "active", True)):
      raise ValueError(f"{where}: FiLM ({key}) is not carried; retrain "
                       "without FiLM")
  if lc.get("slimmable") or lc.get("packing"):
    raise ValueError(f"{where}: slimmable or packed layer arrays are not "
                     "carried; export the submodel you want")
  if (lc.get("head") or {}).get("head_dilation", 1) != 1:
    raise ValueError(f"{where}: head_dilation != 1 is not carried")


def canonical_config(config):
  """A .nam WaveNet "config" (0.5.x legacy or 0.7.0) in the explicit 0.7.0
  form this module and `emu.plugins.wavenet_formats` write, as a dict.

  Raises:
    ValueError: a feature emu does not run (the message names it).
  """
  if config.get("condition_dsp"):
    raise ValueError("a condition DSP (config.condition_dsp) is not carried")
  layers = []
  for i, lc in enumerate(config["layers"]):
    _refuse(lc, i)
    n = len(lc["dilations"])
    kernels = lc.get("kernel_sizes", lc.get("kernel_size"))
    acts = [activation_dict(a) for a in _per_layer(lc["activation"], n,
                                                   "activation")]
    if "gating_mode" in lc:
      modes = _per_layer(lc["gating_mode"], n, "gating_mode")
      seconds = _per_layer(lc.get("secondary_activation"), n,
                           "secondary_activation")
    else:  # legacy: "gated" true means tanh-like primary times sigmoid
      gated = bool(lc.get("gated", False))
      modes = ["gated" if gated else _NONE] * n
      seconds = [{"type": "Sigmoid"} if gated else None] * n
    seconds = [None if m == _NONE else activation_dict(s or "Sigmoid")
               for m, s in zip(modes, seconds)]
    if any(m not in ("gated", "blended", _NONE) for m in modes):
      raise ValueError(f"layer array {i}: gating modes {modes} (known: "
                       "gated, blended, none)")
    head = lc.get("head") or {"out_channels": lc["head_size"],
                              "kernel_size": 1, "bias": lc["head_bias"]}
    h1 = lc.get("head1x1") or {"active": False}
    layers.append({
        "input_size": int(lc["input_size"]),
        "condition_size": int(lc["condition_size"]),
        "head": {"out_channels": int(head["out_channels"]),
                 "kernel_size": int(head["kernel_size"]),
                 "bias": bool(head["bias"])},
        "channels": int(lc["channels"]),
        "bottleneck": int(lc.get("bottleneck", lc["channels"])),
        "kernel_sizes": [int(k) for k in _per_layer(kernels, n,
                                                    "kernel_sizes")],
        "dilations": [int(d) for d in lc["dilations"]],
        "activation": acts, "gating_mode": list(modes),
        "secondary_activation": seconds,
        "head1x1": {"active": bool(h1["active"]),
                    "out_channels": int(h1.get("out_channels", 1)),
                    "groups": 1},
        "layer1x1": {"active": bool((lc.get("layer1x1") or {}).get(
            "active", True)), "groups": 1},
        "groups_input": 1, "groups_input_mixin": 1,
    })
  for i, lc in enumerate(layers):
    if not lc["layer1x1"]["active"] and lc["bottleneck"] != lc["channels"]:
      raise ValueError(f"layer array {i}: without layer1x1 the bottleneck "
                       "must equal the channels")
  head = config.get("head")
  if head is not None:
    head = {"channels": int(head["channels"]),
            "activation": activation_dict(head["activation"]),
            "out_channels": int(head["out_channels"]),
            "kernel_sizes": [int(k) for k in head["kernel_sizes"]]}
  return {"layers": layers, "head": head,
          "head_scale": float(config["head_scale"])}


def _standard():
  """NAM's classic standard WaveNet (nam 0.5-0.12 'standard' architecture)."""
  dil = list(2 ** i for i in range(10))
  arrays = [dict(input_size=1, condition_size=1, channels=16, head_size=8,
                 kernel_size=3, dilations=dil, activation="Tanh",
                 gated=False, head_bias=False),
            dict(input_size=16, condition_size=1, channels=8, head_size=1,
                 kernel_size=3, dilations=dil, activation="Tanh",
                 gated=False, head_bias=True)]
  return canonical_config({"layers": arrays, "head": None,
                           "head_scale": 0.02})


def dumps(config):
  """The canonical JSON text of a config, the module's hyperparameter."""
  return json.dumps(canonical_config(config), sort_keys=True)


STANDARD = dumps(_standard())


def with_inputs(config, channels):
  """The config with `channels` input channels: the first array's input and
  every array's condition (NAM's condition is the input itself)."""
  layers = [dict(lc, condition_size=channels) for lc in config["layers"]]
  layers[0]["input_size"] = channels
  return dict(config, layers=layers)


def head1x1_width(lc):
  """Channels a layer adds to the head path."""
  return lc["head1x1"]["out_channels"] if lc["head1x1"]["active"] else (
      lc["bottleneck"])


def conv_inputs(config):
  """(kernel_size, dilation, input channels) of every causal convolution,
  in the order of the model's state."""
  out = []
  for lc in config["layers"]:
    out += [(k, d, lc["channels"]) for k, d in zip(lc["kernel_sizes"],
                                                   lc["dilations"])]
    out.append((lc["head"]["kernel_size"], 1, head1x1_width(lc)))
  if config["head"] is not None:
    cin = config["layers"][-1]["head"]["out_channels"]
    for k in config["head"]["kernel_sizes"]:
      out.append((k, 1, cin))
      cin = config["head"]["channels"]
  return out


def param_shapes(config):
  """name -> shape of every parameter, in the order of NAM's weights."""
  shapes = {}
  for a, lc in enumerate(config["layers"]):
    c, b = lc["channels"], lc["bottleneck"]
    shapes[f"a{a}_rechannel"] = (lc["input_size"], c)
    for j, (k, mode) in enumerate(zip(lc["kernel_sizes"],
                                      lc["gating_mode"])):
      m = b * (1 if mode == _NONE else 2)
      pre = f"a{a}_l{j}_"
      shapes[pre + "conv"] = (k, c, m)
      shapes[pre + "conv_bias"] = (m,)
      shapes[pre + "mixer"] = (lc["condition_size"], m)
      if lc["layer1x1"]["active"]:
        shapes[pre + "layer1x1"] = (b, c)
        shapes[pre + "layer1x1_bias"] = (c,)
      if lc["head1x1"]["active"]:
        shapes[pre + "head1x1"] = (b, head1x1_width(lc))
        shapes[pre + "head1x1_bias"] = (head1x1_width(lc),)
    hd = lc["head"]
    shapes[f"a{a}_head"] = (hd["kernel_size"], head1x1_width(lc),
                            hd["out_channels"])
    if hd["bias"]:
      shapes[f"a{a}_head_bias"] = (hd["out_channels"],)
  if config["head"] is not None:
    cin = config["layers"][-1]["head"]["out_channels"]
    ks = config["head"]["kernel_sizes"]
    for i, k in enumerate(ks):
      cout = config["head"]["out_channels"] if i == len(ks) - 1 else (
          config["head"]["channels"])
      shapes[f"post{i}"] = (k, cin, cout)
      shapes[f"post{i}_bias"] = (cout,)
      cin = cout
  return shapes


def _pair(mode, primary, secondary, z):
  if mode == _NONE:
    return primary(z)
  z1, z2 = jnp.split(z, 2, axis=-1)
  if mode == "gated":
    return primary(z1) * secondary(z2)
  s = secondary(z2)
  return s * primary(z1) + (1.0 - s) * z1


def forward(config, p, x, conv):
  """NAM's WaveNet on x [batch, time, in] with `conv(i, input, kernel,
  dilation)` for the i-th causal convolution (bias added here)."""
  i = 0
  y, c, head = x, x, None
  for a, lc in enumerate(config["layers"]):
    h = y @ p[f"a{a}_rechannel"]
    for j, d in enumerate(lc["dilations"]):
      pre = f"a{a}_l{j}_"
      z = conv(i, h, p[pre + "conv"], d) + p[pre + "conv_bias"] + (
          c @ p[pre + "mixer"])
      i += 1
      second = lc["secondary_activation"][j]
      act = _pair(lc["gating_mode"][j], _act(lc["activation"][j]),
                  second and _act(second), z)
      if lc["layer1x1"]["active"]:
        h = h + act @ p[pre + "layer1x1"] + p[pre + "layer1x1_bias"]
      else:
        h = h + act
      term = (act @ p[pre + "head1x1"] + p[pre + "head1x1_bias"]
              if lc["head1x1"]["active"] else act)
      head = term if head is None else head + term
    head = conv(i, head, p[f"a{a}_head"], 1)
    i += 1
    if lc["head"]["bias"]:
      head = head + p[f"a{a}_head_bias"]
    y = h
  out = config["head_scale"] * head
  if config["head"] is not None:
    act = _act(config["head"]["activation"])
    for k in range(len(config["head"]["kernel_sizes"])):
      out = conv(i, act(out), p[f"post{k}"], 1) + p[f"post{k}_bias"]
      i += 1
  return out


class NamWaveNet(nn.Module):
  """NAM's WaveNet; `config` is a .nam file's "config" as JSON text.

  State: (started [batch], one history per causal convolution
  [batch, (k - 1) d, in]); zeros = not started (silence before the first
  sample, as NAM).
  """
  config: str = STANDARD
  starts_from_silence = True  # its zero state is silence (emu.apply asks)

  @property
  def spec(self):
    return canonical_config(json.loads(self.config))

  @property
  def receptive_field(self):
    """Input samples that reach one output: 1 + sum((k - 1) * d)."""
    return 1 + sum((k - 1) * d for k, d, _ in conv_inputs(self.spec))

  def initial_state(self, batch):
    """Not started: every history zero (filled with silence on first use)."""
    return (jnp.zeros((batch,), jnp.float32),) + tuple(
        jnp.zeros((batch, (k - 1) * d, cin), jnp.float32)
        for k, d, cin in conv_inputs(self.spec))

  @nn.compact
  def __call__(self, x, state=None):
    """Processes a block: x [batch, time, in] -> y [batch, time, 1], state.

    The input's channels (audio + knobs) set the first array's input_size
    and the condition_size, as a Dense layer's input sets its kernel.
    """
    spec = with_inputs(self.spec, x.shape[-1])
    if state is None:
      state = self.initial_state(x.shape[0])
    init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform",
                                            in_axis=-2, out_axis=-1)
    p = {name: self.param(name, nn.initializers.zeros if name.endswith(
        "_bias") else init, shape) for name, shape in param_shapes(
            spec).items()}
    silence = []

    def conv_silence(i, inp, kernel, dilation):
      del i, dilation
      silence.append(inp[0, 0])
      return inp @ kernel.sum(axis=0)

    forward(spec, p, jnp.zeros((1, 1, x.shape[-1]), x.dtype), conv_silence)
    started = state[0][:, None, None] > 0
    histories = []

    def conv_stream(i, inp, kernel, dilation):
      history = jnp.where(started, state[1 + i], silence[i])
      padded = jnp.concatenate([history, inp], axis=1)
      histories.append(padded[:, padded.shape[1] - history.shape[1]:])
      return common.conv1d(padded, kernel, dilation=dilation)

    y = forward(spec, p, x, conv_stream)
    return y, (jnp.ones_like(state[0]),) + tuple(histories)
