"""A run's report as one self-contained HTML page, and a blind listening test.

  write_report_html(workdir)            -> workdir/report.html
  write_listening_test([dir1, dir2])    -> dir1/listening_test.html

`report.html` reads `report.json`, `audio/*.wav` and `plots/*.png` (and
`data_report.json` when there is one) and embeds everything: the metrics
table, audio players for input, target, output and difference of each
validation set (WAVs as base64 data: URIs, converted to 16-bit PCM because
browsers do not all play float WAVs), and the plots as base64 PNG. It opens
offline, from a file, and can be mailed as it is.

`listening_test.html` is the thesis's listening test: clips of target and
model output as pairs A/B (which is which, and the order of the pairs, drawn
from a seed), each rated on the thesis's 4-point similarity scale (1 not
similar at all, 2 some similarities, 3 almost the same, 4 the same) with a
free-text note. A control pair (the target against itself) per run checks
the raters. The page exports the ratings as JSON and CSV by itself (a
Blob download; no server), keeps them in the browser's localStorage while
rating, and `python -m emu.ratings FILES...` aggregates the exports. The
pairs are blind to the eye, not to the page source, which holds the key.
"""

import base64
import datetime
import html
import io
import json
import os

import numpy as np
import soundfile as sf

SCALE = {1: "not similar at all", 2: "some similarities",
         3: "almost the same", 4: "the same"}
