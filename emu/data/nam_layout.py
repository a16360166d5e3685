"""NAM's capture layout: reading a NAM reamp pair as NAM itself reads it.

Neural Amp Modeler (NAM, PyPI `neural-amp-modeler`) captures a device from
one reamp: its standard input file (v3_0_0.wav) played through the device
and recorded. `nam_dataset` reads such a pair with NAM's sample positions,
its version detection, its latency calibration from the blips and its data
checks. Every number here is taken from NAM's source, neural-amp-modeler
0.13.0 (`nam/train/core.py`, `nam/data.py`), cited where it is used; NAM
itself is never imported (it is no dependency of emu).

The v3 input at 48 kHz, as the comment above `_V3_DATA_INFO` lays it out
(nam/train/core.py lines 301-309 in 0.13.0):

  0:00-0:09    validation 1 (samples 0 .. 432,000)
  0:09-0:10    silence
  0:10-0:12    blips at 0:10.5 and 0:11.5 (samples 504,000 and 552,000)
  0:12-0:15    chirps
  0:15-0:17    noise
  0:17-3:00.5  general training data
  3:00.5-3:01  silence
  3:01-3:10    validation 2 (the last 432,000 samples)

What NAM does with it, and so emu with `--layout=nam`:

  * latency: the target's answer to the two blips, averaged, is the first
    sample above a trigger level set by the target's background in
    0:10.25-0:10.375; NAM keeps one sample less (its safety factor), so a
    device without latency reads -1 and the model sees one sample ahead.
  * replicate check: the target's two recordings of the validation audio
    (start and end) must agree: NAM refuses the pair when their ESR exceeds
    0.01 (the gear changed, drifted or is noisy).
  * split: train on samples 480,000 .. n - 432,000, validate on the last
    432,000 (validation 2; validation 1 only serves the check), each cut
    first and then shifted by the latency, as NAM's `Dataset` does.

Unlike NAM, emu keeps the target at its recorded level (NAM scales it to
-18 dBFS RMS and undoes that in the exported model's loudness).
"""

import dataclasses
import hashlib
import os
import warnings

from absl import logging
import numpy as np
import soundfile

from emu.data import files
from emu.data import pairs

# nam/train/core.py (0.13.0) `_V3_DATA_INFO`, lines 310-320, and the
# simplified trainer's rate `STANDARD_SAMPLE_RATE`, line 57.
RATE = 48_000
T_VALIDATE = 432_000  # t_validate: each validation replicate, 9 s
TRAIN_START = 480_000  # train_start (and _get_data_config, line 836)
VALIDATION_START = -T_VALIDATE  # validation_start, from the end
FIRST_BLIPS_START = 480_000  # first_blips_start
T_BLIPS = 96_000  # t_blips: the 2 s that hold the blips
NOISE_INTERVAL = (492_000, 498_000)  # noise_interval: the trigger's floor
BLIPS = (504_000, 552_000)  # blip_locations[0]: 0:10.5 and 0:11.5
# 3:10 at 48 kHz. Not a field of `_V3_DATA_INFO` (NAM indexes validation 2
# from the end); the layout comment above it ends the file at 3:10. Only a
# stand-in is held to it: a file that hashes as v3 is NAM's, at any length.
V3_SAMPLES = 9_120_000
# nam/data.py `_DEFAULT_REQUIRE_INPUT_PRE_SILENCE` (line 316): the input is
# silent this long before each split starts (`_validate_preceding_silence`).
PRE_SILENCE_SECONDS = 0.4
# nam/train/core.py `_check_v3`, line 741: `esr_replicate_threshold`.
REPLICATE_ESR_LIMIT = 0.01
# nam/train/core.py `_check_audio_lengths` (line 1593): the recording may
# run up to 1 s past the input (then cut to it), never end before it.
MAX_EXTRA_SECONDS = 1.0
# nam/train/core.py `_calibrate_latency_v_all` (lines 346-348, 415-416).
LOOKAHEAD = 1_000
LOOKBACK = 10_000
ABS_THRESHOLD = 0.0003
REL_THRESHOLD = 0.001
SAFETY_FACTOR = 1
# The name `report_layout` gives the layout in `emu.capture.datareport`.
LAYOUT_NAME = "NAM v3 reamp input"

