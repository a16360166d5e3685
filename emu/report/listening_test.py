"""The blind listening test of one or more runs, as one self-contained page.

  write_listening_test([dir1, dir2])    -> dir1/listening_test.html

The thesis's listening test: clips of target and model output as pairs A/B
(which is which, and the order of the pairs, drawn from a seed), each rated
on the thesis's 4-point similarity scale (1 not similar at all, 2 some
similarities, 3 almost the same, 4 the same) with a free-text note. A
control pair (the target against itself) per run checks the raters. The
page exports the ratings as JSON and CSV by itself (a Blob download; no
server), keeps them in the browser's localStorage while rating, and
`python -m emu.report.ratings FILES...` aggregates the exports. The pairs are blind
to the eye, not to the page source, which holds the key. Like report.html
(`emu.report.run_page`) it embeds its audio (`emu.report.pages`) and opens offline.
"""

import datetime
import html
import json
import os

import numpy as np

from emu.report import pages
from emu.capture import testsignal
from emu import workdir as workdir_lib

SCALE = {1: "not similar at all", 2: "some similarities",
         3: "almost the same", 4: "the same"}
RATINGS_FORMAT = "emu-ratings"
CONTROL = "control (target vs target)"


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


def _clip_uri(audio, start, end, rate):
  """A clip as a data: URI, faded in and out (no click at its edges)."""
  return pages.wav_uri(testsignal.fade(audio[start:end], rate), rate)[0]


def _run_trials(workdir, report, label, clip_seconds, clips_per_set,
                controls, rng):
  """One run's pairs (unshuffled, unnumbered): clips of each evaluated set
  whose target and output WAVs exist, and a control of its first set."""
  trials = []
  sets = pages.evaluated_sets(report)
  audio_dir = workdir_lib.path(workdir, workdir_lib.AUDIO)
  for name in sets:
    paths = {k: os.path.join(audio_dir, f"{name}_{k}.wav")
             for k in ("target", "output")}
    if not all(os.path.exists(p) for p in paths.values()):
      continue
    target, rate = pages.read_wav(paths["target"])
    output, _ = pages.read_wav(paths["output"])
    clips = _clips(len(target), rate, clip_seconds, clips_per_set)
    for start, end in clips:
      uri = {k: _clip_uri(a, start, end, rate)
             for k, a in (("target", target), ("output", output))}
      swap = bool(rng.integers(2))
      trials.append({
          "model": label, "set": name,
          "clip": [start / rate, end / rate],
          "order": "output-target" if swap else "target-output",
          "a": uri["output"] if swap else uri["target"],
          "b": uri["target"] if swap else uri["output"]})
    if controls and name == sets[0]:
      start, end = clips[0]
      uri = _clip_uri(target, start, end, rate)
      trials.append({"model": CONTROL, "control_of": label, "set": name,
                     "clip": [start / rate, end / rate],
                     "order": "target-target", "a": uri, "b": uri})
  return trials


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
    report = pages.load_report(workdir)
    label = labels[i] if labels else _label(workdir, report)
    trials += _run_trials(workdir, report, label, clip_seconds,
                          clips_per_set, controls, rng)
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


def _trial_block(t, count):
  k = t["trial"]
  radios = "".join(
      f'<label><input type="radio" name="score-{k}" value="{s}" '
      f'data-trial="{k}" id="score-{k}-{s}"> {s}: {html.escape(text)}'
      f"</label>" for s, text in SCALE.items())
  return (
      f'<div class="trial" id="trial-{k}"><h3>Pair {k} of {count}'
      f'</h3><div class="players"><div>A</div><div>'
      f'{pages.player(t["a"], f"pair {k} A")}</div><div>B</div><div>'
      f'{pages.player(t["b"], f"pair {k} B")}</div></div>'
      f'<p class="scale">How similar are A and B? {radios}</p>'
      f'<textarea data-trial="{k}" rows="2" placeholder="Note (optional)">'
      "</textarea></div>")


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
  out_path = out_path or workdir_lib.path(workdirs[0],
                                          workdir_lib.LISTENING_TEST)
  trials = listening_trials(workdirs, clip_seconds, clips_per_set, seed,
                            controls, labels)
  page_id = f"{seed}-" + "-".join(sorted({t["model"] for t in trials}))
  meta = {"format": RATINGS_FORMAT, "page_id": page_id, "seed": seed,
          "scale": {str(k): v for k, v in SCALE.items()},
          "created": datetime.datetime.now().isoformat(timespec="seconds"),
          "trials": [{k: t[k] for k in ("trial", "model", "set", "clip",
                                        "order")} for t in trials]}
  body = (
      "<h1>Listening test</h1>"
      "<p>Each pair holds two clips, A and B. Listen to both (headphones, "
      "a comfortable level) and rate how similar they sound: 1 not similar "
      "at all, 2 some similarities, 3 almost the same, 4 the same. When "
      "done, export your ratings and send the file back.</p>"
      '<p><label>Your name or initials: <input id="rater" size="20">'
      '</label> <span id="progress" class="muted"></span></p>'
      + "".join(_trial_block(t, len(trials)) for t in trials) +
      '<p><button id="export-json">Download ratings (JSON)</button> '
      '<button id="export-csv">Download ratings (CSV)</button></p>'
      '<details><summary class="muted">The export, to copy if downloads are '
      'blocked</summary><textarea id="export-preview" rows="8" readonly>'
      "</textarea></details>"
      '<script type="application/json" id="emu-meta">'
      + json.dumps(meta).replace("</", "<\\/") +
      f"</script><script>{_JS}</script>")
  with open(out_path, "w") as f:
    f.write(pages.page("emu listening test", body))
  return out_path
