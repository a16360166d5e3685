"""WaveNets in plugin formats: NAM's .nam WaveNet and RTNeural conv1d stacks.

`.nam` (Neural Amp Modeler, architecture "WaveNet"): the layout of
neural-amp-modeler 0.13 (nam/models/wavenet/_layer_array.py export_config
and export_weights; NeuralAmpModelerCore NAM/wavenet/model.cpp reads it),
file format version 0.7.0, the first with per-layer kernel sizes,
activations and gating modes and with head1x1, which emu's per-layer skip
1x1s need; NeuralAmpModelerCore reads it from release 0.4.1 (its
docs/nam_file_version.rst). The weights are one flat list: per layer array
the rechannel, per layer its conv (weight [out, in, k] row-major, bias), input
mixer, layer1x1 and head1x1 (weight, bias), then the head rechannel; the
post head's convolutions; head_scale last. The plugin reads "sample_rate"
(top level) and, from "metadata", "loudness" (dB, for its output
normalisation), "input_level_dbu" and "output_level_dbu" (its calibration);
NAM's trainer also writes "gain", a "date" and "training" (with
"validation_esr"), which the plugin shows nothing of.

RTNeural (`RTNeural::json_parser::parseJson`, RTNeural/model_loader.h):
a sequential stack, so emu's residual WaveNet goes in as conv1d layers that
carry the residual stream and the running output beside the layer's
activations: conv1d (kernel k, dilation d, "activation": "tanh") makes the
layer's pre-activations and, through its newest tap, CARRY x (the residual
channels and the output sum); tanh(CARRY v) rounds to CARRY v in float32 for
|v| < 2^11 (CARRY = 2^-24), and the dense layer after it multiplies by
1/CARRY (exact: a power of two) and adds the residual and output 1x1s.
conv1d "weights" are [kernel tap][in][out] with tap k - 1 the newest sample
(loadConv1D reverses them into RTNeural's order), then the bias.
RTNeural's convolutions start from zero histories, as emu's `wavenet` does.
"""

import datetime

import numpy as np

from emu.plugins import folds
from emu.models import nam_wavenet

NAM_WAVENET_VERSION = "0.7.0"
CARRY = 2.0 ** -24


def nam_date():
  """NAM's "date" metadata entry, now."""
  t = datetime.datetime.now()
  return {k: getattr(t, k) for k in ("year", "month", "day", "hour",
                                     "minute", "second")}


def _to_torch(a):
  """emu's [k, in, out] / [in, out] layout -> NAM's row-major torch one."""
  a = np.asarray(a, np.float32)
  return a.transpose(2, 1, 0) if a.ndim == 3 else (a.T if a.ndim == 2 else a)


def nam_weights(spec, params):
  """NAM's flat weight list (head_scale last) of a NamWaveNet's params."""
  p = params["params"] if "params" in params else params
  parts = [_to_torch(p[name]).ravel()
           for name in nam_wavenet.param_shapes(spec)]
  parts.append(np.array([spec["head_scale"]], np.float32))
  return np.concatenate(parts)


def nam_params(spec, weights):
  """A NamWaveNet's params from NAM's flat weights (head_scale excluded)."""
  w = np.asarray(weights, np.float32)
  tree, at = {}, 0
  for name, shape in nam_wavenet.param_shapes(spec).items():
    n = int(np.prod(shape))
    block = w[at:at + n].reshape(shape[::-1])  # torch: [out, in(, k)]
    at += n
    tree[name] = block.transpose(2, 1, 0) if len(shape) == 3 else (
        block.T if len(shape) == 2 else block)
  return tree, at


def export_nam_wavenet(model, params, sample_rate, metadata=None):
  """The .nam dict of a NamWaveNet, or of emu's `wavenet` (mapped by
  `folds.wavenet_as_nam`, audio input only)."""
  if type(model).__name__ == "WaveNet":
    model, params = folds.wavenet_as_nam(model, params)
  spec = nam_wavenet.with_inputs(model.spec, folds.input_channels(
      model, params))
  return {
      "version": NAM_WAVENET_VERSION,
      "architecture": "WaveNet",
      "config": spec,
      "weights": folds.float_list(nam_weights(spec, params)),
      "sample_rate": float(sample_rate),
      "metadata": {"date": nam_date(), "exported_by": "emu",
                   **(metadata or {})},
  }