# nam/train/core.py `_detect_input_version` (0.13.0): md5 of the whole file
# ("strong", lines 90-96) ...
STRONG_HASHES = {
    "4d54a958861bf720ec4637f43d44a7ef": "1.0.0",
    "7c3b6119c74465f79d96c761a0e27370": "1.1.1",
    "ede3b9d82135ce10c7ace3bb27469422": "2.0.0",
    "36cd1af62985c2fac3e654333e36431e": "3.0.0",
    "80e224bd5622fd6153ff1fd9f34cb3bd": "4.0.0",  # GuitarML Proteus
}
# ... or ("weak", lines 104-237) md5 of the samples at the start and the end
# of the file, read as NAM reads them; checked in this order: (version,
# rate, start samples, end samples or None, {(start md5, end md5): version}).
_WEAK = (
    ("3", 48_000, 17 * 48_000, 9 * 48_000,
     {("dadb5d62f6c3973a59bf01439799809b",
       "8458126969a3f9d8e19a53554eb1fd52"): "3.0.0"}),
    ("2", 48_000, 96_000 + 6 * 48_000, 2 * 432_000 + 96_000,
     {("1c4d94fbcb47e4d820bef611c1d4ae65",
       "28694e7bf9ab3f8ae6ef86e9545d4663"): "2.0.0"}),
    ("1", 48_000, 48_000 + 6 * 48_000, 432_000,
     {("bb4e140c9299bae67560d280917eb52b",
       "9b2468fcb6e9460a399fc5f64389d353"): "1.0.0",
      ("9f20c6b5f7fef68dd88307625a573a14",
       "8458126969a3f9d8e19a53554eb1fd52"): "1.1.1"}),
    ("4", 44_100, 44_100, None,
     {("46151c8030798081acc00a725325a07d", None): "4.0.0"}),
)


@dataclasses.dataclass(frozen=True)
class BlipLatency:
  """NAM's latency calibration: `delay` (None: no answer to the blips) and
  `recommended` = delay - SAFETY_FACTOR, the shift NAM trains with."""
  delay: int | None
  recommended: int | None
  threshold: float
  background: float


def _md5(array):
  return hashlib.md5(np.ascontiguousarray(array)).hexdigest()


def weak_hashes(path):
  """{version major: (start md5, end md5)} of `path`, as NAM computes them.

  NAM hashes the first channel as `nam.data.wav_to_np` reads it: PCM as
  float64 int / 2^(8 * bytes - 1) (wavio), which soundfile's float64
  reading matches exactly; a float WAV as float32 (its librosa fallback).
  A major version whose rate the file does not have gets (None, None).
  """
  info = soundfile.info(path)
  dtype = "float32" if info.subtype in ("FLOAT", "DOUBLE") else "float64"
  x = soundfile.read(path, dtype=dtype, always_2d=True)[0][:, 0]
  out = {}
  for major, rate, start, end, _ in _WEAK:
    if info.samplerate != rate:
      out[major] = (None, None)
      continue
    out[major] = (_md5(x[:start]), _md5(x[-end:]) if end else None)
  return out


def strong_hash(path):
  """md5 of the file's bytes, NAM's "strong" hash."""
  md5 = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 16), b""):
      md5.update(block)
  return md5.hexdigest()


def detect_version(path):
  """NAM's `_detect_input_version`: ("3.0.0", "strong"|"weak") or (None,
  None) when the file is none of NAM's standard inputs."""
  strong = strong_hash(path)
  if strong in STRONG_HASHES:
    return STRONG_HASHES[strong], "strong"
  hashes = weak_hashes(path)
  for major, _, _, _, table in _WEAK:
    if hashes[major] in table:
      return table[hashes[major]], "weak"
  return None, None


