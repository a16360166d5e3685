"""Distillation: NAM's WaveNet trained on what a trained model plays.

A model no plugin format holds (the grey-box `wiener`, with its
compressor stage or residual WaveNet, `nss`, a GRU) reaches NAM's plugin
as a student: NAM's standard WaveNet (`emu.models.nam_wavenet`, 13,801
parameters) trained by emu's own `emu.train.fit` on audio the trained
model, the teacher, labels; far more audio than the recording holds:

  material  the recording's training part, then emu's test signal
            (`emu.capture.testsignal`, TEST_SECONDS) at each of LEVELS_DB
            relative to the recording's input peak, then noise bursts
            (white to brown, BURST_DB relative to that peak), GAP_SECONDS
            of silence between the pieces
  labels    the teacher's output on the whole material as one stream
            (`emu.apply.play`, as `python -m emu.apply` plays a file), so
            its state carries across the pieces as a device's would
  student   trained on (material, labels) for `seconds` of training (its
            time budget) with the training of the audition family
            experiments/families/nam_wavenet.flags (STUDENT), scored on the
            recording's val1 against the device's own target: the held-out
            audio and score the teacher was chosen by, which the student
            never hears; the best val1 checkpoint is the student

The student's folder is a run folder of its own, so a distillation
stopped by Ctrl-C resumes from its last checkpoint.
"""

import math

from absl import logging
import numpy as np
import scipy.signal

from emu import apply as apply_lib
from emu import data as data_lib
from emu.capture import testsignal
from emu.models import nam_wavenet
from emu import train

# Levels (dB) of the test signal's copies, against the recording's peak.
LEVELS_DB = (-12.0, -6.0, 0.0, 6.0)
# The test signal's length: half the training part, within these (s).
TEST_SECONDS = (testsignal.MIN_SECONDS, 30.0)
# Noise bursts: as long in all as one test signal copy; each burst's
# length (s), level (dB against the recording's peak) and the silence
# after it (s).
BURST_SECONDS = (0.05, 0.5)
BURST_DB = (-40.0, 6.0)
BURST_GAP_SECONDS = (0.02, 0.2)
GAP_SECONDS = 0.25
# Samples per block of the teacher's stream: bounded memory at any length.
BLOCK = 65536
# The student's layout (a .nam "config", JSON) and training: the audition
# family experiments/families/nam_wavenet.flags (NAM's learning rate 4e-3,
# warm-up the receptive field, 4,093 samples).
STUDENT_CONFIG = nam_wavenet.STANDARD
STUDENT = dict(
    model="nam_wavenet", ensemble=1, mode="seq2seq", segment_length=12288,
    warmup=4096, batch_size=8, tbptt=0, loss={"esr": 1.0},
    learning_rate=4e-3, lr_decay=0.99, grad_clip=1.0, gain_db=0.0,
    gain_low_db=0.0, level_balance=False, max_epochs=100000, patience=100,
    min_delta=0.0, audition="", stream_blocks=(), plugin_seconds=0.0)


def settings() -> dict:
  """What the student is, as JSON values: its layout and training (a
  distillation of other settings is another one)."""
  return {"config": STUDENT_CONFIG, **{
      k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(
          v, tuple) else v) for k, v in STUDENT.items()}}


def student_config(cfg, seconds: float):
  """The student's Config: the run's (its data settings, seed and
  checkpointing) with STUDENT's model and training, `seconds` of it."""
  if not seconds > 0:
    raise ValueError(f"a distillation needs seconds > 0 of training (--"
                     f"plugin_seconds), got {seconds}")
  return cfg.replace(model_kwargs={"config": STUDENT_CONFIG},
                     time_budget_s=float(seconds), **STUDENT)


