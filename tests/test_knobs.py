"""Knob-conditioned training and the per-setting evaluation."""

import numpy as np

from emu import config as config_lib
from emu import data as data_lib
from emu import effects
from emu.report import evaluate
from emu import train
from emu.train import restore


def test_knob_run_reports_error_per_unseen_setting(tmp_path):
  cfg = config_lib.Config(
      dataset="knobs", effect="hpf_knob", train_seconds=3.0,
      val1_seconds=1.0, model="lstm", model_kwargs={"hidden_size": 4},
      segment_length=2048, warmup=256, batch_size=4, max_epochs=2,
      stream_blocks=())
  result = train.fit(cfg, str(tmp_path))
  dataset = result.dataset
  assert dataset.train.input.shape[1] == 2 and dataset.knobs == ("cutoff_hz",)
  # The report as the pipeline writes it (no streaming measurement here:
  # tests/test_report_levels.py measures one).
  report = evaluate.evaluate(result.model, result.params, dataset,
                             str(tmp_path), cfg=cfg,
                             stream_blocks=cfg.stream_blocks)
  rows = report["val1"]["per_setting"]
  trained = {v for v, _ in data_lib.group_by_knobs(dataset.train)}
  assert len(rows) >= 2
  knob = effects.knob_effect("hpf_knob").knobs[0]
  for row in rows:
    assert tuple(row["normalised"]) not in trained  # never trained on
    assert np.isclose(row["knobs"]["cutoff_hz"],
                      knob.denormalise(row["normalised"][0]), rtol=1e-6)
    assert 20.0 <= row["knobs"]["cutoff_hz"] <= 2000.0
    assert np.isfinite(row["esr"]) and 0.0 <= row["acc12"] <= 1.0
  # The rows partition val1: their sample counts add up.
  assert sum(r["samples"] for r in rows) == len(dataset.val1.target)
  assert (tmp_path / "plots" / "val1_esr_per_setting.png").exists()
  model, params, _ = restore.load_params(str(tmp_path))
  assert evaluate.predict(model, params, dataset.val1.input).shape == (
      dataset.val1.target.shape)