def calibrate_latency(y):
  """NAM's `_calibrate_latency_v_all` on the v3 layout (core.py 359-493).

  Args:
    y: the recording, [time], from its first sample.

  Returns:
    A `BlipLatency`: the first sample (relative to the blips, from
    -LOOKAHEAD) where the mean of the answers to both blips exceeds
    max(background + 0.0003, 1.001 * background), background being the
    recording's peak in NOISE_INTERVAL.
  """
  y = np.asarray(y[FIRST_BLIPS_START:FIRST_BLIPS_START + T_BLIPS], np.float64)
  noise = y[NOISE_INTERVAL[0] - FIRST_BLIPS_START:
            NOISE_INTERVAL[1] - FIRST_BLIPS_START]
  background = float(np.max(np.abs(noise)))
  threshold = max(background + ABS_THRESHOLD,
                  (1.0 + REL_THRESHOLD) * background)
  scans = [y[i - FIRST_BLIPS_START - LOOKAHEAD:
             i - FIRST_BLIPS_START + LOOKBACK] for i in BLIPS]
  triggered = np.nonzero(np.abs(np.mean(np.stack(scans), axis=0)) >
                         threshold)[0]
  if not len(triggered):
    return BlipLatency(None, None, threshold, background)
  delay = int(triggered[0]) - LOOKAHEAD
  return BlipLatency(delay, delay - SAFETY_FACTOR, threshold, background)


def replicate_esr(y, n):
  """NAM's `_check_v3` self-ESR (core.py 729-754): the first T_VALIDATE
  samples of the recording against those ending at the input's length n,
  mean((v1 - v2)^2) / mean(v2^2) (nam.models.losses.esr, v2 the target)."""
  v1 = np.asarray(y[:T_VALIDATE], np.float64)
  v2 = np.asarray(y[n - T_VALIDATE:n], np.float64)
  energy = np.mean(v2 ** 2)
  return float(np.mean((v1 - v2) ** 2) / energy) if energy > 0 else np.inf


def split(x, y, delay):
  """NAM's v3 split (`_get_data_config`, core.py 833-837): (train, val).

  Each part is cut from the input-length pair first, then shifted by
  `delay` as `nam.data.Dataset._apply_delay_int` does (data.py 646-656):
  delay > 0 drops the input's last and the target's first `delay` samples.
  """
  n = len(x)

  def part(start, stop):
    xs, ys = x[start:stop], y[start:stop]
    if delay > 0:
      xs, ys = xs[:-delay], ys[delay:]
    elif delay < 0:
      xs, ys = xs[-delay:], ys[:delay]
    return pairs.Pair(np.ascontiguousarray(xs), np.ascontiguousarray(ys))

  return (part(TRAIN_START, n + VALIDATION_START),
          part(n + VALIDATION_START, n))


def _check_rates_and_lengths(x, rate_x, y, rate_y, input_path, target_path):
  """NAM's rate and length rules; returns the target cut to the input."""
  for path, rate in ((input_path, rate_x), (target_path, rate_y)):
    if rate != RATE:
      raise pairs.DataError(
          f"{path} is at {rate} Hz, but NAM's standard input v3 is "
          f"{RATE} Hz and its sample positions are fixed: reamp with the "
          "DAW session at 48 kHz, or resample the file to 48 kHz (e.g. sox "
          f"{os.path.basename(path)} -r 48000 out.wav); or use --layout="
          "plain for a pair of your own")
  extra = len(y) - len(x)
  if extra < 0 or extra > MAX_EXTRA_SECONDS * RATE:
    raise pairs.DataError(
        f"{target_path} has {len(y)} samples and {input_path} {len(x)}: the "
        f"recording is {abs(extra) / RATE:.3f} s "
        f"{'shorter' if extra < 0 else 'longer'} than the input, and NAM "
        "takes a recording from the input's first sample that ends no "
        f"earlier and at most {MAX_EXTRA_SECONDS:.0f} s later "
        "(nam/train/core.py _check_audio_lengths): export the recording "
        "from the start of the input to its end")
  if extra:
    logging.info("%s: cutting %d samples past the input's end", target_path,
                 extra)
  return y[:len(x)]


