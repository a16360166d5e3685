"""emu.capture.testsignal: the layout is where the audio is, at any sample rate."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from emu.capture import testsignal

SECONDS = testsignal.MIN_SECONDS  # the shortest it makes


@pytest.fixture(scope="module")
def made():
  """One signal per rate, made once: each new length compiles emu.signals."""
  return {rate: testsignal.make(rate, SECONDS, seed=3)
          for rate in (44100, 96000)}


@pytest.mark.parametrize("rate", [44100, 96000])
def test_layout_tiles_the_signal_in_order(made, rate):
  audio, layout = made[rate]
  segments = layout["segments"]
  # Given any sample rate, the parts tile the signal without gaps
  assert layout["sample_rate"] == rate
  assert layout["samples"] == len(audio) == pytest.approx(SECONDS * rate,
                                                           abs=64)
  assert segments[0]["start"] == 0 and segments[-1]["end"] == len(audio)
  for before, after in zip(segments, segments[1:]):
    assert before["end"] == after["start"]
  # and each part holds what its kind says
  silence = int(testsignal.SILENCE_SECONDS * rate)
  for seg in segments:
    part = audio[seg["start"]:seg["end"]]
    if seg["kind"] == "silence":
      assert seg["end"] - seg["start"] == silence and not np.any(part)
    elif seg["kind"] != "blip":
      assert 20 * np.log10(np.max(np.abs(part))) == pytest.approx(
          seg["peak_dbfs"], abs=0.01)
  assert np.max(np.abs(audio)) < 1.0
  assert json.loads(json.dumps(layout)) == layout


@pytest.mark.parametrize("rate", [44100, 96000])
def test_repeats_are_identical_and_blips_are_single_samples(made, rate):
  audio, layout = made[rate]
  (a0, a1), (b0, b1) = layout["repeat"]["first"], layout["repeat"]["second"]
  assert a1 - a0 == b1 - b0 > 0.1 * rate
  np.testing.assert_array_equal(audio[a0:a1], audio[b0:b1])
  # Silence before each copy, so the device starts both from rest.
  assert not np.any(audio[a0 - 100:a0]) and not np.any(audio[b0 - 100:b0])
  assert len(layout["blips"]) == 2
  for position in layout["blips"]:
    assert audio[position] == pytest.approx(testsignal.BLIP_PEAK)
    blip = next(s for s in layout["segments"]
                if s["start"] <= position < s["end"])
    assert blip["kind"] == "blip"
    assert blip["start"] < position < blip["end"]
    assert not np.any(audio[position + 1:blip["end"]])
    assert not np.any(audio[blip["start"]:position])


def test_same_seed_same_signal_other_seed_other_noise(made):
  audio, _ = testsignal.make(44100, SECONDS, seed=3)
  np.testing.assert_array_equal(audio, made[44100][0])
  other, _ = testsignal.make(44100, SECONDS, seed=4)
  assert not np.array_equal(audio, other)


def test_too_short_is_refused(tmp_path):
  with pytest.raises(ValueError, match="at least"):
    testsignal.make(48000, 2.0)
  # Given 6 s, val1 (the last tenth) would hold only the end blip and
  # silence: refused before anything is written, naming the minimum.
  path = str(tmp_path / "short.wav")
  with pytest.raises(ValueError, match=r"--seconds=6: .* val1.* pass "
                     r"--seconds=12\.6 or more"):
    testsignal.write(path, 48000, 6.0)
  assert not os.listdir(tmp_path)


def test_val1_holds_played_audio(made):
  # The last tenth of the shortest signal holds MIN_VAL1_PLAYED_SECONDS of
  # the played part, which the recording's val1 is scored on.
  audio, layout = made[44100]
  start = int(len(audio) * (1 - 0.1))
  played = next(s for s in layout["segments"] if s["kind"] == "played")
  assert (played["end"] - start) / 44100 >= testsignal.MIN_VAL1_PLAYED_SECONDS
  assert np.max(np.abs(audio[start:played["end"]])) > 0.01


def test_cli_writes_wav_and_sidecar_and_refuses_to_overwrite(tmp_path):
  out = str(tmp_path / "input.wav")
  cmd = [sys.executable, "-m", "emu.capture.testsignal", out, "--sample_rate=22050",
         f"--seconds={SECONDS}"]
  env = dict(os.environ, PYTHONPATH=os.getcwd())
  done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                        check=False)
  assert done.returncode == 0, done.stderr
  audio, rate = sf.read(out, dtype="float32")
  layout = testsignal.read_layout(out)
  assert rate == 22050 and layout["sample_rate"] == 22050
  assert len(audio) == layout["samples"]
  assert layout["subtype"] == "PCM_24" == sf.info(out).subtype
  (a0, a1), (b0, b1) = layout["repeat"]["first"], layout["repeat"]["second"]
  np.testing.assert_array_equal(audio[a0:a1], audio[b0:b1])
  # Again without --overwrite: refused, file untouched
  again = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         check=False)
  assert again.returncode != 0 and "--overwrite" in again.stderr
