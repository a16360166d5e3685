"""CI regressions: tiny models of each family learn a one-pole low-pass.

Fixed seed, a few epochs on 1 s of noise. Thresholds are the values these
runs recorded (lstm 8.4e-3, gru 4.8e-3, wavenet 9.6e-4, thesis_cnn 0.65
val1 ESR after 6 epochs) with about 3x headroom; a change that slows
learning or breaks a model fails here.
"""

import pytest

from emu import train
from test_train import tiny_config, tiny_dataset

CASES = {
    # name: (config changes, final val1 ESR below, fall factor at least)
    "lstm": (dict(model="lstm", model_kwargs={"hidden_size": 8}), 0.03, 20),
    "gru": (dict(model="gru", model_kwargs={"hidden_size": 8}), 0.015, 20),
    "wavenet": (dict(model="wavenet", model_kwargs={
        "channels": 4, "dilations": (1, 2, 4, 8)}), 0.003, 20),
    "thesis_cnn": (dict(model="thesis_cnn", model_kwargs={
        "window": 32, "filters": 8, "kernel_size": 8, "groups": 2},
                        mode="window", window=32, windows_per_epoch=2048,
                        batch_size=64), 0.8, 1.3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tiny_model_learns(name, tmp_path):
  changes, threshold, factor = CASES[name]
  result = train.fit(tiny_config(max_epochs=6, **changes), str(tmp_path),
                     dataset=tiny_dataset())
  esrs = [row["val1_esr"] for row in result.history]
  assert len(esrs) == 6
  assert esrs[-1] < threshold, esrs
  assert esrs[0] / min(esrs) >= factor, esrs
