"""benchmarks/gpu_check.sh: what it says without a GPU, and what it would
run with one (a stand-in nvidia-smi, a dry run: nothing installed)."""

import os
import subprocess
import sys

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")


def _check(tmp_path, nvidia_smi):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  if nvidia_smi is not None:
    fake = bin_dir / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\necho '{nvidia_smi}'\n")
    fake.chmod(0o755)
  # Only the stand-in bin folder and the system's own: no real nvidia-smi.
  path = f"{bin_dir}:/usr/bin:/bin"
  return subprocess.run(
      ["bash", SCRIPT, str(tmp_path / "out")], cwd=ROOT, capture_output=True,
      text=True, timeout=60, check=False,
      env=dict(os.environ, PATH=path, EMU_GPU_CHECK_DRY_RUN="1",
               PYTHON=sys.executable))


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
  done = _check(tmp_path, None)
  assert done.returncode == 0, done.stderr
  assert "no GPU found" in done.stdout
  assert not (tmp_path / "out").exists()


def test_with_a_gpu_it_installs_cuda_jax_and_runs_bench_and_lstm(tmp_path):
  done = _check(tmp_path, "GPU 0: Stand-in GPU (UUID: GPU-0)")
  assert done.returncode == 0, done.stderr
  lines = [l for l in done.stdout.splitlines() if l.startswith("+ ")]
  assert f"jax[cuda12]=={jax.__version__}" in lines[0]
  assert any("benchmarks/bench.py --quality" in l for l in lines)
  assert any("--flagfile=experiments/lstm.flags" in l for l in lines)
  assert not (tmp_path / "out").exists()  # a dry run makes nothing
