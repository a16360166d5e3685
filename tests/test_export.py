"""emu.plugins.export: NAM, RTNeural and GuitarML files, their readers, refusals.

Each format is checked two ways: emu's own reader rebuilds the model
(round trip), and a small numpy re-implementation of the consumer's loader
and cell (NeuralAmpModelerCore's lstm.cpp, RTNeural's json_parser and
gru.h / lstm.h) runs the file, so an error made symmetrically in the writer
and emu's reader would still show. NAM's own Python package runs the files
in tests/test_nam_wavenet.py; the folds (skip, knobs, wavenet -> NAM and
RTNeural layouts) are checked in tests/test_plugin_folds.py.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from emu import config as config_lib
from emu.plugins import export
from emu import models
from emu.train import checkpoints as checkpoints_lib
from emu.models import ensemble as ensemble_lib

HIDDEN = 6
LENGTH = 300


def _model(family, num_layers=1, skip=False, hidden=HIDDEN, seed=0,
           channels=1):
  """A small untrained model with random params, biases and head included.

  The shapes come from `jax.eval_shape` and the values from numpy, which
  compiles nothing: these tests are about layout, not initialisation.
  """
  model = models.create(family, hidden_size=hidden, num_layers=num_layers,
                        skip=skip)
  return model, _random_params(model, seed, channels)


def _random_params(model, seed=0, channels=1):
  """Normal(0, 0.4) values in the shapes of `model`'s parameters."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 8, channels)))
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(rng.normal(0.0, 0.4, s.shape), jnp.float32),
      shapes)


def _signal(n=LENGTH, seed=0):
  return np.random.default_rng(seed).uniform(-0.8, 0.8, n).astype(np.float32)


def _run(model, params, x):
  y, _ = model.apply(params, jnp.asarray(x).reshape(1, -1, 1), None)
  return np.asarray(y).reshape(-1)


def _json_trip(d):
  """What a reader gets back from the file on disk."""
  return json.loads(json.dumps(d))


# ------------------------------------------- numpy consumers (reference)


def _sigmoid(v):
  return 1.0 / (1.0 + np.exp(-v))


def _nam_core(d, x):
  """NeuralAmpModelerCore's LSTM, read and run as NAM/lstm.cpp does."""
  cfg = d["config"]
  hidden, in_size = cfg["hidden_size"], cfg["input_size"]
  w = iter(np.asarray(d["weights"], np.float64))
  take = lambda n: np.array([next(w) for _ in range(n)])
  cells = []
  for k in range(cfg["num_layers"]):
    n_in = in_size if k == 0 else hidden
    mat = take(4 * hidden * (n_in + hidden)).reshape(4 * hidden,
                                                     n_in + hidden)
    b = take(4 * hidden)
    h0, c0 = take(hidden), take(hidden)
    cells.append([mat, b, h0, c0])
  head_w, head_b = take(hidden), take(1)[0]
  assert next(w, None) is None, "weights left over"
  out = []
  for sample in x:
    inp = np.array([sample], np.float64)
    for cell in cells:
      mat, b, h, c = cell
      ifgo = mat @ np.concatenate([inp, h]) + b
      i, f, g, o = np.split(ifgo, 4)
      c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
      h = _sigmoid(o) * np.tanh(c)
      cell[2], cell[3] = h, c
      inp = h
    out.append(head_w @ inp + head_b)
  return np.array(out)


