"""The evaluation report of a trained model.

`evaluate(model, params, dataset, workdir, ...)` writes into workdir:

  report.json       every metric for val1 (and val2), the model, its
                    parameter count, training time and epochs, the levels
                    it was trained and validated at, the streaming speed
                    (and how it was measured) and, for effects with a known
                    response, the model's response error against the true
                    one (small-signal impulse and full-scale noise); for a
                    recording of emu's test signal, the device beside the
                    model ("device_vs_model": `emu.report.device_compare`)
  audio/            input, target, output and difference WAVs per set
  plots/            the thesis's figures (when matplotlib is installed)
"""

import os

from absl import logging
import jax
import numpy as np
import soundfile as sf

from emu import data as data_lib
from emu import effects
from emu import metrics
from emu.report import device_compare
from emu.report import plots
from emu import stream
from emu.report import speed
from emu import workdir as workdir_lib
from emu.models import ensemble as ensemble_lib

RESPONSE_POINTS = 256
IMPULSE_LENGTH = 1 << 16
IMPULSE_AMPLITUDE = 0.1
NOISE_PEAK = 0.5
# What each response error measures (report.json's "response_signals").
RESPONSE_SIGNALS = {
    "response_error": (
        f"small signal: an impulse of amplitude {IMPULSE_AMPLITUDE:g} "
        "(-20 dBFS) into the model at rest, less its output on silence "
        "(idle_output), divided by the amplitude"),
    "noise_response_error": (
        f"full-scale noise: 12 s of uniform white noise of peak "
        f"{NOISE_PEAK:g} (-6 dBFS peak, -10.8 dBFS RMS), H = Pxy / Pxx"),
}
# Short-term levels: RMS over windows this long (s); windows below
# SILENCE_DBFS are silence, not a level the model was checked at. ESR
# weighs a window by its energy: the quietest windows holding ESR_FLOOR of
# a signal's energy count for almost nothing in it.
LEVEL_WINDOW_S = 0.1
SILENCE_DBFS = -100.0
ESR_FLOOR = 0.01
# Streaming runs a slow model repeats no longer than this (s per block size).
# report.json's streaming_method when no block size was asked for.


def parameter_count(params) -> int:
  return int(sum(np.size(p) for p in jax.tree.leaves(params)))


def predict(model, params, signal, method=None) -> np.ndarray:
  """Whole-signal inference from the initial state.

  signal: [time] or [time, channels] (audio + knobs) -> [time]; with
  method='member_outputs' (an Ensemble) -> [members, time].
  """
  return stream.make_predict(model, method)(params, signal)


def rest_output(model, params) -> np.ndarray:
  """The model's output for IMPULSE_LENGTH samples of silence from its
  initial state ([time])."""
  return predict(model, params, np.zeros(IMPULSE_LENGTH, np.float32))


