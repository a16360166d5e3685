"""Stand-in devices to capture, and held-out real audio to score them on.

`DEVICES` maps a name to a `Device`: `process(x, sample_rate)` takes a
float32 [time] signal and returns the device's float32 [time] output,
deterministically (every call starts from a reset state). Four are
Spotify's `pedalboard` effects (JUCE code nobody here wrote: a pip extra
for tests and benchmarks, never a dependency of emu, imported only when one
of them runs); two are emu's own effects. None of them has latency: the
output at sample t depends on the input up to t only.

  pb_overdrive      pedalboard Distortion, 12 dB drive (tanh), -6 dB level
  pb_fuzz           pedalboard Distortion, 30 dB drive, -6 dB level
  pb_compressor     pedalboard Compressor: -20 dB, 4:1, 20 ms / 200 ms
  pb_amp            LowShelf +6 dB at 250 Hz -> Distortion 24 dB ->
                    LowpassFilter 4 kHz -> -6 dB (an EQ / clip / EQ chain)
  emu_diode_clipper emu.effects.diode_clipper at 20 dB drive
  emu_compressor    emu.effects.compressor with pb_compressor's settings

Nine more are circuits and plugins nobody here wrote, run by Debian
programs (`apt` names the Debian packages; apt-get install them;
`unavailable(device)` says which are missing here):

  spice_ts808       Tube Screamer clipping + tone + volume stages (ngspice)
  spice_fuzzface    two-transistor silicon Fuzz Face (ngspice)
  spice_tube_amp    two 12AX7 stages, Koren's triode model (ngspice)
  lv2_mda_overdrive, lv2_mda_combo, lv2_calf_saturator, lv2_invada_tube,
  lv2_swh_valve, lv2_calf_compressor: LV2 plugins with their drive pushed,
                    hosted by lilv's lv2apply

The netlists are benchmarks/circuits/*.cir (benchmarks/spice.py runs them;
1.0 = 1 V at the input); the plugins' settings are benchmarks/lv2.py's
PLUGINS; benchmarks/circuit_check.py measures them all. These too answer
an impulse at once and change nothing before it (at rest the SPICE
circuits give up to 1e-8 and swh_valve 4e-26, not exactly 0); the SPICE circuits lag a quarter
sample (the input reaches each sample 1/4 sample late, see spice.py), and
lv2_mda_combo's speaker filter and lv2_calf_saturator's internal
filters delay the bulk of the response by about 5 and 1 samples.

`program_material(sample_rate)` is real audio that no model trains on:
the spoken clips of Debian's alsa-utils and recorded guitar, drums and
piano from Debian's sonic-pi-samples, each part mono, resampled and set to
a playing level.
"""

import dataclasses
import glob
import importlib.util
import math
from typing import Callable

import numpy as np
import scipy.signal
import soundfile as sf

# The compressor (also emu_compressor's): threshold, ratio, attack,
# release.
COMPRESSOR = dict(threshold_db=-20.0, ratio=4.0, attack_ms=20.0,
                  release_ms=200.0)
# Every distortion ends with this output level: tanh saturates at full
# scale, and a 24-bit recording must not clip.
LEVEL_DB = -6.0


@dataclasses.dataclass(frozen=True)
class Device:
  """A named stand-in: process(x float32 [time], sample_rate) -> [time]."""
  name: str
  description: str
  process: Callable[[np.ndarray, int], np.ndarray]
  needs: str = ""  # the pip module it imports, if any
  apt: str = ""  # the Debian packages it runs, if any


def _as_input(x) -> np.ndarray:
  x = np.asarray(x, np.float32)
  if x.ndim != 1:
    raise ValueError(f"a device takes mono [time] audio, got shape {x.shape}")
  return x


def _pedalboard():
  """The pedalboard module, or ImportError naming the pip extra."""
  try:
    import pedalboard  # pylint: disable=g-import-not-at-top
  except ImportError as err:
    raise ImportError(
        "the pb_* stand-in devices need Spotify's pedalboard: pip install "
        "pedalboard (or pip install -e '.[test]')") from err
  return pedalboard


def _run_board(plugins, x, sample_rate) -> np.ndarray:
  pb = _pedalboard()
  board = pb.Pedalboard(plugins(pb))
  y = board(_as_input(x)[None, :], float(sample_rate), reset=True)
  return np.ascontiguousarray(y[0], np.float32)


def pb_distortion(drive_db):
  """A pedalboard Distortion (y = tanh(10^(drive/20) x)) at LEVEL_DB."""
  def process(x, sample_rate):
    return _run_board(lambda pb: [pb.Distortion(drive_db=drive_db),
                                  pb.Gain(gain_db=LEVEL_DB)], x, sample_rate)
  return process


def pb_compressor(x, sample_rate):
  """pedalboard's Compressor at `COMPRESSOR`'s settings."""
  return _run_board(lambda pb: [pb.Compressor(**COMPRESSOR)], x, sample_rate)


