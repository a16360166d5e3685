"""Can a linear LRU learn biquad EQs near-exactly? A standalone check.

Trains emu.models.lru.LRU (one layer: a linear filter) on the thesis mini
recipe (20 s of mixed noise and sweeps at 44.1 kHz, emu.data) against
targets made with scipy.signal.lfilter, and prints per effect: wall-clock
time, train / val ESR (emu.metrics.esr), the share of samples within 2^-15
(emu.metrics.accuracy_bits at 15 bits), and the magnitude-response error
against the true filter.

  python benchmarks/ssm_fit_check.py                  # all four effects
  python benchmarks/ssm_fit_check.py --effects=hpf440 --state_size=2
  python benchmarks/ssm_fit_check.py --data_init --lr=1e-5 --steps=2000

Targets (ISSUE): hpf440 ESR <= 1e-6, >= 99% of samples within 2^-15,
|dB| <= 0.1 over 20 Hz - 20 kHz, < 5 min CPU; the others ESR <= 1e-5.

The defaults are the recipe that met them (2-core CPU shared with other
jobs, seed 0): state_size 1 (one mode + D is exactly a biquad), Adam at 0.1
for every parameter decayed exponentially to 1e-4 over 10,000 steps, batches
of 16 random 8192-sample segments started from zero state with the first
1024 samples left out of the ESR loss. Every effect reached ESR ~1e-13 to
1e-14 with all samples within 2^-15 and <= 0.001 dB, in 24-83 s; hpf440
did so for 9 seeds out of 9. What did not help: a separate pole rate (x0.3
is slower; a pole rate >= 0.5 collapses |lambda| to 0), a cosine schedule
with warm-up (one collapse in 3 seeds), whole-signal batches (12x slower
per step), dropping gamma normalisation (1e-9 instead of 1e-13), and spare
modes: state_size 2 was exact for seed 0 but reached only 1e-6 to 2e-10
for seeds 1-2, state_size 4 stalls at 1e-5 to 1e-8 (the modes share the
work and converge slowly, even over 29,000 steps).
"""
import json
import os
import sys
import time
import types

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.signal

# Runs from a source checkout without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top
from emu import cli
from emu import data
from emu import effects
from emu import metrics
from emu.models import data_init
from emu.models import ssm_init
from emu.models.lru import LRU

FLAGS = flags.FLAGS
SAMPLE_RATE = 44100

# --- The effects: the named biquads of emu.effects, as (b, a). ---------
# Their float64 coefficients; the targets are filtered with scipy in float64.
EFFECTS = {name: effects.analytic_coefficients(name, SAMPLE_RATE)
           for name in ("hpf440", "lpf2k", "peak1k", "lowshelf")}


def _define_flags():
  """The fit's settings; `settings()` hands them to `fit` as one object."""
  flags.DEFINE_list("effects", list(EFFECTS), "Effects to fit.")
  flags.DEFINE_integer("state_size", 1, "Complex modes of the LRU layer.")
  flags.DEFINE_integer("steps", 10000, "Optimizer steps.")
  flags.DEFINE_float("lr", 0.1, "Adam's peak rate.")
  flags.DEFINE_float("pole_lr_scale", 1., "Rate factor for the poles.")
  flags.DEFINE_float("final_lr_fraction", 1e-3,
                     "The rate at the last step, as a share of the peak.")
  flags.DEFINE_enum("schedule", "exponential", ["cosine", "exponential"],
                    "Learning-rate schedule.")
  flags.DEFINE_enum("loss", "esr", ["esr", "mse"], "Training loss.")
  flags.DEFINE_integer("segment", 8192,
                       "Segment length (samples); 0 = the whole signal.")
  flags.DEFINE_integer("batch", 16, "Segments per batch.")
  flags.DEFINE_integer(
      "warmup", 1024, "Leading samples of each segment left out of the loss.")
  flags.DEFINE_enum("backend", "sequential", ["associative", "sequential"],
                    "Recurrence backend.")
  flags.DEFINE_bool("no_normalize", False, "Drop gamma normalisation.")
  flags.DEFINE_float("c_init_scale", 1., "Multiplies the initial readout C.")
  flags.DEFINE_float("r_min", 0.9, "Smallest initial pole radius.")
  flags.DEFINE_float("r_max", 0.99999, "Largest initial pole radius.")
  flags.DEFINE_float("train_seconds", 0.,
                     "Train on the first seconds only; 0 = all.")
  flags.DEFINE_float("time_budget", 280., "Stop after this many seconds.")
  flags.DEFINE_integer("log_every", 0, "Print the loss every N steps.")
  flags.DEFINE_integer("seed", 0, "Initialisation seed.")
  flags.DEFINE_bool("data_init", False,
                    "Start from the least-squares fit of the training pair "
                    "(emu.models.ssm_init) instead of the random start.")


