"""The SPICE circuits and LV2 plugins of benchmarks/spice.py and lv2.py.

Each is checked against an expectation from outside its own code: the
TS-808 clipping stage's published small-signal gain, a diode pair's
forward drop, the gain a pair of 12AX7 stages can have, a compressor's
ratio; and all of them for length, determinism and causality. A test
skips, naming the Debian package, where ngspice, lv2apply or a plugin is
missing. Signals are a tenth of a second or less.
"""

import numpy as np
import pytest

from benchmarks import circuit_check
from benchmarks import devices
from benchmarks import lv2
from benchmarks import spice

RATE = 44100


def _need_ngspice():
  if not spice.available():
    pytest.skip("needs ngspice: apt-get install ngspice")


def _need_plugin(name):
  plugin = lv2.PLUGINS[name]
  missing = lv2.missing_packages([plugin.uri])
  if missing:
    pytest.skip(f"needs {plugin.uri}: apt-get install {' '.join(missing)}")
  return plugin


def _sine(freq, level_db, seconds=0.08):
  return circuit_check.sine(freq, level_db, seconds)


def _harmonics(y, freq, n=5):
  """Amplitudes of harmonics 1..n over the second half (least squares)."""
  return circuit_check.harmonics(y, freq, n)[0]


def _impulse(n=2048, at=1000, value=0.1):
  x = np.zeros(n, np.float32)
  x[at] = value
  return x


# --- no ngspice / no lv2apply: the error says what to install -------------


def test_given_no_ngspice_when_simulating_then_the_error_names_apt_get(
    monkeypatch):
  monkeypatch.setattr(spice, "ngspice_binary", lambda: None)
  with pytest.raises(FileNotFoundError, match="apt-get install ngspice"):
    spice.simulate("ts808", np.zeros(10, np.float32), RATE)
  assert not spice.available()


def test_given_no_lv2apply_when_applying_then_the_error_names_apt_get(
    monkeypatch):
  monkeypatch.setattr(lv2, "lv2apply_binary", lambda: None)
  with pytest.raises(FileNotFoundError, match="apt-get install lilv-utils"):
    lv2.device("mda_overdrive")(np.zeros(10, np.float32), RATE)
  assert "lilv-utils" in lv2.missing_packages()


def test_given_an_absent_plugin_when_applying_then_the_error_names_apt_get(
    monkeypatch):
  monkeypatch.setattr(lv2, "_info", lambda uri: None)
  with pytest.raises(FileNotFoundError, match="apt-get install"):
    lv2.apply(lv2.PLUGINS["swh_valve"].uri, np.zeros(10, np.float32), RATE)


def test_every_new_device_names_its_debian_packages():
  new = [d for d in devices.DEVICES.values()
         if d.name.startswith(("spice_", "lv2_"))]
  assert len(new) == 3 + len(lv2.PLUGINS)
  for d in new:
    expected = ({"ngspice"} if d.name.startswith("spice_") else
                {"lilv-utils", lv2.PLUGINS[d.name[4:]].package})
    assert set(d.apt.split()) == expected, d.name
    assert not d.needs, d.name
  assert sorted(spice.circuits()) == ["fuzzface", "ts808", "tube_amp"]


# --- SPICE ----------------------------------------------------------------


def test_given_the_ts808_stage_when_small_then_gain_is_yeh_abel_smiths():
  """|1 + Zf/Zg| at 1 kHz: Zf = (51k + Drive 500k) || 51 pF, Zg = 4.7k +
  0.047 uF (Yeh, Abel & Smith, DAFx 2007; mid-band 1 + Zf/4.7k)."""
  _need_ngspice()
  w = 2 * np.pi * 1000.0
  for drive, level_db, tol in ((0.0, -60.0, 0.02), (1.0, -80.0, 0.08)):
    rf = 51e3 + drive * 500e3
    formula = abs(1 + (rf / (1 + 1j * w * rf * 51e-12))
                  / (4.7e3 + 1 / (1j * w * 0.047e-6)))
    y = spice.simulate("ts808", _sine(1000.0, level_db), RATE, node="o1",
                       params={"drive": drive})
    gain = _harmonics(y, 1000.0)[0] / 10 ** (level_db / 20)
    # At full drive the diodes' small-signal conductance and the op-amp's
    # finite loop gain (3 MHz / 1 kHz over a closed-loop gain of 95) take
    # about 5% off.
    assert gain == pytest.approx(formula, rel=tol), (drive, gain, formula)
    assert gain < 1 + rf / 4.7e3