KINDS = ("input", "target", "output", "difference")
RATINGS_FORMAT = "emu-ratings"
CONTROL = "control (target vs target)"
# Players embed at most this much of each WAV (s), to keep pages light.
DEFAULT_MAX_SECONDS = 20.0
FADE_SECONDS = 0.01

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.3em 0}
.players{display:grid;grid-template-columns:11em 1fr;gap:.3em 1em;
align-items:center}
.trial{border:1px solid #ccc;border-radius:6px;padding:.8em 1em;margin:1em 0}
.trial.done{border-color:#4a4}.scale label{margin-right:1.2em;
white-space:nowrap}
textarea{width:100%;box-sizing:border-box}
.muted{color:#777;font-size:90%}
"""


# ---------------------------------------------------------------- media


def pcm16_wav_bytes(audio, sample_rate, gain=1.0):
  """16-bit PCM WAV bytes of float audio times `gain`, clipped to [-1, 1].

  Returns:
    (bytes, number of samples that were clipped).
  """
  x = np.asarray(audio, np.float64) * gain
  clipped = int(np.sum(np.abs(x) > 1.0))
  buffer = io.BytesIO()
  sf.write(buffer, np.clip(x, -1.0, 1.0), int(sample_rate), format="WAV",
           subtype="PCM_16")
  return buffer.getvalue(), clipped


def _data_uri(mime, payload):
  return f"data:{mime};base64," + base64.b64encode(payload).decode("ascii")


def _read_wav(path, max_seconds=None):
  audio, rate = sf.read(path, dtype="float32", always_2d=True)
  audio = audio[:, 0]
  if max_seconds:
    audio = audio[:int(max_seconds * rate)]
  return audio, rate


def _fade(x, rate):
  x = np.array(x, np.float64)
  n = min(int(FADE_SECONDS * rate), len(x) // 2)
  if n:
    ramp = np.linspace(0.0, 1.0, n)
    x[:n] *= ramp
    x[-n:] *= ramp[::-1]
  return x


def _player(uri, label=""):
  return (f'<audio controls preload="metadata" src="{uri}" '
          f'aria-label="{html.escape(label)}"></audio>')


# -------------------------------------------------------------- report


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


def _sets(report):
  """The evaluated sets: val1, val2 and any other "val*" with metrics."""
  return sorted(name for name, value in report.items()
                if name.startswith("val") and isinstance(value, dict) and
                "esr" in value)


def _metrics_table(report):
  sets = _sets(report)
  names = sorted({k for s in sets for k, v in report[s].items()
                  if isinstance(v, (int, float, str))})
  rows = [[html.escape(name)] + [_fmt(report[s].get(name, "")) for s in sets]
          for name in names]
  return _table(["metric"] + sets, rows)


def _summary_table(report):
  keys = ("model", "model_kwargs", "parameters", "dataset", "sample_rate",
          "epochs", "best_epoch", "stop_reason", "train_seconds")
  return _table(["", ""], [[html.escape(k), _fmt(report[k])] for k in keys
                           if k in report])


def _streaming_table(report):
  rows = report.get("streaming") or []
  if not rows:
    return ""
  cols = [c for c in ("block_size", "rtf", "us_per_sample", "block_ms_mean",
                      "block_ms_p99", "buffer_ms") if c in rows[0]]
  return ("<h2>Streaming</h2>" +
          _table(cols, [[_fmt(r.get(c)) for c in cols] for r in rows]))


def _audio_section(workdir, report, max_seconds):
  parts = []
  audio_dir = os.path.join(workdir, "audio")
  for name in _sets(report):
    rows = []
    for kind in KINDS:
      path = os.path.join(audio_dir, f"{name}_{kind}.wav")
      if not os.path.exists(path):
        continue
      audio, rate = _read_wav(path, max_seconds)
      payload, clipped = pcm16_wav_bytes(audio, rate)
      note = f" ({clipped} samples clipped to full scale)" if clipped else ""
      rows.append((kind + note, _data_uri("audio/wav", payload)))
      if kind == "difference":
        # As recorded, a good model's difference is near silent; this one
        # is raised to -1 dBFS peak so its character can be heard.
        peak = float(np.max(np.abs(audio), initial=0.0))
        if peak > 0:
          gain = 10 ** (-1 / 20) / peak
          payload, _ = pcm16_wav_bytes(audio, rate, gain)
          rows.append((f"difference, +{20 * np.log10(gain):.1f} dB",
                       _data_uri("audio/wav", payload)))
    if rows:
      cells = "".join(f"<div>{html.escape(label)}</div><div>"
                      f"{_player(uri, f'{name} {label}')}</div>"
                      for label, uri in rows)
      parts.append(f"<h3>{html.escape(name)}</h3>"
                   f'<div class="players">{cells}</div>')
  if not parts:
    return ""
  limit = (f" (the first {max_seconds:g} s of each)" if max_seconds else "")
  return (f"<h2>Audio</h2><p class=\"muted\">16-bit PCM copies of "
          f"<code>audio/*.wav</code>{limit}.</p>" + "".join(parts))


def _plots_section(workdir):
  plot_dir = os.path.join(workdir, "plots")
  if not os.path.isdir(plot_dir):
    return ""
  figures = []
  for name in sorted(os.listdir(plot_dir)):
    if name.endswith(".png"):
      with open(os.path.join(plot_dir, name), "rb") as f:
        uri = _data_uri("image/png", f.read())
      figures.append(f"<figure><img alt=\"{html.escape(name)}\" "
                     f"src=\"{uri}\"><figcaption class=\"muted\">"
                     f"{html.escape(name)}</figcaption></figure>")
  return "<h2>Plots</h2>" + "".join(figures) if figures else ""


def _data_section(workdir):
  path = os.path.join(workdir, "data_report.json")
  if not os.path.exists(path):
    return ""
  from emu import datareport  # pylint: disable=g-import-not-at-top
  with open(path) as f:
    text = datareport.format_report(json.load(f))
  return f"<h2>Data</h2><pre>{html.escape(text)}</pre>"


def _page(title, body):
  return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          f"<meta name=\"viewport\" content=\"width=device-width\">"
          f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
          f"<body>{body}</body></html>\n")


def _load_report(workdir):
  path = os.path.join(workdir, "report.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{workdir} has no report.json; train and evaluate first "
        "(experiments/run.py --workdir=...)")
  with open(path) as f:
    return json.load(f)


def write_report_html(workdir, max_seconds=DEFAULT_MAX_SECONDS,
                      listening_test=True, seed=0) -> str:
  """Writes workdir/report.html (and listening_test.html); returns its path.

  Args:
    workdir: a run folder holding report.json, audio/ and plots/.
    max_seconds: seconds of each WAV to embed (None: all of it).
    listening_test: also write workdir/listening_test.html for this run.
    seed: orders the listening test's pairs.
  """
  report = _load_report(workdir)
  title = (f"emu: {report.get('model', 'model')} on "
           f"{report.get('dataset', 'data')}")
  link = ('<p><a href="listening_test.html">Blind listening test</a> '
          "(rate target against output)</p>" if listening_test else "")
  body = (f"<h1>{html.escape(title)}</h1>"
          f"<p class=\"muted\">{html.escape(os.path.abspath(workdir))}</p>"
          f"{link}{_summary_table(report)}<h2>Metrics</h2>"
          f"{_metrics_table(report)}" + _extra_tables(report) +
          _streaming_table(report) + _data_section(workdir) +
          _audio_section(workdir, report, max_seconds) +
          _plots_section(workdir))
  path = os.path.join(workdir, "report.html")
  with open(path, "w") as f:
    f.write(_page(title, body))
  if listening_test:
    write_listening_test([workdir], seed=seed)
  return path


def _extra_tables(report):
  parts = []
  for key in ("response_error", "noise_response_error"):
    value = report.get(key)
    if isinstance(value, dict):
      parts.append(f"<h3>{html.escape(key)}</h3>" + _table(
          ["", ""], [[html.escape(k), _fmt(v)] for k, v in sorted(
              value.items())]))
  return "".join(parts)


# ------------------------------------------------------- listening test


def _clips(n, rate, clip_seconds, count):
  """`count` evenly spaced (start, end) sample ranges of clip_seconds.

  The first half second is left out: the model's state is still settling.
  """
  length = min(int(clip_seconds * rate), n)
  first = min(int(0.5 * rate), n - length)
  if count <= 1 or n - length <= first:
    return [(first, first + length)]
  starts = np.linspace(first, n - length, count).astype(int)
  return sorted({(int(s), int(s) + length) for s in starts})


def _label(workdir, report):
  name = os.path.basename(os.path.normpath(workdir))
  return f"{report.get('model', 'model')} ({name})"


def listening_trials(workdirs, clip_seconds=4.0, clips_per_set=2, seed=0,
                     controls=True, labels=None):
  """The listening test's pairs, shuffled: a list of dicts with audio.

  Each trial: {"trial", "model", "set", "clip": [start_s, end_s],
  "order": "target-output" | "output-target" | "target-target",
  "a", "b" (data: URIs)}.
  """
  rng = np.random.default_rng(seed)
  trials = []
  for i, workdir in enumerate(workdirs):
    report = _load_report(workdir)
    label = labels[i] if labels else _label(workdir, report)
    for name in _sets(report):
      paths = {k: os.path.join(workdir, "audio", f"{name}_{k}.wav")
               for k in ("target", "output")}
      if not all(os.path.exists(p) for p in paths.values()):
        continue
      target, rate = _read_wav(paths["target"])
      output, _ = _read_wav(paths["output"])
      clips = _clips(len(target), rate, clip_seconds, clips_per_set)
      for start, end in clips:
        uri = {k: _data_uri("audio/wav", pcm16_wav_bytes(
            _fade(a[start:end], rate), rate)[0])
               for k, a in (("target", target), ("output", output))}
        swap = bool(rng.integers(2))
        trials.append({
            "model": label, "set": name,
            "clip": [start / rate, end / rate],
            "order": "output-target" if swap else "target-output",
            "a": uri["output"] if swap else uri["target"],
            "b": uri["target"] if swap else uri["output"]})
      if controls and name == _sets(report)[0]:
        start, end = clips[0]
        uri = _data_uri("audio/wav", pcm16_wav_bytes(
            _fade(target[start:end], rate), rate)[0])
        trials.append({"model": CONTROL, "control_of": label, "set": name,
                       "clip": [start / rate, end / rate],
                       "order": "target-target", "a": uri, "b": uri})
  order = rng.permutation(len(trials))
  trials = [trials[j] for j in order]
  for k, trial in enumerate(trials, 1):
    trial["trial"] = k
  return trials


_JS = r"""
(function () {
  var meta = JSON.parse(document.getElementById('emu-meta').textContent);
  var store = 'emu-ratings:' + meta.page_id;
  var state = {};
  try { state = JSON.parse(localStorage.getItem(store) || '{}'); }
  catch (e) { state = {}; }
  function save() {
    try { localStorage.setItem(store, JSON.stringify(state)); } catch (e) {}
  }
  function rows() {
    return meta.trials.map(function (t) {
      var s = state[t.trial] || {};
      return {trial: t.trial, model: t.model, set: t.set,
              clip_start_s: t.clip[0], clip_end_s: t.clip[1],
              order: t.order, score: s.score || null, note: s.note || ''};
    });
  }
  function asJson() {
    return {format: meta.format, version: 1, page_id: meta.page_id,
            seed: meta.seed, scale: meta.scale,
            rater: document.getElementById('rater').value,
            exported: new Date().toISOString(), ratings: rows()};
  }
  function csvCell(v) {
    v = (v === null || v === undefined) ? '' : String(v);
    return /[",\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }
  function asCsv() {
    var head = ['trial', 'model', 'set', 'clip_start_s', 'clip_end_s',
                'order', 'score', 'note', 'rater'];
    var rater = document.getElementById('rater').value;
    var lines = [head.join(',')];
    rows().forEach(function (r) {
      r.rater = rater;
      lines.push(head.map(function (k) { return csvCell(r[k]); }).join(','));
    });
    return lines.join('\n') + '\n';
  }
  function download(text, name, mime) {
    var url = URL.createObjectURL(new Blob([text], {type: mime}));
    var a = document.createElement('a');
    a.href = url; a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }
  function refresh() {
    var done = 0;
    meta.trials.forEach(function (t) {
      var s = state[t.trial] || {};
      var box = document.getElementById('trial-' + t.trial);
      box.classList.toggle('done', !!s.score);
      if (s.score) done++;
    });
    document.getElementById('progress').textContent =
        done + ' of ' + meta.trials.length + ' pairs rated';
    var text = JSON.stringify(asJson(), null, 1);
    document.getElementById('export-preview').value = text;
    window.emuLastExport = text;
  }
  var base = 'ratings';
  document.querySelectorAll('input[type=radio][data-trial]').forEach(
      function (el) {
    var s = state[el.dataset.trial];
    if (s && s.score === Number(el.value)) el.checked = true;
    el.addEventListener('change', function () {
      var s = state[el.dataset.trial] = state[el.dataset.trial] || {};
      s.score = Number(el.value); save(); refresh();
    });
  });
  document.querySelectorAll('textarea[data-trial]').forEach(function (el) {
    var s = state[el.dataset.trial];
    if (s && s.note) el.value = s.note;
    el.addEventListener('input', function () {
      var s = state[el.dataset.trial] = state[el.dataset.trial] || {};
      s.note = el.value; save(); refresh();
    });
  });
  var rater = document.getElementById('rater');
  rater.value = localStorage.getItem(store + ':rater') || '';
  rater.addEventListener('input', function () {
    try { localStorage.setItem(store + ':rater', rater.value); } catch (e) {}
    refresh();
  });
  function fileName(ext) {
    var who = rater.value.replace(/[^A-Za-z0-9_-]+/g, '_') || 'anonymous';
    return base + '_' + who + '.' + ext;
  }
  document.getElementById('export-json').addEventListener('click', function () {
    download(JSON.stringify(asJson(), null, 1), fileName('json'),
             'application/json');
  });
  document.getElementById('export-csv').addEventListener('click', function () {
    download(asCsv(), fileName('csv'), 'text/csv');
  });
  window.emuRatings = {json: asJson, csv: asCsv};
  refresh();
})();
"""


def write_listening_test(workdirs, out_path=None, clip_seconds=4.0,
                         clips_per_set=2, seed=0, controls=True,
                         labels=None) -> str:
  """Writes the blind rating page for one or more runs; returns its path.

  Args:
    workdirs: run folders (each with report.json and audio/); pairs of all
      of them are shuffled together, as in the thesis's comparison.
    out_path: the page (default: the first workdir's listening_test.html).
    clip_seconds: length of each clip, seconds.
    clips_per_set: clips per validation set and run.
    seed: draws the order of the pairs and which of A/B is the target.
    controls: add a target-vs-target pair per run.
    labels: model names to show in the exports (default: "model (folder)").
  """
  workdirs = [workdirs] if isinstance(workdirs, str) else list(workdirs)
  out_path = out_path or os.path.join(workdirs[0], "listening_test.html")
  trials = listening_trials(workdirs, clip_seconds, clips_per_set, seed,
                            controls, labels)
  page_id = f"{seed}-" + "-".join(sorted({t["model"] for t in trials}))
  meta = {"format": RATINGS_FORMAT, "page_id": page_id, "seed": seed,
          "scale": {str(k): v for k, v in SCALE.items()},
          "created": datetime.datetime.now().isoformat(timespec="seconds"),
          "trials": [{k: t[k] for k in ("trial", "model", "set", "clip",
                                        "order")} for t in trials]}
  blocks = []
  for t in trials:
    k = t["trial"]
    radios = "".join(
        f'<label><input type="radio" name="score-{k}" value="{s}" '
        f'data-trial="{k}" id="score-{k}-{s}"> {s}: {html.escape(text)}'
        f"</label>" for s, text in SCALE.items())
    blocks.append(
        f'<div class="trial" id="trial-{k}"><h3>Pair {k} of {len(trials)}'
        f'</h3><div class="players"><div>A</div><div>'
        f'{_player(t["a"], f"pair {k} A")}</div><div>B</div><div>'
        f'{_player(t["b"], f"pair {k} B")}</div></div>'
        f'<p class="scale">How similar are A and B? {radios}</p>'
        f'<textarea data-trial="{k}" rows="2" placeholder="Note (optional)">'
        "</textarea></div>")
  body = (
      "<h1>Listening test</h1>"
      "<p>Each pair holds two clips, A and B. Listen to both (headphones, "
      "a comfortable level) and rate how similar they sound: 1 not similar "
      "at all, 2 some similarities, 3 almost the same, 4 the same. When "
      "done, export your ratings and send the file back.</p>"
      '<p><label>Your name or initials: <input id="rater" size="20">'
      '</label> <span id="progress" class="muted"></span></p>'
      + "".join(blocks) +
      '<p><button id="export-json">Download ratings (JSON)</button> '
      '<button id="export-csv">Download ratings (CSV)</button></p>'
      '<details><summary class="muted">The export, to copy if downloads are '
      'blocked</summary><textarea id="export-preview" rows="8" readonly>'
      "</textarea></details>"
      '<script type="application/json" id="emu-meta">'
      + json.dumps(meta).replace("</", "<\\/") +
      f"</script><script>{_JS}</script>")
  with open(out_path, "w") as f:
    f.write(_page("emu listening test", body))
  return out_path
