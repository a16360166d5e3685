"""Plausibility checks of the SPICE and LV2 stand-in devices, as a table.

  python benchmarks/circuit_check.py [--devices=spice_ts808,lv2_mda_combo]
      [--time_seconds=60] [--jobs=2] [--plot=circuits.png] [--out=FILE.json]

For each device (benchmarks/devices.py's spice_* and lv2_* entries) at
44.1 kHz, from sines analysed by least squares over their second half
(fundamental and harmonics 2-10 fitted jointly):

  * small-signal response: gain (dB, float out / float in) of sines at
    --small_db (default -60 dBFS) at 100 Hz to 10 kHz;
  * level sweep of a 1 kHz sine from -60 to 0 dBFS: gain and THD, the
    clipping onset (the input level where THD first reaches 1%, and where
    the gain has fallen 1 dB below its small-signal value);
  * harmonics at a hot level (--hot_db, default -6 dBFS): H2..H5 relative
    to the fundamental, THD;
  * timing alignment: the first sample that answers an impulse and the
    sample of its largest answer, the output before the impulse (must be
    0), and the lag of the input/output cross-correlation peak at -40 dBFS;
  * the output peak for full-scale inputs (sines at 100 Hz and 1 kHz,
    noise) and whether two runs are identical.

For spice_ts808 it also compares the clipping stage's small-signal gain
at 1 kHz (the op-amp's output, node o1, at -80 dBFS) with the published
first-order formula |1 + Zf/Zg|, Zf = (51k + Drive * 500k) || 51 pF,
Zg = 4.7k + 1/(j w 0.047 uF) (Yeh, Abel & Smith, DAFx 2007), at Drive 0
and 1; its mid-band asymptote is 1 + (51k + Drive * 500k) / 4.7k.

--time_seconds > 0 times each device on that many seconds of emu's own test
signal (emu.capture.testsignal.make, what the capture benchmark records):
wall and CPU seconds (this process and its ngspice / lv2apply children)
per second of audio, with --jobs ngspice processes; --join_check adds, for
the SPICE circuits, how far the result in CHUNK_SECONDS pieces strays from
one simulated in one piece, on the first 2 x CHUNK_SECONDS + 1 s.
--timing_only skips the checks.
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import devices as devices_lib  # pylint: disable=g-import-not-at-top
from benchmarks import lv2
from benchmarks import spice

RATE = 44100
FREQS = (100.0, 300.0, 1000.0, 3000.0, 10000.0)
LEVELS = (-60, -50, -40, -30, -20, -10, -6, 0)
SINE_SECONDS = 0.25


def names():
  return [n for n in devices_lib.DEVICES if n.startswith(("spice_", "lv2_"))]


def missing(name):
  """Debian packages a device of these kinds lacks (empty: it can run)."""
  dev = devices_lib.DEVICES[name]
  if name.startswith("spice_"):
    return [] if spice.available() else [spice.PACKAGE]
  plugin = lv2.PLUGINS[name[len("lv2_"):]]
  return lv2.missing_packages([plugin.uri]) if dev.needs else []


def sine(freq, level_db, seconds=SINE_SECONDS):
  t = np.arange(int(seconds * RATE)) / RATE
  return (10 ** (level_db / 20) * np.sin(2 * np.pi * freq * t)).astype(
      np.float32)


def harmonics(y, freq, n_harm=10):
  """Amplitudes of harmonics 1..n_harm and the fundamental's phase (rad)."""
  y = np.asarray(y, np.float64)
  start = len(y) // 2
  t = np.arange(start, len(y)) / RATE
  cols = []
  for k in range(1, n_harm + 1):
    if k * freq < RATE / 2:
      cols += [np.sin(2 * np.pi * k * freq * t), np.cos(2 * np.pi * k * freq * t)]
  a = np.column_stack(cols + [np.ones_like(t)])
  c, *_ = np.linalg.lstsq(a, y[start:], rcond=None)
  amps = np.hypot(c[0:-1:2], c[1:-1:2])
  amps = np.concatenate([amps, np.zeros(n_harm - len(amps))])
  return amps, float(np.arctan2(c[1], c[0]))


def db(v):
  return float(20 * np.log10(max(float(v), 1e-30)))


def thd(amps):
  return float(np.sqrt(np.sum(amps[1:] ** 2)) / max(amps[0], 1e-30))