def test_given_the_ts808_when_hot_then_diodes_clip_it_symmetrically():
  _need_ngspice()
  x = _sine(1000.0, -20.0)  # 0.1 V peak; the linear gain would give 9 V
  o1 = spice.simulate("ts808", x, RATE, node="o1")
  swing = o1[len(o1) // 2:] - np.mean(o1[len(o1) // 2:])
  # The op-amp's output is its input plus the feedback network's drop,
  # which two 1N914s in antiparallel hold to about a diode drop.
  assert 0.4 < np.max(np.abs(swing)) < 0.1 + 0.8
  h = _harmonics(o1, 1000.0)
  assert h[2] > 0.03 * h[0]  # H3: clipped
  assert h[1] < 1e-3 * h[2]  # no H2: an odd-symmetric clipper


def test_given_the_tube_amp_when_small_then_gains_are_two_12ax7_stages():
  """A 12AX7 (mu 100, ra about 62k) with a 100k plate resistor and a
  bypassed cathode gains 30-40 dB; the device is two of them, the volume
  pot (x0.1), a /160 output scale and a 4.8 kHz speaker-like low-pass."""
  _need_ngspice()
  level_db = -60.0
  x = _sine(1000.0, level_db)
  p1 = spice.simulate("tube_amp", x, RATE, node="p1")
  stage_db = 20 * np.log10(_harmonics(p1, 1000.0)[0] / 10 ** (level_db / 20))
  assert 30.0 < stage_db < 40.0
  y = spice.simulate("tube_amp", x, RATE)
  gain_db = 20 * np.log10(_harmonics(y, 1000.0)[0] / 10 ** (level_db / 20))
  lowpass_db = 2 * 10 * np.log10(1 / (1 + (1000 / 4823) ** 2))
  fixed_db = 20 * np.log10(0.1 / 160) + lowpass_db
  assert 2 * 30 + fixed_db < gain_db < 2 * 40 + fixed_db
  assert gain_db == pytest.approx(2 * stage_db + fixed_db, abs=2.0)


def test_given_the_tube_amp_when_hot_then_triodes_add_even_harmonics():
  _need_ngspice()
  h = _harmonics(spice.simulate("tube_amp", _sine(1000.0, -10.0), RATE),
                 1000.0)
  thd = np.sqrt(np.sum(h[1:] ** 2)) / h[0]
  assert thd > 0.03
  assert h[1] > 0.01 * h[0]  # a triode's curve is not odd-symmetric


def test_given_the_fuzzface_when_driven_then_clean_small_and_fuzz_loud():
  _need_ngspice()
  hs = {}
  for level_db in (-70.0, -20.0):
    y = spice.simulate("fuzzface", _sine(500.0, level_db), RATE)
    h = _harmonics(y, 500.0)
    hs[level_db] = (h[0] / 10 ** (level_db / 20),
                    np.sqrt(np.sum(h[1:] ** 2)) / h[0])
  gain, thd = hs[-70.0]
  assert 20 < 20 * np.log10(gain) < 60 and thd < 0.02  # two gain stages
  assert hs[-20.0][1] > 0.3  # square-ish
  assert hs[-20.0][0] < 0.1 * gain  # hard limited


@pytest.mark.parametrize("circuit", ["ts808", "fuzzface", "tube_amp"])
def test_given_a_circuit_when_played_twice_then_same_causal_output(circuit):
  _need_ngspice()
  x = _impulse()
  x[1500:1600] = 0.3 * np.sin(np.arange(100) / 4.0)
  y = spice.simulate(circuit, x, RATE)
  assert y.dtype == np.float32 and y.shape == x.shape
  assert np.all(np.isfinite(y)) and np.max(np.abs(y)) < 0.9
  assert np.array_equal(y, spice.simulate(circuit, x, RATE))
  assert np.max(np.abs(y[:1000])) < 1e-6  # the rest output: 1e-8 or less
  assert abs(y[1000]) > 1e-4  # answers at once
  assert devices.DEVICES[f"spice_{circuit}"].process(x, RATE).shape == x.shape


def test_given_more_audio_after_when_simulated_then_the_start_is_unchanged():
  _need_ngspice()
  x = _sine(220.0, -6.0, 0.06)
  x[1500:] *= 0.3
  head = spice.simulate("fuzzface", x[:1200], RATE)
  assert np.array_equal(head, spice.simulate("fuzzface", x, RATE)[:1200])


def test_given_odd_lengths_and_chunks_when_simulated_then_lengths_kept():
  _need_ngspice()
  for n in (0, 1, 2, 1001):
    x = (0.1 * np.sin(np.arange(n) / 3.0)).astype(np.float32)
    assert spice.simulate("fuzzface", x, RATE).shape == (n,)
  x = _sine(300.0, -20.0, 0.05)
  y = spice.simulate("fuzzface", x, RATE, chunk_seconds=0.02,
                     warmup_seconds=0.01, jobs=2)
  assert y.shape == x.shape and np.all(np.isfinite(y))


def test_given_a_bad_netlist_param_when_simulating_then_error():
  with pytest.raises(ValueError, match="no .param"):
    spice.simulate("ts808", np.zeros(4, np.float32), RATE,
                   params={"nope": 1.0})
  with pytest.raises(ValueError, match="unknown circuit"):
    spice.simulate("nope", np.zeros(4, np.float32), RATE)


# --- LV2 ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(lv2.PLUGINS))
def test_given_a_plugin_when_pushed_then_nonlinear_causal_deterministic(
    name):
  _need_plugin(name)
  process = devices.DEVICES[f"lv2_{name}"].process
  x = _sine(500.0, -6.0, 0.3)  # and 2x: a full-scale sine
  y1, y2 = process(x, RATE), process(2 * x, RATE)
  assert y1.dtype == np.float32 and y1.shape == x.shape
  assert np.array_equal(y1, process(x, RATE))
  assert np.max(np.abs(process(_sine(100.0, 0.0, 0.2), RATE))) < 0.9
  # Not homogeneous: twice the input is not twice the output.
  tail = slice(len(x) // 2, None)
  err = np.sum((y2[tail] - 2 * y1[tail]) ** 2) / np.sum((2 * y1[tail]) ** 2)
  assert err > 1e-3, err
  imp = process(_impulse(value=0.05), RATE)
  rest = process(np.zeros(2048, np.float32), RATE)  # swh_valve: 3.9e-26
  assert np.all(imp[:1000] == rest[:1000]) and imp[1000] != rest[1000]
  assert np.max(np.abs(rest)) < 1e-20
  assert not lv2.declared_latency(lv2.PLUGINS[name].uri)


def test_given_the_calf_compressor_when_20db_over_then_4_to_1():
  """-20 dB threshold, 4:1: a sine 17-20 dB over it (RMS or peak) loses
  (1 - 1/4) of that, 13-15 dB, against a quiet one."""
  _need_plugin("calf_compressor")
  process = lv2.device("calf_compressor")
  gains = []
  for level_db in (-40.0, 0.0):
    y = process(_sine(1000.0, level_db, 0.6), RATE)
    gains.append(20 * np.log10(_harmonics(y, 1000.0)[0])
                 - level_db)
  assert 11.0 < gains[0] - gains[1] < 16.0, gains


def test_given_the_mda_overdrive_when_pushed_then_odd_soft_clipping():
  _need_plugin("mda_overdrive")
  h = _harmonics(lv2.device("mda_overdrive")(_sine(1000.0, -20.0), RATE),
                 1000.0)
  assert h[2] > 0.05 * h[0] and h[1] < 1e-3 * h[0]
