"""Trains Neural Amp Modeler on one recording, then plays held-out audio.

Run by the NAM virtual environment's python, never by emu's (emu does not
depend on NAM, and this file imports nothing of emu):

  /tmp/namvenv/bin/python benchmarks/nam_train.py --input=input.wav \
    --target=recorded.wav --outdir=DIR --preset=lstm_standard \
    --budget_s=600 --threads=2 --val_start=N --eval=eval.npz

It uses NAM 0.13's own pieces the way `nam.train.full.main` does (its
LightningModule from a model config, its datasets from a data config, a
PyTorch Lightning Trainer), with NAM's presets and v0.12 training recipe:
Adam, lr 0.01 and decay 0.995 per epoch for the LSTM (0.004 and 0.993 for
the WaveNet), batches of 16 x 8192 samples, MSE (+ pre-emphasised MSE for
the LSTM, with 4096 samples of burn-in masked) + pre-emphasised
multi-resolution STFT at 2e-4. Training stops at the wall-clock budget
(Trainer(max_time=...)); the checkpoint with the lowest validation loss
is exported as DIR/model.nam, loaded back with `nam.models.init_from_nam`
and run on every input of --eval (fresh state each). Writes
DIR/predictions.npz (y/<name> per x/<name>) and DIR/result.json
(parameters, epochs, training seconds, validation ESR per epoch, offline
real-time factor on one thread).

With --play_file=FILE.nam instead of a recording it trains nothing: NAM's
package plays FILE (a capture's model.nam, written by emu) on --eval, into
the same DIR/predictions.npz and DIR/result.json.

argparse, not absl: the NAM environment need not have absl.
"""

import argparse
import json
import os
import time

import numpy as np

_WAVENET = {  # name -> (channels, head sizes): NAM's four WaveNet presets.
    "standard": ((16, 8), (8, 1)),
    "lite": ((12, 6), (6, 1)),
    "feather": ((8, 4), (4, 1)),
    "nano": ((4, 2), (2, 1)),
}
_LSTM = {  # name -> (layers, hidden size): NAM's four LSTM presets.
    "standard": (1, 24), "lite": (2, 8), "feather": (1, 16), "nano": (1, 12),
}
PRESETS = tuple(f"lstm_{n}" for n in _LSTM) + tuple(
    f"wavenet_{n}" for n in _WAVENET)
_MRSTFT = {"pre_emph_mrstft_weight": 2e-4, "pre_emph_mrstft_coef": 0.85}
BATCH_SIZE = 16
NY = 8192


def _wavenet_net(name):
  """NAM's WaveNet preset as a 0.13 config (1x1 heads: the old head_size)."""
  channels, heads = _WAVENET[name]
  standard = name == "standard"
  first = list(2 ** i for i in range(10 if standard else 7))
  second = first if standard else [128, 256, 512] + [
      2 ** i for i in range(10)]

  def layer(input_size, ch, head, dilations, last):
    return {"input_size": input_size, "condition_size": 1, "channels": ch,
            "kernel_size": 3, "dilations": dilations, "activation": "Tanh",
            "gated": False,
            "head": {"out_channels": head, "kernel_size": 1, "bias": last}}

  return {"name": "WaveNet", "config": {
      "layers_configs": [
          layer(1, channels[0], heads[0], first, False),
          layer(channels[0], channels[1], heads[1], second, True)],
      "head_scale": 0.02}}


def model_config(preset):
  """NAM's model config (net, loss, optimizer, scheduler) for a preset."""
  family, name = preset.split("_", 1)
  if family == "lstm":
    layers, hidden = _LSTM[name]
    return {
        "net": {"name": "LSTM", "config": {
            "num_layers": layers, "hidden_size": hidden,
            "train_burn_in": 4096, "train_truncate": 512}},
        "loss": {"val_loss": "mse", "mask_first": 4096,
                 "pre_emph_weight": 1.0, "pre_emph_coef": 0.85, **_MRSTFT},
        "optimizer": {"lr": 0.01},
        "lr_scheduler": {"class": "ExponentialLR",
                         "kwargs": {"gamma": 0.995}}}
  return {
      "net": _wavenet_net(name),
      "loss": {"val_loss": "esr", **_MRSTFT},
      "optimizer": {"lr": 0.004},
      "lr_scheduler": {"class": "ExponentialLR", "kwargs": {"gamma": 0.993}}}


def data_config(args):
  """Train on [0, val_start), validate on [val_start, end): emu's split."""
  return {
      "train": {"ny": NY, "stop_samples": args.val_start},
      "validation": {"ny": None, "start_samples": args.val_start,
                     "require_input_pre_silence": None},
      "common": {"x_path": args.input, "y_path": args.target,
                 "delay": args.delay}}


def _history_callback(pl, start):
  class History(pl.Callback):
    """Validation ESR and elapsed seconds after every validation pass."""

    def __init__(self):
      self.rows = []

    def on_validation_epoch_end(self, trainer, pl_module):
      if trainer.sanity_checking:
        return
      esr = trainer.callback_metrics.get("ESR")
      self.rows.append({"epoch": int(trainer.current_epoch),
                        "steps": int(trainer.global_step),
                        "elapsed_s": time.perf_counter() - start[0],
                        "val_esr": None if esr is None else float(esr)})

    def on_train_start(self, trainer, pl_module):
      start[0] = time.perf_counter()

  return History()


