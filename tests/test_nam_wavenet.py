"""NAM's own package runs emu's .nam files as emu does, and emu NAM's.

Neural Amp Modeler (PyPI neural-amp-modeler, with torch) is never a
dependency of emu: these tests run tests/nam_reference.py with the Python
of a venv that has it, $EMU_NAM_PYTHON (default /tmp/namvenv/bin/python),
and skip, saying so, where there is none. One NAM process (torch starts
once per session) writes NAM's own files (random WaveNets through NAM's
exporter, a tiny WaveNet trained by NAM's `nam-full` trainer) and runs every
file on 10 s of recorded voice (the alsa-utils clips).
"""

import glob
import json
import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from emu.plugins import export
from emu import models
from emu.plugins import folds

NAM_PYTHON = os.environ.get("EMU_NAM_PYTHON", "/tmp/namvenv/bin/python")
VOICE = sorted(glob.glob("/usr/share/sounds/alsa/*.wav"))
RATE = 48000
pytestmark = [
    pytest.mark.skipif(not os.access(NAM_PYTHON, os.X_OK), reason=(
        f"no Neural Amp Modeler venv at {NAM_PYTHON}: set EMU_NAM_PYTHON to "
        "the python of a venv with `pip install neural-amp-modeler`")),
    pytest.mark.skipif(not VOICE, reason="the alsa-utils voice clips "
                       "(/usr/share/sounds/alsa/*.wav) are not installed")]
DIL = tuple(2 ** i for i in range(11))
KNOB = 0.5


def _voice():
  """10 s of the alsa-utils voice clips at 48 kHz, float32."""
  x = np.concatenate([sf.read(f, dtype="float32")[0] for f in VOICE])
  return x[:10 * RATE]


def _emu_wavenet(skip, seed):
  """A distortion/compressor-recipe WaveNet (8 channels, dilations 1..1024,
  gated, one knob) with its init params: outputs of order 0.1 on voice,
  where a layout error shows and rounding stays near 1e-8 (a distortion
  run trained 3 min measured 3.6e-7 on 10 s of voice the same way)."""
  model = models.create("wavenet", channels=8, dilations=DIL, skip=skip)
  return model, model.init(jax.random.key(seed), jnp.zeros((1, 8, 2)))


def _run(model, params, x, state=None, knobs=()):
  xin = np.stack([x] + [np.full_like(x, k) for k in knobs], -1)[None]
  y, _ = jax.jit(model.apply)(params, jnp.asarray(xin), state)
  return np.asarray(y).reshape(-1)


NAM_TRAIN_MODEL = {
    "net": {"name": "WaveNet", "config": {"layers_configs": [
        {"input_size": 1, "condition_size": 1, "channels": 4,
         "head": {"out_channels": 2, "kernel_size": 1, "bias": False},
         "kernel_sizes": [6, 6, 6], "dilations": [1, 3, 7],
         "activation": "Tanh"},
        {"input_size": 4, "condition_size": 1, "channels": 2,
         "head": {"out_channels": 1, "kernel_size": 16, "bias": True},
         "kernel_sizes": [6, 6], "dilations": [1, 5],
         "activation": "LeakyReLU"}], "head_scale": 0.02}},
    "loss": {"val_loss": "esr"}, "optimizer": {"lr": 0.004},
    "lr_scheduler": {"class": "ExponentialLR", "kwargs": {"gamma": 0.99}}}
NAM_RANDOM = {  # gated/blended layers, head1x1, bottleneck, a post head
    "layers_configs": [
        {"input_size": 1, "condition_size": 1, "channels": 4,
         "bottleneck": 3, "head": {"out_channels": 3, "kernel_size": 2,
                                   "bias": True},
         "kernel_sizes": [3, 2, 3], "dilations": [1, 4, 16],
         "activation": [{"name": "PairMultiply", "primary": "Tanh",
                         "secondary": "Sigmoid"},
                        {"name": "PairBlend", "primary": "Tanh",
                         "secondary": "Sigmoid"}, "SiLU"],
         "head_1x1_config": {"active": True, "out_channels": 5}},
        {"input_size": 4, "condition_size": 1, "channels": 3,
         "head": {"out_channels": 2, "kernel_size": 1, "bias": False},
         "kernel_sizes": 3, "dilations": [1, 2], "activation": "Hardtanh"}],
    "head": {"channels": 2, "activation": "Tanh", "out_channels": 1,
             "kernel_sizes": [3, 1]},
    "head_scale": 0.3}
