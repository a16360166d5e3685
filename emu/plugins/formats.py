"""emu's models in real-time plugin formats, written and read back.

What `emu.plugins.export` writes (`python -m emu.export`) in JSON (its
fourth format, a Faust program of a grey box, is `emu.plugins.faust`):

- `nam`: Neural Amp Modeler's `.nam` file (the NAM plugin and
  NeuralAmpModelerCore). LSTM: architecture "LSTM", per layer the PyTorch
  matrix [w_ih | w_hh] as [4H, in + H] row-major, the bias b_ih + b_hh [4H],
  the initial hidden and cell states [H] each (zeros: emu starts from zero),
  then the head Linear(H, 1) weight [H] and bias. emu's `wavenet` and
  `nam_wavenet`: architecture "WaveNet" (`emu.plugins.wavenet_formats`). NAM has no
  GRU.
- `rtneural`: RTNeural's Keras-style JSON (`RTNeural::json_parser`):
  "in_shape", then "lstm"/"gru" layers with Keras weights (kernel [in][nH],
  recurrent kernel [H][nH], bias) and a "dense" head. Keras's LSTM gate order
  i, f, c, o equals emu's (PyTorch's) i, f, g, o; Keras's GRU order z, r, h
  differs from emu's r, z, n, so GRU columns are reordered, and its bias is
  [2][3H] (input, recurrent) in the reset-after form emu uses. An ungated
  `wavenet` goes in as conv1d and dense layers (`emu.plugins.wavenet_formats`).
- `guitarml`: the JSON of Automated-GuitarAmpModelling's SimpleRNN
  ({"model_data": ..., "state_dict": ...} in PyTorch layout), which
  GuitarML's plugins (NeuralPi, Proteus, ...) load into RTNeural.

The dry-input skip (`skip=True`, emu's default: y = RNN(x) + x): NAM's LSTM
and a plain RTNeural stack compute head(h) only, so a skip model is written
as the equal model with one more unit that carries x to the head
(`emu.plugins.folds.fold_skip`: LSTM-32 with the skip becomes LSTM-33). The
`guitarml` format records `"skip": 1`, and GuitarML's plugins add the input
themselves (NeuralPi's RT_LSTM returns `model.forward(x) + x`), so a skip
model goes in as it is, and one without the skip gets the extra unit
carrying -x (GuitarML's plugins are built for one hidden size: check that
yours takes H + 1). Knob channels are fixed by `emu.plugins.export` (`knobs`) before
a writer sees the model.

An ensemble is written as one wider model by `emu.plugins.export.export`.
`load_nam`, `load_rtneural` and `load_guitarml` rebuild the emu model and
params from a file (or its dict), so a file can be checked against the
model it came from. JSON stores each float32 weight exactly (its float64
repr), so a round trip is bit-exact.
"""

import warnings

import jax.numpy as jnp
import numpy as np

from emu import models
from emu.plugins import folds
from emu.plugins import wavenet_formats
from emu.plugins.reading import reader  # pylint: disable=g-importing-member
from emu.plugins.reading import require  # pylint: disable=g-importing-member

FORMATS = ("nam", "rtneural", "guitarml")
# The .nam version of LSTM files: the LSTM layout has not changed since 0.5,
# and NeuralAmpModelerCore releases that read only 0.5.x files are still in
# use. WaveNets need 0.7.0 (wavenet_formats.NAM_WAVENET_VERSION).
NAM_VERSION = "0.5.4"
ExportError = folds.ExportError
_RECURRENT = ("LSTM", "GRU")
# Grey boxes by class name: their names as models.
_GREY_BOXES = {"Wiener": "wiener", "NSS": "nss"}


# ------------------------------------------------------------ the model