def settings() -> types.SimpleNamespace:
  """This script's flags as one object (what `fit` reads)."""
  names = [f.name for f in FLAGS.get_key_flags_for_module(sys.argv[0])
           if f.name != "debug"]
  return types.SimpleNamespace(**{n: FLAGS[n].value for n in names})


# --- Audio. ----------------------------------------------------------------


def load_inputs(train_seconds):
  """(train, val) input audio, float32 [time], peak <= 0.9; the source."""
  dataset = data.thesis_dataset(jax.random.PRNGKey(0), size="mini")
  train, val = dataset.train.input, dataset.val1.input
  if train_seconds:
    train = train[:int(train_seconds * SAMPLE_RATE)]
  return train, val, dataset.name


# --- Metrics. --------------------------------------------------------------


def check_finite(effect, **outputs):
  """ValueError, naming the effect, if a fitted output holds NaN or inf."""
  for split, y in outputs.items():
    if not np.all(np.isfinite(y)):
      raise ValueError(f"{effect}: the fitted filter's {split} output is "
                       "not finite (the fit diverged); try a lower --lr")


def within_lsb(y, t):
  """The share of samples within one 16-bit step (2^-15) of the target."""
  return metrics.accuracy_bits(y, t, bits=15)


def response_error_db(model, params, b, a):
  """(max, mean) |dB| between the model and (b, a) over 20 Hz - 20 kHz."""
  freqs = np.geomspace(20, 20000, 2000)
  _, want = scipy.signal.freqz(b, a, worN=freqs, fs=SAMPLE_RATE)
  got = model.frequency_response(params, freqs, SAMPLE_RATE)
  err = np.abs(20 * np.log10(np.abs(got) / np.abs(want)))
  return float(err.max()), float(err.mean())


def pole_strings(poles):
  """'radius@frequency' of complex poles."""
  return [f"{abs(p):.5f}@{np.angle(p) * SAMPLE_RATE / 2 / np.pi:.0f}Hz"
          for p in poles]


def learned_poles(params):
  layer = params["params"]["layer_0"]
  return np.exp(-np.exp(np.asarray(layer["nu_log"]))
                + 1j * np.exp(np.asarray(layer["theta_log"])))


# --- Training. -------------------------------------------------------------


def _is_pole(path):
  return path[-1].key in ("nu_log", "theta_log")


def make_optimizer(args, steps):
  def schedule(peak):
    if args.schedule == "exponential":
      # What emu.train does: Adam at lr * decay^epoch, no warm-up.
      return optax.exponential_decay(
          peak, transition_steps=steps, decay_rate=args.final_lr_fraction)
    return optax.warmup_cosine_decay_schedule(
        0., peak, warmup_steps=min(50, steps // 10), decay_steps=steps,
        end_value=peak * args.final_lr_fraction)
  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "pole" if _is_pole(path) else "rest", params)
  return optax.multi_transform(
      {"pole": optax.adam(schedule(args.lr * args.pole_lr_scale)),
       "rest": optax.adam(schedule(args.lr))}, labels)


def init_model(args, x, seed, t=None):
  """(LRU, its initial parameters, C scaled by --c_init_scale; with
  --data_init, fitted to the training pair (x, t) instead)."""
  model = LRU(state_size=args.state_size, backend=args.backend,
              normalize=not args.no_normalize, r_min=args.r_min,
              r_max=args.r_max)
  params = model.init(jax.random.PRNGKey(seed), x[:, :16])
  if args.c_init_scale != 1:
    layer = params["params"]["layer_0"]
    for name in ("C_re", "C_im"):
      layer[name] = layer[name] * args.c_init_scale
  if args.data_init:
    params = data_init.with_fitted_layer(params, ssm_init.fit_lru(
        model, np.asarray(x)[0, :, 0], np.asarray(t)[0, :, 0]))
  return model, params


