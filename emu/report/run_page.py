"""A run's report as one self-contained HTML page.

  write_report_html(workdir)            -> workdir/report.html
                                           (and workdir/listening_test.html)

`report.html` reads `report.json`, `audio/*.wav` and `plots/*.png` (and
`data_report.json` when there is one) and embeds everything
(`emu.report.pages`): the metrics table, the device beside the model on
emu's test signal (`emu.report.device_compare`: its tables and figures, or
the line saying why a recording has none), audio players for input,
target, output and difference of each validation set (as 16-bit PCM), and
the plots. It
opens offline, from a file, and can be mailed as it is. It links the run's
blind listening test, which `emu.report.listening_test` writes beside it.
"""

import html
import json
import os

import numpy as np

from emu.capture import datareport
from emu.report import device_compare
from emu.report import listening_test as listening_test_lib
from emu.report import pages
from emu import workdir as workdir_lib

KINDS = ("input", "target", "output", "difference")
# Players embed at most this much of each WAV (s), to keep pages light.
DEFAULT_MAX_SECONDS = 20.0


def _fmt(value):
  if isinstance(value, bool) or value is None:
    return html.escape(str(value))
  if isinstance(value, int):
    return f"{value:,}"
  if isinstance(value, float):
    if value == 0 or 1e-3 <= abs(value) < 1e4:
      return f"{value:.4g}"
    return f"{value:.3e}"
  if isinstance(value, (dict, list, tuple)):
    return html.escape(json.dumps(value))
  return html.escape(str(value))


def _table(header, rows):
  head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
  body = "".join(
      "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
      for row in rows)
  return f"<table><tr>{head}</tr>{body}</table>"


def _facts_table(items):
  """A two-column table of (name, value) pairs."""
  return _table(["", ""], [[html.escape(k), _fmt(v)] for k, v in items])


def _metrics_table(report):
  sets = pages.evaluated_sets(report)
  names = sorted({k for s in sets for k, v in report[s].items()
                  if isinstance(v, (int, float, str))})
  rows = [[html.escape(name)] + [_fmt(report[s].get(name, "")) for s in sets]
          for name in names]
  return _table(["metric"] + sets, rows)


def _summary_table(report):
  keys = ("model", "model_kwargs", "parameters", "dataset", "sample_rate",
          "epochs", "best_epoch", "stop_reason", "train_seconds", "audition",
          "plugin")
  return _facts_table((k, report[k]) for k in keys if k in report)


# The response errors' headings: what signal each response comes from.
RESPONSE_TITLES = {
    "response_error": "Small-signal response error (impulse, amplitude 0.1)",
    "noise_response_error": "Full-scale noise response error (white noise, "
                            "peak 0.5)",
}


def _extra_tables(report):
  parts = []
  signals = report.get("response_signals") or {}
  for key, title in RESPONSE_TITLES.items():
    value = report.get(key)
    if isinstance(value, dict):
      note = (f'<p class="muted">{html.escape(signals[key])} '
              f"(<code>{key}</code>)</p>" if key in signals else "")
      parts.append(f"<h3>{html.escape(title)}</h3>{note}" +
                   _facts_table(sorted(value.items())))
  idle = report.get("idle_output")
  if isinstance(idle, dict):
    parts.append("<h3>Output on silence (from rest)</h3>"
                 '<p class="muted">a start-up transient and offset that the '
                 "small-signal response above leaves out</p>" +
                 _facts_table(sorted(idle.items())))
  return "".join(parts)


def _db_text(value):
  """A dBFS number of report.json (a float, or '-inf' for silence)."""
  return f"{value:.1f}" if isinstance(value, (int, float)) else str(value)


