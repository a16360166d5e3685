#!/usr/bin/env bash
# Issue 26's cases (the capture path as a careful user tries it): each command as
# a user types it, its exit status and last line. S: a scratch folder.
#   bash benchmarks/capture_cases.sh > cases.txt
set -u
R=${R:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$R"
S=${S:-/tmp/emu_capture_cases}; rm -rf "$S"; mkdir -p "$S"
py() { python "$@"; }
run() { local name=$1; shift; "$@" > $S/$name.log 2>&1; local rc=$?; echo "[$name] rc=$rc :: $(grep -v '^I[0-9]\|^W[0-9]\|^$' $S/$name.log | tail -1 | cut -c1-300)"; }
run testsignal_noext py -m emu.testsignal $S/noext --sample_rate=8000 --seconds=14
run testsignal_mp3 py -m emu.testsignal $S/x.mp3 --sample_rate=8000 --seconds=14
run testsignal_huge py -m emu.testsignal $S/x.wav --seconds=1e7
run testsignal_6s py -m emu.testsignal $S/six.wav --sample_rate=8000 --seconds=6
run testsignal_ok py -m emu.testsignal $S/in.wav --sample_rate=8000 --seconds=14
python - <<PY
import numpy as np, soundfile as sf, scipy.signal as ss
x, r = sf.read("$S/in.wav", dtype="float64")
b, a = ss.butter(2, 800, "highpass", fs=r)
y = np.tanh(3*ss.lfilter(b, a, x)) * 0.5
def lag(y, n):
  out = np.zeros_like(y)
  if n >= 0: out[n:] = y[:len(y)-n]
  else: out[:n] = y[-n:]
  return out
sf.write("$S/rec.wav", y.astype(np.float32), r, subtype="FLOAT")
sf.write("$S/rec_300ms.wav", lag(y, int(0.3*r)).astype(np.float32), r, subtype="FLOAT")
sf.write("$S/rec_2s.wav", lag(y, int(2*r)).astype(np.float32), r, subtype="FLOAT")
sf.write("$S/rec_lead50.wav", lag(y, -int(0.05*r)).astype(np.float32), r, subtype="FLOAT")
sf.write("$S/rec_quiet.wav", (0.01*y).astype(np.float32), r, subtype="FLOAT")
sf.write("$S/rec_unrelated.wav", np.random.default_rng(0).uniform(-.5,.5,len(y)).astype(np.float32), r, subtype="FLOAT")
sf.write("$S/noise_in.wav", np.random.default_rng(1).uniform(-.5,.5,len(y)).astype(np.float32), r, subtype="FLOAT")
sf.write("$S/noise_rec_2s.wav", lag(np.tanh(2*np.random.default_rng(1).uniform(-.5,.5,len(y))), int(2*r)).astype(np.float32), r, subtype="FLOAT")
PY
TINY="--flagfile=experiments/capture.flags --audition= --model=wiener --time_budget_s=20 --max_epochs=3 --stream_blocks= --segment_length=4096 --warmup=1024"
run datareport_delay py -m emu.datareport $S/in.wav $S/rec_300ms.wav
for t in rec_300ms rec_2s rec_lead50; do
  run capture_$t py experiments/run.py $TINY --train_input=$S/in.wav --train_target=$S/$t.wav --workdir=$S/run_$t
  grep -h "latency" $S/capture_$t.log | grep -v "^W" | tail -1 | cut -c1-200
done
run capture_noise_2s py experiments/run.py $TINY --train_input=$S/noise_in.wav --train_target=$S/noise_rec_2s.wav --workdir=$S/run_noise2s
run capture_noise_2s_narrow py experiments/run.py $TINY --max_latency_ms=100 --train_input=$S/noise_in.wav --train_target=$S/noise_rec_2s.wav --workdir=$S/run_noise2s_n
run capture_quiet py experiments/run.py $TINY --train_input=$S/in.wav --train_target=$S/rec_quiet.wav --workdir=$S/run_quiet
run apply_failed py -m emu.apply --workdir=$S/run_quiet $S/in.wav $S/o.wav
run capture_unrelated py experiments/run.py $TINY --train_input=$S/in.wav --train_target=$S/rec_unrelated.wav --workdir=$S/run_unrel
run channel1_mono py experiments/run.py $TINY --channel=1 --train_input=$S/in.wav --train_target=$S/rec.wav --workdir=$S/run_ch
run capture_ok py experiments/run.py $TINY --train_input=$S/in.wav --train_target=$S/rec.wav --workdir=$S/run_ok
cp -r $S/run_ok $S/run_ok_before
cp $S/rec_quiet.wav $S/rec.wav
run rerecorded py experiments/run.py $TINY --train_input=$S/in.wav --train_target=$S/rec.wav --workdir=$S/run_ok
diff -r $S/run_ok $S/run_ok_before > /dev/null && echo "[rerecorded] folder byte-identical" || echo "[rerecorded] FOLDER CHANGED"
# two runs at once
( py experiments/run.py --flagfile=experiments/tiny.flags --workdir=$S/twin > $S/twin1.log 2>&1; echo "twin1 rc=$?" > $S/twin1.rc ) &
( sleep 0.3; py experiments/run.py --flagfile=experiments/tiny.flags --workdir=$S/twin > $S/twin2.log 2>&1; echo "twin2 rc=$?" > $S/twin2.rc ) &
wait
cat $S/twin1.rc $S/twin2.rc; tail -1 $S/twin2.log | cut -c1-250; tail -1 $S/twin1.log | cut -c1-250
python -c "import json;print('twin epochs', [json.loads(l)['epoch'] for l in open('$S/twin/metrics.jsonl')])"
# model files
echo '{"version":"0.5.4","architecture":"LSTM","config":{"input_size":1,"hidden_size":0,"num_layers":1},"weights":[0.0],"sample_rate":48000}' > $S/h0.nam
run nam_hidden0 py -m emu.apply --model_file=$S/h0.nam $S/in.wav $S/o2.wav
run nam_wav py -m emu.apply --model_file=$S/in.wav $S/in.wav $S/o3.wav
echo '{"version":"0.5.4","architecture":"LSTM","config":{"input_size":1,"hidden_size":4,"num_layers":1},"weights":null}' > $S/none.nam
run nam_none py -m emu.apply --model_file=$S/none.nam $S/in.wav $S/o4.wav
echo '{"version":"0.5.4","architecture":"LSTM","config":{"input_size":1,"hidden_size":4,"num_layers":1},"weights":[1,2,3]}' > $S/count.nam
run nam_count py -m emu.apply --model_file=$S/count.nam $S/in.wav $S/o5.wav
run apply_mp3 py -m emu.apply --workdir=$S/run_ok $S/in.wav $S/o.mp3
run export_missing_dir py -m emu.export --workdir=$S/twin --format=nam $S/nowhere/x.nam
run export_onto_dir py -m emu.export --workdir=$S/twin --format=nam --overwrite $S
ls $S/*.tmp 2>/dev/null && echo "tmp left" || echo "[export_onto_dir] no .tmp left"
run export_wiener py -m emu.export --workdir=$S/run_ok --format=nam $S/w.nam
python - <<PY
from emu import models, config, pipeline
for v in (0, -4, 32.5, "32"):
  try: models.create("lstm", hidden_size=v); print("create", v, "ACCEPTED")
  except Exception as e: print("create", repr(v), "->", type(e).__name__, str(e)[:120])
try: config.Config(learning_rate="abc"); print("Config ACCEPTED")
except Exception as e: print("Config ->", type(e).__name__, str(e)[:140])
try: pipeline.run(config.Config(), None); print("run None ACCEPTED")
except Exception as e: print("run(cfg, None) ->", type(e).__name__, str(e)[:140])
PY
