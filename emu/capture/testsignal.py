"""A reamping test signal: play it through your device, record the output.

  python -m emu.testsignal input.wav --sample_rate=48000 [--seconds=60]

writes `input.wav` and `input.layout.json`, the sidecar that says where
each part starts and ends (samples). `emu.capture.datareport` reads it to measure
the recording: latency from the blips, the device's noise floor from the
silences, and its repeatability from the repeated segment. Parts, in order:

  silence_head   0.5 s   the device settles; its noise floor
  blip           0.25 s  one sample at -6 dBFS mid-way in silence: latency
  repeat_a       pink noise under a triangle envelope plus a falling log
                 sweep, preceded by 0.5 s of silence
  repeat_b       the same audio again, after the same silence: the two
                 recordings differ only by the device's noise and drift
  sweeps         rising log sweep at -6 dBFS, falling at -18 dBFS
  noise          white at -30/-18/-6, pink at -24/-12/-3, brown at -12 dBFS
  mix            pink, sweep and white bursts at varying levels
  played         what music and speech do that noise does not: plucked
                 harmonic notes (random pitch, level and decay, some
                 overlapping) and pink bursts under syllable-rate
                 envelopes with pauses, over 40 dB of level, peaking at
                 -1 dBFS as mastered audio does (the end of a recording is
                 what `files_dataset` holds out as val1)
  blip_end       a second blip: latency again, so clock drift shows
  silence_tail   0.5 s   the last response rings out

Levels are peaks in dBFS; every non-silent part fades in and out over
10 ms. `--seconds` sets the total length, at least MIN_SECONDS (12.6 s:
val1, the recording's last tenth, must hold played audio): the silences and
blips keep their lengths and the rest share what is left. Nothing precedes
the first blip, so a recording is timed by its answer at any lag. Any sample rate works; the sweeps
end at min(20 kHz, 0.45 * sample_rate).
"""

import json
import math
import os
import sys

from absl import flags
import jax
import numpy as np
import soundfile as sf

from emu import cli
from emu import signals
from emu.data import files as files_lib

FLAGS = flags.FLAGS

# The sidecar's name and format live with the reader training uses.
LAYOUT_FORMAT = files_lib.LAYOUT_FORMAT
LAYOUT_VERSION = 1
layout_path = files_lib.layout_path
read_layout = files_lib.read_layout
VAL_FRACTION = files_lib.VAL_FRACTION
# The played part's notes: fundamentals (Hz), decay times (s), lengths (s).
NOTE_HZ = (60.0, 1200.0)
NOTE_DECAY_S = (0.08, 1.2)
NOTE_SECONDS = (0.08, 0.7)
# Its bursts: syllables per second, and the level range of notes and
# bursts below the part's peak (dB).
SYLLABLE_HZ = 4.0
PLAYED_RANGE_DB = 40.0
SILENCE_SECONDS = 0.5
BLIP_SECONDS = 0.25
BLIP_PEAK = 0.5  # -6 dBFS
FADE_SECONDS = 0.01
SWEEP_LOW_HZ = 20.0
# Measured best of 30, 60 and 120 s for a 10-minute capture of a SPICE
# TS-808 (the numbers: README, benchmarks/README.md 2026-12-08): a longer
# recording is fewer epochs in the same time, a shorter one less to learn.
DEFAULT_SECONDS = 60.0

# name -> (kind, peak dBFS, share of the content time). "repeat" is played
# twice; the shares are of the time left once the fixed silences and blips
# are placed. Both sweeps get one share so that they, and the sweeps inside
# "repeat" and "mix", have one length: emu.signals compiles once per length.
_CONTENT = (
    ("repeat", "repeat", -3.0, 0.10),
    ("sweep_up", "sweep_up", -6.0, 0.05),
    ("sweep_down", "sweep_down", -18.0, 0.05),
    *((f"{kind}_{level:g}dB", kind, level, share)
      for kind, level, share in (
          ("white", -30.0, 0.04), ("white", -18.0, 0.04),
          ("white", -6.0, 0.06), ("pink", -24.0, 0.06),
          ("pink", -12.0, 0.10), ("pink", -3.0, 0.10),
          ("brown", -12.0, 0.06))),
    ("mix", "mix", -3.0, 0.14),
    ("played", "played", -1.0, 0.20),
)
_SHARE_TOTAL = sum(s for *_, s in _CONTENT) + 0.10  # repeat is played twice


def _fixed_seconds():
  """Seconds of silences and blips, whatever the total length."""
  # head, before each repeat (2), after the repeats, tail; two blips.
  return 5 * SILENCE_SECONDS + 2 * BLIP_SECONDS


