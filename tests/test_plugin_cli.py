"""The round trip from the command line: export a run, apply the file.

Given a run folder (random params in a best checkpoint), when it is
exported, then the report says what the plugin sees (architecture, sample
rate, weights, metadata, CPU cost), and `emu.apply` runs the file to the
same output as the run folder; unknown files and missing settings are one
clear error each.
"""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from emu import apply
from emu import config as config_lib
from emu.plugins import export
from emu import models
from emu.train import checkpoints as checkpoints_lib
from test_export import _random_params

RATE = 16000


def _workdir(tmp_path, model_name, inputs=1, **kwargs):
  """A run folder holding `model_name`'s random params as 'best'."""
  cfg = config_lib.Config(model=model_name, model_kwargs=kwargs)
  workdir = str(tmp_path / model_name)
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(cfg.to_json())
  with open(os.path.join(workdir, "dataset.json"), "w") as f:
    json.dump({"name": "x", "sample_rate": RATE, "train_samples": 1,
               "channels": inputs}, f)
  model = models.create(model_name, **kwargs)
  params = _random_params(model, channels=inputs)
  checkpoints_lib.Checkpoints(workdir).save("best", {"params": params})
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.write(json.dumps({"epoch": 1, "val1_esr": 0.02}) + "\n")
  return workdir


def _wav(tmp_path, n=3000):
  path = str(tmp_path / "in.wav")
  x = np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32)
  sf.write(path, x, RATE, subtype="FLOAT")
  return path


@pytest.mark.parametrize("model_name, kwargs, fmt", [
    ("lstm", {"hidden_size": 6}, "nam"),  # the default's skip, folded
    ("wavenet", {"channels": 3, "dilations": (1, 2, 4)}, "nam"),
    ("gru", {"hidden_size": 5}, "rtneural"),
    ("lstm", {"hidden_size": 4, "skip": False}, "guitarml"),
])
def test_exported_file_applies_as_the_run(tmp_path, model_name, kwargs,
                                          fmt):
  # Given a run, exported
  workdir = _workdir(tmp_path, model_name, **kwargs)
  out = str(tmp_path / ("m.nam" if fmt == "nam" else "m.json"))
  d = export.export_workdir(workdir, fmt, out)
  # Then the report names what the plugin sees
  lines = export.report(d, fmt, out, RATE, measure=False)
  assert f"sample rate: {RATE} Hz" in lines[2]
  assert lines[1].startswith("  architecture: ")
  if fmt == "nam":
    assert d["metadata"]["training"]["validation_esr"] == 0.02
    # NAM's loudness and gain, from its standardized input by default
    assert np.isfinite(d["metadata"]["loudness"])
    assert 0.0 <= d["metadata"]["gain"] <= 1.0
    assert f"loudness={d['metadata']['loudness']:.4g}" in lines[3]
    bare = export.export_workdir(workdir, fmt, out + "2", loudness_input="")
    assert any("loudness: not written" in l
               for l in export.report(bare, fmt, out, RATE, measure=False))
  # and emu.apply gives the run's output from the file
  wav = _wav(tmp_path)
  a = apply.apply_file(workdir, wav, str(tmp_path / "a.wav"), 1000)
  b = apply.apply_file(None, wav, str(tmp_path / "b.wav"), 1000,
                       model_file=out)
  assert a["sample_rate"] == b["sample_rate"] == RATE
  ya, yb = (sf.read(str(tmp_path / n), dtype="float32")[0]
            for n in ("a.wav", "b.wav"))
  np.testing.assert_allclose(yb, ya, atol=1e-6)


def test_the_report_measures_the_cpu_cost(tmp_path):
  workdir = _workdir(tmp_path, "lstm", hidden_size=4)
  out = str(tmp_path / "m.nam")
  d = export.export_workdir(workdir, "nam", out)
  lines = export.report(d, "nam", out, RATE)
  cpu = [l for l in lines if l.startswith("  CPU: ")]
  assert cpu and "% of one core" in cpu[0] and "64-sample" in cpu[0]


def test_a_knob_run_exports_and_applies_at_a_setting(tmp_path):
  # Given a wavenet reading audio and one knob
  workdir = _workdir(tmp_path, "wavenet", inputs=2, channels=3,
                     dilations=(1, 2))
  out = str(tmp_path / "k.nam")
  with pytest.raises(export.ExportError, match="--knobs"):
    export.export_workdir(workdir, "nam", out)
  export.export_workdir(workdir, "nam", out, knobs=[0.4])
  wav = _wav(tmp_path)
  with pytest.raises(ValueError, match="--knobs"):
    apply.apply_file(workdir, wav, str(tmp_path / "a.wav"))
  apply.apply_file(workdir, wav, str(tmp_path / "a.wav"), knobs=[0.4])
  apply.apply_file(None, wav, str(tmp_path / "b.wav"), model_file=out)
  ya, yb = (sf.read(str(tmp_path / n), dtype="float32")[0]
            for n in ("a.wav", "b.wav"))
  np.testing.assert_allclose(yb, ya, atol=1e-6)


def test_model_files_are_told_apart_and_errors_are_clear(tmp_path):
  wav = _wav(tmp_path)
  with pytest.raises(ValueError, match="one of --workdir"):
    apply.apply_file(None, wav, str(tmp_path / "o.wav"))
  with pytest.raises(ValueError, match=".nam .NAM. or .json"):
    apply.file_format(str(tmp_path / "model.onnx"))
  other = tmp_path / "other.json"
  other.write_text(json.dumps({"hello": 1}))
  with pytest.raises(ValueError, match="neither RTNeural"):
    apply.file_format(str(other))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    apply.file_format(str(tmp_path / "missing.nam"))
