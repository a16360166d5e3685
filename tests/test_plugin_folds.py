"""The folds that let every model reach a plugin, and each refusal's fix.

Given a model a format cannot hold as it is (the dry skip, knob inputs,
emu's WaveNet layout), when emu rewrites it for the format, then the file's
consumer (numpy re-implementations of NeuralAmpModelerCore's LSTM and of
RTNeural's json_parser, conv1d and dense; see tests/test_export.py) computes
the original model's output, on recorded voice and on full-scale noise, far
below one 16-bit step (2^-15). What cannot be represented is refused with a
message naming the fix.
"""

import glob
import json

import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from emu.plugins import export
from emu import models
from emu.plugins import folds
from emu.models import nam_wavenet
from test_export import _nam_core, _random_params, _rtneural

STEP16 = 2.0 ** -15
N = 2000


def _inputs():
  """Full-scale noise and (where installed) recorded voice, N samples."""
  noise = np.random.default_rng(1).uniform(-1, 1, N).astype(np.float32)
  clips = sorted(glob.glob("/usr/share/sounds/alsa/Front_*.wav"))
  if not clips:
    return {"noise": noise}
  voice = sf.read(clips[0], dtype="float32")[0]
  start = int(np.argmax(np.abs(voice) > 0.1))  # where the speech is
  return {"noise": noise, "voice": voice[start:start + N]}


def _run(model, params, x, state=None, knobs=()):
  xin = np.stack([x] + [np.full_like(x, k) for k in knobs], -1)[None]
  y, _ = model.apply(params, jnp.asarray(xin), state)
  return np.asarray(y).reshape(-1)


def _recurrent(family, num_layers=1, skip=True, channels=1, hidden=8):
  model = models.create(family, hidden_size=hidden, num_layers=num_layers,
                        skip=skip)
  return model, _random_params(model, seed=num_layers, channels=channels)


@pytest.mark.parametrize("family", ["lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_the_skip_folds_into_one_unit_far_below_a_16_bit_step(family,
                                                              num_layers):
  # Given a model with the dry-input skip
  model, params = _recurrent(family, num_layers)
  # When the skip is folded into one more unit
  folded, folded_params = folds.fold_skip(model, params)
  assert not folded.skip and folded.hidden_size == model.hidden_size + 1
  # Then the model without the skip computes the same, on voice and noise,
  # in emu and in the file's consumer
  fmt = "nam" if family == "lstm" else "rtneural"
  d = json.loads(json.dumps(export.export(model, params, fmt, 48000)))
  consumer = _nam_core if fmt == "nam" else _rtneural
  for name, x in _inputs().items():
    y = _run(model, params, x)
    assert np.max(np.abs(_run(folded, folded_params, x) - y)) < STEP16 / 50
    assert np.max(np.abs(consumer(d, x) - y)) < STEP16 / 50, name


@pytest.mark.parametrize("family", ["lstm", "gru"])
def test_guitarml_carries_a_model_without_the_skip_by_minus_x(family):
  # Given a model without the skip (GuitarML's plugins add x regardless)
  model, params = _recurrent(family, skip=False)
  x = _inputs()["noise"]
  # When it is written for GuitarML and read back
  d = export.export(model, params, "guitarml", 48000)
  back, back_params, _ = export.load_guitarml(json.loads(json.dumps(d)))
  # Then the file says skip 1, and its model, x added, is the original
  assert d["model_data"]["skip"] == 1 and back.skip
  assert back.hidden_size == model.hidden_size + 1
  assert np.max(np.abs(_run(back, back_params, x) - _run(model, params, x))
                ) < STEP16 / 50


@pytest.mark.parametrize("family", ["lstm", "gru", "wavenet"])
def test_fixed_knobs_move_into_the_bias(family):
  # Given a model reading audio and two knob channels
  if family == "wavenet":
    model = models.create("wavenet", channels=3, dilations=(1, 2, 4))
    params = _random_params(model, channels=3)
  else:
    model, params = _recurrent(family, channels=3, skip=False)
  knobs = [0.25, 0.8]
  x = _inputs()["noise"]
  # When the knobs are fixed
  fixed, fixed_params = folds.fix_knobs(model, params, knobs)
  # Then audio alone gives the output at that setting
  np.testing.assert_allclose(_run(fixed, fixed_params, x),
                             _run(model, params, x, knobs=knobs), atol=1e-5)
  with pytest.raises(export.ExportError, match="--knobs gave 1"):
    folds.fix_knobs(model, params, [0.5])


@pytest.mark.parametrize("gated, skip", [(True, False), (False, True),
                                         (True, True)])
def test_emu_wavenet_is_a_nam_wavenet_from_silence(gated, skip):
  # Given emu's wavenet, and it as a NAM WaveNet
  model = models.create("wavenet", channels=3, dilations=(1, 2, 4, 8),
                        gated=gated, skip=skip)
  params = _random_params(model)
  nam, nam_params = folds.wavenet_as_nam(model, params)
  assert isinstance(nam, nam_wavenet.NamWaveNet)
  assert nam.receptive_field == model.receptive_field
  # Then both give one output once emu starts from silence, as NAM does
  for x in _inputs().values():
    state = folds.warmed_on_silence(model, params)
    np.testing.assert_allclose(_run(nam, nam_params, x),
                               _run(model, params, x, state), atol=1e-6)


def _rtneural_stack(d, x):
  """RTNeural's json_parser with Dense, Conv1D and activations, in numpy:
  conv1d weights [tap][in][out], tap k - 1 the newest (loadConv1D)."""
  acts = {"": lambda v: v, "tanh": np.tanh, "relu": lambda v: np.maximum(
      v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v))}
  layers, size = [], d["in_shape"][-1]
  for spec in d["layers"]:
    w = [np.asarray(a, np.float64) for a in spec["weights"]]
    assert spec["type"] in ("dense", "conv1d"), spec["type"]
    if spec["type"] == "conv1d":
      k, dil = spec["kernel_size"][-1], spec["dilation"][-1]
      assert w[0].shape == (k, size, spec["shape"][-1])
      layers.append(["conv", w, k, dil, np.zeros(((k - 1) * dil + 1, size))])
    else:
      layers.append(["dense", w])
    layers.append(["act", acts[spec.get("activation", "")]])
    size = spec["shape"][-1]
  out = []
  for sample in x:
    v = np.array([sample], np.float64)
    for layer in layers:
      if layer[0] == "dense":
        v = v @ layer[1][0] + layer[1][1]
      elif layer[0] == "act":
        v = layer[1](v)
      else:
        w, k, dil, buf = layer[1:]
        buf[:-1], buf[-1] = buf[1:].copy(), v  # buf[-1] the newest input
        taps = buf[::-1][::dil][:k][::-1]  # oldest first, as tap 0
        v = np.einsum("ti,tio->o", taps, w[0]) + w[1]
    out.append(v[0])
  return np.array(out)


