"""Training data: the Dataset a Config names and the batches of one epoch."""

import dataclasses
import glob
import os

import jax
import numpy as np

from emu import config as config_lib
from emu import data as data_lib
from emu import workdir as workdir_lib


def build_dataset(cfg: config_lib.Config) -> data_lib.Dataset:
  """The Dataset a config names (synthetic recipe or the user's files)."""
  if cfg.dataset == "files" and cfg.train_manifest:
    dataset = data_lib.manifest_dataset(
        cfg.train_manifest, val2_files=cfg.val2_files,
        compensate_latency=cfg.compensate_latency,
        max_latency_ms=cfg.max_latency_ms,
        channel=None if cfg.channel < 0 else cfg.channel)
  elif cfg.dataset == "files" and cfg.layout == "nam":
    dataset = data_lib.nam_dataset(cfg.train_input, cfg.train_target,
                                   val2_files=cfg.val2_files)
  elif cfg.dataset == "files":
    dataset = data_lib.files_dataset(
        cfg.train_input, cfg.train_target, val2_files=cfg.val2_files,
        compensate_latency=cfg.compensate_latency,
        max_latency_ms=cfg.max_latency_ms,
        channel=None if cfg.channel < 0 else cfg.channel)
  elif cfg.dataset == "knobs":
    dataset = data_lib.knob_dataset(
        jax.random.PRNGKey(cfg.seed), effect=cfg.effect,
        sample_rate=cfg.sample_rate, val1_seconds=cfg.val1_seconds,
        val2=list(cfg.val2_files) or None)
  else:
    size = "mini" if cfg.dataset == "thesis_mini" else "big"
    dataset = data_lib.thesis_dataset(
        jax.random.PRNGKey(cfg.seed), size=size, effect=cfg.effect,
        sample_rate=cfg.sample_rate, val1_seconds=cfg.val1_seconds,
        val2=list(cfg.val2_files) or None)
  if cfg.train_seconds:
    n = int(cfg.train_seconds * dataset.sample_rate)
    train = data_lib.Pair(dataset.train.input[:n], dataset.train.target[:n])
    dataset = dataclasses.replace(dataset, train=train)
  return dataset


def input_files(cfg: config_lib.Config) -> list:
  """The files `build_dataset(cfg)` reads: the pair or the manifest and
  each recording it lists, and val2's voice clips (a glob expanded)."""
  paths = [cfg.train_input, cfg.train_target] if cfg.dataset == "files" else []
  if cfg.dataset == "files" and cfg.train_manifest:
    manifest = data_lib.read_manifest(cfg.train_manifest)
    paths = [cfg.train_manifest] + [
        path for part in ("recordings", "validation")
        for entry in manifest[part] for path in entry[:2]]
  for pattern in cfg.val2_files:
    paths += (sorted(glob.glob(pattern)) if glob.has_magic(pattern)
              else [pattern])
  return paths


def input_fingerprints(cfg: config_lib.Config) -> dict:
  """{path: {'size': bytes, 'sha256': hex}} of each of cfg's `input_files`
  there is (a missing one is build_dataset's error to report): what a run
  folder records (`emu.workdir.INPUTS`) to tell a changed file."""
  out = {}
  for path in input_files(cfg):
    if os.path.isfile(path) and path not in out:
      out[path] = {"size": os.path.getsize(path),
                   "sha256": workdir_lib.file_sha256(path)}
  return out


def epoch_batches(cfg: config_lib.Config, pair: data_lib.Pair, key):
  """The batches of one epoch, in an order drawn from `key`.

  seq2seq: every full segment of the training signal after a random offset
  (so segment borders move between epochs) but silent ones (SILENT_SEGMENT),
  shuffled; window mode:
  `windows_per_epoch` random target positions. Incomplete batches are
  dropped so every step has the same shape (no re-trace).
  """
  offset_key, order_key = jax.random.split(key)
  n = len(pair.input)
  if cfg.mode == "window":
    positions = np.asarray(jax.random.randint(
        order_key, (cfg.windows_per_epoch,), 0, n))
    for i in range(len(positions) // cfg.batch_size):
      idx = positions[i * cfg.batch_size:(i + 1) * cfg.batch_size]
      x, t = data_lib.windows(pair, cfg.window, idx)
      yield np.asarray(x), np.asarray(t)
    return
  length = cfg.segment_length
  if n < length:
    raise ValueError(
        f"the training signal ({n} samples) is shorter than one segment "
        f"({length}); lower segment_length or use more audio")
  offset = int(jax.random.randint(offset_key, (), 0, n % length + 1))
  count = (n - offset) // length
  order = np.asarray(jax.random.permutation(order_key, count))
  x_all = pair.input[offset:offset + count * length].reshape(
      count, length, -1)
  t_all = pair.target[offset:offset + count * length].reshape(count, length, 1)
  order = order[_audible(t_all[:, cfg.warmup:, 0])[order]]
  low_db, high_db = cfg.gain_range_db
  gains = np.ones(count, np.float32)
  if low_db or high_db:
    # A linear effect of g*x is g*y: each segment at a random level (uniform
    # in dB) shows the model louder and quieter passages than the recipe
    # holds.
    gains = np.asarray(10.0 ** (jax.random.uniform(
        jax.random.fold_in(key, 1), (count,), minval=low_db,
        maxval=high_db) / 20.0), np.float32)
  for i in range(len(order) // cfg.batch_size):
    idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
    if not (low_db or high_db):
      yield x_all[idx], t_all[idx]
      continue
    g = gains[idx][:, None, None]
    x = x_all[idx].copy()
    x[..., :1] *= g  # the audio; knob channels keep their values
    yield x, t_all[idx] * g


# A segment whose scored target is this far below the recording's mean
# segment energy (-60 dB) is silence: left out of training. A batch of
# silences would make the ESR's denominator vanish (one such batch, a pause
# in a recording, took an ESR loss to 3e8 and the run to divergence), and
# the output on silence is learned from the segments around a pause.
SILENT_SEGMENT = 1e-6


def _audible(scored_targets) -> np.ndarray:
  """[count] bool: segments not silent next to the mean (SILENT_SEGMENT).
  Non-finite ones stay (the trainer reports them), and all of them do if
  none is audible."""
  energy = np.mean(np.square(scored_targets, dtype=np.float64), axis=1)
  keep = ~(energy <= SILENT_SEGMENT * np.mean(energy))
  return keep if keep.any() else np.ones_like(keep)


def steps_per_epoch(cfg: config_lib.Config, n_train: int) -> int:
  if cfg.mode == "window":
    return cfg.windows_per_epoch // cfg.batch_size
  return (n_train // cfg.segment_length) // cfg.batch_size