def levels_line(report) -> str:
  """The one sentence saying at which levels the model was checked (plain
  text; empty for a report without levels)."""
  levels = report.get("levels")
  if not isinstance(levels, dict) or "validated_rms_dbfs" not in levels:
    return ""
  sets = " and ".join(s for s in ("val1", "val2") if s in levels)
  low, high = (_db_text(v) for v in levels["validated_rms_dbfs"])
  line = (f"Validated ({sets}) at short-term RMS levels from {low} to "
          f"{high} dBFS (5th to 95th percentile of 100 ms windows), peaks up "
          f"to {_db_text(levels['validated_peak_dbfs'])} dBFS: quieter "
          "passages were never checked.")
  if "validated_esr_floor_dbfs" in levels:
    floor = _db_text(levels["validated_esr_floor_dbfs"])
    line += (f" ESR weighs each passage by its energy: it checks little "
             f"below {floor} dBFS (quieter windows hold 1% of the energy).")
  if "trained_rms_dbfs" in levels:
    t_low, t_high = (_db_text(v) for v in levels["trained_rms_dbfs"])
    g_low, g_high = levels.get("train_gain_range_db", [
        -levels.get("train_gain_db", 0), levels.get("train_gain_db", 0)])
    line += (f" Trained from {t_low} to {t_high} dBFS (random gain "
             f"{g_low:g} to {g_high:+g} dB per segment).")
  return line


def _levels_section(report):
  line = levels_line(report)
  return f"<p><b>Levels.</b> {html.escape(line)}</p>" if line else ""


def _streaming_table(report):
  rows = report.get("streaming") or []
  if not rows:
    return ""
  cols = [c for c in ("block_size", "rtf", "cpu_rtf", "us_per_sample",
                      "block_ms_mean", "block_ms_p99", "buffer_ms")
          if c in rows[0]]
  how = report.get("streaming_method") or {}
  label = ""
  if how.get("method"):
    why = f" ({how['why']})" if how.get("why") else ""
    label = f'<p class="muted">Measured {html.escape(how["method"] + why)}.</p>'
  return ("<h2>Streaming</h2>" + label +
          _table(cols, [[_fmt(r.get(c)) for c in cols] for r in rows]))


def _players(audio_dir, name, max_seconds):
  """(label, data: URI) of each of a set's WAVs that exists."""
  rows = []
  for kind in KINDS:
    path = os.path.join(audio_dir, f"{name}_{kind}.wav")
    if not os.path.exists(path):
      continue
    audio, rate = pages.read_wav(path, max_seconds)
    uri, clipped = pages.wav_uri(audio, rate)
    note = f" ({clipped} samples clipped to full scale)" if clipped else ""
    rows.append((kind + note, uri))
    if kind == "difference":
      # As recorded, a good model's difference is near silent; this one
      # is raised to -1 dBFS peak so its character can be heard.
      peak = float(np.max(np.abs(audio), initial=0.0))
      if peak > 0:
        gain = 10 ** (-1 / 20) / peak
        rows.append((f"difference, +{20 * np.log10(gain):.1f} dB",
                     pages.wav_uri(audio, rate, gain)[0]))
  return rows


def _audio_section(workdir, report, max_seconds):
  parts = []
  audio_dir = workdir_lib.path(workdir, workdir_lib.AUDIO)
  for name in pages.evaluated_sets(report):
    rows = _players(audio_dir, name, max_seconds)
    if rows:
      cells = "".join(f"<div>{html.escape(label)}</div><div>"
                      f"{pages.player(uri, f'{name} {label}')}</div>"
                      for label, uri in rows)
      parts.append(f"<h3>{html.escape(name)}</h3>"
                   f'<div class="players">{cells}</div>')
  if not parts:
    return ""
  limit = (f" (the first {max_seconds:g} s of each)" if max_seconds else "")
  return (f"<h2>Audio</h2><p class=\"muted\">16-bit PCM copies of "
          f"<code>{workdir_lib.AUDIO}/*.wav</code>{limit}.</p>" +
          "".join(parts))


def _figure(path):
  """A PNG embedded with its file name as caption."""
  name = os.path.basename(path)
  with open(path, "rb") as f:
    uri = pages.data_uri("image/png", f.read())
  return (f"<figure><img alt=\"{html.escape(name)}\" src=\"{uri}\">"
          f"<figcaption class=\"muted\">{html.escape(name)}</figcaption>"
          "</figure>")


def _plots_section(workdir):
  """Every figure in plots/ but the device section's."""
  plot_dir = workdir_lib.path(workdir, workdir_lib.PLOTS)
  if not os.path.isdir(plot_dir):
    return ""
  shown = set(device_compare.PLOT_FILES.values())
  figures = [_figure(os.path.join(plot_dir, name))
             for name in sorted(os.listdir(plot_dir))
             if name.endswith(".png") and name not in shown]
  return "<h2>Plots</h2>" + "".join(figures) if figures else ""