# val1 is the recording's last VAL_FRACTION (`emu.data.files_dataset`);
# past the played part the input holds only the end blip and the tail
# silence, so val1 must be long enough to hold this much played audio too.
MIN_VAL1_PLAYED_SECONDS = 0.5
MIN_SECONDS = math.ceil(10 * (BLIP_SECONDS + SILENCE_SECONDS + FADE_SECONDS
                              + MIN_VAL1_PLAYED_SECONDS) / VAL_FRACTION) / 10
# Longer gives training nothing new (NAM's reamp file is 3:10) and costs
# memory: one float64 copy of 600 s at 192 kHz is 0.9 GB.
MAX_SECONDS = 600.0


def fade(x, sample_rate):
  """A float64 copy of x faded in and out over FADE_SECONDS (at most half
  of it each way) with a raised cosine from exactly 0: no click at either
  edge. Each part of the test signal, and each clip of the listening test
  (`emu.report.listening_test`), starts and ends so."""
  x = np.array(x, np.float64)
  n = min(int(FADE_SECONDS * sample_rate), len(x) // 2)
  if n:
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    x[:n] *= ramp
    x[-n:] *= ramp[::-1]
  return x


def _amplitude(level_dbfs):
  """The peak amplitude of a level in dBFS (-6 dBFS -> 0.501)."""
  return 10.0 ** (level_dbfs / 20.0)


class _Sources:
  """emu.signals' generators, each called once for all the parts that use
  it (a call compiles per length); parts are consecutive slices."""

  def __init__(self, lengths, sample_rate, seed):
    self.sample_rate = sample_rate
    self.sweep_len = lengths["sweep_up"]
    top = min(20000.0, 0.45 * sample_rate)
    self.up = np.asarray(signals.sweep(self.sweep_len, sample_rate,
                                       SWEEP_LOW_HZ, top), np.float64)
    self.down = np.asarray(signals.sweep(self.sweep_len, sample_rate, top,
                                         SWEEP_LOW_HZ), np.float64)
    need = {"white": lengths["mix"], "pink": lengths["repeat"] +
            lengths["mix"] + lengths["played"], "brown": 0}
    for name, kind, _, _ in _CONTENT:
      if kind in need:
        need[kind] += lengths[name]
    k_white, k_pink, k_brown = jax.random.split(jax.random.PRNGKey(seed), 3)
    rate = float(sample_rate)
    self.noise = {
        "white": np.asarray(signals.white(k_white, need["white"])),
        "pink": np.asarray(signals.pink(k_pink, need["pink"], rate)),
        "brown": np.asarray(signals.brown(k_brown, need["brown"], rate)),
    }
    self.used = dict.fromkeys(self.noise, 0)
    self.rng = np.random.default_rng(seed)

  def take(self, kind, n):
    at = self.used[kind]
    self.used[kind] += n
    return self.noise[kind][at:at + n].astype(np.float64)

  def notes(self, n):
    """float64 [n]: plucked notes one after another, a third of them over
    the last: harmonics k = 1.. below Nyquist at 1/k (odd ones only for a
    third of the notes), a 2 ms attack, an exponential decay."""
    rate = self.sample_rate
    out, at = np.zeros(n), 0
    while at < n:
      f0 = math.exp(self.rng.uniform(*np.log(NOTE_HZ)))
      decay = math.exp(self.rng.uniform(*np.log(NOTE_DECAY_S)))
      length = min(n - at, int(self.rng.uniform(*NOTE_SECONDS) * rate) + 1)
      t = np.arange(length) / rate
      ks = np.arange(1, max(int(0.45 * rate / f0), 1) + 1)
      if self.rng.uniform() < 1 / 3:
        ks = ks[ks % 2 == 1]
      phases = self.rng.uniform(0., 2 * np.pi, len(ks))
      tone = np.sin(2 * np.pi * f0 * t[:, None] * ks + phases) @ (1. / ks)
      envelope = np.minimum(t / 0.002, 1.) * np.exp(-t / decay)
      gain = _amplitude(-self.rng.uniform(0., PLAYED_RANGE_DB))
      out[at:at + length] += gain * tone * envelope / np.max(np.abs(tone))
      # the next note starts after this one, or (a third of the time)
      # during it, as a chord or a legato line does
      at += length if self.rng.uniform() > 1 / 3 else max(length // 3, 1)
    return out

  def bursts(self, n):
    """float64 [n]: pink noise under syllable envelopes (raised-cosine
    bumps of random length and level, SYLLABLE_HZ on average), with a
    pause of 0.2-0.6 s after about one syllable in four."""
    rate = self.sample_rate
    envelope, at = np.zeros(n), 0
    while at < n:
      length = int(self.rng.uniform(0.5, 1.5) * rate / SYLLABLE_HZ) + 2
      bump = np.sin(np.pi * np.arange(length) / length) ** 2
      stop = min(n, at + length)
      envelope[at:stop] = bump[:stop - at] * _amplitude(
          -self.rng.uniform(0., PLAYED_RANGE_DB))
      at = stop
      if self.rng.uniform() < 0.25:
        at += int(self.rng.uniform(0.2, 0.6) * rate)
    return self.take("pink", n) * envelope

  def sweep_in(self, sweep, n):
    """The sweep centred in n samples of silence."""
    out = np.zeros(n)
    at = (n - self.sweep_len) // 2
    out[at:at + self.sweep_len] = fade(sweep, self.sample_rate)
    return out

  def part(self, kind, n):
    """float64 [n] of one kind, faded in and out, peak 1."""
    if kind == "sweep_up":
      x = self.up
    elif kind == "sweep_down":
      x = self.down
    elif kind in self.noise:
      x = self.take(kind, n)
    elif kind == "repeat":
      triangle = 1.0 - np.abs(np.linspace(-1.0, 1.0, n))
      x = (self.take("pink", n) * triangle +
           _amplitude(-12) * self.sweep_in(self.down, n))
    elif kind == "played":  # notes alone, bursts alone, then both, each
      # third at the part's peak: training (the start) and val1 (the end)
      # both reach it
      third = np.minimum(np.arange(n) * 3 // n, 2)
      x = self.notes(n) * (third != 1) + self.bursts(n) * (third != 0)
      for i in range(3):
        x[third == i] /= max(np.max(np.abs(x[third == i])), 1e-12)
    else:  # mix: pink at a level that steps every quarter, a sweep, bursts
      steps = _amplitude(self.rng.uniform(-24.0, 0.0, 4))
      levels = steps[np.minimum(np.arange(n) * 4 // n, 3)]
      bursts = (np.arange(n) // max(n // 16, 1)) % 3 == 0
      x = (self.take("pink", n) * levels +
           _amplitude(-18) * self.sweep_in(self.up, n) +
           _amplitude(-12) * self.take("white", n) * bursts)
    # No DC: an offset thumps through a device's coupling capacitors.
    x = fade(x - np.mean(x), self.sample_rate)
    return x / max(np.max(np.abs(x)), 1e-12)


def make(sample_rate=48000, seconds=DEFAULT_SECONDS, seed=0):
  """The test signal and its layout.

  Args:
    sample_rate: Hz (any; 44100, 48000, 96000, ...).
    seconds: total length, MIN_SECONDS (val1 holds played audio) to
      MAX_SECONDS.
    seed: seeds the noises (jax.random), so a seed gives the same file.

  Returns:
    (audio float32 [samples] with peak -1 dBFS (the played part), layout dict:
    {"format", "version", "sample_rate", "samples", "seconds", "seed",
    "segments": [{"name", "kind", "start", "end", "peak_dbfs"}] (samples,
    end exclusive), "blips": [sample, ...], "repeat": {"first": [start,
    end], "second": [start, end]}}).
  """
  sample_rate = int(sample_rate)
  if not seconds <= MAX_SECONDS:  # also NaN
    raise ValueError(f"--seconds={seconds}: the test signal is at most "
                     f"{MAX_SECONDS:g} s; choose a length up to that (60 "
                     "s, the default, is enough for any device)")
  if sample_rate < 8000:
    raise ValueError(f"sample_rate {sample_rate} Hz: use at least 8000")
  if not seconds >= MIN_SECONDS:
    raise ValueError(
        f"--seconds={seconds:g}: the test signal needs at least "
        f"{MIN_SECONDS:g} s, so that val1, its last "
        f"{100 * VAL_FRACTION:g}%, holds {MIN_VAL1_PLAYED_SECONDS:g} s of "
        "played audio besides the end blip and the silence around it "
        f"({BLIP_SECONDS + SILENCE_SECONDS + FADE_SECONDS:g} s): pass "
        f"--seconds={MIN_SECONDS:g} or more")
  content_samples = int(round(seconds * sample_rate)) - int(
      round(_fixed_seconds() * sample_rate))
  lengths = {name: int(content_samples * share / _SHARE_TOTAL)
             for name, _, _, share in _CONTENT}
  sources = _Sources(lengths, sample_rate, seed)
  silence = int(round(SILENCE_SECONDS * sample_rate))
  blip_len = int(round(BLIP_SECONDS * sample_rate))

  parts, segments, blips = [], [], []
  position = 0

  def add(name, kind, audio, peak_dbfs=None):
    nonlocal position
    segments.append({"name": name, "kind": kind, "start": position,
                     "end": position + len(audio), "peak_dbfs": peak_dbfs})
    parts.append(audio)
    position += len(audio)

  def add_blip(name):
    # The impulse mid-way: silence on both sides, so neither what came
    # before nor what follows rings over the device's answer.
    blip = np.zeros(blip_len)
    blip[blip_len // 2] = BLIP_PEAK
    blips.append(position + blip_len // 2)
    add(name, "blip", blip, 20 * math.log10(BLIP_PEAK))

  add("silence_head", "silence", np.zeros(silence))
  add_blip("blip")
  repeat = None
  for name, kind, level, _ in _CONTENT:
    audio = sources.part(kind, lengths[name]) * _amplitude(level)
    if name == "repeat":
      for tag in ("a", "b"):
        add(f"silence_before_repeat_{tag}", "silence", np.zeros(silence))
        add(f"repeat_{tag}", "repeat", audio, level)
      add("silence_after_repeat", "silence", np.zeros(silence))
      repeat = {"first": [segments[-4]["start"], segments[-4]["end"]],
                "second": [segments[-2]["start"], segments[-2]["end"]]}
    else:
      add(name, kind, audio, level)
  add_blip("blip_end")
  add("silence_tail", "silence", np.zeros(silence))

  audio = np.concatenate(parts).astype(np.float32)
  layout = {
      "format": LAYOUT_FORMAT, "version": LAYOUT_VERSION,
      "sample_rate": sample_rate, "samples": int(len(audio)),
      "seconds": len(audio) / sample_rate, "seed": int(seed),
      "segments": segments, "blips": blips, "repeat": repeat,
  }
  return audio, layout


def write(path, sample_rate=48000, seconds=DEFAULT_SECONDS, seed=0,
          subtype="PCM_24", overwrite=False) -> dict:
  """Writes the WAV and its `layout_path` sidecar; returns the layout.

  Args:
    path: the WAV to write.
    sample_rate, seconds, seed: as for `make`.
    subtype: soundfile sample format; PCM_24 plays in every DAW and keeps
      the two repeats bit-identical (quantisation is deterministic).
    overwrite: replace existing files instead of refusing.

  Raises:
    FileExistsError: the WAV or the sidecar exists and not overwrite.
    ValueError: path or subtype names no audio file soundfile writes
      (`emu.cli.check_audio_output`), a length or rate out of range.
  """
  cli.check_audio_output(path, subtype, overwrite)
  sidecar = layout_path(path)
  if os.path.exists(sidecar) and not overwrite:
    raise FileExistsError(
        f"{sidecar} exists; choose another name or pass --overwrite")
  audio, layout = make(sample_rate, seconds, seed)
  sf.write(path, audio, layout["sample_rate"], subtype=subtype)
  layout["file"] = os.path.basename(path)
  layout["subtype"] = subtype
  with open(sidecar, "w") as f:
    json.dump(layout, f, indent=1)
  return layout


def main(argv):
  if len(argv) != 2:
    print("usage: python -m emu.testsignal OUT.wav --sample_rate=48000 "
          "[--seconds=60] [--seed=0] [--overwrite]", file=sys.stderr)
    return 2
  layout = write(argv[1], FLAGS.sample_rate, FLAGS.seconds, FLAGS.seed,
                 FLAGS.subtype, FLAGS.overwrite)
  print(f"wrote {argv[1]} ({layout['seconds']:.1f} s at "
        f"{layout['sample_rate']} Hz) and {layout_path(argv[1])}.\n"
        "Play it through your device at the level you use it at, record the "
        "output from the first sample to the last, and train with\n"
        f"  --dataset=files --train_input={argv[1]} "
        "--train_target=RECORDED.wav")
  return 0


def _define_flags():
  flags.DEFINE_integer("sample_rate", 48000, "Hz.")
  flags.DEFINE_float("seconds", DEFAULT_SECONDS, "Total length, seconds.")
  flags.DEFINE_integer("seed", 0, "Seeds the noises.")
  flags.DEFINE_string("subtype", "PCM_24",
                      "Sample format (soundfile subtype: PCM_24, PCM_16, "
                      "FLOAT).")
  flags.DEFINE_bool("overwrite", False, "Replace existing files.")


def run():
  """The command line: its flags, then main."""
  _define_flags()
  cli.run_main(main)


if __name__ == "__main__":
  run()
