"""emu.plugins.faust: a grey box's Faust program, compiled by faust and
g++, computes on 10 s of recorded voice what `emu.apply` computes.

The programs are built with `faust -double` into the command-line
processor of `emu.plugins.faust.ARCHITECTURE`; the tests that build skip,
naming the Debian packages, where faust or g++ is missing, and those that
read the voice where the alsa-utils clips are.
"""

import glob
import os
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from emu import apply
from emu import config as config_lib
from emu import models
from emu.data import files
from emu.plugins import export
from emu.plugins import faust
from emu.train import checkpoints as checkpoints_lib

RATE = 48000  # the alsa-utils clips' own rate: no resampling
TOLERANCE = 1e-5
needs_tools = pytest.mark.skipif(
    faust.missing_tools() is not None,
    reason=f"needs faust and g++: {faust.missing_tools()}")
needs_voice = pytest.mark.skipif(
    not glob.glob(files.DEFAULT_VOICE_GLOB),
    reason="needs the recorded voice: apt-get install alsa-utils")

# The grey boxes as capture.flags and capture_nss.flags train them.
VARIANTS = {
    "wiener": ("wiener", {"pre_modes": 2, "post_modes": 2,
                          "shaper_width": 16}),
    "wiener_compressor": ("wiener", {"pre_modes": 2, "post_modes": 2,
                                     "shaper_width": 16,
                                     "dynamics_width": 8}),
    "nss": ("nss", {"pre_modes": 2, "post_modes": 2, "state_size": 3,
                    "core_width": 12}),
}


def _leaf(path, shape, rng):
  """A value for the parameter at `path` (its keys) as training leaves
  it: gates open, poles from 50 Hz to 10 kHz (one at radius 0.9999, a
  10,000-sample memory), a curve that clips, a compressor that takes up
  to several dB off, an nss core whose units and state feedback are on;
  outputs of order 1 on voice (a transcription error shows), recursions
  that stay contractive (emu's float32 rounding stays near 1e-6)."""
  normal = lambda scale, mean=0.: mean + scale * rng.normal(size=shape)
  n = shape[0] if shape else 1
  spaced = lambda low, high: np.log(np.geomspace(low, high, n))
  owner, name = (path[-2] if len(path) > 1 else ""), path[-1]
  if name.endswith("_gate"):
    return {"pre_gate": 0.8, "post_gate": -0.5}[name]
  if name == "nu_log":  # |lambda| = exp(-exp(nu_log))
    return np.log(-np.log(np.r_[0.9999, rng.uniform(0.9, 0.999, n - 1)]))
  if name == "theta_log":
    return np.log(2 * np.pi * np.geomspace(50., 10000., n) / RATE)
  if name in ("B_re", "B_im", "C_re", "C_im", "D"):
    return normal(0.4)
  table = {
      "shaper": {"linear": lambda: 1.3, "bias": lambda: 0.01,
                 "log_span": lambda: np.log(8.),
                 "log_gain": lambda: spaced(1., 32.),
                 "knee": lambda: rng.uniform(-.5, .5, n),
                 "out": lambda: normal(0.3)},
      "dynamics": {"tau": lambda: np.log([5e-3, .1, 1e-2, .1]) / 10.
                          + normal(0.05),
                   "log_gain": lambda: spaced(2., 50.),
                   "knee": lambda: np.linspace(-3., 0., n),
                   "out": lambda: -0.2 * np.abs(normal(1.)),
                   "slope": lambda: -0.1, "offset": lambda: 0.05},
      "core": {"in": lambda: normal(0.5),
               "bias": lambda: rng.uniform(-.5, .5, n),
               "log_gain": lambda: spaced(1., 32.),
               "state_mix": lambda: normal(0.05),
               "drive": lambda: normal(0.3, 1.),
               "step": lambda: np.log(np.geomspace(100., 10000., n)
                                      * 2 * np.pi / RATE),
               "hidden_out": lambda: normal(0.05), "direct": lambda: 1.2,
               "readout": lambda: normal(0.3), "out": lambda: normal(0.3)}}
  return table[owner][name]()


