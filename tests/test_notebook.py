"""examples/quickstart.ipynb: the library used from a notebook, executed.

The notebook is run top to bottom in a fresh python3 kernel (nbclient), in
a temporary working directory, and the numbers its cells print are checked:
the model beats the do-nothing baseline, streaming in blocks equals the
offline output, and the exported plugin file exists, parses and reads back
to the same model. Needs the test extra (`pip install -e '.[test]'`:
nbclient, nbformat, ipykernel); skipped without them.
"""

import json
import pathlib
import re

import pytest

NOTEBOOK = pathlib.Path(__file__).parent.parent / "examples" / "quickstart.ipynb"
CELL_TIMEOUT_S = 120
NUMBER = r"([-+0-9.eE]+|nan|inf)"


def test_the_stored_notebook_is_clean():
  """The notebook is kept without outputs (diffs stay readable)."""
  nb = json.loads(NOTEBOOK.read_text())
  assert nb["metadata"]["kernelspec"]["name"] == "python3"
  for i, cell in enumerate(nb["cells"]):
    if cell["cell_type"] == "code":
      assert not cell["outputs"], f"cell {i} has stored outputs"
      assert cell["execution_count"] is None, f"cell {i} has a count"


def _text(cell) -> str:
  """A code cell's printed text (stdout/stderr and text results)."""
  parts = []
  for out in cell.get("outputs", []):
    if out["output_type"] == "stream":
      parts.append(out["text"])
    elif "data" in out and "text/plain" in out["data"]:
      parts.append(out["data"]["text/plain"])
  return "".join(parts)


def _number(text, pattern) -> float:
  match = re.search(pattern + NUMBER, text)
  assert match, f"no {pattern!r} in the notebook's output:\n{text}"
  return float(match.group(1))


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """The notebook after a run: (notebook, all printed text, cwd)."""
  nbclient = pytest.importorskip(
      "nbclient", reason="executing the notebook needs nbclient: "
      "pip install -e '.[test]'")
  nbformat = pytest.importorskip(
      "nbformat", reason="executing the notebook needs nbformat: "
      "pip install -e '.[test]'")
  pytest.importorskip(
      "ipykernel", reason="executing the notebook needs a python3 kernel "
      "(ipykernel): pip install -e '.[test]'")
  cwd = tmp_path_factory.mktemp("notebook")
  # The kernel is a new process: its tempfile.mkdtemp() (the run folder)
  # lands under cwd, which pytest cleans up.
  mp = pytest.MonkeyPatch()
  mp.setenv("TMPDIR", str(cwd))
  try:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError on a cell's error
  finally:
    mp.undo()
  text = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
  return nb, text, cwd


def test_every_cell_ran_without_errors(executed):
  nb, _, _ = executed
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.execution_count for c in code)
  errors = [o for c in code for o in c.outputs if o.output_type == "error"]
  assert not errors
  # Every code cell shows what it computed.
  assert all(_text(c).strip() for c in code)


def test_the_model_beats_the_do_nothing_baseline(executed):
  _, text, _ = executed
  baseline = _number(text, r"val1 ESR of the dry input: ")
  esr = _number(text, r"val1 ESR: ")
  recomputed = _number(text, r"val1 ESR recomputed from predict: ")
  assert 0 < esr < baseline
  assert recomputed == pytest.approx(esr, abs=1e-4)
  assert "3 epochs" in text


def test_streaming_equals_the_offline_output(executed):
  _, text, _ = executed
  assert _number(text, r"streaming vs offline, max \|difference\|: ") < 1e-5


def _exported(text, fmt, cwd):
  match = re.search(fmt + r" exported: (\S+) \((\d+) bytes\)", text)
  assert match, text
  path = pathlib.Path(match.group(1))
  assert path.is_file() and cwd in path.parents
  assert path.stat().st_size == int(match.group(2))
  return json.loads(path.read_text())


def test_the_default_skip_model_exports_to_nam_with_the_skip_folded(executed):
  _, text, cwd = executed
  d = _exported(text, "nam", cwd)
  assert d["architecture"] == "LSTM"
  # The dry-input skip becomes one more unit: 8 trained + 1 carrier.
  assert d["config"]["hidden_size"] == 9
  assert d["sample_rate"] == 44100
  assert _number(
      text, r"nam file read back at 44100 Hz vs the trained model, "
      r"max \|difference\|: ") < 1e-6


def test_the_guitarml_file_parses_and_reads_back(executed):
  _, text, cwd = executed
  d = _exported(text, "guitarml", cwd)
  assert d["model_data"]["hidden_size"] == 8
  assert d["model_data"]["unit_type"] == "LSTM"
  assert d["model_data"]["skip"] == 1
  assert d["emu"]["sample_rate"] == 44100
  # PyTorch layout: weight_hh is [4H, H], 4H = 32 rows for H = 8.
  assert len(d["state_dict"]["rec.weight_hh_l0"]) == 32
  assert _number(
      text, r"guitarml file read back at 44100 Hz vs the trained model, "
      r"max \|difference\|: ") < 1e-6


def test_the_plots_and_players_are_shown(executed):
  nb, _, _ = executed
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if o.output_type == "display_data"]
  images = [o for o in outputs if "image/png" in o.data]
  players = [o for o in outputs if "<audio" in o.data.get("text/html", "")]
  assert len(images) == 3
  assert len(players) == 3
