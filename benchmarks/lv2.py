"""Stand-in devices from LV2 plugins, hosted by lilv's `lv2apply`.

`apply(uri, x, sample_rate, controls)` writes x as a 32-bit float WAV,
runs `lv2apply -i IN -o OUT -c SYMBOL VALUE ... URI` (Debian's lilv-utils)
and reads the output's first channel back. lv2apply instantiates a fresh
plugin per call at the file's sample rate, feeds a mono file to every audio
input of a stereo plugin, runs the plugin one frame per `run()` call and
writes every audio output; it sets the control ports it is not given to
their defaults. So each call starts from the plugin's reset state and is
deterministic for these plugins (checked in tests/test_circuits.py).

`PLUGINS` holds the settings used as stand-in devices, each with its drive
pushed: several of them are nearly linear at their defaults. None of them
declares latency (`lv2info` says "Has latency: no"), and each answers an
impulse on the impulse's own sample (circuit_check.py); the bulk of the
answer comes later for two, filters rather than a delay, left as they
are: mda Combo's speaker model peaks 5 samples after the impulse (the
input/output cross-correlation peaks at lag 5; 1 kHz lags 13 degrees),
Calf Saturator's internal filters 1 sample after. `declared_latency`
reads lv2info's line should a plugin with latency be added; `apply`'s
`latency` then drops that many leading samples and pads the end with the
last output, keeping the length.

These are plugins nobody on this project wrote, in C/C++, from four
Debian packages: mda-lv2, calf-plugins, invada-studio-plugins-lv2,
swh-lv2.
"""

import dataclasses
import functools
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

HOST_PACKAGE = "lilv-utils"  # lv2apply, lv2info, lv2ls
TIMEOUT_S = 600


@dataclasses.dataclass(frozen=True)
class Plugin:
  uri: str
  package: str  # the Debian package that ships it
  controls: dict  # symbol -> value, the pushed setting
  description: str
  output_gain: float = 1.0  # a plain gain after the plugin


PLUGINS = {
    "mda_overdrive": Plugin(
        "http://drobilla.net/plugins/mda/Overdrive", "mda-lv2",
        {"drive": 1.0, "muffle": 0.0, "output": 0.45},
        "mda Overdrive (soft clipping), Drive 100%, Muffle 0, Output -2 dB"),
    "mda_combo": Plugin(
        "http://drobilla.net/plugins/mda/Combo", "mda-lv2",
        {"model": 0.5, "drive": 0.8, "bias": 0.5, "output": 0.55},
        "mda Combo amp simulator, small combo (close mic), Drive 0.8 "
        "(+60%), Output 0.55"),
    "calf_saturator": Plugin(
        "http://calf.sourceforge.net/plugins/Saturator", "calf-plugins",
        {"level_in": 2.0, "drive": 10.0, "blend": 10.0, "mix": 1.0,
         "level_out": 0.5},
        "Calf Saturator, input x2, Saturation 10 (max), Blend 10, output "
        "x0.5"),
    "invada_tube": Plugin(
        "http://invadarecords.com/plugins/lv2/tube/mono",
        "invada-studio-plugins-lv2",
        {"drive": 0.0, "mix": 100.0, "dcoffset": 0.0, "phase": 0.0},
        "Invada Tube Distortion, Drive 0 dB, Mix 100%, then x0.85 (its curve, "
        "sin(x pi/2) to a power, reaches 1 at full scale; more drive folds "
        "a full-scale input back)", output_gain=0.85),
    "swh_valve": Plugin(
        "http://plugin.org.uk/swh-plugins/valve", "swh-lv2",
        {"q_p": 0.5, "dist_p": 0.8},
        "SWH Valve saturation, level 0.5, character 0.8, then x0.85",
        output_gain=0.85),
    "calf_compressor": Plugin(
        "http://calf.sourceforge.net/plugins/MonoCompressor", "calf-plugins",
        {"threshold": 0.1, "ratio": 4.0, "attack": 20.0, "release": 200.0,
         "makeup": 1.0, "knee": 2.828427, "mix": 1.0},
        "Calf Mono Compressor, threshold 0.1 (-20 dB), 4:1, attack 20 ms, "
        "release 200 ms, knee 9 dB, then x0.85 (an onset passes at full "
        "level)", output_gain=0.85),
}


def lv2apply_binary():
  return shutil.which("lv2apply")


def _run(args, **kwargs):
  return subprocess.run(args, capture_output=True, text=True, check=False,
                        timeout=TIMEOUT_S, **kwargs)


@functools.lru_cache(maxsize=None)
def _info(uri: str):
  """lv2info's text for a plugin URI, or None if not installed."""
  exe = shutil.which("lv2info")
  if exe is None:
    return None
  proc = _run([exe, uri])
  if proc.returncode != 0 or "Symbol:" not in proc.stdout:
    return None
  return proc.stdout


def plugin_installed(uri: str) -> bool:
  return _info(uri) is not None


