"""Knob capture from a manifest of recordings (emu.data.manifest)."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from emu import config as config_lib
from emu import data as data_lib
from emu.report import evaluate
from emu import metrics
from emu import train
from emu.train import batches

RATE = 8000
SECONDS = 2.0
TRAIN_DRIVES = (0.0, 0.5, 1.0)
VAL_DRIVE = 0.25


def _drive(x, knob):
  """A tanh drive pedal: g from 1 to 10 (0 to 20 dB) over the knob."""
  g = 10.0 ** (knob * 20.0 / 20.0)
  return (np.tanh(g * x) / np.tanh(g)).astype(np.float32)


def _write_capture(folder, train_drives=TRAIN_DRIVES, val_drive=VAL_DRIVE,
                   **changes):
  """Writes in.wav, one recording per drive and manifest.json; its path."""
  rng = np.random.default_rng(0)
  n = int(SECONDS * RATE)
  x = (0.5 * rng.standard_normal(n) * np.linspace(0.1, 1.0, n)).clip(
      -0.95, 0.95).astype(np.float32)
  sf.write(os.path.join(folder, "in.wav"), x, RATE, subtype="FLOAT")

  def entry(knob):
    target = f"rec_{knob:g}.wav"
    sf.write(os.path.join(folder, target), 0.5 * _drive(x, knob), RATE,
             subtype="FLOAT")
    return {"input": "in.wav", "target": target, "knobs": {"drive": knob}}

  manifest = {"knobs": ["drive"],
              "recordings": [entry(k) for k in train_drives],
              "validation": [entry(val_drive)]}
  manifest.update(changes)
  path = os.path.join(folder, "manifest.json")
  with open(path, "w") as f:
    json.dump(manifest, f)
  return path


def test_shapes_and_knob_channels(tmp_path):
  path = _write_capture(str(tmp_path))
  dataset = data_lib.manifest_dataset(path)
  n = int(SECONDS * RATE)
  assert dataset.sample_rate == RATE
  assert dataset.knobs == ("drive",)
  assert dataset.name == "manifest_manifest"
  assert dataset.train.input.shape == (3 * n, 2)
  assert dataset.train.input.dtype == np.float32
  assert dataset.train.target.shape == (3 * n,)
  assert dataset.val1.input.shape == (n, 2)
  for i, knob in enumerate(TRAIN_DRIVES):
    np.testing.assert_array_equal(
        dataset.train.input[i * n:(i + 1) * n, 1], knob)
  np.testing.assert_array_equal(dataset.val1.input[:, 1], VAL_DRIVE)
  np.testing.assert_array_equal(dataset.train.input[:n, 0],
                                dataset.val1.input[:, 0])
  groups = data_lib.group_by_knobs(dataset.train)
  assert [v for v, _ in groups] == [(k,) for k in TRAIN_DRIVES]


def test_config_wires_it(tmp_path):
  path = _write_capture(str(tmp_path))
  cfg = config_lib.Config(dataset="files", train_manifest=path)
  assert batches.build_dataset(cfg).knobs == ("drive",)


@pytest.mark.parametrize("message, changes", [
    ("not found", dict(recordings=[{"input": "in.wav",
                                    "target": "missing.wav",
                                    "knobs": {"drive": 0.0}}])),
    (r"drive=1.5 is outside \[0, 1\]", dict(recordings=[{
        "input": "in.wav", "target": "rec_0.wav", "knobs": {"drive": 1.5}}])),
    ("unknown knob", dict(recordings=[{
        "input": "in.wav", "target": "rec_0.wav",
        "knobs": {"drive": 0.0, "tone": 0.5}}])),
    ("does not set knob", dict(knobs=["drive", "tone"])),
])
def test_bad_manifest_entries(tmp_path, message, changes):
  path = _write_capture(str(tmp_path), **changes)
  with pytest.raises(data_lib.DataError, match=message):
    data_lib.manifest_dataset(path)


def test_validation_at_a_training_setting_is_refused(tmp_path):
  path = _write_capture(str(tmp_path), val_drive=0.5)
  with pytest.raises(data_lib.DataError,
                     match=r"validation\[0\] is at a training setting"):
    data_lib.manifest_dataset(path)


def test_missing_manifest(tmp_path):
  with pytest.raises(data_lib.DataError, match="manifest not found"):
    data_lib.manifest_dataset(str(tmp_path / "nope.json"))


def test_manifest_and_pair_both_given():
  with pytest.raises(ValueError, match="leave --train_input"):
    config_lib.Config(dataset="files", train_manifest="m.json",
                      train_input="in.wav", train_target="out.wav")
  with pytest.raises(ValueError, match="needs dataset 'files'"):
    config_lib.Config(dataset="knobs", effect="distortion",
                      train_manifest="m.json")


def test_fit_lowers_val1_esr_and_reports_per_setting(tmp_path):
  path = _write_capture(str(tmp_path))
  cfg = config_lib.Config(
      dataset="files", train_manifest=path, model="lstm",
      model_kwargs={"hidden_size": 8}, segment_length=1024, warmup=128,
      batch_size=4, learning_rate=1e-2, max_epochs=2, seed=0,
      checkpoint_every_s=0.0, stream_blocks=())
  workdir = str(tmp_path / "run")
  result = train.fit(cfg, workdir)
  esr = [h["val1_esr"] for h in result.history]
  val1 = result.dataset.val1
  dry = metrics.esr(val1.input[:, 0], val1.target)
  assert esr[-1] < esr[0] and esr[-1] < dry
  # Per-setting rows name the manifest's knob (normalised values).
  report = evaluate.evaluate(result.model, result.params, result.dataset,
                             workdir, cfg=cfg, stream_blocks=())
  rows = report["val1"]["per_setting"]
  assert [r["knobs"] for r in rows] == [{"drive": VAL_DRIVE}]
