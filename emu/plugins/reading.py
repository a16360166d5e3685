"""Reading plugin files: one entry for every reader's checks.

Every reader of `emu.plugins.formats` (`load_nam`, `load_rtneural`,
`load_guitarml`) is wrapped by `reader`: it reads the JSON (`read_json`:
a WAV or a file that is not JSON is named as such), and any problem found
in it, by the checks at the reader's entry (`require`: an entry missing,
null or of the wrong kind) or deeper, is one ExportError naming the file.
"""

import functools
import json

from emu.plugins import folds

ExportError = folds.ExportError


_KINDS = {
    "size": (lambda v: isinstance(v, int) and not isinstance(v, bool)
             and v >= 1, "a whole number >= 1"),
    "numbers": (lambda v: isinstance(v, list) and bool(v) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v),
                "a non-empty list of numbers"),
    "object": (lambda v: isinstance(v, dict), "an object ({...})"),
    "list": (lambda v: isinstance(v, list) and bool(v), "a non-empty list"),
    "text": (lambda v: isinstance(v, str), "a string"),
}


class _Malformed(ExportError):
  """A file's entry is missing or of the wrong kind (`require`)."""


def read_json(path) -> dict:
  """The JSON object in the model file at `path`; ExportError naming the
  file if it holds none."""
  try:
    with open(path, encoding="utf-8") as f:
      d = json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    what = ("binary data (audio?), not JSON text" if isinstance(
        e, UnicodeDecodeError) else f"not JSON ({e})")
    raise ExportError(
        f"{path} is not a model file: it holds {what}; give --model_file "
        "a .nam or RTNeural/GuitarML .json file (the audio goes in as the "
        "input)") from None
  if not isinstance(d, dict):
    raise ExportError(f"{path} holds JSON but no model (a {type(d).__name__}"
                      ", not an object); give a .nam or RTNeural/GuitarML "
                      ".json file")
  return d


def require(d, entries):
  """ExportError naming the first of `entries` ({"config.hidden_size":
  "size", ...}: dotted path -> a kind of _KINDS) that d lacks or holds in
  another form."""
  for dotted, kind in entries.items():
    value = d
    for key in dotted.split("."):
      if not isinstance(value, dict) or key not in value:
        raise _Malformed(f"it has no {dotted!r} entry")
      value = value[key]
    accepts, what = _KINDS[kind]
    if not accepts(value):
      shown = json.dumps(value)
      shown = shown if len(shown) <= 40 else shown[:37] + "..."
      raise _Malformed(f"its {dotted!r} is {shown}, not {what}")


def reader(label):
  """Wraps read(d) -> (model, params, rate) into a reader of a path or a
  dict whose every error is one ExportError naming the file (`label`: the
  format, for the message)."""

  def wrap(read):
    @functools.wraps(read)
    def load(path_or_dict):
      if isinstance(path_or_dict, dict):
        d, source = path_or_dict, f"this {label} dict"
      else:
        d, source = read_json(path_or_dict), str(path_or_dict)
      try:
        return read(d)
      except (ValueError, KeyError, TypeError, IndexError) as e:
        # A reader's own refusal says what to do; a file that is not what
        # its format says gets the one fix there is.
        said = isinstance(e, ExportError) and not isinstance(e, _Malformed)
        problem = (f"it has no {e.args[0]!r} entry"
                   if isinstance(e, KeyError) else str(e))
        raise ExportError(
            f"{source} cannot be read as {label}: {problem}" + (
                "" if said else " (a damaged file, or another format: "
                "export it again)")) from e
    return load
  return wrap