def pb_amp(x, sample_rate):
  """An amp-like chain: bass boost, hard overdrive, 4 kHz low-pass."""
  return _run_board(lambda pb: [
      pb.LowShelfFilter(cutoff_frequency_hz=250.0, gain_db=6.0),
      pb.Distortion(drive_db=24.0),
      pb.LowpassFilter(cutoff_frequency_hz=4000.0),
      pb.Gain(gain_db=LEVEL_DB)], x, sample_rate)


def emu_diode_clipper(x, sample_rate):
  """emu's diode clipper (RC low-pass into anti-parallel diodes), 20 dB."""
  from emu import effects  # pylint: disable=g-import-not-at-top
  return np.asarray(effects.diode_clipper(_as_input(x), 20.0, sample_rate),
                    np.float32)


def emu_compressor(x, sample_rate):
  """emu's feed-forward compressor at `COMPRESSOR`'s settings."""
  from emu import effects  # pylint: disable=g-import-not-at-top
  return np.asarray(effects.compressor(_as_input(x), sample_rate,
                                       **COMPRESSOR), np.float32)


def spice_circuit(circuit):
  """A netlist of benchmarks/circuits/ run by ngspice (benchmarks/spice.py)."""
  def process(x, sample_rate):
    from benchmarks import spice  # pylint: disable=g-import-not-at-top
    return spice.simulate(circuit, _as_input(x), sample_rate)
  return process


def lv2_plugin(name):
  """A benchmarks/lv2.py PLUGINS setting, run by lilv's lv2apply."""
  def process(x, sample_rate):
    from benchmarks import lv2  # pylint: disable=g-import-not-at-top
    return lv2.device(name)(_as_input(x), sample_rate)
  return process


DEVICES = {d.name: d for d in (
    Device("pb_overdrive", "pedalboard Distortion 12 dB drive (tanh), -6 dB "
           "level", pb_distortion(12.0), "pedalboard"),
    Device("pb_fuzz", "pedalboard Distortion 30 dB drive (near-square "
           "tanh), -6 dB level", pb_distortion(30.0), "pedalboard"),
    Device("pb_compressor", "pedalboard Compressor -20 dB, 4:1, attack "
           "20 ms, release 200 ms", pb_compressor, "pedalboard"),
    Device("pb_amp", "pedalboard LowShelf +6 dB @250 Hz -> Distortion 24 dB "
           "-> Lowpass 4 kHz -> -6 dB", pb_amp, "pedalboard"),
    Device("emu_diode_clipper", "emu.effects.diode_clipper, 20 dB drive "
           "(RC low-pass clipped by diodes)", emu_diode_clipper),
    Device("emu_compressor", "emu.effects.compressor -20 dB, 4:1, attack "
           "20 ms, release 200 ms, 6 dB knee", emu_compressor),
    Device("spice_ts808", "ngspice: Tube Screamer TS-808 clipping stage "
           "(Drive max, 1N914 pair) -> tone -> volume, 1 V = full scale",
           spice_circuit("ts808"), apt="ngspice"),
    Device("spice_fuzzface", "ngspice: Fuzz Face, two BC108, Fuzz 0.5, "
           "1 V = full scale", spice_circuit("fuzzface"), apt="ngspice"),
    Device("spice_tube_amp", "ngspice: two 12AX7 common-cathode stages "
           "(Koren model), 100k/1.5k+25uF, speaker-like low-pass, 1 V = "
           "full scale", spice_circuit("tube_amp"), apt="ngspice"),
    Device("lv2_mda_overdrive", "LV2 mda Overdrive, Drive 100%, Output -2 dB",
           lv2_plugin("mda_overdrive"), apt="lilv-utils mda-lv2"),
    Device("lv2_mda_combo", "LV2 mda Combo amp simulator, small combo, "
           "Drive 0.8", lv2_plugin("mda_combo"), apt="lilv-utils mda-lv2"),
    Device("lv2_calf_saturator", "LV2 Calf Saturator, input x2, Saturation "
           "10, output x0.5", lv2_plugin("calf_saturator"),
           apt="lilv-utils calf-plugins"),
    Device("lv2_invada_tube", "LV2 Invada Tube Distortion, Drive 0 dB, Mix "
           "100%, x0.85", lv2_plugin("invada_tube"),
           apt="lilv-utils invada-studio-plugins-lv2"),
    Device("lv2_swh_valve", "LV2 SWH Valve saturation, level 0.5, character "
           "0.8, x0.85", lv2_plugin("swh_valve"), apt="lilv-utils swh-lv2"),
    Device("lv2_calf_compressor", "LV2 Calf Mono Compressor -20 dB, 4:1, "
           "attack 20 ms, release 200 ms, x0.85", lv2_plugin("calf_compressor"),
           apt="lilv-utils calf-plugins"),
)}