def idle_output(model, params, rest=None) -> dict:
  """What the model outputs on silence from its initial state, over
  IMPULSE_LENGTH samples: {"peak_dbfs", "final_dbfs" (the mean |output|
  of the last tenth: a settled offset)}. 0 (-inf dBFS) for a linear
  model; a recurrent net's state settles from zero to its own rest point,
  a start-up transient and a DC offset that no loss on audio saw.
  rest: `rest_output`, if already computed."""
  y = np.abs(rest_output(model, params) if rest is None else rest)
  return {"peak_dbfs": _dbfs(float(np.max(y))),
          "final_dbfs": _dbfs(float(np.mean(y[-IMPULSE_LENGTH // 10:])))}


def model_response(model, params, freqs_hz, sample_rate,
                   amplitude: float = IMPULSE_AMPLITUDE,
                   rest=None) -> np.ndarray:
  """The model's complex frequency response from its impulse response.

  The impulse response is the output for an impulse less the output for
  silence (`idle_output`), over the amplitude: the small-signal
  (incremental) response, not the start-up transient or offset a
  nonlinear model adds whatever the input, which would otherwise grow as
  1 / amplitude in it. Exact for a linear time-invariant model (whose
  output on silence is 0); for a nonlinear one it is the small-signal
  response at this amplitude only (see `model_noise_response` for the
  response to full-scale noise). rest: `rest_output`, if already computed.
  """
  impulse = np.zeros(IMPULSE_LENGTH, np.float32)
  impulse[0] = amplitude
  if rest is None:
    rest = rest_output(model, params)
  h = (predict(model, params, impulse) - rest) / amplitude
  spectrum = np.fft.rfft(h.astype(np.float64))
  grid = np.fft.rfftfreq(IMPULSE_LENGTH, 1.0 / sample_rate)
  return (np.interp(freqs_hz, grid, spectrum.real) +
          1j * np.interp(freqs_hz, grid, spectrum.imag))


def model_noise_response(model, params, freqs_hz, sample_rate,
                         seconds: float = 12.0, seed: int = 0) -> np.ndarray:
  """The response to white noise (uniform, peak 0.5), Welch H = Pxy / Pxx."""
  x = np.random.default_rng(seed).uniform(
      -NOISE_PEAK, NOISE_PEAK, int(seconds * sample_rate)).astype(np.float32)
  grid, h = metrics.frequency_response(x, predict(model, params, x),
                                       sample_rate)
  return np.interp(freqs_hz, grid, h.real) + 1j * np.interp(
      freqs_hz, grid, h.imag)


def known_response(effect_name, sample_rate, freqs_hz):
  """The true response of a named biquad effect, or None if unknown."""
  try:
    b, a = effects.analytic_coefficients(effect_name, sample_rate)
  except (ValueError, KeyError):
    return None
  return np.asarray(effects.frequency_response(b, a, freqs_hz, sample_rate))


def per_setting_metrics(output, pair, knobs) -> list:
  """ESR and accuracy per knob setting of a knob dataset's pair.

  knobs: the effect's `emu.effects.Knob`s, to give values in their units.
  Returns a list of {'knobs': {name: value}, 'normalised': [...], 'esr',
  'acc12', 'acc16', 'seconds'} sorted by setting.
  """
  rows = []
  for values, index in data_lib.group_by_knobs(pair):
    target = pair.target[index]
    rows.append({
        "knobs": {k.name: float(k.denormalise(v))
                  for k, v in zip(knobs, values)},
        "normalised": [float(v) for v in values],
        "esr": metrics.esr(output[index], target),
        "acc12": metrics.accuracy_bits(output[index], target, bits=12),
        "acc16": metrics.accuracy_bits(output[index], target, bits=15),
        "samples": int(len(index)),
    })
  return rows


def _setting_label(row):
  return ", ".join(f"{name}={value:.4g}" for name, value in
                   row["knobs"].items())


def _write_wav(path, audio, sample_rate):
  # float WAVs: the difference signal may be far below one 16-bit step.
  sf.write(path, np.asarray(audio, np.float32), sample_rate, subtype="FLOAT")


def _evaluate_set(model, params, name, pair, sample_rate, audio_dir,
                  plot_dir, knobs=()) -> dict:
  """One validation set's metrics; writes its WAVs (and plots to plot_dir
  unless it is None). knobs: the effect's Knobs, for per-setting rows."""
  # Metrics, audio and plots are of the scored part; the model hears the
  # warm-up (pair.context) first.
  played, pair = pair, pair.scored()
  output = played.trim(predict(model, params, played.input))
  audio_in = pair.input if pair.input.ndim == 1 else pair.input[:, 0]
  result = metrics.all_metrics(output, pair.target, x=audio_in,
                               sample_rate=sample_rate)
  if isinstance(model, ensemble_lib.Ensemble):
    members = played.trim(predict(model, params, played.input,
                                  method="member_outputs"))
    result["members_esr"] = [metrics.esr(y, pair.target) for y in members]
  result["seconds"] = len(pair.input) / sample_rate
  for kind, audio in (("input", audio_in), ("target", pair.target),
                      ("output", output),
                      ("difference", pair.target - output)):
    _write_wav(os.path.join(audio_dir, f"{name}_{kind}.wav"), audio,
               sample_rate)
  if plot_dir:
    plots.waveforms(pair.target, output,
                    os.path.join(plot_dir, f"{name}_waveforms.png"),
                    sample_rate, title=f"{name}: target, output, difference")
    plots.spectra(pair.target, output,
                  os.path.join(plot_dir, f"{name}_spectra.png"), sample_rate)
  if knobs:
    result["per_setting"] = per_setting_metrics(output, pair, knobs)
    for row in result["per_setting"]:
      logging.info("%s at %s: ESR %.3e, acc12 %.4f", name,
                   _setting_label(row), row["esr"], row["acc12"])
    if plot_dir:
      plots.comparison_bars(
          [_setting_label(r) for r in result["per_setting"]],
          [r["esr"] for r in result["per_setting"]],
          os.path.join(plot_dir, f"{name}_esr_per_setting.png"),
          ylabel=f"{name} ESR (settings not trained on)")
  logging.info("%s: ESR %.3e, MSE %.3e, acc12 %.4f, acc16 %.4f, LSD %.2f "
               "dB; NAM's verdict: %s", name, result["esr"], result["mse"],
               result["acc12"], result["acc16"], result["lsd_db"],
               result["nam_verdict"])
  return result


def _responses(model, params, sample_rate, channels, cfg, rest=None):
  """(freqs, {label: complex response}, report entries) of the model and,
  for a named biquad effect, of the true answer with the model's error.

  Knob models have a response per knob setting (see the per-setting rows):
  none here.
  """
  freqs = np.geomspace(20.0, min(20000.0, 0.49 * sample_rate),
                       RESPONSE_POINTS)
  if channels != 1:
    return freqs, {}, {}
  h_model = model_response(model, params, freqs, sample_rate, rest=rest)
  h_noise = model_noise_response(model, params, freqs, sample_rate)
  responses = {"model (impulse)": h_model, "model (noise)": h_noise}
  h_true = known_response(cfg.effect, sample_rate, freqs) if (
      cfg is not None and cfg.dataset != "files") else None
  if h_true is None:
    return freqs, responses, {}
  responses["true"] = h_true
  errors = {
      "response_error": metrics.analytic_response_error(h_model, h_true),
      "noise_response_error": metrics.analytic_response_error(h_noise,
                                                              h_true)}
  for key, error in errors.items():
    logging.info("%s vs the true %s: max %.3f dB, mean %.3f dB", key,
                 cfg.effect, error["max_db"], error["mean_db"])
  return freqs, responses, errors


def _dbfs(value: float) -> float:
  """Amplitude in dBFS; -inf for silence (json_safe writes it '-inf')."""
  return 20.0 * float(np.log10(value)) if value > 0 else -np.inf


def signal_levels(audio, sample_rate) -> dict:
  """Peak, RMS and short-term RMS range (dBFS) of one signal.

  The short-term range is the 5th and 95th percentile of the RMS over
  `LEVEL_WINDOW_S` windows, silent windows (below `SILENCE_DBFS`) left out:
  the quiet and loud passages the signal holds. esr_floor_dbfs: the level
  below which the quietest windows hold `ESR_FLOOR` of the energy, so
  that ESR on this signal checks little below it.
  """
  x = np.asarray(audio, np.float64).reshape(-1)
  n = max(1, int(LEVEL_WINDOW_S * sample_rate))
  windows = x[:len(x) // n * n].reshape(-1, n)
  rms = np.sort(np.sqrt(np.mean(windows ** 2, axis=1)))
  rms = rms[rms > 10 ** (SILENCE_DBFS / 20)]
  low = high = floor = -np.inf
  if rms.size:
    low, high = np.percentile(20.0 * np.log10(rms), (5, 95))
    energy = np.cumsum(rms ** 2)
    floor = _dbfs(rms[np.searchsorted(energy, ESR_FLOOR * energy[-1])])
  return {"peak_dbfs": _dbfs(float(np.max(np.abs(x), initial=0.0))),
          "rms_dbfs": _dbfs(float(np.sqrt(np.mean(x ** 2)))) if x.size
                      else -np.inf,
          "short_rms_p5_dbfs": float(low), "short_rms_p95_dbfs": float(high),
          "esr_floor_dbfs": float(floor)}


def level_ranges(dataset, cfg=None) -> dict:
  """The levels a model was trained and validated at (its input audio).

  Returns:
    {"train", "val1"(, "val2"): `signal_levels` of each input's audio;
    "train_gain_db": the training segments' random gain, +- this many dB
    (seq2seq; 0: none), "train_gain_range_db": its [lowest, highest] dB
    (gain_low_db may reach further down); "trained_rms_dbfs": the train
    short-term range widened by that gain; "validated_rms_dbfs": the short-term range the
    validation sets span; "validated_esr_floor_dbfs": the lowest of their
    ESR floors; "validated_peak_dbfs": their loudest peak}. A passage
    quieter than validated_rms_dbfs[0] was never checked, and ESR saw
    little of one below validated_esr_floor_dbfs.
  """
  def audio(pair):
    pair = pair.scored()
    return pair.input if pair.input.ndim == 1 else pair.input[:, 0]

  rate = dataset.sample_rate
  out = {name: signal_levels(audio(pair), rate)
         for name, pair in (("train", dataset.train), ("val1", dataset.val1),
                            ("val2", dataset.val2)) if pair is not None}
  seq2seq = cfg is not None and cfg.mode == "seq2seq"
  low_db, high_db = ((float(v) for v in cfg.gain_range_db) if seq2seq
                      else (0.0, 0.0))
  out["train_gain_db"] = float(cfg.gain_db) if seq2seq else 0.0
  out["train_gain_range_db"] = [low_db, high_db]
  out["trained_rms_dbfs"] = [out["train"]["short_rms_p5_dbfs"] + low_db,
                             out["train"]["short_rms_p95_dbfs"] + high_db]
  sets = [out[s] for s in ("val1", "val2") if s in out]
  out["validated_rms_dbfs"] = [min(s["short_rms_p5_dbfs"] for s in sets),
                               max(s["short_rms_p95_dbfs"] for s in sets)]
  out["validated_esr_floor_dbfs"] = min(s["esr_floor_dbfs"] for s in sets)
  out["validated_peak_dbfs"] = max(s["peak_dbfs"] for s in sets)
  return out


def _log_levels(levels):
  low, high = levels["validated_rms_dbfs"]
  logging.info("validated at short-term RMS %.1f to %.1f dBFS (ESR sees "
               "little below %.1f), peaks up to %.1f dBFS; trained at %.1f to "
               "%.1f dBFS (gain %g to %+g dB)", low, high,
               levels["validated_esr_floor_dbfs"],
               levels["validated_peak_dbfs"], *levels["trained_rms_dbfs"],
               *levels["train_gain_range_db"])


def evaluate(model, params, dataset, workdir, cfg=None, history=None,
             train_info=None, stream_blocks=(1, 64, 512)) -> dict:
  """Computes every metric, writes report.json, WAVs and plots.

  Args:
    model, params: the trained model.
    dataset: emu.data.Dataset (val1 and optional val2 are evaluated).
    workdir: output folder.
    cfg: the run's Config (recorded; its effect selects the known answer).
    history: per-epoch rows (for the training curves).
    train_info: extra facts to record (training time, epochs, ...).
    stream_blocks: block sizes whose streaming speed is measured (in a
      child process as a real-time host runs when workdir holds the run:
      `emu.report.speed.streaming_speed`).

  Returns:
    The report as a dict (also in workdir/report.json).
  """
  audio_dir, plot_dir = _output_dirs(workdir)
  report = {
      "dataset": dataset.name,
      "sample_rate": dataset.sample_rate,
      "model": cfg.model if cfg else type(model).__name__,
      "model_kwargs": dict(cfg.model_kwargs) if cfg else {},
      "parameters": parameter_count(params),
      **(train_info or {}),
  }
  knobs = _knobs(dataset, cfg)
  for name, pair in (("val1", dataset.val1), ("val2", dataset.val2)):
    if pair is not None:
      report[name] = _evaluate_set(model, params, name, pair,
                                   dataset.sample_rate, audio_dir, plot_dir,
                                   knobs)
  channels = 1 if dataset.val1.input.ndim == 1 else (
      dataset.val1.input.shape[-1])
  report.update(_behaviour(model, params, dataset.sample_rate, channels, cfg,
                           plot_dir))
  report.update(_device_vs_model(model, params, dataset, cfg, plot_dir))
  if plot_dir and history:
    plots.training_curves(history,
                          os.path.join(plot_dir, "training_curves.png"))
  report["levels"] = level_ranges(dataset, cfg)
  _log_levels(report["levels"])
  report.update(_streaming(model, params, workdir, stream_blocks,
                           dataset.sample_rate, channels))
  # sort_keys, which workdir_lib.write_json does not offer: report.json's
  # keys stay in the order every earlier run wrote them.
  workdir_lib.write_json(workdir, workdir_lib.REPORT,
                         metrics.json_safe(report), indent=2, sort_keys=True)
  return report


def _output_dirs(workdir):
  """(audio folder, plot folder or None without matplotlib), made."""
  audio_dir = workdir_lib.path(workdir, workdir_lib.AUDIO)
  os.makedirs(audio_dir, exist_ok=True)
  if not plots.available():
    logging.info("matplotlib is not installed: no plots "
                 "(pip install 'emu[plots]')")
    return audio_dir, None
  plot_dir = workdir_lib.path(workdir, workdir_lib.PLOTS)
  os.makedirs(plot_dir, exist_ok=True)
  return audio_dir, plot_dir


def _knobs(dataset, cfg) -> tuple:
  """The knobs the per-setting metrics name: a knob effect's in their
  units; recordings' (a manifest's), known by name only, normalised."""
  if not getattr(dataset, "knobs", ()) or cfg is None:
    return ()
  if cfg.dataset == "knobs":
    return effects.knob_effect(cfg.effect).knobs
  return tuple(effects.Knob(name, 0.0, 1.0) for name in dataset.knobs)


def _behaviour(model, params, sample_rate, channels, cfg, plot_dir) -> dict:
  """The model's responses against the known answer and its output on
  silence (a model without knobs), with the frequency response plot."""
  out = {}
  rest = rest_output(model, params) if channels == 1 else None
  freqs, responses, errors = _responses(model, params, sample_rate,
                                        channels, cfg, rest)
  out.update(errors)
  if errors:
    out["response_signals"] = dict(RESPONSE_SIGNALS)
  if rest is not None:
    out["idle_output"] = idle_output(model, params, rest)
    logging.info("output on silence: peak %.1f dBFS, settled %.1f dBFS",
                 out["idle_output"]["peak_dbfs"],
                 out["idle_output"]["final_dbfs"])
  if plot_dir and responses:
    plots.frequency_response(freqs, responses,
                             os.path.join(plot_dir, "frequency_response.png"))
  return out


def _device_vs_model(model, params, dataset, cfg, plot_dir) -> dict:
  """report.json's "device_vs_model" of a run on emu's test signal: the
  recorded device beside the model's output on the whole input, from
  rest (`emu.report.device_compare`), and its figures; for another
  recording of dataset 'files', {"skipped": why}; {} for other data."""
  found = device_compare.recording(dataset, cfg)
  if found is None:
    return {}
  if isinstance(found, str):
    logging.info("%s", found)
    return {device_compare.KEY: {"skipped": found}}
  x, device, layout, val1_start = found
  result = device_compare.compare(x, device, predict(model, params, x),
                                  layout, dataset.sample_rate, val1_start)
  if plot_dir:
    device_compare.write_plots(result, plot_dir)
  logging.info("device vs model: %s", device_compare.summary(result))
  return {device_compare.KEY: result}


def _streaming(model, params, workdir, block_sizes, sample_rate,
               channels) -> dict:
  """report.json's "streaming" (the list of rows, what readers take) and
  "streaming_method" (how they were measured), logged."""
  measured = speed.streaming_speed(model, params, workdir, block_sizes,
                                   sample_rate, channels)
  rows = measured.pop("rows")
  for row in rows:
    logging.info("streaming, %d-sample blocks: %.1fx real time, %.2f us per "
                 "sample (%s)", row["block_size"], row["rtf"],
                 row["us_per_sample"], measured["method"].split(":")[0])
  return {"streaming": rows, "streaming_method": measured}
