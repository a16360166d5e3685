"""NAM's own package on an exported .nam against emu's run, on recorded voice.

  EMU_NAM_PYTHON=/path/to/nam-venv/python python benchmarks/nam_roundtrip.py \
      RUN_DIR FILE.nam SECONDS [--knobs=...]

Plays SECONDS of the alsa-utils voice clips (resampled to the file's rate)
through `emu.apply --workdir=RUN_DIR` (extra arguments go to it), through
`emu.apply --model_file=FILE.nam`, and through NAM's package
(tests/nam_reference.py in NAM's venv); prints the max abs differences.
"""
import glob, json, os, subprocess, sys, tempfile
import numpy as np, soundfile as sf
workdir, nam_file, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
rate = int(json.load(open(nam_file)).get("sample_rate") or 48000)
x = np.concatenate([sf.read(f, dtype="float32")[0] for f in sorted(glob.glob("/usr/share/sounds/alsa/*.wav"))])
import scipy.signal
x = scipy.signal.resample_poly(x, rate, 48000).astype(np.float32)[: int(seconds * rate)]
d = tempfile.mkdtemp()
sf.write(f"{d}/in.wav", x, rate, subtype="FLOAT")
subprocess.run([sys.executable, "-m", "emu.apply", f"--workdir={workdir}", *sys.argv[4:], f"{d}/in.wav", f"{d}/emu.wav"], check=True, capture_output=True)
subprocess.run([sys.executable, "-m", "emu.apply", f"--model_file={nam_file}", f"{d}/in.wav", f"{d}/emufile.wav"], check=True, capture_output=True)
np.save(f"{d}/x.npy", x)
json.dump([{"op": "run", "nam": nam_file, "x": f"{d}/x.npy", "y": f"{d}/y.npy"}], open(f"{d}/jobs.json", "w"))
subprocess.run([os.environ["EMU_NAM_PYTHON"], "tests/nam_reference.py", f"{d}/jobs.json"], check=True)
y_nam = np.load(f"{d}/y.npy").reshape(-1)
y_emu = sf.read(f"{d}/emu.wav", dtype="float32")[0]
y_file = sf.read(f"{d}/emufile.wav", dtype="float32")[0]
print(f"{seconds:g} s of alsa voice at {rate} Hz: max|NAM - emu run| = {np.max(np.abs(y_nam - y_emu)):.3e}, "
      f"max|emu .nam - emu run| = {np.max(np.abs(y_file - y_emu)):.3e}, output RMS {np.sqrt(np.mean(y_emu**2)):.3e}")
