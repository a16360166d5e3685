"""The tools' command lines: one style, and a user's mistake in one line."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("apply", "export", "datareport", "testsignal", "report.ratings")
# Each tool's own flags (absl's and emu.cli's --debug left out).
FLAGS = ("workdir", "block_size", "channel", "checkpoint", "subtype",
         "overwrite", "format", "name", "sample_rate", "seconds", "seed",
         "by_set", "json")


def _python(*args):
  return subprocess.run(
      [sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
      timeout=120, check=False,
      env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT))


def test_importing_a_tool_defines_no_flags():
  # A notebook or a test imports the tools: absl's global flags stay clean.
  imports = "; ".join(f"import emu.{tool}" for tool in TOOLS)
  done = _python("-c", f"{imports}; from absl import flags; "
                 "print(' '.join(flags.FLAGS))")
  assert done.returncode == 0, done.stderr[-2000:]
  assert not set(done.stdout.split()) & set(FLAGS)


@pytest.mark.parametrize("tool, args", [
    ("apply", ["--workdir=nowhere", "missing.wav", "out.wav"]),
    ("export", ["--workdir=nowhere", "--format=nam", "out.nam"]),
    ("datareport", ["missing.wav", "missing_too.wav"]),
    ("testsignal", ["out.wav", "--seconds=1"]),
    ("report.ratings", ["missing.json"]),
])
def test_a_users_mistake_is_one_line_and_exit_2(tool, args, tmp_path):
  args = [a if a.startswith("-") else str(tmp_path / a) for a in args]
  done = _python("-m", f"emu.{tool}", *args)
  assert done.returncode == 2, done.stderr[-2000:]
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