NAM_STANDARD = {"layers_configs": [
    {"input_size": 1, "condition_size": 1, "channels": 16,
     "head": {"out_channels": 8, "kernel_size": 1, "bias": False},
     "kernel_size": 3, "dilations": list(DIL[:10]), "activation": "Tanh"},
    {"input_size": 16, "condition_size": 1, "channels": 8,
     "head": {"out_channels": 1, "kernel_size": 1, "bias": True},
     "kernel_size": 3, "dilations": list(DIL[:10]), "activation": "Tanh"}],
                "head_scale": 0.02}
SUBS = ("trained", "random", "standard")


@pytest.fixture(scope="module")
def nam(tmp_path_factory):
  """Files by emu and by NAM, each one's output from NAM's package."""
  d = tmp_path_factory.mktemp("nam")
  x = _voice()
  np.save(d / "x.npy", x)
  emu_files = {}
  for name, skip in (("wavenet", False), ("wavenet_skip", True)):
    model, params = _emu_wavenet(skip, len(emu_files))
    emu_files[name] = (model, params, [KNOB])
  emu_files["lstm_skip"] = (models.create("lstm", hidden_size=32), None, [])
  emu_files["lstm2_skip"] = (models.create("lstm", hidden_size=8,
                                           num_layers=2), None, [])
  np.save(d / "x1.npy", x[:RATE])  # torch's LSTM is slow: 1 s for those
  jobs = []
  for name, (model, params, knobs) in emu_files.items():
    if params is None:
      params = model.init(jax.random.key(3), jnp.zeros((1, 8, 1)))
      emu_files[name] = (model, params, knobs)
    file = export.export(model, params, "nam", RATE, knobs=knobs)
    (d / f"{name}.nam").write_text(json.dumps(file))
    x_file = "x1.npy" if name.startswith("lstm") else "x.npy"
    jobs.append({"op": "run", "nam": str(d / f"{name}.nam"),
                 "x": str(d / x_file), "y": str(d / f"{name}.npy")})
  y = np.tanh(4.0 * x) * 0.5
  sf.write(d / "in.wav", x, RATE, subtype="FLOAT")
  sf.write(d / "out.wav", y, RATE, subtype="FLOAT")
  for sub in SUBS:
    (d / sub).mkdir()
  jobs = [
      {"op": "version", "out": str(d / "version.json")},
      {"op": "export", "config": NAM_RANDOM, "out": str(d / "random"),
       "seed": 0, "scale": 2.0, "rate": RATE},
      {"op": "export", "config": NAM_STANDARD, "out": str(d / "standard"),
       "seed": 1, "rate": RATE},
      {"op": "train", "out": str(d / "trained"), "model": NAM_TRAIN_MODEL,
       "data": {"train": {"ny": 8192, "stop_samples": 8 * RATE},
                "validation": {"ny": None, "start_samples": 8 * RATE,
                               "require_input_pre_silence": False},
                "common": {"x_path": str(d / "in.wav"),
                           "y_path": str(d / "out.wav"), "delay": 0},
                "joint": [{"name": "nam.data.normalize_joint_dataset_output",
                           "kwargs": {"level_rms_dbfs": -18.0}}]},
       "learning": {"train_dataloader": {"batch_size": 4, "shuffle": True,
                                         "drop_last": True,
                                         "num_workers": 0},
                    "val_dataloader": {},
                    "trainer": {"max_epochs": 1, "accelerator": "cpu",
                                "limit_train_batches": 5,
                                "enable_progress_bar": False}}},
  ] + jobs + [{"op": "run", "nam": str(d / sub / "model.nam"),
               "x": str(d / "x.npy"), "y": str(d / f"nam_{sub}.npy")}
              for sub in SUBS]
  (d / "jobs.json").write_text(json.dumps(jobs))
  script = os.path.join(os.path.dirname(__file__), "nam_reference.py")
  proc = subprocess.run([NAM_PYTHON, script, str(d / "jobs.json")],
                        capture_output=True, text=True, timeout=1800,
                        cwd=str(d))
  assert proc.returncode == 0, proc.stderr[-3000:]
  return d, x, emu_files