def missing_packages(uris=None) -> list:
  """Debian packages absent for the given plugin URIs (default: all)."""
  if lv2apply_binary() is None or shutil.which("lv2info") is None:
    missing = {HOST_PACKAGE}
    missing |= {p.package for p in PLUGINS.values()
                if uris is None or p.uri in uris}
    return sorted(missing)
  return sorted({p.package for p in PLUGINS.values()
                 if (uris is None or p.uri in uris)
                 and not plugin_installed(p.uri)})


def require(uri: str, package: str = None) -> str:
  """lv2apply's path, or FileNotFoundError naming the apt package."""
  exe = lv2apply_binary()
  if exe is None or shutil.which("lv2info") is None:
    raise FileNotFoundError(
        "the lv2_* stand-in devices need lilv's lv2apply and lv2info: "
        f"apt-get install {HOST_PACKAGE}")
  if not plugin_installed(uri):
    package = package or next((p.package for p in PLUGINS.values()
                               if p.uri == uri), None)
    how = (f"apt-get install {package}" if package
           else "install the LV2 bundle that provides it")
    raise FileNotFoundError(f"LV2 plugin <{uri}> is not installed: {how}")
  return exe


def ports(uri: str) -> list:
  """The plugin's ports from lv2info: dicts of symbol, kind, range."""
  text = _info(uri)
  if text is None:
    require(uri)
  out = []
  for block in re.split(r"\n\tPort \d+:\n", text)[1:]:
    port = {"kinds": re.findall(r"lv2core#(\w+Port)", block)}
    for key in ("Symbol", "Name", "Minimum", "Maximum", "Default"):
      m = re.search(rf"{key}:\s+(.+)", block)
      if m:
        value = m.group(1).strip()
        port[key.lower()] = (float(value) if key in ("Minimum", "Maximum",
                                                     "Default") else value)
    out.append(port)
  return out


def declared_latency(uri: str) -> bool:
  """Whether lv2info says the plugin reports latency."""
  text = _info(uri)
  if text is None:
    require(uri)
  m = re.search(r"Has latency:\s+(\w+)", text)
  return bool(m and m.group(1).lower() != "no")


def apply(uri: str, x, sample_rate: int, controls: dict = None, *,
          channel: int = 0, latency: int = 0) -> np.ndarray:
  """Float32 mono audio through an LV2 plugin; float32 output, same length.

  Args:
    uri: the plugin's URI (`lv2ls` lists them).
    x: float [time] audio.
    sample_rate: Hz; the plugin is instantiated at it.
    controls: control port symbol -> value (`ports(uri)` lists them); the
      others keep their defaults.
    channel: which audio output to return (0 = left of a stereo plugin).
    latency: samples to drop from the start (the end is padded with the
      last sample), for a plugin that delays its output.

  Raises:
    FileNotFoundError: lv2apply/lv2info or the plugin is missing (names the
      Debian package).
    RuntimeError: lv2apply failed; carries its message.
  """
  x = np.asarray(x, np.float32)
  if x.ndim != 1:
    raise ValueError(f"a device takes mono [time] audio, got shape {x.shape}")
  exe = require(uri)
  n = len(x)
  if n == 0:
    return np.zeros(0, np.float32)
  known = {p.get("symbol") for p in ports(uri)}
  args = [exe]
  for symbol, value in (controls or {}).items():
    if symbol not in known:
      raise ValueError(f"<{uri}> has no port {symbol!r}; it has "
                       f"{', '.join(sorted(s for s in known if s))}")
    args += ["-c", symbol, repr(float(value))]
  with tempfile.TemporaryDirectory(prefix="emu_lv2_") as tmp:
    in_path = os.path.join(tmp, "in.wav")
    out_path = os.path.join(tmp, "out.wav")
    sf.write(in_path, x, int(sample_rate), subtype="FLOAT")
    proc = _run(args + ["-i", in_path, "-o", out_path, uri],
                env=dict(os.environ, HOME=tmp))
    if proc.returncode != 0 or not os.path.exists(out_path):
      raise RuntimeError(f"lv2apply failed (exit {proc.returncode}) on "
                         f"<{uri}>: {(proc.stderr or proc.stdout).strip()}")
    y, rate = sf.read(out_path, dtype="float32", always_2d=True)
  if rate != int(sample_rate) or len(y) != n:
    raise RuntimeError(f"lv2apply returned {len(y)} frames at {rate} Hz for "
                       f"{n} at {sample_rate} Hz")
  y = np.ascontiguousarray(y[:, channel])
  if latency:
    y = np.concatenate([y[latency:], np.full(latency, y[-1], np.float32)])
  return y.astype(np.float32)


def device(name: str):
  """process(x, sample_rate) -> float32 [time] for a PLUGINS name."""
  plugin = PLUGINS[name]

  def process(x, sample_rate):
    y = apply(plugin.uri, x, sample_rate, plugin.controls)
    if plugin.output_gain != 1.0:
      y = (y * np.float32(plugin.output_gain)).astype(np.float32)
    return y
  process.__name__ = f"lv2_{name}"
  return process