def _check_input(x, input_path, version, match):
  """The input is NAM's v3 file, or a stand-in with its layout."""
  if version is not None and not version.startswith("3."):
    raise pairs.DataError(
        f"{input_path} is NAM's standard input v{version} ({match} match), "
        "which NAM 0.13 no longer trains on without ignore_checks "
        "(nam/train/core.py _check_data, issue 442): reamp NAM's "
        "v3_0_0.wav instead, or use --layout=plain")
  if version is None:
    if len(x) != V3_SAMPLES:
      raise pairs.DataError(
          f"{input_path} has {len(x)} samples ({len(x) / RATE:.3f} s), "
          f"but NAM's standard input v3 is 3:10 ({V3_SAMPLES} samples at "
          f"{RATE} Hz), and it is not NAM's file by its hashes either: use "
          "NAM's v3_0_0.wav unedited as the input, or --layout=plain for "
          "other audio")
    warnings.warn(
        f"{input_path} is not NAM's v3_0_0.wav by its hashes (NAM's own "
        "trainer would refuse it: 'cannot be recognized as any known "
        "version'); reading it by the v3 layout, as it has v3's length",
        stacklevel=3)
  silent = int(PRE_SILENCE_SECONDS * RATE)
  for what, start in (("training", TRAIN_START),
                      ("validation", len(x) + VALIDATION_START)):
    if np.any(x[start - silent:start] != 0.0):
      raise pairs.DataError(
          f"{input_path} is not silent in the {PRE_SILENCE_SECONDS} s "
          f"before the {what} audio (samples {start - silent}..{start}), as "
          "NAM's v3 input is (nam/data.py _validate_preceding_silence): this "
          "is not NAM's v3 layout; use NAM's v3_0_0.wav, or --layout=plain")


def _check_replicates(y, n, target_path):
  esr = replicate_esr(y, n)
  if not esr <= REPLICATE_ESR_LIMIT:
    raise pairs.DataError(
        f"{target_path}: the two recordings of NAM's validation audio (0:00-"
        f"0:09 and the last 9 s) differ by ESR {esr:.6f}, over NAM's limit "
        f"of {REPLICATE_ESR_LIMIT} (nam/train/core.py _check_v3): the device "
        "does not sound like itself when played twice. Turn off time-based "
        "effects (delay, reverb, chorus), reduce noise, leave the knobs "
        "alone and let the amp warm up, then reamp again; or, at your own "
        "risk, train on it with --layout=plain")
  return esr


def _check_not_clipped(part, what, target_path):
  peak = float(np.max(np.abs(part.target), initial=0.0))
  if peak >= 1.0:
    raise pairs.DataError(
        f"{target_path}: the recording reaches full scale in the {what} "
        f"audio (peak {peak:.3f}), which NAM refuses ('Output clipped', "
        "nam/data.py Dataset): lower the recording level and reamp again")