def ts808_stage_gain(drive):
  """Formula and simulated gain of the TS-808 clipping stage at 1 kHz."""
  w = 2 * np.pi * 1000.0
  rf = 51e3 + drive * 500e3
  zf = rf / (1 + 1j * w * rf * 51e-12)
  zg = 4.7e3 + 1 / (1j * w * 0.047e-6)
  formula = abs(1 + zf / zg)
  level = -80.0
  x = sine(1000.0, level)
  y = spice.simulate("ts808", x, RATE, node="o1", params={"drive": drive})
  amps, _ = harmonics(y - np.mean(y[len(y) // 2:]), 1000.0)
  return {"drive": drive, "formula": formula, "midband": 1 + rf / 4.7e3,
          "simulated": float(amps[0] / 10 ** (level / 20))}


def check(name, small_db=-60.0, hot_db=-6.0):
  """The measurements of one device, as a dict."""
  proc = devices_lib.DEVICES[name].process
  out = {"name": name, "description": devices_lib.DEVICES[name].description}
  out["response_db"] = {}
  for f in FREQS:
    amps, _ = harmonics(proc(sine(f, small_db), RATE), f)
    out["response_db"][f] = db(amps[0]) - small_db
  sweep = []
  for level in LEVELS:
    y = proc(sine(1000.0, level), RATE)
    amps, phase = harmonics(y, 1000.0)
    sweep.append({"level_db": level, "gain_db": db(amps[0]) - level,
                  "thd": thd(amps), "phase_deg": float(np.degrees(phase)),
                  "peak": float(np.max(np.abs(y)))})
  out["sweep"] = sweep
  g0 = sweep[0]["gain_db"]
  out["onset_thd1_db"] = next((s["level_db"] for s in sweep
                               if s["thd"] >= 0.01), None)
  out["onset_comp1_db"] = next((s["level_db"] for s in sweep
                                if s["gain_db"] <= g0 - 1.0), None)
  amps, _ = harmonics(proc(sine(1000.0, hot_db), RATE), 1000.0)
  out["hot"] = {"level_db": hot_db, "thd": thd(amps),
                "h_db": [db(a / amps[0]) for a in amps[1:5]]}
  x = np.zeros(4096, np.float32)
  x[1000] = 0.1
  y = proc(x, RATE)
  y0 = proc(np.zeros(4096, np.float32), RATE)
  d = np.abs(y - y0)
  out["impulse"] = {"before_max": float(np.max(np.abs(y[:1000]))),
                    "first": int(np.argmax(d > 1e-6 * d.max())) - 1000,
                    "peak_at": int(np.argmax(d)) - 1000}
  rng = np.random.default_rng(0)
  xn = (0.01 * rng.standard_normal(RATE // 2)).astype(np.float32)
  yn = proc(xn, RATE)
  seg = slice(2000, len(xn) - 100)
  lags = range(-20, 21)
  cc = [float(np.dot(yn[seg], np.roll(xn, lag)[seg])) for lag in lags]
  out["xcorr_lag"] = list(lags)[int(np.argmax(np.abs(cc)))]
  full = {"sine100": sine(100.0, 0.0), "sine1k": sine(1000.0, 0.0),
          "noise": (rng.uniform(-1, 1, RATE // 4)).astype(np.float32)}
  out["full_scale_peak"] = {k: float(np.max(np.abs(proc(v, RATE))))
                            for k, v in full.items()}
  probe = sine(220.0, -12.0, 0.2)
  out["deterministic"] = bool(np.array_equal(proc(probe, RATE),
                                             proc(probe, RATE)))
  return out


def _cpu_seconds():
  """CPU seconds of this process and its finished children."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timing(name, seconds, jobs, join_check=False):
  """Seconds of compute (wall and CPU) per second of emu's test signal."""
  from emu.capture import testsignal  # pylint: disable=g-import-not-at-top
  x, _ = testsignal.make(RATE, seconds, 0)
  x = np.asarray(x, np.float32)
  out = {"seconds": seconds, "jobs": jobs}
  t0, c0 = time.time(), _cpu_seconds()
  if name.startswith("spice_"):
    y = spice.simulate(name[len("spice_"):], x, RATE, jobs=jobs)
  else:
    y = devices_lib.DEVICES[name].process(x, RATE)
  out["s_per_s"] = (time.time() - t0) / seconds
  out["cpu_s_per_s"] = (_cpu_seconds() - c0) / seconds
  out["out_peak"] = float(np.max(np.abs(y)))
  n = int((2 * spice.CHUNK_SECONDS + 1) * RATE)
  if join_check and name.startswith("spice_") and len(x) >= n:
    circuit = name[len("spice_"):]
    whole = spice.simulate(circuit, x[:n], RATE, chunk_seconds=0)
    chunked = spice.simulate(circuit, x[:n], RATE,
                             chunk_seconds=spice.CHUNK_SECONDS, jobs=jobs)
    diff = chunked - whole
    out["join_max_abs"] = float(np.max(np.abs(diff)))
    out["join_esr"] = float(np.sum(diff ** 2) / np.sum(whole ** 2))
  return out


def print_table(results):
  print("small-signal response (dB, float out/in) at "
        f"{results[0]['small_db']:g} dBFS")
  print(f"{'device':22s}" + "".join(f"{f:>9g}" for f in FREQS))
  for r in results:
    print(f"{r['name']:22s}" + "".join(f"{r['response_db'][f]:9.2f}"
                                       for f in FREQS))
  print("\n1 kHz level sweep: gain dB / THD %")
  print(f"{'device':22s}" + "".join(f"{l:>13d}" for l in LEVELS))
  for r in results:
    print(f"{r['name']:22s}" + "".join(
        f"{s['gain_db']:6.1f}/{100 * s['thd']:5.1f}" + " " for s in r["sweep"]))
  print(f"\n{'device':22s} {'THD>=1% at':>10s} {'-1dB at':>8s} "
        f"{'hot THD%':>8s} {'H2':>6s} {'H3':>6s} {'H4':>6s} {'H5':>6s} "
        f"{'imp first/peak':>14s} {'pre':>8s} {'xcorr':>5s} "
        f"{'peak FS (100,1k,noise)':>23s} {'determ':>6s}")
  for r in results:
    h = r["hot"]
    onset = lambda v: "-" if v is None else f"{v:d}"
    peaks = ",".join(f"{v:.2f}" for v in r["full_scale_peak"].values())
    print(f"{r['name']:22s} {onset(r['onset_thd1_db']):>10s} "
          f"{onset(r['onset_comp1_db']):>8s} {100 * h['thd']:8.1f} "
          + " ".join(f"{v:6.1f}" for v in h["h_db"])
          + f" {r['impulse']['first']:>6d}/{r['impulse']['peak_at']:<7d}"
          f" {r['impulse']['before_max']:8.1e} {r['xcorr_lag']:5d} "
          f"{peaks:>23s} {str(r['deterministic']):>6s}")
  print_timing(results)


def print_timing(results):
  timed = [r for r in results if "timing" in r]
  if timed:
    print("\ntiming on emu's test signal (seconds of compute per second of "
          "audio)")
    for r in timed:
      t = r["timing"]
      join = (f", chunk join max |diff| {t['join_max_abs']:.1e} ESR "
              f"{t['join_esr']:.1e}" if "join_esr" in t else "")
      print(f"{r['name']:22s} {t['s_per_s']:.2f} s/s wall, "
            f"{t['cpu_s_per_s']:.2f} CPU s/s ({t['seconds']:g} s, jobs "
            f"{t['jobs']}), output peak {t['out_peak']:.2f}{join}")


def plot(results, path):
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    print("no matplotlib: no plot")
    return
  fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 5))
  for r in results:
    ax1.semilogx(FREQS, [r["response_db"][f] for f in FREQS], "o-",
                 label=r["name"])
    levels = [s["level_db"] for s in r["sweep"]]
    ax2.plot(levels, [s["level_db"] + s["gain_db"] for s in r["sweep"]], "o-")
    ax3.semilogy(levels, [max(s["thd"], 1e-5) for s in r["sweep"]], "o-")
  ax1.set(xlabel="Hz", ylabel="gain dB", title="small-signal response")
  ax2.set(xlabel="input dBFS (1 kHz)", ylabel="output dBFS (fundamental)",
          title="level sweep")
  ax3.set(xlabel="input dBFS (1 kHz)", ylabel="THD", title="THD")
  ax1.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  print(f"wrote {path}")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--devices", default=",".join(names()))
  parser.add_argument("--small_db", type=float, default=-60.0)
  parser.add_argument("--hot_db", type=float, default=-6.0)
  parser.add_argument("--time_seconds", type=float, default=0.0)
  parser.add_argument("--jobs", type=int, default=1)
  parser.add_argument("--join_check", action="store_true",
                      help="with --time_seconds >= 21: chunked vs one piece")
  parser.add_argument("--timing_only", action="store_true")
  parser.add_argument("--plot", default="")
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  results = []
  for name in [n for n in args.devices.split(",") if n]:
    lacking = missing(name)
    if lacking:
      print(f"{name}: skipped, apt-get install {' '.join(lacking)}")
      continue
    t0 = time.time()
    r = ({"name": name} if args.timing_only
         else check(name, args.small_db, args.hot_db))
    r["small_db"] = args.small_db
    if args.time_seconds > 0:
      r["timing"] = timing(name, args.time_seconds, args.jobs,
                           args.join_check)
    r["check_s"] = time.time() - t0
    results.append(r)
    print(f"{name}: checked in {r['check_s']:.0f} s", flush=True)
  if not results:
    return 1
  print()
  if args.timing_only:
    print_timing(results)
  else:
    print_table(results)
  if any(r["name"] == "spice_ts808" for r in results) and not args.timing_only:
    print("\nTS-808 clipping stage at 1 kHz, -80 dBFS (node o1): "
          "simulated vs |1 + Zf/Zg| (mid-band 1 + Rf/4.7k)")
    stage = [ts808_stage_gain(d) for d in (0.0, 1.0)]
    for s in stage:
      print(f"  Drive {s['drive']:.0f}: simulated {s['simulated']:.2f} "
            f"({db(s['simulated']):.2f} dB), formula {s['formula']:.2f} "
            f"({db(s['formula']):.2f} dB), mid-band {s['midband']:.1f}")
    results[0].setdefault("ts808_stage", stage)
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
  print(f"\nload average {load:.1f} on {os.cpu_count()} cores")
  if args.plot:
    plot(results, args.plot)
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"results": results, "load": load}, f, indent=1,
                default=str)
  return 0


if __name__ == "__main__":
  sys.exit(main())