def _trained_looking(name, kwargs, seed=0):
  """(model, params) of a grey box away from its start (`_leaf`), built
  in numpy on the tree emu's init gives (eval_shape: nothing compiled)."""
  model = models.create(name, sample_rate=float(RATE), **kwargs)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(seed),
                                             jnp.zeros((1, 8, 1))))
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map_with_path(
      lambda path, leaf: jnp.asarray(np.broadcast_to(_leaf(
          [k.key for k in path[1:]], leaf.shape, rng), leaf.shape),
                                     jnp.float32), shapes)
  return model, params


def _run_folder(tmp_path, name, kwargs, params):
  """A run folder holding `params` as its best checkpoint."""
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  cfg = config_lib.Config(model=name, model_kwargs=dict(
      kwargs, sample_rate=float(RATE)))
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(cfg.to_json())
  with open(os.path.join(workdir, "dataset.json"), "w") as f:
    f.write(f'{{"name": "x", "sample_rate": {RATE}, "train_samples": 1}}')
  checkpoints_lib.Checkpoints(workdir).save("best", {"params": params})
  return workdir


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
  """(10 s of recorded voice [time] float32, the path of its WAV)."""
  x = files.load_voice(files.DEFAULT_VOICE_GLOB, RATE)[:10 * RATE]
  path = str(tmp_path_factory.mktemp("voice") / "voice.wav")
  sf.write(path, x, RATE, subtype="FLOAT")
  return x, path


@pytest.fixture(scope="module")
def exported(tmp_path_factory, voice):
  """exported(variant) -> (the Faust program's path, what emu.apply
  writes for the voice [time] float32), once per variant: a run folder
  of the grey box away from its start (`_trained_looking`), exported by
  `export_workdir` as `emu.export` does."""
  done = {}

  def get(variant):
    if variant not in done:
      name, kwargs = VARIANTS[variant]
      folder = tmp_path_factory.mktemp(variant)
      workdir = _run_folder(folder, name, kwargs,
                            _trained_looking(name, kwargs)[1])
      dsp = str(folder / f"emu_{variant}.dsp")
      d = export.export_workdir(workdir, "faust", dsp)
      assert d["dsp"] == open(dsp).read() and "process = pre :" in d["dsp"]
      # emu.apply in one block (one compilation; blocks give the same:
      # test_stream, test_wiener)
      out = str(folder / "emu.wav")
      apply.apply_file(workdir, voice[1], out, block_size=len(voice[0]))
      done[variant] = dsp, sf.read(out, dtype="float32")[0]
    return done[variant]

  return get


@needs_tools
@needs_voice
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_compiled_program_computes_what_emu_apply_computes(
    tmp_path, voice, exported, variant):
  # Given a grey box's Faust program and what emu.apply makes of 10 s of
  # recorded voice,
  dsp, y_emu = exported(variant)
  x = voice[0]
  # when the program is compiled by faust -double and g++ and runs on it,
  binary = str(tmp_path / "model")
  faust.build(dsp, binary)
  y, _ = faust.process(binary, x, RATE)
  # then it computes what emu.apply writes,
  assert y.shape == y_emu.shape == x.shape
  error = np.max(np.abs(y - y_emu))
  assert error <= TOLERANCE, f"{variant}: max abs error {error:.3g}"
  # of a model that does something (a wrong stage would show).
  assert np.max(np.abs(y_emu - x)) > 0.1 and np.max(np.abs(y_emu)) > 0.5


@needs_voice
@pytest.mark.skipif(
    not all(map(shutil.which, ("faust2lv2", "g++", "lv2file"))) or not
    os.path.exists("/usr/include/lv2/lv2plug.in/ns/lv2core/lv2.h") or not
    os.path.exists("/usr/include/boost/circular_buffer.hpp"),
    reason="needs faust2lv2, its build dependencies and an LV2 host: "
    "apt-get install faust g++ lv2-dev libboost-dev lv2file")
