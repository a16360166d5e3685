"""Runs Neural Amp Modeler's own package for emu's tests, in NAM's venv.

Not a test module and not imported by emu: tests/test_nam_wavenet.py runs it
with the Python of a venv that has `neural-amp-modeler` (EMU_NAM_PYTHON),
so emu never depends on NAM or torch. One call runs a list of jobs (torch
starts once):

  python nam_reference.py JOBS.json

Jobs (dicts):
  {"op": "run", "nam": PATH, "x": NPY, "y": NPY}
      NAM loads PATH (nam.models._from_nam.init_from_nam) and writes its
      output for the float32 input in NPY x (NAM's default: pad_start, a
      model that has heard silence before).
  {"op": "export", "config": {...}, "out": DIR, "seed": N, "rate": HZ}
      A NAM WaveNet built from an init config (layers_configs, head,
      head_scale) with random weights, written by NAM's own exporter to
      DIR/model.nam.
  {"op": "train", "data": {...}, "model": {...}, "learning": {...},
   "out": DIR}
      nam.train.full.main (the `nam-full` trainer) on the given configs;
      it exports DIR/model.nam.
  {"op": "version", "out": PATH}: NAM's package and file versions.
  {"op": "loudness", "nam": PATH, "out": JSON}
      NAM loads PATH and writes the "loudness" and "gain" its trainer
      puts in a file's metadata (_metadata_loudness, _metadata_gain).
"""

import json
import pathlib
import sys
import time

import numpy as np


def _run(job):
  # pylint: disable=import-outside-toplevel
  import torch
  from nam.models._from_nam import init_from_nam
  with open(job["nam"]) as f:
    model = init_from_nam(json.load(f))
  model.eval()
  x = torch.from_numpy(np.load(job["x"]).astype(np.float32))
  with torch.no_grad():
    y = model(x).numpy()
  np.save(job["y"], y.astype(np.float32))


def _export(job):
  # pylint: disable=import-outside-toplevel
  import torch
  from nam.models.wavenet import WaveNet
  torch.manual_seed(job.get("seed", 0))
  model = WaveNet.init_from_config({**job["config"],
                                    "sample_rate": job.get("rate", 48000)})
  with torch.no_grad():  # larger than the init, so activations saturate
    for p in model.parameters():
      p.mul_(job.get("scale", 1.0))
  model.eval()
  model.export(pathlib.Path(job["out"]))


def _train(job):
  from nam.train.full import main  # pylint: disable=import-outside-toplevel
  main(job["data"], job["model"], job["learning"], pathlib.Path(job["out"]),
       no_show=True, make_plots=False)


def _version(job):
  # pylint: disable=import-outside-toplevel
  import nam
  from nam.models._constants import MODEL_VERSION
  with open(job["out"], "w") as f:
    json.dump({"package": nam.__version__, "file": MODEL_VERSION}, f)


def _loudness(job):
  # pylint: disable=import-outside-toplevel,protected-access
  from nam.models._from_nam import init_from_nam
  with open(job["nam"]) as f:
    model = init_from_nam(json.load(f))
  model.eval()
  import torch
  with torch.no_grad():
    out = {"loudness": float(model._metadata_loudness()),
           "gain": float(model._metadata_gain())}
  with open(job["out"], "w") as f:
    json.dump(out, f)


def main(path):
  with open(path) as f:
    jobs = json.load(f)
  for job in jobs:
    start = time.perf_counter()
    {"run": _run, "export": _export, "train": _train,
     "version": _version, "loudness": _loudness}[job["op"]](job)
    print(f"{job['op']} {job.get('nam', job.get('out', ''))}: "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
  main(sys.argv[1])