def _family(model, fmt):
  """'lstm' or 'gru'; ExportError naming what the format takes otherwise."""
  name = type(model).__name__
  if name in _RECURRENT:
    return name.lower()
  takes = {"nam": "lstm, wavenet and nam_wavenet",
           "rtneural": "lstm, gru and ungated wavenet",
           "guitarml": "lstm and gru"}[fmt]
  if name in _GREY_BOXES:
    faust = ("" if model.residual_channels else
             "Export it exactly with --format=faust (a Faust program, which "
             "Debian's faust builds into an LV2 or VST plugin), ")
    raise ExportError(
        f"the grey-box {_GREY_BOXES[name]} does not export to {fmt}: its "
        f"{_grey_box_stages(model)} are layers {fmt} does not hold. "
        f"{faust}{'play' if faust else 'Play'} it with python -m emu.apply "
        "(or emu.stream in a host); a capture (--dataset=files) leaves "
        "DIR/model.nam, NAM's WaveNet distilled from it (--plugin_seconds); "
        "or capture for NAM's plugin with "
        f"--flagfile=experiments/capture_plugin.flags (a WaveNet; {fmt} "
        f"takes {takes} models)")
  raise ExportError(
      f"a {name} does not export to {fmt}, which takes {takes} models; "
      f"retrain with one of those (--model=...)")


def _grey_box_stages(model) -> str:
  """What a grey box (wiener, nss) holds, in words: 'state-space filters
  and waveshaper' (or 'nonlinear state-space core'), with its compressor
  stage and residual WaveNet if any."""
  stages = []
  if model.pre_modes or model.post_modes:
    stages.append("state-space filters")
  stages.append("waveshaper" if _GREY_BOXES[type(model).__name__] == "wiener"
                else "nonlinear state-space core")
  if getattr(model, "dynamics_width", 0):
    stages.append("compressor stage")
  if model.residual_channels:
    stages.append("residual WaveNet")
  return ", ".join(stages[:-1]) + " and " + stages[-1] if len(
      stages) > 1 else stages[0]


def _one_input(model, params, fmt):
  n = folds.input_channels(model, params)
  if n != 1:
    raise ExportError(
        f"the model reads {n} input channels (audio + {n - 1} knobs); the "
        f"{fmt} plugin feeds audio only: fix the knobs at the setting you "
        "want with --knobs=V1,... (normalised 0-1; export(..., knobs=...))")


def _without_skip(model, params):
  """The model, with the skip folded into one more unit if it has one."""
  if model.skip:
    return folds.fold_skip(model, params)
  return model, params


def _layers(model, params):
  """numpy float32 weights per layer and the head, in emu's layout.

  Returns:
    (layers, w_out [H, 1], b_out [1]); each layer a dict of w_ih [in, nH],
    w_hh [H, nH] and bias [nH] (LSTM) or b_ih, b_hh [3H] (GRU).
  """
  p = params["params"] if "params" in params else params
  f32 = lambda a: np.asarray(a, np.float32)
  layers = []
  for k in range(model.num_layers):
    names = ("w_ih", "w_hh", "bias") if type(model).__name__ == "LSTM" else (
        "w_ih", "w_hh", "b_ih", "b_hh")
    layers.append({n: f32(p[f"{n}_{k}"]) for n in names})
  return layers, f32(p["w_out"]), f32(p["b_out"])


def _input_size(layers):
  return int(layers[0]["w_ih"].shape[0])


def _params_tree(layers, w_out, b_out):
  tree = {f"{n}_{k}": jnp.asarray(a, jnp.float32)
          for k, layer in enumerate(layers) for n, a in layer.items()}
  tree["w_out"] = jnp.asarray(w_out, jnp.float32).reshape(-1, 1)
  tree["b_out"] = jnp.asarray(b_out, jnp.float32).reshape(1)
  return {"params": tree}


def _gru_to_keras(a, hidden):
  """Columns r, z, n (emu, PyTorch) -> z, r, n (Keras, RTNeural)."""
  r, z, n = (a[..., i * hidden:(i + 1) * hidden] for i in range(3))
  return np.concatenate([z, r, n], axis=-1)


def _gru_from_keras(a, hidden):
  z, r, n = (a[..., i * hidden:(i + 1) * hidden] for i in range(3))
  return np.concatenate([r, z, n], axis=-1)


# ------------------------------------------------------------------ NAM


