"""The pieces emu's self-contained HTML pages are made of.

`report.html` (`emu.report.run_page`) and `listening_test.html`
(`emu.report.listening_test`) share them: the page shell and its style, audio and
images embedded as base64 data: URIs (WAVs converted to 16-bit PCM, which
every browser plays; not all play float WAVs), audio players, and a run's
report.json with the validation sets it evaluated. A page built from them
opens offline, from a file, and can be mailed as it is.
"""

import base64
import html
import io

import numpy as np
import soundfile as sf

from emu import workdir as workdir_lib

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


def page(title, body):
  """A whole HTML document: `body` (HTML) under an escaped `title`."""
  return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          f"<meta name=\"viewport\" content=\"width=device-width\">"
          f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
          f"<body>{body}</body></html>\n")


def data_uri(mime, payload):
  return f"data:{mime};base64," + base64.b64encode(payload).decode("ascii")


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


def wav_uri(audio, sample_rate, gain=1.0):
  """(data: URI of `pcm16_wav_bytes`, number of samples clipped)."""
  payload, clipped = pcm16_wav_bytes(audio, sample_rate, gain)
  return data_uri("audio/wav", payload), clipped


def read_wav(path, max_seconds=None):
  """(first channel [time] float32, sample rate), cut to max_seconds."""
  audio, rate = sf.read(path, dtype="float32", always_2d=True)
  audio = audio[:, 0]
  if max_seconds:
    audio = audio[:int(max_seconds * rate)]
  return audio, rate


def player(uri, label=""):
  return (f'<audio controls preload="metadata" src="{uri}" '
          f'aria-label="{html.escape(label)}"></audio>')


def load_report(workdir):
  """The run's report.json; FileNotFoundError saying how to make one."""
  try:
    return workdir_lib.read_json(workdir, workdir_lib.REPORT)
  except FileNotFoundError:
    raise FileNotFoundError(
        f"{workdir} has no {workdir_lib.REPORT}; train and evaluate first "
        "(experiments/run.py --workdir=...)") from None


def evaluated_sets(report):
  """The evaluated sets: val1, val2 and any other "val*" with metrics."""
  return sorted(name for name, value in report.items()
                if name.startswith("val") and isinstance(value, dict) and
                "esr" in value)
