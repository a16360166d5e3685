"""The package's layout: no import circle, a short top level, short modules.

Read from the source (ast), so lazy imports inside functions count too.
"""

import ast
import pathlib

import pytest

EMU = pathlib.Path(__file__).resolve().parent.parent / "emu"
# The guide for a module's length; a longer one says why in its docstring
# (a line containing LONG_REASON).
MAX_LINES = 450
LONG_REASON = "Longer than the guide:"
MAX_TOP_LEVEL = 12  # modules at emu/'s top level, __init__ aside


def _name(path: pathlib.Path) -> str:
  parts = path.relative_to(EMU.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict:
  return {_name(p): p for p in sorted(EMU.rglob("*.py"))}


def _imports(path: pathlib.Path, modules: dict) -> set:
  """The emu modules `path` imports, anywhere in it (a package's
  __init__ counts as the package)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from P import M` imports the module P.M where there is one, else
      # a name of P.
      names = [f"{node.module}.{a.name}"
               if f"{node.module}.{a.name}" in modules else node.module
               for a in node.names]
    else:
      continue
    found.update(n for n in names if n in modules and n.startswith("emu"))
  return found - {"emu"}


def _cycles(graph: dict) -> list:
  """Each strongly connected component of more than one module (Tarjan)."""
  index, low, stack, on, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def _graph() -> dict:
  """module -> the emu modules it imports."""
  modules = _modules()
  return {name: _imports(path, modules) - {name}
          for name, path in modules.items()}


def test_no_import_circle():
  assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_one():
  # Given a graph with a circle of three, then it is reported.
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert _cycles(graph) == [["a", "b", "c"]]


def test_a_short_top_level():
  top = [p.name for p in EMU.glob("*.py") if p.name != "__init__.py"]
  assert len(top) <= MAX_TOP_LEVEL, sorted(top)


@pytest.mark.parametrize("path", sorted(EMU.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(EMU)))
def test_a_module_is_short_or_says_why(path):
  lines = path.read_text().count("\n")
  docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
  assert lines <= MAX_LINES or LONG_REASON in docstring, (
      f"{path.relative_to(EMU)}: {lines} lines")


def test_every_module_names_its_job():
  missing = [str(p.relative_to(EMU)) for p in sorted(EMU.rglob("*.py"))
             if not ast.get_docstring(ast.parse(p.read_text()))]
  assert missing == []
