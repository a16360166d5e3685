#!/usr/bin/env bash
# The GPU path, ready to check: on a machine with a CUDA GPU, installs the
# CUDA jaxlib that matches the installed jax, runs benchmarks/bench.py
# (training samples/s, offline RTF, time to quality) and the default
# experiment (experiments/lstm.flags), and prints the GPU's figures next to
# the CPU's (benchmarks/cpu-2core.json). On a machine without one it says
# so and exits 0.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]      # default runs/gpu_check
#
# Environment:
#   EMU_GPU_CHECK_DRY_RUN=1   print what would run, run nothing
#   EMU_GPU_CHECK_BENCH="..." bench.py flags (default: --quality)
#   EMU_GPU_CHECK_CPU=FILE    the CPU figures (default benchmarks/cpu-2core.json)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/gpu_check}
PYTHON=${PYTHON:-python}
BENCH_FLAGS=${EMU_GPU_CHECK_BENCH:---quality}
CPU_JSON=${EMU_GPU_CHECK_CPU:-benchmarks/cpu-2core.json}
DRY=${EMU_GPU_CHECK_DRY_RUN:-0}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null \
    | grep -q '^GPU'; then
  echo "gpu_check: no GPU found (nvidia-smi lists no CUDA device); nothing"
  echo "to measure here. The CPU figures are in benchmarks/cpu-2core.txt."
  exit 0
fi
nvidia-smi -L

JAX_VERSION=$("$PYTHON" -c 'import jax; print(jax.__version__)')
run() {  # echo, then run unless a dry run
  echo "+ $*"
  if [ "$DRY" != 1 ]; then "$@"; fi
}

if [ "$DRY" = 1 ] || [ "$("$PYTHON" -c 'import jax; print(jax.default_backend())' \
    2>/dev/null)" != gpu ]; then
  # The CUDA plugin of the same version as jax (pip's wheels bring CUDA).
  run "$PYTHON" -m pip install "jax[cuda12]==$JAX_VERSION"
fi
if [ "$DRY" != 1 ]; then
  BACKEND=$("$PYTHON" -c 'import jax; print(jax.default_backend(), jax.devices())')
  echo "jax $JAX_VERSION: $BACKEND"
  case "$BACKEND" in
    gpu*) ;;
    *) echo "gpu_check: jax still runs on '$BACKEND' after installing" \
         "jax[cuda12]==$JAX_VERSION; check the driver's CUDA version" \
         "(nvidia-smi) against JAX's installation guide" >&2
       exit 1 ;;
  esac
fi

run mkdir -p "$OUT"
# shellcheck disable=SC2086  # BENCH_FLAGS is a list of flags
run "$PYTHON" benchmarks/bench.py $BENCH_FLAGS --out="$OUT/bench-gpu.json"
run "$PYTHON" experiments/run.py --flagfile=experiments/lstm.flags \
    --workdir="$OUT/lstm" --overwrite
if [ "$DRY" = 1 ]; then
  exit 0
fi

"$PYTHON" - "$OUT/bench-gpu.json" "$CPU_JSON" "$OUT/lstm/report.json" <<'EOF'
"""Prints the GPU's figures next to the CPU's."""
import json
import sys

gpu, cpu = (json.load(open(p)) for p in sys.argv[1:3])


def row(name, key, fmt, part, get):
  both = [get(d.get(part, {}).get(name, {})) for d in (gpu, cpu)]
  text = [fmt.format(v) if isinstance(v, (int, float)) else "-" for v in both]
  print(f"| {name} | {key} | {text[0]} | {text[1]} |")


print("| model | figure | GPU | CPU (" + sys.argv[2] + ") |")
print("|---|---|---|---|")
for name in sorted(gpu.get("train", {})):
  row(name, "train ksamples/s", "{:.0f}", "train",
      lambda d: d.get("train_sps", 0) / 1e3 if d else None)
  row(name, "offline RTF", "{:.1f}", "infer",
      lambda d: d.get("offline", {}).get("rtf"))
for name in sorted(gpu.get("quality", {})):
  for key in sorted(k for k in gpu["quality"][name] if k.startswith("s_to_")):
    row(name, "time to ESR<" + key[5:] + " (s)", "{:.0f}", "quality",
        lambda d, key=key: d.get(key))
report = json.load(open(sys.argv[3]))
print(f"default experiment (experiments/lstm.flags): {report['epochs']} epochs"
      f" in {report['train_seconds']:.0f} s, val1 ESR "
      f"{report['val1']['esr']:.3e}")
EOF