def _rtneural(d, x):
  """RTNeural's json_parser + LSTMLayer / GRULayer / Dense, in numpy."""
  layers = []
  for spec in d["layers"]:
    w = spec["weights"]
    if spec["type"] == "dense":
      layers.append(("dense", np.array(w[0]), np.array(w[1])))
    elif spec["type"] == "lstm":
      layers.append(("lstm", np.array(w[0]), np.array(w[1]),
                     np.array(w[2])))
    else:
      layers.append(("gru", np.array(w[0]), np.array(w[1]),
                     np.array(w[2])))
  state = [None] * len(layers)
  out = []
  for sample in x:
    v = np.array([sample], np.float64)
    for n, layer in enumerate(layers):
      if layer[0] == "dense":
        v = v @ layer[1] + layer[2]
        continue
      kernel, recurrent, bias = layer[1:]
      hidden = recurrent.shape[0]
      if layer[0] == "lstm":
        h, c = state[n] or (np.zeros(hidden), np.zeros(hidden))
        # Columns i, f, c, o (lstm.tpp setWVals).
        i, f, g, o = np.split(v @ kernel + h @ recurrent + bias, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        state[n] = (h, c)
      else:
        h = state[n] if state[n] is not None else np.zeros(hidden)
        # Columns z, r, c; bias[0] input, bias[1] recurrent (gru.h).
        xz, xr, xc = np.split(v @ kernel, 3)
        hz, hr, hc = np.split(h @ recurrent, 3)
        b0z, b0r, b0c = np.split(bias[0], 3)
        b1z, b1r, b1c = np.split(bias[1], 3)
        z = _sigmoid(xz + hz + b0z + b1z)
        r = _sigmoid(xr + hr + b0r + b1r)
        cand = np.tanh(xc + r * (hc + b1c) + b0c)
        h = (1 - z) * cand + z * h
        state[n] = h
      v = h
    out.append(v[0])
  return np.array(out)


# ---------------------------------------------------------------- NAM


@pytest.mark.parametrize("num_layers", [1, 2])
def test_nam_file_runs_in_nam_core_as_in_emu(num_layers):
  # Given an LSTM without the skip
  model, params = _model("lstm", num_layers)
  x = _signal()
  # When it is exported to .nam
  d = _json_trip(export.export_nam(model, params, 48000))
  # Then the layout is NAM's and NAM's reader computes emu's output
  assert d["architecture"] == "LSTM" and d["version"].startswith("0.5.")
  assert d["config"] == {"input_size": 1, "hidden_size": HIDDEN,
                         "num_layers": num_layers}
  assert d["sample_rate"] == 48000.0
  per_layer = lambda n_in: 4 * HIDDEN * (n_in + HIDDEN) + 4 * HIDDEN + 2 * (
      HIDDEN)
  assert len(d["weights"]) == per_layer(1) + (num_layers - 1) * per_layer(
      HIDDEN) + HIDDEN + 1
  np.testing.assert_allclose(_nam_core(d, x), _run(model, params, x),
                             atol=1e-5)


def test_nam_round_trip_is_exact():
  model, params = _model("lstm", 2)
  x = _signal()
  back, back_params, rate = export.load_nam(
      _json_trip(export.export_nam(model, params, 44100)))
  assert (back.hidden_size, back.num_layers, back.skip) == (HIDDEN, 2, False)
  assert rate == 44100.0
  np.testing.assert_allclose(_run(back, back_params, x),
                             _run(model, params, x), atol=1e-6)


def test_nam_refuses_gru_and_knobs_naming_the_fix():
  with pytest.raises(export.ExportError, match="--model=lstm"):
    export.export_nam(*_model("gru"), 48000)
  with pytest.raises(export.ExportError, match="--knobs"):
    export.export_nam(*_model("lstm", channels=2), 48000)


def test_nam_reader_checks_the_weight_count():
  d = export.export_nam(*_model("lstm"), 48000)
  d["weights"] = d["weights"][:-1]
  with pytest.raises(export.ExportError, match="weights"):
    export.load_nam(d)


# ----------------------------------------------------------- RTNeural


@pytest.mark.parametrize("family", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_rtneural_file_runs_in_rtneural_as_in_emu(family, num_layers):
  model, params = _model(family, num_layers)
  x = _signal()
  d = _json_trip(export.export_rtneural(model, params, 48000))
  assert d["in_shape"] == [None, None, 1]
  assert [l["type"] for l in d["layers"]] == [family] * num_layers + [
      "dense"]
  gates = 4 if family == "lstm" else 3
  first = d["layers"][0]["weights"]
  assert np.shape(first[0]) == (1, gates * HIDDEN)
  assert np.shape(first[1]) == (HIDDEN, gates * HIDDEN)
  assert np.shape(first[2]) == (
      (gates * HIDDEN,) if family == "lstm" else (2, 3 * HIDDEN))
  np.testing.assert_allclose(_rtneural(d, x), _run(model, params, x),
                             atol=1e-5)
  back, back_params, rate = export.load_rtneural(d)
  assert rate == 48000.0
  np.testing.assert_allclose(_run(back, back_params, x),
                             _run(model, params, x), atol=1e-6)


def test_rtneural_gru_columns_are_keras_order():
  # Given emu's GRU columns r, z, n
  model, params = _model("gru")
  w_ih = np.asarray(params["params"]["w_ih_0"])
  d = export.export_rtneural(model, params)
  kernel = np.asarray(d["layers"][0]["weights"][0])
  # Then RTNeural's kernel holds z, r, n
  h = HIDDEN
  np.testing.assert_array_equal(kernel[:, :h], w_ih[:, h:2 * h])
  np.testing.assert_array_equal(kernel[:, h:2 * h], w_ih[:, :h])
  np.testing.assert_array_equal(kernel[:, 2 * h:], w_ih[:, 2 * h:])


# ----------------------------------------------------------- GuitarML


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_guitarml_round_trip_keeps_the_skip(family):
  model, params = _model(family, skip=True)
  x = _signal()
  d = _json_trip(export.export_guitarml(model, params, 44100))
  info = d["model_data"]
  assert (info["model"], info["skip"], info["unit_type"]) == (
      "SimpleRNN", 1, family.upper())
  gates = 4 if family == "lstm" else 3
  assert np.shape(d["state_dict"]["rec.weight_ih_l0"]) == (gates * HIDDEN, 1)
  assert np.shape(d["state_dict"]["lin.weight"]) == (1, HIDDEN)
  back, back_params, _ = export.load_guitarml(d)
  assert back.skip
  np.testing.assert_allclose(_run(back, back_params, x),
                             _run(model, params, x), atol=1e-6)


def test_other_families_are_refused_naming_what_each_format_takes():
  model = models.create("thesis_cnn", window=16, filters=2, kernel_size=4,
                        groups=2)
  for fmt, takes in (("nam", "lstm, wavenet and nam_wavenet"),
                     ("rtneural", "lstm, gru and ungated wavenet"),
                     ("guitarml", "lstm and gru")):
    with pytest.raises(export.ExportError, match=f"takes {takes} models"):
      export.export(model, None, fmt, 48000)


def test_the_grey_box_is_refused_naming_the_plugin_recipe():
  model = models.create("wiener", pre_modes=1, post_modes=1, shaper_width=2,
                        dynamics_width=2)
  for fmt in ("nam", "rtneural", "guitarml"):
    with pytest.raises(export.ExportError,
                       match="capture_plugin.flags.*takes .* models"):
      export.export(model, None, fmt, 48000)
  assert os.path.exists(os.path.join(os.path.dirname(__file__), "..",
                                     "experiments", "capture_plugin.flags"))


# ----------------------------------------------------------- ensembles


def _ensemble(family, num_layers=1, skip=False, size=3, seed=0):
  """An untrained ensemble of `size` small members, random params."""
  model = ensemble_lib.Ensemble(
      member=family, size=size,
      member_kwargs=(("hidden_size", HIDDEN), ("num_layers", num_layers),
                     ("skip", skip)))
  return model, _random_params(model, seed)


@pytest.mark.parametrize("family", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_an_ensemble_is_one_wider_model_computing_its_mean(family,
                                                           num_layers):
  # Given 3 members with the skip (the mean adds x once, as each member does)
  model, params = _ensemble(family, num_layers, skip=True)
  x = _signal()
  # When they are merged
  merged, merged_params = ensemble_lib.as_one_recurrent(model, params)
  # Then one model of 3 x H units computes the members' mean
  assert type(merged).__name__ == family.upper()
  assert merged.hidden_size == 3 * HIDDEN and merged.skip
  ys, _ = model.apply(params, jnp.asarray(x).reshape(1, -1, 1),
                      method="member_outputs")
  mean = np.asarray(ys).mean(axis=0).reshape(-1)
  np.testing.assert_allclose(_run(merged, merged_params, x), mean,
                             atol=1e-5)
  # and a member's units see only their own recurrent weights.
  w_hh = np.asarray(merged_params["params"]["w_hh_0"])
  assert np.count_nonzero(w_hh) == np.count_nonzero(
      np.asarray(params["params"]["members"]["w_hh_0"]))


def test_an_lstm_ensemble_runs_in_nam_core_and_rtneural_as_its_mean():
  # Given an ensemble of 3 LSTMs without the skip
  model, params = _ensemble("lstm", skip=False)
  x = _signal()
  ys, _ = model.apply(params, jnp.asarray(x).reshape(1, -1, 1),
                      method="member_outputs")
  mean = np.asarray(ys).mean(axis=0).reshape(-1)
  # When it is exported, the plugins' readers compute the members' mean
  nam = _json_trip(export.export(model, params, "nam", 48000))
  assert nam["config"]["hidden_size"] == 3 * HIDDEN
  np.testing.assert_allclose(_nam_core(nam, x), mean, atol=1e-5)
  rtneural = _json_trip(export.export(model, params, "rtneural", 48000))
  np.testing.assert_allclose(_rtneural(rtneural, x), mean, atol=1e-5)


def test_an_ensemble_of_other_models_is_refused():
  model = ensemble_lib.Ensemble(member="wavenet", size=2, member_kwargs=(
      ("channels", 2), ("dilations", (1, 2))))
  with pytest.raises(export.ExportError, match="only LSTM and GRU members"):
    export.export(model, {"params": {"members": {}}}, "nam", 48000)


# ------------------------------------------------------------ workdir


def test_export_workdir_writes_the_trained_params(tmp_path):
  # Given a run folder holding a best checkpoint (no training: random params)
  cfg = config_lib.Config(model="lstm",
                          model_kwargs={"hidden_size": HIDDEN, "skip": False})
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(cfg.to_json())
  with open(os.path.join(workdir, "dataset.json"), "w") as f:
    json.dump({"name": "x", "sample_rate": 96000, "train_samples": 1}, f)
  model, params = _model("lstm")
  checkpoints = checkpoints_lib.Checkpoints(workdir)
  checkpoints.save("best", {"params": params})
  out = str(tmp_path / "model.nam")
  # When it is exported
  export.export_workdir(workdir, "nam", out)
  # Then the file holds the run's params and sample rate
  back, back_params, rate = export.load_nam(out)
  assert rate == 96000.0
  x = _signal()
  np.testing.assert_allclose(_run(back, back_params, x),
                             _run(model, params, x), atol=1e-6)
  with pytest.raises(FileExistsError, match="--overwrite"):
    export.export_workdir(workdir, "nam", out)
