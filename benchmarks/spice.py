"""Stand-in devices simulated at component level: SPICE netlists run by ngspice.

The netlists in `benchmarks/circuits/` are published circuits (each file's
header says where it comes from and which models it uses): `ts808` (Tube
Screamer clipping, tone and volume stages), `fuzzface` (two-transistor
silicon Fuzz Face), `tube_amp` (two 12AX7 stages, Koren's triode model).
Each maps float audio to volts at its input (1.0 = 1 V peak, a hot guitar)
and its `out` node back to float, so a netlist alone defines the device.
Needs Debian's ngspice (apt-get install ngspice; 39.3 in Debian 12).

How a signal goes through (`simulate`):

  * The input is written as a two-column text file (time in samples,
    value) that XSPICE's `filesource` code model reads, interpolating
    linearly between samples (a first-order-hold DAC). ngspice 39 rejects
    PWL's `file=`; filesource is in the ngspice package (analog.cm).
  * Sample n reaches the circuit at n + INPUT_DELAY sample periods, a
    quarter sample late. The output is read at the sample
    instants, linearly interpolated between the solver's steps, and the
    solver's step after a sample instant may reach a quarter sample past
    it: with the delay, that step still sees only samples up to n, so the
    output at n depends on the input up to n only (an impulse at sample n
    moves nothing before n, and does move n).
  * ngspice runs in batch mode (`ngspice -b`): a transient analysis with
    TSTEP = the sample period, `.options interp` (output stored on the
    sample grid) and TMAX = TSTEP / STEPS_PER_SAMPLE, at least 4 solver
    steps per sample (more where a diode or transistor switches, by the
    solver's own error control), and reltol 1e-4 (the netlists' .options).
    Against 32 steps per sample, on 2 s of plucked strings peaking at 0.9:
    ESR 5.7e-9 (ts808), 1.6e-8 (fuzzface), 2.1e-8 (tube_amp) at 4 steps,
    ngspice's default reltol 1e-3 gave 3.3e-8 and 1.5e-5 (ts808, fuzzface:
    its edges take about a microsecond, and a sample on an edge is where
    errors show). The output is the circuit's voltage at the sample instants
    with no anti-alias filter: harmonics above Nyquist alias, as a
    per-sample waveshaper's do.
  * The transient starts from the circuit's DC operating point (ngspice
    solves it before the first step: coupling capacitors charged, tubes
    and transistors biased) with the input held at its first sample: no
    start-up thump, no lead-in to discard. Silence in gives at most 1e-8
    out.
  * A signal is simulated in one piece by default (a minute at 44.1 kHz is
    an 85 MB input file and 42 MB of output), one sample longer than it is
    (ngspice's last step ends on a breakpoint; the extra sample is
    dropped): the output up to sample n depends on the input up to n only,
    and a signal's first seconds come out bit for bit the same whatever
    follows them (tests/test_circuits.py). With `jobs` > 1 it is cut into
    CHUNK_SECONDS pieces at fixed times, each simulated after
    WARMUP_SECONDS of the audio before it (discarded), `jobs` at a time.
    The warm-up is 9 times the longest time constant here (tube_amp's B+
    filter, 22 uF x 10k); still, where pieces join the output differs from
    the one-piece output by the solver's step history: over the first
    21 s of emu's test signal, ESR 1.7e-8 (ts808), 6.4e-8 (fuzzface),
    8.4e-8 (tube_amp), at most 7e-3 in one sample (circuit_check.py
    --join_check).

Speed, 60 s of emu's test signal at 44.1 kHz in one piece, CPU seconds per
second of audio (wall on the 2-core machine, load 1-5): ts808 5.3 (5.8),
fuzzface 6.6 (6.8), tube_amp 7.3 (7.4), so a minute of audio takes 5-7
minutes of one core; `jobs=2` splits it over two. With ngspice's default
reltol (1e-3) ts808 and tube_amp took 3.1 and 4.4 (fuzzface 6.9 at 1e-4).
Sines cost less (1-4 s/s); the test signal's full-scale noise is what
costs.

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
INPUT_DELAY = 0.25  # samples; at most 1 / steps_per_sample (causality)
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
  # One sample more, dropped after: ngspice ends on a breakpoint at TSTOP,
  # which moves the last sample (1e-6); this also gives TSTOP > 0 for n = 1.
  x = np.concatenate([x, x[-1:]])
  tstep = 1.0 / sample_rate
  with tempfile.TemporaryDirectory(prefix="emu_spice_") as tmp:
    in_path = os.path.join(tmp, "in.txt")
    out_path = os.path.join(tmp, "out.raw")
    cir_path = os.path.join(tmp, "circuit.cir")
    # time in samples, value: filesource scales the time by `timescale`,
    # which is the sample period. Sample n sits at n + INPUT_DELAY, a row at
    # 0 holds x[0] from the operating point on (see the module docstring).
    times = np.concatenate([[0.0], np.arange(len(x)) + INPUT_DELAY])
    values = np.concatenate([x[:1], x]).astype(np.float64)
    np.savetxt(in_path, np.column_stack([times, values]),
               fmt=("%.6f", "%.9e"))
    with open(cir_path, "w") as f:
      f.write(_fill(netlist, INPUT=in_path, OUTPUT=out_path,
                    TIMESCALE=f"{tstep:.17g}", TSTEP=f"{tstep:.17g}",
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
             chunk_seconds: float = None,
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
      this; at least 1 / INPUT_DELAY (4).
    chunk_seconds: signals longer than this are simulated in pieces of this
      length, each after `warmup_seconds` of the audio before it; 0: one
      piece; None (default): CHUNK_SECONDS when jobs > 1, else one piece.
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
  if steps_per_sample * INPUT_DELAY < 1:
    raise ValueError(f"steps_per_sample={steps_per_sample}: at least "
                     f"{1 / INPUT_DELAY:g} keep the output causal")
  sample_rate = int(sample_rate)
  n = len(x)
  if n == 0:
    return np.zeros(0, np.float32)
  with open(netlist_path(circuit)) as f:
    netlist = _with_params(f.read(), params)
  require_ngspice()
  if chunk_seconds is None:
    chunk_seconds = CHUNK_SECONDS if jobs > 1 else 0
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