def _number(value, digits=2):
  return "-" if value is None else f"{value:.{digits}f}"


def _cell(value):
  return "-" if value is None else _fmt(value)


def _device_tables(result):
  """The gain per level step, THD per sweep, and ESR per part."""
  gain = result["gain"]
  rows = []
  for part, x, d, m in zip(gain["parts"], gain["input_rms_dbfs"],
                           gain["device_rms_dbfs"], gain["model_rms_dbfs"]):
    gains = [None if v is None or x is None else v - x for v in (d, m)]
    rows.append([html.escape(part), _number(x, 1)] +
                [_number(g) for g in gains])
  tables = [_table(["level step", "input RMS (dBFS)", "device gain (dB)",
                    "model gain (dB)"], rows)]
  tables.append(_table(
      ["sweep", "fundamental (Hz)", "device THD (%)", "model THD (%)"],
      [[f"{html.escape(r['part'])} ({r['peak_dbfs']:g} dBFS)",
        f"{r['f0_hz']:g}", _cell(r.get("device_thd_pct")),
        _cell(r.get("model_thd_pct"))] for r in result["harmonics"]["rows"]]))
  tables.append(_table(
      ["part", "set", "seconds", "ESR"],
      [[html.escape(p["part"]), p["set"],
        f"{p['start_s']:.2f}-{p['end_s']:.2f}", _cell(p["esr"])]
       for p in result["error_over_time"]["parts"]]))
  return "".join(tables)


def _device_section(workdir, report):
  """The device beside the model on the test signal, or why not."""
  result = report.get(device_compare.KEY)
  if not isinstance(result, dict):
    return ""
  head = "<h2>Device and model on the test signal</h2>"
  if "skipped" in result:
    return f'{head}<p class="muted">{html.escape(str(result["skipped"]))}</p>'
  plot_dir = workdir_lib.path(workdir, workdir_lib.PLOTS)
  figures = "".join(_figure(os.path.join(plot_dir, name))
                    for name in device_compare.PLOT_FILES.values()
                    if os.path.exists(os.path.join(plot_dir, name)))
  return (f"{head}<p>{html.escape(result.get('signal', ''))}: the recorded "
          "device against the model on the same input (report.json's "
          f"<code>{device_compare.KEY}</code>): "
          f"{html.escape(device_compare.summary(result))}.</p>" +
          _device_tables(result) + figures)


def _data_section(workdir):
  if not os.path.exists(workdir_lib.path(workdir, workdir_lib.DATA_REPORT)):
    return ""
  text = datareport.format_report(
      workdir_lib.read_json(workdir, workdir_lib.DATA_REPORT))
  return f"<h2>Data</h2><pre>{html.escape(text)}</pre>"


def write_report_html(workdir, max_seconds=DEFAULT_MAX_SECONDS,
                      listening_test=True, seed=0) -> str:
  """Writes workdir/report.html (and listening_test.html); returns its path.

  Args:
    workdir: a run folder holding report.json, audio/ and plots/.
    max_seconds: seconds of each WAV to embed (None: all of it).
    listening_test: also write workdir/listening_test.html for this run.
    seed: orders the listening test's pairs.
  """
  report = pages.load_report(workdir)
  title = (f"emu: {report.get('model', 'model')} on "
           f"{report.get('dataset', 'data')}")
  link = (f'<p><a href="{workdir_lib.LISTENING_TEST}">Blind listening test'
          "</a> (rate target against output)</p>" if listening_test else "")
  body = (f"<h1>{html.escape(title)}</h1>"
          f"<p class=\"muted\">{html.escape(os.path.abspath(workdir))}</p>"
          f"{link}{_summary_table(report)}<h2>Metrics</h2>"
          f"{_metrics_table(report)}" + _levels_section(report) +
          _device_section(workdir, report) + _extra_tables(report) +
          _streaming_table(report) + _data_section(workdir) +
          _audio_section(workdir, report, max_seconds) +
          _plots_section(workdir))
  path = workdir_lib.path(workdir, workdir_lib.REPORT_HTML)
  with open(path, "w") as f:
    f.write(pages.page(title, body))
  if listening_test:
    listening_test_lib.write_listening_test([workdir], seed=seed)
  return path