def test_the_lv2_plugin_built_as_readme_says_computes_the_model(
    tmp_path, voice, exported):
  # Given the compressor wiener's Faust program,
  dsp, y_emu = exported("wiener_compressor")
  shutil.copy(dsp, tmp_path)
  name = os.path.splitext(os.path.basename(dsp))[0]
  # when README's command builds it into an LV2 plugin and lv2file (a
  # host that gives the plugin the urid:map faust-lv2 requires, which
  # lilv's lv2apply does not) runs it on the voice,
  for command in (["faust2lv2", "-double", os.path.basename(dsp)],
                  ["lv2file", "--ignore-clipping", "-i", voice[1], "-o",
                   str(tmp_path / "out.wav"),
                   f"https://faustlv2.bitbucket.io/{name}"]):
    done = subprocess.run(command, cwd=tmp_path, capture_output=True,
                          text=True, check=False,
                          env=dict(os.environ, LV2_PATH=str(tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
  # then the plugin computes what emu.apply writes.
  y = sf.read(str(tmp_path / "out.wav"), dtype="float32")[0]
  assert y.shape == y_emu.shape
  assert np.max(np.abs(y - y_emu)) <= TOLERANCE


@needs_tools
def test_the_export_states_the_cpu_cost(tmp_path):
  # Given a wiener's Faust program,
  model, params = _trained_looking(*VARIANTS["wiener"])
  d = export.export(model, params, "faust", RATE)
  path = str(tmp_path / "model.dsp")
  with open(path, "w") as f:
    f.write(d["dsp"])
  # when the export reports it, then it names the build and the measured
  # cost of the compiled program.
  lines = export.report(d, "faust", path, RATE, measure=True)
  text = "\n".join(lines)
  assert "faust2lv2 -double" in text and f"{RATE} Hz" in text
  assert "real-time factor" in text and "% of one core" in text, text
  assert d["numbers"] == sum(np.size(a) for a in jax.tree.leaves(params))


def test_the_residual_wavenet_is_refused_naming_why_and_the_fix():
  for name in ("wiener", "nss"):
    model = models.create(name, pre_modes=1, post_modes=1,
                          residual_channels=2, residual_dilations=(1, 2))
    with pytest.raises(export.ExportError,
                       match="residual WaveNet.*--residual_channels=0.*"
                       "capture_plugin.flags"):
      export.export(model, None, "faust", RATE)


def test_other_families_are_refused_naming_their_formats():
  model = models.create("lstm", hidden_size=4)
  with pytest.raises(export.ExportError,
                     match="takes emu's grey boxes.*--format=nam"):
    export.export(model, None, "faust", RATE)


def test_knobs_are_refused_naming_the_fix():
  model, params = _trained_looking(*VARIANTS["wiener"])
  with pytest.raises(export.ExportError, match="leave --knobs out"):
    export.export(model, params, "faust", RATE, knobs=[0.5])


def test_a_diverged_model_is_refused_naming_the_fix():
  model, params = _trained_looking(*VARIANTS["wiener"])
  params["params"]["shaper"]["bias"] = jnp.float32(jnp.nan)
  with pytest.raises(export.ExportError, match="diverged.*--checkpoint"):
    export.export(model, params, "faust", RATE)


def test_the_other_formats_name_faust_for_a_grey_box():
  # Given grey boxes with and without a residual WaveNet, when a JSON
  # format is asked for, then the error names --format=faust for the one
  # Faust can hold.
  plain = models.create("wiener", pre_modes=1, post_modes=1,
                        shaper_width=2)
  residual = plain.clone(residual_channels=2, residual_dilations=(1, 2))
  for fmt in ("nam", "rtneural", "guitarml"):
    with pytest.raises(export.ExportError, match="--format=faust"):
      export.export(plain, None, fmt, RATE)
    with pytest.raises(export.ExportError) as refused:
      export.export(residual, None, fmt, RATE)
    assert "faust" not in str(refused.value)