def export_nam(model, params, sample_rate, metadata=None) -> dict:
  """The `.nam` dict of an emu LSTM, wavenet or nam_wavenet.

  Args:
    model: emu LSTM (skip or not), `wavenet` or `nam_wavenet`, reading one
      input channel (audio; `emu.plugins.export.export` fixes knobs first).
    params: its Flax params ({"params": {...}}).
    sample_rate: Hz the model was trained at (the plugin checks it).
    metadata: extra "metadata" entries (name, modeled_by, loudness, ...).

  Returns:
    dict ready for json.dump.

  Raises:
    ExportError: a GRU or another family, or knob inputs (the message
      names the fix).
  """
  if type(model).__name__ in ("WaveNet", "NamWaveNet"):
    _one_input(model, params, "NAM")
    return wavenet_formats.export_nam_wavenet(model, params, sample_rate,
                                             metadata)
  if _family(model, "nam") != "lstm":
    raise ExportError(
        "NAM has no GRU architecture; export a GRU with --format=rtneural "
        "or --format=guitarml, or retrain with --model=lstm")
  _one_input(model, params, "NAM")
  model, params = _without_skip(model, params)
  layers, w_out, b_out = _layers(model, params)
  hidden = model.hidden_size
  weights = []
  for layer in layers:
    # PyTorch's weight_ih is w_ih.T; NAM stores [w_ih | w_hh] row-major.
    weights.append(np.concatenate([layer["w_ih"].T, layer["w_hh"].T],
                                  axis=1).ravel())
    weights.append(layer["bias"])  # = b_ih + b_hh: emu keeps one bias
    weights.append(np.zeros(2 * hidden, np.float32))  # initial h, then c
  weights += [w_out[:, 0], b_out.reshape(1)]
  return {
      "version": NAM_VERSION,
      "architecture": "LSTM",
      "config": {"input_size": 1, "hidden_size": hidden,
                 "num_layers": model.num_layers},
      "weights": folds.float_list(np.concatenate(weights)),
      "sample_rate": float(sample_rate),
      "metadata": {"date": wavenet_formats.nam_date(), "exported_by": "emu",
                   **(metadata or {})},
  }


@reader("NAM (.nam)")
def load_nam(path_or_dict):
  """Rebuilds (model, params, sample_rate) from a .nam file or dict: LSTM,
  WaveNet (`emu.models.nam_wavenet`, NAM's file format 0.5.x or 0.7.0), or a
  SlimmableContainer (its highest-quality WaveNet).

  NAM's own trainer stores a settled (nonzero) initial state, which emu's
  zero initial state cannot hold: such a file loads with a warning, and its
  output differs from NAM's for the first moments only.
  """
  d = path_or_dict  # read and its errors named by reader
  require(d, {"architecture": "text", "config": "object"})
  if d["architecture"] == "WaveNet":
    require(d, {"weights": "numbers"})
  if d["architecture"] in ("WaveNet", "SlimmableContainer"):
    try:
      return wavenet_formats.load_nam_wavenet(d)
    except ValueError as e:
      raise ExportError(f"its WaveNet: {e}") from e
  if d["architecture"] != "LSTM":
    raise ExportError(
        f"emu reads NAM's LSTM and WaveNet files; this one is "
        f"{d['architecture']!r}")
  require(d, {"config.hidden_size": "size", "config.num_layers": "size",
               "weights": "numbers"})
  if "input_size" in d["config"]:
    require(d, {"config.input_size": "size"})
  cfg = d["config"]
  hidden, num_layers = int(cfg["hidden_size"]), int(cfg["num_layers"])
  in_size = int(cfg.get("input_size", 1))
  w = np.asarray(d["weights"], np.float32)
  expected = hidden + 1 + sum(
      4 * hidden * ((in_size if k == 0 else hidden) + hidden) + 6 * hidden
      for k in range(num_layers))
  if w.size != expected:
    raise ExportError(
        f"the file holds {w.size} weights; an LSTM with input_size "
        f"{in_size}, hidden_size {hidden} and {num_layers} layers has "
        f"{expected} (a damaged or truncated file: export it again)")
  layers, at, states = [], 0, []
  for k in range(num_layers):
    n_in = in_size if k == 0 else hidden
    cols = n_in + hidden
    mat = w[at:at + 4 * hidden * cols].reshape(4 * hidden, cols)
    at += mat.size
    bias = w[at:at + 4 * hidden]
    at += 4 * hidden
    states.append(w[at:at + 2 * hidden])
    at += 2 * hidden
    layers.append({"w_ih": mat[:, :n_in].T.copy(),
                   "w_hh": mat[:, n_in:].T.copy(), "bias": bias})
  w_out, b_out = w[at:at + hidden], w[at + hidden:]
  model = models.create("lstm", hidden_size=hidden, num_layers=num_layers,
                        skip=False)
  params = _params_tree(layers, w_out, b_out)
  if any(np.any(s) for s in states):
    warnings.warn(
        "this .nam file has a nonzero initial state; emu starts from zero, "
        "so the first moments of output differ (the rest agrees)",
        stacklevel=2)
  return model, params, d.get("sample_rate")