def load_nam_wavenet(d):
  """(NamWaveNet, params, sample_rate) from a .nam WaveNet dict (0.5.x or
  0.7.0); a SlimmableContainer gives its highest-quality submodel.

  Raises:
    ValueError: a feature emu does not run, or a weight count that does
      not match the config.
  """
  if d.get("architecture") == "SlimmableContainer":
    subs = d["config"]["submodels"]
    best = max(subs, key=lambda s: s["max_value"])["model"]
    return load_nam_wavenet({**best, "sample_rate": d.get(
        "sample_rate", best.get("sample_rate"))})
  spec = nam_wavenet.canonical_config(d["config"])
  expected = 1 + sum(int(np.prod(s)) for s in nam_wavenet.param_shapes(
      spec).values())
  if len(d["weights"]) != expected:
    raise folds.ExportError(
        f"the file holds {len(d['weights'])} weights; its WaveNet config "
        f"needs {expected} (a damaged or truncated file)")
  tree, used = nam_params(spec, d["weights"])
  tail = float(np.float32(d["weights"][used]))
  if abs(tail - spec["head_scale"]) > 1e-5:  # as NAM's import_weights
    spec["head_scale"] = tail
  model = nam_wavenet.NamWaveNet(config=nam_wavenet.dumps(spec))
  return model, folds.wrap(tree), d.get("sample_rate")


# ------------------------------------------------------------- RTNeural


def _layer(kind, out, arrays, **extra):
  """One RTNeural layer dict; `arrays` are its weights, in order."""
  return {"type": kind, "activation": extra.pop("activation", ""),
          "shape": [None, None, out],
          "weights": [folds.float_list(a) for a in arrays], **extra}


def export_rtneural_wavenet(model, params):
  """RTNeural layers (conv1d/dense stack) of emu's ungated `wavenet`."""
  p = folds.numpy_tree(params)
  c, taps, last = model.channels, model.kernel_size, len(model.dilations) - 1
  wh, bh = p["head"]["kernel"].reshape(c), p["head"]["bias"].reshape(())
  const = bh + sum(p[f"skip_{j}"]["bias"] for j in range(last + 1)) @ wh
  first_w = np.concatenate([p["input"]["kernel"][:1],
                            [[1.0 if model.skip else 0.0]]], axis=1)
  layers = [_layer("dense", c + 1,
                   [first_w, np.append(p["input"]["bias"], const)])]
  for j, d in enumerate(model.dilations):
    kernel = np.zeros((taps, c + 1, 2 * c + 1), np.float32)
    kernel[:, :c, :c] = p[f"conv_{j}_kernel"]
    kernel[-1, :, c:] = CARRY * np.eye(c + 1, dtype=np.float32)
    bias = np.concatenate([p[f"conv_{j}_bias"],
                           np.zeros(c + 1, np.float32)])
    layers.append(_layer("conv1d", 2 * c + 1, [kernel, bias],
                         activation="tanh", kernel_size=[taps],
                         dilation=[d]))
    out = c + 1 if j < last else 1
    dense = np.zeros((2 * c + 1, out), np.float32)
    dense_b = np.zeros(out, np.float32)
    dense[:c, -1] = p[f"skip_{j}"]["kernel"] @ wh  # its share of the output
    dense[2 * c, -1] = 1.0 / CARRY
    if j < last:
      dense[:c, :c] = p[f"residual_{j}"]["kernel"]
      dense[c:2 * c, :c] = np.eye(c, dtype=np.float32) / CARRY
      dense_b[:c] = p[f"residual_{j}"]["bias"]
    layers.append(_layer("dense", out, [dense, dense_b]))
  return layers
