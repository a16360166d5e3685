"""Stand-in devices simulated at component level: SPICE netlists run by ngspice.

The netlists in `benchmarks/circuits/` are published circuits (each file's
header says where it comes from): `ts808` (Tube Screamer clipping, tone and
volume stages), `fuzzface` (two-transistor silicon Fuzz Face), `tube_amp`
(two 12AX7 stages with Koren's triode model). Each maps float audio to
volts (1.0 = 1 V peak, a hot guitar) at its input and volts back to float
at its output, so a netlist alone defines the device.

How a signal goes through (`simulate`):

  * The input is written as a two-column text file (sample index, value)
    that XSPICE's `filesource` code model reads with `timescale` = the
    sample period and linear interpolation between samples. (ngspice 39,
    Debian 12's, rejects PWL's `file=`; filesource ships in Debian's
    ngspice package, `analog.cm`.)
  * ngspice runs in batch mode (`ngspice -b`), a transient analysis with
    TSTEP = one sample period, `.options interp` (the output is stored on
    the sample grid, linearly interpolated from the solver's own steps)
    and TMAX = 1 / (STEPS_PER_SAMPLE * sample_rate): at least 4 solver steps
    per sample, so the trapezoidal rule's error stays small up to 20 kHz
    (a first-order RC at 10 kHz is within 0.01 dB of its exact response)
    while the solver may still take smaller steps where a diode or a
    transistor switches. The output is written as a binary rawfile and read
    back with numpy.
  * The transient starts from the circuit's DC operating point (ngspice
    solves it before the first step: coupling capacitors charged, tubes and
    transistors biased) with the input held at its first sample, so there
    is no start-up thump and no lead-in to discard.
  * Long signals are cut into CHUNK_SECONDS pieces at fixed times (so a
    signal's first minute comes out the same whatever follows it), each
    simulated after WARMUP_SECONDS of the audio before it, which is then
    discarded; the pieces run in parallel (`jobs`). The warm-up is 20 times
    the longest time constant of these circuits (the TS-808's output
    coupling, 1 uF into 101k), so a piece joins the previous one to within
    float32 rounding (checked in circuit_check.py).

Deterministic: same input, same output (ngspice has no random state here;
it runs with HOME and the working directory set to a fresh folder, so no
user `.spiceinit` is read).
"""

import concurrent.futures
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

CIRCUIT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "circuits")
PACKAGE = "ngspice"  # the Debian package: apt-get install ngspice
STEPS_PER_SAMPLE = 4
CHUNK_SECONDS = 10.0
WARMUP_SECONDS = 2.0
TIMEOUT_S = 3600


def circuits() -> list:
  """The netlists' names (ts808, fuzzface, tube_amp, ...)."""
  return sorted(f[:-4] for f in os.listdir(CIRCUIT_DIR) if f.endswith(".cir"))


def netlist_path(name: str) -> str:
  """The .cir file of a circuit name (or a path to a netlist, unchanged)."""
  if os.sep in name or name.endswith(".cir"):
    return name
  path = os.path.join(CIRCUIT_DIR, name + ".cir")
  if not os.path.exists(path):
    raise ValueError(f"unknown circuit {name!r}; choose from "
                     f"{', '.join(circuits())}")
  return path


def ngspice_binary():
  """The ngspice executable's path, or None."""
  return shutil.which("ngspice")


def available() -> bool:
  return ngspice_binary() is not None


def require_ngspice() -> str:
  """The ngspice executable, or FileNotFoundError naming the package."""
  exe = ngspice_binary()
  if exe is None:
    raise FileNotFoundError(
        "the spice_* stand-in devices need ngspice (with its XSPICE code "
        "models): apt-get install ngspice")
  return exe


def _read_raw(path) -> dict:
  """A binary ngspice rawfile's real vectors: name -> float64 array."""
  with open(path, "rb") as f:
    data = f.read()
  marker = data.find(b"Binary:\n")
  if marker < 0:
    raise RuntimeError(f"{path} is not a binary rawfile")
  header = data[:marker].decode("ascii", "replace")
  n_vars = int(re.search(r"No\. Variables:\s*(\d+)", header).group(1))
  n_points = int(re.search(r"No\. Points:\s*(\d+)", header).group(1))
  if "complex" in re.search(r"Flags:\s*(.*)", header).group(1):
    raise RuntimeError(f"{path} holds complex data")
  names = []
  lines = header[header.index("\nVariables:") + 1:].splitlines()[1:]
  for line in lines[:n_vars]:
    names.append(line.split()[1].lower())
  values = np.frombuffer(data, np.float64, n_vars * n_points,
                         marker + len(b"Binary:\n"))
  values = values.reshape(n_points, n_vars)
  return {name: values[:, i] for i, name in enumerate(names)}


def _fill(netlist: str, **fields) -> str:
  for key, value in fields.items():
    netlist = netlist.replace(f"@{key}@", str(value))
  left = re.findall(r"@[A-Z_]+@", netlist)
  if left:
    raise ValueError(f"netlist placeholders left unfilled: {sorted(set(left))}")
  return netlist


def _with_params(netlist: str, params: dict) -> str:
  """The netlist with `.param NAME=value` settings replaced."""
  for key, value in (params or {}).items():
    pattern = re.compile(rf"^(\.param\b.*?\b{re.escape(key)}\s*=\s*)(\S+)",
                         re.I | re.M)
    if not pattern.search(netlist):
      raise ValueError(f"the netlist has no .param {key}")
    netlist = pattern.sub(lambda m: m.group(1) + f"{float(value):.12g}",
                          netlist, count=1)
  return netlist