@pytest.mark.parametrize("skip", [False, True])
def test_an_ungated_wavenet_runs_in_rtneural_as_in_emu(skip):
  # Given an ungated wavenet (one knob) with or without the skip
  model = models.create("wavenet", channels=3, dilations=(1, 2, 4),
                        gated=False, skip=skip)
  params = _random_params(model, channels=2)
  # When it is exported to RTNeural, its knob at 0.3
  d = json.loads(json.dumps(export.export(model, params, "rtneural", 48000,
                                          knobs=[0.3])))
  # Then RTNeural's reading gives emu's output from emu's zero state
  assert [l["type"] for l in d["layers"]] == ["dense"] + [
      "conv1d", "dense"] * 3
  x = _inputs()["voice" if "voice" in _inputs() else "noise"][:600]
  np.testing.assert_allclose(_rtneural_stack(d, x),
                             _run(model, params, x, knobs=[0.3]), atol=1e-5)


def test_refusals_name_the_fix():
  gated = models.create("wavenet", channels=2, dilations=(1, 2))
  gated_params = _random_params(gated)
  with pytest.raises(export.ExportError, match="--nogated"):
    export.export(gated, gated_params, "rtneural")
  with pytest.raises(export.ExportError, match="--format=nam"):
    nam = models.create("nam_wavenet")
    export.export(nam, _random_params(nam), "rtneural")
  with pytest.raises(export.ExportError, match="takes lstm and gru"):
    export.export(gated, gated_params, "guitarml")
  knob = models.create("wavenet", channels=2, dilations=(1, 2))
  with pytest.raises(export.ExportError, match="--knobs=V1"):
    export.export(knob, _random_params(knob, channels=2), "nam", 48000)
  thin = models.create("wavenet", channels=1, dilations=(1,), skip=True)
  with pytest.raises(export.ExportError, match="channels >= 2"):
    export.export(thin, _random_params(thin), "nam", 48000)
  rt = export.export(gated, gated_params, "nam", 48000)
  with pytest.raises(export.ExportError, match="--workdir"):
    ungated = models.create("wavenet", channels=2, dilations=(1,),
                            gated=False)
    export.load_rtneural(export.export(ungated, _random_params(ungated),
                                       "rtneural"))
  for change, match in (
      (lambda d: d.update(architecture="ConvNet"), "LSTM and WaveNet"),
      (lambda d: d["weights"].pop(), "truncated"),
      (lambda d: d["config"]["layers"][0].update(
          conv_pre_film={"active": True}), "FiLM"),
      (lambda d: d["config"]["layers"][0].update(groups_input=2),
       "groups 1"),
      (lambda d: d["config"]["layers"][0]["activation"].__setitem__(
          0, {"type": "Fasttanh"}), "Tanh, Sigmoid")):
    broken = json.loads(json.dumps(rt))
    change(broken)
    with pytest.raises(export.ExportError, match=match):
      export.load_nam(broken)


def test_a_legacy_nam_wavenet_reads_as_its_new_form():
  # Given NAM's standard WaveNet written by emu (0.7.0), and the same in
  # the 0.5 layout older trainers wrote (head_size, head_bias, one
  # activation, "gated")
  model = models.create("nam_wavenet")
  d = export.export(model, _random_params(model), "nam", 48000)
  legacy = json.loads(json.dumps(d))
  legacy["version"] = "0.5.4"
  for lc in legacy["config"]["layers"]:
    head = lc.pop("head")
    lc.update(head_size=head["out_channels"], head_bias=head["bias"],
              kernel_size=lc.pop("kernel_sizes")[0], gated=False,
              activation=lc["activation"][0]["type"])
    for key in ("gating_mode", "secondary_activation", "head1x1",
                "layer1x1", "bottleneck", "groups_input",
                "groups_input_mixin"):
      lc.pop(key)
  # Then emu reads both as one model
  a, pa, _ = export.load_nam(d)
  b, pb, _ = export.load_nam(legacy)
  assert a.config == b.config == model.config
  x = _inputs()["noise"][:500]
  np.testing.assert_array_equal(_run(a, pa, x), _run(b, pb, x))