def make_step(model, optimizer, x, t, args):
  """The jitted step (params, opt_state, key) -> (params, opt_state, loss)
  on a batch of random segments of (x, t) (or all of it: --segment=0)."""
  seg, warm = args.segment, args.warmup

  def loss_fn(params, x, t):
    y, _ = model.apply(params, x)
    y, t = y[:, warm:], t[:, warm:]
    err = jnp.sum((y - t)**2)
    if args.loss == "esr":
      return err / jnp.sum(t**2)
    return err / t.size

  @jax.jit
  def step(params, opt_state, key):
    if seg:
      starts = jax.random.randint(key, (args.batch,), 0, x.shape[1] - seg)
      cut = jax.vmap(lambda s: jax.lax.dynamic_slice_in_dim(x[0], s, seg))
      xb, tb = cut(starts), jax.vmap(
          lambda s: jax.lax.dynamic_slice_in_dim(t[0], s, seg))(starts)
    else:
      xb, tb = x, t
    loss, grads = jax.value_and_grad(loss_fn)(params, xb, tb)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def train_loop(effect, step, params, opt_state, args, seed):
  """Runs --steps steps (or until --time_budget); (params, steps run,
  compile seconds, train seconds)."""
  key = jax.random.PRNGKey(seed + 1)
  start = time.time()
  params, opt_state, loss = step(params, opt_state, key)
  jax.block_until_ready(loss)
  compile_s = time.time() - start
  i = 0
  for i in range(1, args.steps):
    key, sub = jax.random.split(key)
    params, opt_state, loss = step(params, opt_state, sub)
    if args.log_every and i % args.log_every == 0:
      print(f"  {effect} step {i} loss {float(loss):.3e} "
            f"({time.time() - start:.0f} s)", flush=True)
    if args.time_budget and time.time() - start > args.time_budget:
      break
  jax.block_until_ready(params)
  return params, i + 1, compile_s, time.time() - start


def fit(effect, train_x, val_x, args, seed=0):
  """Fits one effect; its scores, response error and poles as a dict."""
  b, a = EFFECTS[effect]
  # Targets from float64 filtering, stored as float32 like any audio.
  train_t = scipy.signal.lfilter(b, a, train_x.astype(np.float64))
  val_t = scipy.signal.lfilter(b, a, val_x.astype(np.float64))
  train_t, val_t = train_t.astype(np.float32), val_t.astype(np.float32)
  x = jnp.asarray(train_x)[None, :, None]
  t = jnp.asarray(train_t)[None, :, None]
  model, params = init_model(args, x, seed, t)
  optimizer = make_optimizer(args, args.steps)
  step = make_step(model, optimizer, x, t, args)
  params, steps, compile_s, train_s = train_loop(
      effect, step, params, optimizer.init(params), args, seed)
  evaluate = jax.jit(lambda p, x: model.apply(p, x)[0])
  y_train = np.asarray(evaluate(params, x))[0, :, 0]
  y_val = np.asarray(evaluate(params, jnp.asarray(val_x)[None, :, None]))[
      0, :, 0]
  check_finite(effect, train=y_train, val=y_val)
  db_max, db_mean = response_error_db(model, params, b, a)
  return {
      "effect": effect, "steps": steps, "train_s": round(train_s, 1),
      "compile_s": round(compile_s, 1),
      "esr_train": metrics.esr(y_train, train_t),
      "esr_val": metrics.esr(y_val, val_t),
      "within_lsb_train": within_lsb(y_train, train_t),
      "within_lsb_val": within_lsb(y_val, val_t),
      "db_max": db_max, "db_mean": db_mean,
      "poles": pole_strings(learned_poles(params)),
      "true_poles": pole_strings(p for p in np.roots(a) if p.imag >= 0),
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  args = settings()
  unknown = sorted(set(args.effects) - set(EFFECTS))
  if unknown:
    raise ValueError(f"unknown effect(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(EFFECTS)}")
  train_x, val_x, source = load_inputs(args.train_seconds)
  print(f"data: {source}, train {len(train_x) / SAMPLE_RATE:.1f} s, "
        f"val {len(val_x) / SAMPLE_RATE:.1f} s; {vars(args)}", flush=True)
  for effect in args.effects:
    print(json.dumps(fit(effect, train_x, val_x, args, args.seed)),
          flush=True)
  return 0


if __name__ == "__main__":
  _define_flags()
  cli.run_main(main)