def train(args):
  """Fits the preset; returns (best LightningModule's net, info dict)."""
  import pytorch_lightning as pl  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from nam import data as nam_data  # pylint: disable=g-import-not-at-top
  from nam.train import lightning_module  # pylint: disable=g-import-not-at-top
  torch.manual_seed(args.seed)
  torch.set_num_threads(args.threads)
  module = lightning_module.LightningModule.init_from_config(
      model_config(args.preset))
  dcfg = data_config(args)
  dcfg["common"]["nx"] = module.net.receptive_field
  train_set = nam_data.init_dataset(dcfg, nam_data.Split.TRAIN)
  val_set = nam_data.init_dataset(dcfg, nam_data.Split.VALIDATION)
  module.net.sample_rate = train_set.sample_rate
  for dataset in (train_set, val_set):
    dataset.handshake(module.net)
    module.net.handshake(dataset)
  loader = torch.utils.data.DataLoader(
      train_set, batch_size=BATCH_SIZE, shuffle=True, drop_last=True,
      num_workers=0)
  val_loader = torch.utils.data.DataLoader(val_set)
  best = pl.callbacks.ModelCheckpoint(
      dirpath=os.path.join(args.outdir, "checkpoints"), monitor="val_loss",
      save_top_k=1, every_n_epochs=1)
  start = [time.perf_counter()]
  history = _history_callback(pl, start)
  trainer = pl.Trainer(
      accelerator="cpu", devices=1, max_epochs=args.max_epochs,
      max_time={"seconds": args.budget_s}, callbacks=[best, history],
      default_root_dir=args.outdir, enable_progress_bar=False,
      enable_model_summary=False, logger=False, num_sanity_val_steps=0)
  trainer.fit(module, loader, val_loader)
  train_seconds = time.perf_counter() - start[0]
  if best.best_model_path:
    module = lightning_module.LightningModule.load_from_checkpoint(
        best.best_model_path,
        **lightning_module.LightningModule.parse_config(
            model_config(args.preset)))
  net = module.net.cpu().eval()
  net.sample_rate = train_set.sample_rate
  info = {
      "preset": args.preset, "train_seconds": train_seconds,
      "epochs": int(trainer.current_epoch),
      "steps": int(trainer.global_step),
      "parameters": int(sum(p.numel() for p in net.parameters())),
      "receptive_field": int(net.receptive_field),
      "history": history.rows, "threads": args.threads,
      "best_val_loss": (None if best.best_model_score is None
                        else float(best.best_model_score)),
      "torch": torch.__version__}
  return net, info


def one_thread():
  """Inference as emu's is measured: one torch thread, pinned to one core."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(1)
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def offline_rtf(model, sample_rate, seconds=10.0, repeats=3):
  """Seconds of audio per second of one call (after `one_thread`), the
  best of repeats."""
  import torch  # pylint: disable=g-import-not-at-top
  n = int(seconds * sample_rate)
  x = torch.tensor(np.random.default_rng(0).uniform(-0.5, 0.5, n),
                   dtype=torch.float32)
  best = np.inf
  with torch.no_grad():
    model(x)
    for _ in range(repeats):
      start = time.perf_counter()
      model(x)
      best = min(best, time.perf_counter() - start)
  return seconds / best


def play(args, info, path=None):
  """Loads the .nam file at `path` (default the exported OUTDIR/model.nam)
  with NAM's loader, predicts --eval; writes outputs."""
  import torch  # pylint: disable=g-import-not-at-top
  from nam import models as nam_models  # pylint: disable=g-import-not-at-top
  one_thread()
  with open(path or os.path.join(args.outdir, "model.nam")) as f:
    model = nam_models.init_from_nam(json.load(f)).eval()
  info["parameters"] = int(sum(p.numel() for p in model.parameters()))
  outputs = {}
  with np.load(args.eval) as inputs:
    with torch.no_grad():
      for key in inputs.files:
        x = torch.tensor(inputs[key], dtype=torch.float32)
        outputs["y/" + key[2:]] = model(x).numpy().astype(np.float32)
  np.savez(os.path.join(args.outdir, "predictions.npz"), **outputs)
  info["rtf_offline_1thread"] = offline_rtf(model, model.sample_rate,
                                            args.rtf_seconds)
  return info


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--input")
  parser.add_argument("--target")
  parser.add_argument("--play_file",
                      help="no training: NAM's package plays this .nam file "
                      "(e.g. one emu wrote) on --eval")
  parser.add_argument("--outdir", required=True)
  parser.add_argument("--preset", choices=PRESETS, default="lstm_standard")
  parser.add_argument("--budget_s", type=float, default=600.0)
  parser.add_argument("--max_epochs", type=int, default=100000)
  parser.add_argument("--threads", type=int, default=1)
  parser.add_argument("--val_start", type=int,
                      help="first validation sample (emu's val1 split)")
  parser.add_argument("--delay", type=int, default=0,
                      help="latency in samples, as NAM's data 'delay'")
  parser.add_argument("--eval", required=True,
                      help="npz of x/<name> inputs to predict")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--rtf_seconds", type=float, default=10.0,
                      help="audio timed for the real-time factor")
  args = parser.parse_args()
  os.makedirs(args.outdir, exist_ok=True)
  if args.play_file:
    info = play(args, {}, args.play_file)
    with open(os.path.join(args.outdir, "result.json"), "w") as f:
      json.dump(info, f, indent=1)
    print(f"NAM played {args.play_file}: {info['parameters']} parameters, "
          f"offline RTF {info['rtf_offline_1thread']:.1f}")
    return
  if None in (args.input, args.target, args.val_start):
    parser.error("training needs --input, --target and --val_start "
                 "(or --play_file to play a file)")
  net, info = train(args)
  net.export(args.outdir)
  info = play(args, info)
  with open(os.path.join(args.outdir, "result.json"), "w") as f:
    json.dump(info, f, indent=1)
  print(f"NAM {args.preset}: {info['parameters']} parameters, "
        f"{info['epochs']} epochs in {info['train_seconds']:.0f} s, "
        f"offline RTF {info['rtf_offline_1thread']:.1f}")


if __name__ == "__main__":
  main()