def read_nam_pair(input_path, target_path, channel=None):
  """Reads and checks a NAM reamp pair; see the module docstring.

  Args:
    input_path: NAM's standard input v3 (v3_0_0.wav), or a stand-in with its
      layout and length.
    target_path: its recording through the device, from the first sample.
    channel: which channel of multi-channel files (NAM takes mono only).

  Returns:
    (train Pair, val Pair, info): info holds "version", "match", "delay",
    "latency" (NAM's recommended shift, samples), "replicate_esr" and
    "train_samples"/"val_samples" ([start, stop) in input samples).

  Raises:
    DataError: naming the problem and the fix.
  """
  x, rate_x = files.read_mono(input_path, channel)
  y, rate_y = files.read_mono(target_path, channel)
  y = _check_rates_and_lengths(x, rate_x, y, rate_y, input_path, target_path)
  version, match = detect_version(input_path)
  _check_input(x, input_path, version, match)
  files.check_samples(x, input_path, RATE)
  files.check_samples(y, target_path, RATE)
  lat = calibrate_latency(y)
  if lat.delay is None:
    raise pairs.DataError(
        f"{target_path}: no answer to NAM's blips at 0:10.5 and 0:11.5 rose "
        f"above the trigger level {lat.threshold:.2e} (NAM's latency "
        "calibration fails the same way): check that the file is the "
        "device's output, recorded from the input's first sample")
  if lat.delay == -LOOKAHEAD:
    warnings.warn(
        f"{target_path}: the latency is at the earliest value NAM searches "
        f"({-LOOKAHEAD} samples), which usually means something is wrong "
        "with the recording; check the result", stacklevel=2)
  esr = _check_replicates(y, len(x), target_path)
  train, val = split(x, y, lat.recommended)
  _check_not_clipped(train, "training", target_path)
  _check_not_clipped(val, "validation", target_path)
  n, d = len(x), lat.recommended
  info = {"version": version, "match": match, "delay": lat.delay,
          "latency": d, "replicate_esr": esr,
          "train_samples": [TRAIN_START + max(-d, 0),
                            n + VALIDATION_START - max(d, 0)],
          "val_samples": [n + VALIDATION_START + max(-d, 0), n - max(d, 0)]}
  return train, val, info


def nam_dataset(input_path, target_path, val2_files=(), channel=None):
  """A Dataset from a NAM reamp pair: NAM's training audio and validation 2.

  Args:
    input_path, target_path, channel: as for `read_nam_pair`.
    val2_files: must be empty (a voice clip needs the device's output too).

  Returns:
    A `Dataset` named 'nam_<input file name>' at 48 kHz: train and val1
    are NAM's training and validation pairs, aligned by NAM's latency.
  """
  if val2_files:
    raise pairs.DataError(
        "val2 voice clips need the device's output, which only your reamp "
        "has: leave val2_files empty with --layout=nam")
  train, val, info = read_nam_pair(input_path, target_path, channel)
  logging.info(
      "%s: NAM v3 layout (%s); latency %d samples (blips answer at %d, "
      "NAM's safety factor %d); replicate ESR %.2e (NAM's limit %g); train "
      "samples %s, val1 samples %s", input_path,
      f"v{info['version']}, {info['match']} hash match" if info["version"]
      else "a stand-in, not NAM's file by hash", info["latency"],
      info["delay"], SAFETY_FACTOR, info["replicate_esr"],
      REPLICATE_ESR_LIMIT, info["train_samples"], info["val_samples"])
  name = os.path.splitext(os.path.basename(input_path))[0]
  return pairs.Dataset(f"nam_{name}", RATE, train, val)


def report_layout(samples, sample_rate):
  """The v3 layout as an `emu.capture.datareport` layout dict, or None when a file
  of `samples` at `sample_rate` cannot be NAM's v3 input."""
  if sample_rate != RATE or samples != V3_SAMPLES:
    return None
  return {"name": LAYOUT_NAME, "sample_rate": RATE,
          "samples": samples, "blips": list(BLIPS),
          "segments": [
              {"name": "silence", "kind": "silence", "start": T_VALIDATE,
               "end": TRAIN_START},
              {"name": "silence", "kind": "silence",
               "start": samples + VALIDATION_START - RATE // 2,
               "end": samples + VALIDATION_START}],
          "repeat": {"first": [0, T_VALIDATE],
                     "second": [samples - T_VALIDATE, samples]}}