def _bursts(seconds, sample_rate, peak, rng) -> np.ndarray:
  """`seconds` of noise bursts: each white, pink-ish or brown-ish (a
  one-pole low-pass of white noise), its level uniform in BURST_DB dB
  against `peak`, faded in and out, silence after it."""
  out, total = [], 0
  while total < seconds * sample_rate:
    n = max(int(rng.uniform(*BURST_SECONDS) * sample_rate), 16)
    pole = rng.choice([0.0, 0.9, 0.99])
    noise = scipy.signal.lfilter([1.0 - pole], [1.0, -pole],
                                 rng.standard_normal(n))
    level = peak * 10.0 ** (rng.uniform(*BURST_DB) / 20.0)
    burst = testsignal.fade(noise / np.max(np.abs(noise)) * level,
                            sample_rate)
    gap = np.zeros(int(rng.uniform(*BURST_GAP_SECONDS) * sample_rate))
    out += [burst, gap]
    total += n + len(gap)
  return np.concatenate(out)


def material(train_input, sample_rate: int, seed: int = 0):
  """(audio float32 [time], [(piece, start, end)] in samples): what the
  teacher labels for the student (the module's docstring)."""
  x = np.asarray(train_input, np.float32)
  if x.ndim != 1:
    raise ValueError("distillation takes a model of audio alone ([time] "
                     f"input); this one reads {x.shape[-1]} channels "
                     "(knobs): export a setting with --knobs instead")
  peak = float(np.max(np.abs(x), initial=0.0))
  if not peak > 0:
    raise ValueError("the recording's training input is silent: nothing "
                     "to set the test signal's level by")
  seconds = min(max(len(x) / sample_rate / 2, TEST_SECONDS[0]),
                TEST_SECONDS[1])
  signal, _ = testsignal.make(sample_rate, seconds, seed=seed)
  signal = signal / np.max(np.abs(signal)) * peak
  pieces = [("recording", x)] + [
      (f"test signal {db:+g} dB", signal * 10.0 ** (db / 20.0))
      for db in LEVELS_DB] + [
          ("noise bursts", _bursts(seconds, sample_rate, peak,
                                   np.random.default_rng(seed)))]
  gap = np.zeros(int(GAP_SECONDS * sample_rate), np.float32)
  audio, where, at = [], [], 0
  for name, piece in pieces:
    audio += [np.asarray(piece, np.float32), gap]
    where.append((name, at, at + len(piece)))
    at += len(piece) + len(gap)
  return np.concatenate(audio), where


def labelled(model, params, dataset, seed: int = 0) -> data_lib.Dataset:
  """The student's Dataset: train the material and the teacher's output on
  it, val1 the recording's own (input, the device's target)."""
  x, pieces = material(dataset.train.input, dataset.sample_rate, seed)
  logging.info(
      "plugin: the model labels %.0f s of audio for its student (%s)",
      len(x) / dataset.sample_rate, ", ".join(
          f"{name} {(end - start) / dataset.sample_rate:.1f} s"
          for name, start, end in pieces))
  y = apply_lib.play(model, params, x, block_size=BLOCK)
  if not np.all(np.isfinite(y)):
    raise ValueError("the model's output on the distillation material is "
                     "not finite (NaN or inf): no student can learn it")
  return data_lib.Dataset(f"distilled_{dataset.name}", dataset.sample_rate,
                          data_lib.Pair(x, y.astype(np.float32)),
                          dataset.val1)


def distill(model, params, dataset, cfg, folder: str, seconds: float):
  """The student of (model, params) trained `seconds` in run folder
  `folder` (resumed if it holds the same student), as `emu.train.fit`
  returns it (FitResult: its best params by val1 ESR)."""
  student = student_config(cfg, seconds)
  labels = labelled(model, params, dataset, cfg.seed)
  logging.info("plugin: distilling %s into a NAM WaveNet for %g s of "
               "training in %s", cfg.model, seconds, folder)
  result = train.fit(student, folder, dataset=labels)
  best = min((r["val1_esr"] for r in result.history), default=math.nan)
  logging.info("plugin: the student's best val1 ESR %.3e after %d epochs, "
               "%.0f s", best, result.epochs, result.train_seconds)
  return result