# ------------------------------------------------------------- RTNeural


def export_rtneural(model, params, sample_rate=None, metadata=None) -> dict:
  """RTNeural's Keras-style JSON of an emu LSTM, GRU or ungated wavenet.

  RTNeural's loader reads "in_shape" and "layers" only; the sample rate
  (Hz) and `metadata` go in an extra "metadata" entry that it ignores.
  """
  meta = {"exported_by": "emu", **(metadata or {})}
  if sample_rate is not None:
    meta["sample_rate"] = float(sample_rate)
  name = type(model).__name__
  if name in ("WaveNet", "NamWaveNet"):
    _one_input(model, params, "RTNeural")
    if name == "NamWaveNet" or model.gated:
      raise ExportError(
          "RTNeural's JSON stacks layers one after another, with no "
          "elementwise product for the gate tanh(a) * sigmoid(b)" + (
              " nor NAM's start from silence" if name == "NamWaveNet" else
              "") + ": retrain with --nogated to export a wavenet to "
          "RTNeural, or use --format=nam")
    return {"in_shape": [None, None, 1], "layers":
            wavenet_formats.export_rtneural_wavenet(model, params),
            "metadata": meta}
  family = _family(model, "rtneural")
  model, params = _without_skip(model, params)
  layers, w_out, b_out = _layers(model, params)
  hidden = model.hidden_size
  out = []
  for layer in layers:
    if family == "lstm":
      weights = [layer["w_ih"], layer["w_hh"], layer["bias"]]
    else:
      weights = [_gru_to_keras(layer["w_ih"], hidden),
                 _gru_to_keras(layer["w_hh"], hidden),
                 np.stack([_gru_to_keras(layer["b_ih"], hidden),
                           _gru_to_keras(layer["b_hh"], hidden)])]
    out.append({"type": family, "activation": "",
                "shape": [None, None, hidden],
                "weights": [folds.float_list(a) for a in weights]})
  out.append({"type": "dense", "activation": "", "shape": [None, None, 1],
              "weights": [folds.float_list(w_out),
                          folds.float_list(b_out)]})
  return {"in_shape": [None, None, _input_size(layers)], "layers": out,
          "metadata": meta}


@reader("RTNeural JSON")
def load_rtneural(path_or_dict):
  """Rebuilds (model, params, sample_rate or None) from RTNeural JSON.

  Reads stacks of one recurrent type followed by a dense [H -> 1] head
  with no activation, as `export_rtneural` writes them.
  """
  d = path_or_dict  # read and its errors named by reader
  require(d, {"layers": "list"})
  specs = d["layers"]
  if not specs or specs[-1]["type"] != "dense" or specs[-1].get(
      "activation", ""):
    raise ExportError("expected recurrent layers and a final linear dense "
                      "layer")
  kinds = {s["type"] for s in specs[:-1]}
  if "conv1d" in kinds:
    raise ExportError(
        "emu reads back RTNeural files of LSTM or GRU layers; this one holds "
        "conv1d layers (a wavenet as emu writes it): use the run folder it "
        "came from (--workdir) or its .nam export")
  if len(kinds) != 1 or not kinds <= {"lstm", "gru"}:
    raise ExportError(f"expected lstm or gru layers of one type, got "
                      f"{[s['type'] for s in specs]}")
  family = kinds.pop()
  hidden = int(specs[0]["shape"][-1])
  layers = []
  for spec in specs[:-1]:
    w = [np.asarray(a, np.float32) for a in spec["weights"]]
    if family == "lstm":
      layers.append({"w_ih": w[0], "w_hh": w[1], "bias": w[2]})
    else:
      layers.append({"w_ih": _gru_from_keras(w[0], hidden),
                     "w_hh": _gru_from_keras(w[1], hidden),
                     "b_ih": _gru_from_keras(w[2][0], hidden),
                     "b_hh": _gru_from_keras(w[2][1], hidden)})
  dense = [np.asarray(a, np.float32) for a in specs[-1]["weights"]]
  model = models.create(family, hidden_size=hidden, num_layers=len(layers),
                        skip=False)
  params = _params_tree(layers, dense[0], dense[1])
  return model, params, d.get("metadata", {}).get("sample_rate")