def test_nam_reports_the_file_version_emu_writes(nam):
  d, _, _ = nam
  version = json.loads((d / "version.json").read_text())
  written = json.loads((d / "wavenet.nam").read_text())["version"]
  assert written == version["file"] == "0.7.0", version


@pytest.mark.parametrize("name", ["wavenet", "wavenet_skip"])
def test_nam_runs_an_emu_wavenet_to_1e6_on_voice(nam, name):
  # Given the distortion recipe's WaveNet (gated, one knob held at 0.5),
  # with the dry skip or not, exported to .nam
  d, x, emu_files = nam
  model, params, knobs = emu_files[name]
  # When NAM's package runs the file on 10 s of voice (from silence)
  y_nam = np.load(d / f"{name}.npy").reshape(-1)
  # Then it is emu's output from silence to 1e-6, and so is emu's reading
  state = folds.warmed_on_silence(model, params, knobs)
  y_emu = _run(model, params, x, state, knobs)
  assert np.sqrt(np.mean((y_emu - y_emu.mean()) ** 2)) > 1e-3  # a signal
  assert np.max(np.abs(y_nam - y_emu)) <= 1e-6
  back, back_params, rate = export.load_nam(str(d / f"{name}.nam"))
  assert rate == RATE
  assert np.max(np.abs(_run(back, back_params, x) - y_nam)) <= 1e-6


@pytest.mark.parametrize("name", ["lstm_skip", "lstm2_skip"])
def test_nam_runs_an_lstm_with_the_skip_as_emu(nam, name):
  # Given emu's default LSTM (skip) exported with the skip folded in
  d, x, emu_files = nam
  model, params, _ = emu_files[name]
  file = json.loads((d / f"{name}.nam").read_text())
  assert file["config"]["hidden_size"] == model.hidden_size + 1
  # Then NAM's package computes emu's output within float32 rounding (on
  # 1 s of the voice: torch's LSTM takes minutes for 10 s here)
  y_nam = np.load(d / f"{name}.npy").reshape(-1)
  err = np.max(np.abs(y_nam - _run(model, params, x[:RATE])))
  assert err <= 1e-6, err


@pytest.mark.parametrize("sub", SUBS)
def test_emu_runs_nam_own_files_as_nam(nam, sub):
  # Given a WaveNet NAM trained (nam-full) or built and exported itself
  d, x, _ = nam
  path = d / sub / "model.nam"
  # When emu loads it
  model, params, rate = export.load_nam(str(path))
  # Then emu's output on 10 s of voice is NAM's, to 1e-6
  assert type(model).__name__ == "NamWaveNet" and rate == RATE
  y_nam = np.load(d / f"nam_{sub}.npy").reshape(-1)
  y_emu = _run(model, params, x)
  assert np.max(np.abs(y_emu - y_nam)) <= 1e-6
  assert np.sqrt(np.mean(y_nam ** 2)) > 1e-3
  # and, exported again, the file holds NAM's weights and config.
  again = export.export(model, params, "nam", rate)
  original = json.loads(path.read_text())
  np.testing.assert_array_equal(np.float32(again["weights"][:-1]),
                                np.float32(original["weights"][:-1]))
  # (head_scale, last, is the config's: NAM's output-level hook may leave
  # the weights' copy an ulp off, and NAM then keeps the config's.)
  assert again["config"]["head_scale"] == original["config"]["head_scale"]
  # streaming in 64-sample blocks is the same model
  state, blocks = model.initial_state(1), []
  step = jax.jit(model.apply)
  for i in range(0, 64 * 200, 64):
    yb, state = step(params, jnp.asarray(x[i:i + 64]).reshape(1, -1, 1),
                     state)
    blocks.append(np.asarray(yb).reshape(-1))
  assert np.max(np.abs(np.concatenate(blocks) - y_emu[:64 * 200])) <= 1e-6


def test_the_standard_wavenet_is_nam_standard(nam):
  # Given NAM's classic standard WaveNet as NAM builds and exports it
  d, _, _ = nam
  file = json.loads((d / "standard" / "model.nam").read_text())
  # Then emu's default nam_wavenet has its parameters (+ head_scale) and
  # config
  model = models.create("nam_wavenet")
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 1)))
  count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
  assert len(file["weights"]) == count + 1
  loaded, _, _ = export.load_nam(file)
  assert loaded.config == model.config