def _run_once(netlist: str, x: np.ndarray, sample_rate: int,
              steps_per_sample: int, node: str) -> np.ndarray:
  """One ngspice run over all of x; float64 output on x's sample grid."""
  exe = require_ngspice()
  n = len(x)
  padded = n < 2  # a transient needs TSTOP > 0
  if padded:
    x = np.concatenate([x, x[-1:]])
  tstep = 1.0 / sample_rate
  with tempfile.TemporaryDirectory(prefix="emu_spice_") as tmp:
    in_path = os.path.join(tmp, "in.txt")
    out_path = os.path.join(tmp, "out.raw")
    cir_path = os.path.join(tmp, "circuit.cir")
    # time in samples, value: filesource scales the time by timescale =
    # tstep. Sample n sits at n + 1/steps_per_sample, a row at 0 holds
    # x[0] from the operating point on (see the module docstring).
    delay = 1.0 / steps_per_sample
    times = np.concatenate([[0.0], np.arange(len(x)) + delay])
    values = np.concatenate([x[:1], x]).astype(np.float64)
    rows = np.column_stack([times, values])
    np.savetxt(in_path, rows, fmt=("%.6f", "%.9e"))
    with open(cir_path, "w") as f:
      f.write(_fill(netlist, INPUT=in_path, OUTPUT=out_path,
                    TSTEP=f"{tstep:.17g}",
                    TSTOP=f"{(len(x) - 1) * tstep:.17g}",
                    TMAX=f"{tstep / steps_per_sample:.17g}", NODE=node))
    env = dict(os.environ, HOME=tmp, OMP_NUM_THREADS="1")
    proc = subprocess.run([exe, "-b", cir_path], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)
    log = proc.stdout + proc.stderr
    errors = [l for l in log.splitlines()
              if re.search(r"error|could not find|unknown|abort", l, re.I)]
    if proc.returncode != 0 or not os.path.exists(out_path):
      raise RuntimeError(
          f"ngspice failed (exit {proc.returncode}) on {len(x)} samples: "
          + ("; ".join(errors[:5]) or log[-2000:]))
    vectors = _read_raw(out_path)
  t, y = vectors["time"], vectors[f"v({node.lower()})"]
  grid = np.arange(len(x)) * tstep
  if len(t) != len(x) or np.max(np.abs(t - grid)) > 1e-3 * tstep:
    y = np.interp(grid, t, y)
  y = np.asarray(y, np.float64)
  return y[:n]


def simulate(circuit: str, x, sample_rate: int, *,
             steps_per_sample: int = STEPS_PER_SAMPLE,
             chunk_seconds: float = CHUNK_SECONDS,
             warmup_seconds: float = WARMUP_SECONDS,
             jobs: int = 1, node: str = "out",
             params: dict = None) -> np.ndarray:
  """Float32 mono audio through a netlist; float32 output, same length.

  Args:
    circuit: a name from `circuits()` or a path to a netlist with the
      placeholders @INPUT@ @OUTPUT@ @TSTEP@ @TSTOP@ @TMAX@ and an `out`
      node.
    x: float [time] audio, 1.0 = the netlist's full scale.
    sample_rate: Hz.
    steps_per_sample: the solver's largest step is the sample period over
      this.
    chunk_seconds: signals longer than this are simulated in pieces of this
      length, each after `warmup_seconds` of the audio before it (None or
      0: one piece).
    jobs: pieces simulated at once (ngspice processes).
    node: the node whose voltage comes back (`out`, the device's output, or
      an inner node for checks, in volts).
    params: overrides of the netlist's `.param` settings, e.g.
      {"drive": 0.0}.

  Raises:
    FileNotFoundError: ngspice is not installed (names apt-get install
      ngspice).
    RuntimeError: ngspice failed; carries its error lines.
  """
  x = np.asarray(x, np.float32)
  if x.ndim != 1:
    raise ValueError(f"a device takes mono [time] audio, got shape {x.shape}")
  sample_rate = int(sample_rate)
  n = len(x)
  if n == 0:
    return np.zeros(0, np.float32)
  with open(netlist_path(circuit)) as f:
    netlist = _with_params(f.read(), params)
  require_ngspice()
  chunk = int(round(chunk_seconds * sample_rate)) if chunk_seconds else n
  warm = int(round(warmup_seconds * sample_rate))
  pieces = []  # (start of the audio simulated, first kept, end)
  for start in range(0, n, chunk):
    pieces.append((max(0, start - warm), start, min(n, start + chunk)))

  def run(piece):
    lead, start, end = piece
    y = _run_once(netlist, x[lead:end], sample_rate, steps_per_sample, node)
    return y[start - lead:]

  if jobs > 1 and len(pieces) > 1:
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
      outs = list(pool.map(run, pieces))
  else:
    outs = [run(p) for p in pieces]
  return np.concatenate(outs).astype(np.float32)


def device(circuit: str, **kwargs):
  """process(x, sample_rate) -> float32 [time] for a circuit name."""
  def process(x, sample_rate):
    return simulate(circuit, x, sample_rate, **kwargs)
  process.__name__ = f"spice_{circuit}"
  return process