# ------------------------------------------------------------- GuitarML


def export_guitarml(model, params, sample_rate=None, metadata=None) -> dict:
  """Automated-GuitarAmpModelling's SimpleRNN JSON of an emu LSTM or GRU.

  PyTorch names and layout: rec.weight_ih_l{k} [nH, in], rec.weight_hh_l{k}
  [nH, H], rec.bias_ih_l{k}, rec.bias_hh_l{k} [nH] (for emu's LSTM the bias
  goes to bias_ih and bias_hh is zero; the plugins add the two), lin.weight
  [1, H], lin.bias [1]. The sample rate (Hz) goes in an extra "emu" entry.
  Always "skip": 1, which GuitarML's plugins apply whatever the file says; a
  model without the skip gets one more unit that carries -x.
  """
  family = _family(model, "guitarml")
  if not model.skip:
    model, params = folds.fold_skip(model, params, sign=-1.0)
  layers, w_out, b_out = _layers(model, params)
  state = {}
  for k, layer in enumerate(layers):
    state[f"rec.weight_ih_l{k}"] = layer["w_ih"].T
    state[f"rec.weight_hh_l{k}"] = layer["w_hh"].T
    if family == "lstm":
      state[f"rec.bias_ih_l{k}"] = layer["bias"]
      state[f"rec.bias_hh_l{k}"] = np.zeros_like(layer["bias"])
    else:
      state[f"rec.bias_ih_l{k}"] = layer["b_ih"]
      state[f"rec.bias_hh_l{k}"] = layer["b_hh"]
  state["lin.weight"] = w_out.T
  state["lin.bias"] = b_out
  emu_info = {"exported_by": "emu", **(metadata or {})}
  if sample_rate is not None:
    emu_info["sample_rate"] = float(sample_rate)
  return {
      "model_data": {
          "model": "SimpleRNN", "input_size": _input_size(layers), "skip": 1,
          "output_size": 1, "unit_type": family.upper(),
          "num_layers": model.num_layers, "hidden_size": model.hidden_size,
          "bias_fl": True},
      "state_dict": {k: folds.float_list(v) for k, v in state.items()},
      "emu": emu_info,
  }


@reader("GuitarML JSON")
def load_guitarml(path_or_dict):
  """Rebuilds (model, params, sample_rate or None) from SimpleRNN JSON."""
  d = path_or_dict  # read and its errors named by reader
  require(d, {"model_data.unit_type": "text", "model_data.num_layers": "size",
               "model_data.hidden_size": "size", "state_dict": "object"})
  info, state = d["model_data"], d["state_dict"]
  family = str(info["unit_type"]).lower()
  if family not in ("lstm", "gru"):
    raise ExportError(f"unit_type {info['unit_type']!r}: emu reads LSTM and "
                      "GRU")
  if int(info.get("skip", 0)) > 1:
    raise ExportError("skip > 1 (several input channels added to the "
                      "output) has no emu equivalent")
  arr = lambda name: np.asarray(state[name], np.float32)
  layers = []
  for k in range(int(info["num_layers"])):
    b_ih, b_hh = arr(f"rec.bias_ih_l{k}"), arr(f"rec.bias_hh_l{k}")
    layer = {"w_ih": arr(f"rec.weight_ih_l{k}").T.copy(),
             "w_hh": arr(f"rec.weight_hh_l{k}").T.copy()}
    if family == "lstm":
      layer["bias"] = b_ih + b_hh
    else:
      layer.update(b_ih=b_ih, b_hh=b_hh)
    layers.append(layer)
  model = models.create(family, hidden_size=int(info["hidden_size"]),
                        num_layers=len(layers),
                        skip=bool(int(info.get("skip", 0))))
  params = _params_tree(layers, arr("lin.weight").T, arr("lin.bias"))
  return model, params, d.get("emu", {}).get("sample_rate")


EXPORTERS = {"nam": export_nam, "rtneural": export_rtneural,
             "guitarml": export_guitarml}
LOADERS = {"nam": load_nam, "rtneural": load_rtneural,
           "guitarml": load_guitarml}
