"""What the benchmark prints and writes: its table, the machine, the JSON."""

import json
import os
import platform

from benchmarks import bench_options


def fmt(value, spec):
  return "-" if value is None else format(value, spec)


def ensemble_line(ens):
  ms, cpu = ens["train_ms"], ens["train_cpu_ms"]
  size = ens["members"]
  return (
      f"Ensemble of {size} {ens['model']}, ms per train step (wall / CPU): "
      f"one member {ms['one_member']:.1f} / {cpu['one_member']:.1f}; "
      f"{size} in one step {ms['ensemble']:.1f} / {cpu['ensemble']:.1f} "
      f"({ens['ensemble_over_one']:.2f}x / "
      f"{ens['ensemble_over_one_cpu']:.2f}x one member); {size} vmapped "
      f"{ms['vmapped']:.1f} / {cpu['vmapped']:.1f}; {size} separate runs "
      f"{ms['separate']:.1f} / {cpu['separate']:.1f}. Offline RTF "
      f"{ens['offline_rtf']['ensemble']:.1f} (one member "
      f"{ens['offline_rtf']['member']:.1f}), 64-sample streaming RTF "
      f"{ens['stream64_rtf']['ensemble']:.1f} (one member "
      f"{ens['stream64_rtf']['member']:.1f})")


def ensemble_runs_line(runs):
  t = runs["train_s"]
  size = runs["members"]
  return (
      f"Whole runs of {runs['epochs']} epochs (run.py, training seconds, "
      f"best of {len(runs['runs']['one_member'])}): one member "
      f"{t['one_member']:.1f} (1 device), {t['one_member_2dev']:.1f} (batch "
      f"split over 2); {size} members {t['ensemble']:.1f} (run.py's default "
      f"devices), {t['ensemble_1dev']:.1f} (1 device); the ensemble costs "
      f"{runs['ensemble_over_one']:.2f}x one member on 1 device, "
      f"{runs['ensemble_over_best_one']:.2f}x the faster one-member run")


def ensemble_devices_line(ens):
  ms = ens["train_ms"]
  size = ens["members"]
  return (
      f"Ensemble of {size} {ens['model']} on 2 forced CPU devices, ms per "
      f"train step (wall): one member on 1 device "
      f"{ms['one_member_1dev']:.1f}, on 2 (batch split) "
      f"{ms['one_member_2dev']:.1f}; {size} members on 1 device "
      f"{ms['ensemble_1dev']:.1f}, split over 2 devices "
      f"{ms['ensemble_2dev_members_split']:.1f} "
      f"({ens['split_over_one_1dev']:.2f}x one member on 1 device, "
      f"{ens['split_over_one_2dev']:.2f}x one member on 2)")


def ensemble_lines(results):
  """The ensemble parts' lines, of those in results."""
  lines = {"ensemble": ensemble_line,
           "ensemble_devices": ensemble_devices_line,
           "ensemble_runs": ensemble_runs_line}
  return [line(results[key]) for key, line in lines.items()
          if key in results]


def model_table(results):
  """A markdown row per model: training, offline, streaming, length."""
  blocks = [r["block_size"] for r in
            next(iter(results["infer"].values()))["streaming"]]
  head = (["model", "params", "train ksamples/s", "compile s",
           "offline RTF (1 thr)"]
          + [f"stream RTF {b}" for b in blocks]
          + [f"block {b} ms (p99)" for b in blocks]
          + ["ns/sample 1 s, 10 s, 100 s"])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, inf in results["infer"].items():
    tr = results["train"].get(name, {})
    cells = [name, f"{inf['params']:,}",
             fmt(tr.get("train_sps", None) and tr["train_sps"] / 1e3, ".0f"),
             fmt(tr.get("compile_s"), ".1f"),
             f"{inf['offline']['rtf']:.1f}"]
    cells += [f"{s['rtf']:.1f}" for s in inf["streaming"]]
    cells += [f"{s['block_ms_mean']:.3f} ({s['block_ms_p99']:.3f})"
              for s in inf["streaming"]]
    cells.append(", ".join(f"{r['ns_per_sample']:.0f}"
                           for r in inf["length"]))
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def quality_line(name, q):
  thresholds = [f"{t:.0e}" for t in bench_options.THRESHOLDS]
  return (f"Time to quality, {name} ({' '.join(q['flags'][:1])}): "
          + ", ".join(f"ESR<{t}: {fmt(q['s_to_' + t], '.0f')} s"
                      for t in thresholds)
          + f"; best val1 ESR {q['best_val1_esr']:.2e} after "
          f"{q['epochs']} epochs, {q['train_s']:.0f} s")


def nam_line():
  return "NAM 0.13 (ANCHORS.md): " + "; ".join(
      f"{k} train {v['train_sps'] / 1e3:.0f}k/s, offline {v['offline_rtf']}x,"
      f" stream64 {v['stream64_rtf']}x, 10-min ESR {v['val1_esr_10min']:.2e}"
      for k, v in bench_options.NAM.items())


def table(results):
  """The whole printout of a full benchmark run."""
  lines = model_table(results)
  if "devices" in results:
    lines.append("")
    lines.append("Training LSTM-32, samples/s by device count: " + ", ".join(
        f"{k}: {v['train_sps'] / 1e3:.0f}k"
        for k, v in results["devices"].items()))
  lines += ensemble_lines(results)
  if "train_1thread" in results:
    lines.append("Training LSTM-32 on one thread: " + ", ".join(
        f"{v['train_sps'] / 1e3:.0f}k samples/s"
        for v in results["train_1thread"].values()))
  for name, q in results.get("quality", {}).items():
    lines += ["", quality_line(name, q)]
  lines += ["", nam_line()]
  return "\n".join(lines)


def machine():
  """The machine: platform, CPUs, Python, CPU model and load."""
  info = {"platform": platform.platform(), "cpus": os.cpu_count(),
          "python": platform.python_version()}
  try:
    with open("/proc/cpuinfo") as f:
      info["cpu"] = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    info["load_before"] = os.getloadavg()
  except (OSError, StopIteration):
    pass
  return info


def write_json(path, results):
  """results -> path (no-op when no --out was given)."""
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
      json.dump(results, f, indent=1)