def unavailable(dev: Device) -> str:
  """Why `dev` cannot run on this machine, naming what to install; '' if it can."""
  if dev.needs and importlib.util.find_spec(dev.needs) is None:
    return f"{dev.name} needs {dev.needs}: pip install {dev.needs}"
  if dev.name.startswith("spice_"):
    from benchmarks import spice  # pylint: disable=g-import-not-at-top
    if not spice.available():
      return f"{dev.name} needs ngspice: apt-get install ngspice"
  if dev.name.startswith("lv2_"):
    from benchmarks import lv2  # pylint: disable=g-import-not-at-top
    missing = lv2.missing_packages([lv2.PLUGINS[dev.name[4:]].uri])
    if missing:
      return f"{dev.name} needs apt-get install {' '.join(missing)}"
  return ""


def device(name: str) -> Device:
  """The Device of a name, or ValueError listing the names."""
  if name not in DEVICES:
    raise ValueError(f"unknown device {name!r}; choose from "
                     f"{', '.join(DEVICES)}")
  return DEVICES[name]


# Held-out program material: (part name, path pattern, package). The voice
# clips are alsa-utils' spoken channel names (Noise.wav is not a voice);
# the music is sonic-pi-samples' recorded guitar, drum loop and piano.
VOICE_DIR = "/usr/share/sounds/alsa"
MUSIC_DIR = "/usr/share/sonic-pi/samples"
_PARTS = (
    ("voice", VOICE_DIR + "/[FRS]*_*.wav", "alsa-utils"),
    ("guitar_e_fifths", MUSIC_DIR + "/guit_e_fifths.flac", "sonic-pi-samples"),
    ("guitar_em9", MUSIC_DIR + "/guit_em9.flac", "sonic-pi-samples"),
    ("guitar_e_slide", MUSIC_DIR + "/guit_e_slide.flac", "sonic-pi-samples"),
    ("guitar_harmonics", MUSIC_DIR + "/guit_harmonics.flac",
     "sonic-pi-samples"),
    ("drums_amen", MUSIC_DIR + "/loop_amen_full.flac", "sonic-pi-samples"),
    ("piano", MUSIC_DIR + "/ambi_piano.flac", "sonic-pi-samples"),
)
# A playing level: -18 dBFS RMS (NAM's and many interfaces' reference for
# a DI signal), peaks held at or below -1 dBFS.
MATERIAL_RMS_DB = -18.0
MATERIAL_PEAK_DB = -1.0
_GAP_SECONDS = 0.1  # between the voice clips


def group(part_name: str) -> str:
  """'voice' or 'music': how the benchmark pools the parts' ESRs."""
  return "voice" if part_name.startswith("voice") else "music"


def _read_mono(path, sample_rate) -> np.ndarray:
  audio, rate = sf.read(path, dtype="float64", always_2d=True)
  x = audio.mean(axis=1)
  if rate != sample_rate:
    g = math.gcd(int(rate), int(sample_rate))
    x = scipy.signal.resample_poly(x, sample_rate // g, rate // g)
  return x


def _at_level(x) -> np.ndarray:
  rms = float(np.sqrt(np.mean(np.square(x))))
  if rms <= 0.0:
    raise ValueError("a silent part of the program material")
  x = x * (10.0 ** (MATERIAL_RMS_DB / 20.0) / rms)
  peak = float(np.max(np.abs(x)))
  ceiling = 10.0 ** (MATERIAL_PEAK_DB / 20.0)
  if peak > ceiling:
    x = x * (ceiling / peak)
  return x.astype(np.float32)


def program_material(sample_rate: int) -> dict:
  """Held-out real audio: part name -> mono float32 [time] at sample_rate.

  'voice' is alsa-utils' spoken clips (Front_Center.wav, ...) joined
  with 0.1 s gaps; the others are single sonic-pi-samples recordings
  (guitar, the amen drum break, piano), stereo mixed to mono. Each part
  is resampled with scipy.signal.resample_poly and scaled to
  MATERIAL_RMS_DB RMS, peaks at most MATERIAL_PEAK_DB.

  Raises:
    FileNotFoundError: a part's files are absent; names the Debian package
      that ships them.
  """
  sample_rate = int(sample_rate)
  material = {}
  for name, pattern, package in _PARTS:
    paths = sorted(glob.glob(pattern))
    if not paths:
      raise FileNotFoundError(
          f"no files match {pattern} (program material '{name}'): install "
          f"Debian's {package} package (apt-get install {package})")
    gap = np.zeros(int(round(_GAP_SECONDS * sample_rate)))
    clips = []
    for path in paths:
      clips += [gap, _read_mono(path, sample_rate)]
    material[name] = _at_level(np.concatenate(clips[1:]))
  return material


def material_available() -> bool:
  """Whether every part of `program_material` is installed."""
  return all(glob.glob(pattern) for _, pattern, _ in _PARTS)


def missing_packages() -> list:
  """Debian packages whose program material is absent."""
  return sorted({pkg for _, pattern, pkg in _PARTS
                 if not glob.glob(pattern)})

