"""Can a linear LRU learn biquad EQs near-exactly? A standalone check.

Trains emu.models.lru.LRU (one layer: a linear filter) on the thesis mini
recipe (20 s of mixed noise and sweeps at 44.1 kHz; built here with numpy if
emu.data is missing) against targets made with scipy.signal.lfilter, and
prints per effect: wall-clock time, train / val ESR, the share of samples
within 2^-15, and the magnitude-response error against the true filter.

  python experiments/ssm_fit_check.py                  # all four effects
  python experiments/ssm_fit_check.py --effects=hpf440 --state_size=2

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

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.signal

from emu import effects
from emu.models.lru import LRU

SAMPLE_RATE = 44100
LSB16 = 2.0**-15  # one step of 16-bit audio, full scale 1


# --- The effects: the named biquads of emu.effects, as (b, a). ---------
# Their float64 coefficients; the targets are filtered with scipy in float64.
EFFECTS = {name: effects.analytic_coefficients(name, SAMPLE_RATE)
           for name in ("hpf440", "lpf2k", "peak1k", "lowshelf")}


# --- Audio. ----------------------------------------------------------------


def _own_signal(seconds, seed):
  """White, pink-ish and brown-ish noise and log sweeps, float32 [time]."""
  rng = np.random.default_rng(seed)
  n = int(seconds * SAMPLE_RATE)
  parts, clip = [], SAMPLE_RATE // 2
  for i in range(0, n, clip):
    kind = (i // clip) % 4
    white = rng.normal(size=clip)
    if kind == 1:  # pink-ish: -3 dB/octave via Kellet's filter
      white = scipy.signal.lfilter([0.049922035, -0.095993537, 0.050612699,
                                    -0.004408786],
                                   [1, -2.494956002, 2.017265875,
                                    -0.522189400], white)
    elif kind == 2:  # brown-ish: leaky integrator
      white = scipy.signal.lfilter([1.], [1., -0.995], white)
    elif kind == 3:  # exponential sweep 20 Hz - 20 kHz
      t = np.arange(clip) / SAMPLE_RATE
      white = scipy.signal.chirp(t, 20, t[-1], 20000, method="logarithmic")
    white = white / np.max(np.abs(white)) * rng.uniform(0.1, 0.9)
    parts.append(white)
  return np.concatenate(parts)[:n].astype(np.float32)


def load_inputs(train_seconds):
  """(train, val) input audio, float32 [time], peak <= 0.9."""
  try:
    import emu.data  # pylint: disable=g-import-not-at-top
    dataset = emu.data.thesis_dataset(jax.random.PRNGKey(0), size="mini")
    train, val = dataset.train.input, dataset.val1.input
    source = dataset.name
  except ImportError:
    train, val = _own_signal(20., 0), _own_signal(6., 1)
    source = "numpy noise + sweeps"
  if train_seconds:
    train = train[:int(train_seconds * SAMPLE_RATE)]
  return train, val, source


# --- Metrics. --------------------------------------------------------------


def esr(y, t):
  return float(np.sum((y - t)**2) / np.sum(t**2))


def within_lsb(y, t):
  return float(np.mean(np.abs(y - t) <= LSB16))


def response_error_db(model, params, b, a):
  """(max, mean) |dB| between the model and (b, a) over 20 Hz - 20 kHz."""
  freqs = np.geomspace(20, 20000, 2000)
  _, want = scipy.signal.freqz(b, a, worN=freqs, fs=SAMPLE_RATE)
  got = model.frequency_response(params, freqs, SAMPLE_RATE)
  err = np.abs(20 * np.log10(np.abs(got) / np.abs(want)))
  return float(err.max()), float(err.mean())


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


def fit(effect, train_x, val_x, args, seed=0):
  b, a = EFFECTS[effect]
  # Targets from float64 filtering, stored as float32 like any audio.
  train_t = scipy.signal.lfilter(b, a, train_x.astype(np.float64))
  val_t = scipy.signal.lfilter(b, a, val_x.astype(np.float64))
  train_t, val_t = train_t.astype(np.float32), val_t.astype(np.float32)
  model = LRU(state_size=args.state_size, backend=args.backend,
              normalize=not args.no_normalize, r_min=args.r_min,
              r_max=args.r_max)
  x = jnp.asarray(train_x)[None, :, None]
  t = jnp.asarray(train_t)[None, :, None]
  params = model.init(jax.random.PRNGKey(seed), x[:, :16])
  if args.c_init_scale != 1:
    layer = params["params"]["layer_0"]
    for name in ("C_re", "C_im"):
      layer[name] = layer[name] * args.c_init_scale
  optimizer = make_optimizer(args, args.steps)
  opt_state = optimizer.init(params)
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

  evaluate = jax.jit(lambda p, x: model.apply(p, x)[0])
  key = jax.random.PRNGKey(seed + 1)
  start = time.time()
  params, opt_state, loss = step(params, opt_state, key)
  jax.block_until_ready(loss)
  compile_s = time.time() - start
  history = []
  for i in range(1, args.steps):
    key, sub = jax.random.split(key)
    params, opt_state, loss = step(params, opt_state, sub)
    if args.log_every and i % args.log_every == 0:
      history.append((i, float(loss)))
      print(f"  {effect} step {i} loss {float(loss):.3e} "
            f"({time.time() - start:.0f} s)", flush=True)
    if args.time_budget and time.time() - start > args.time_budget:
      break
  jax.block_until_ready(params)
  train_s = time.time() - start
  y_train = np.asarray(evaluate(params, x))[0, :, 0]
  y_val = np.asarray(evaluate(params, jnp.asarray(val_x)[None, :, None]))[
      0, :, 0]
  db_max, db_mean = response_error_db(model, params, b, a)
  lam = np.exp(-np.exp(np.asarray(params["params"]["layer_0"]["nu_log"]))
               + 1j * np.exp(np.asarray(params["params"]["layer_0"][
                   "theta_log"])))
  return {
      "effect": effect, "steps": i + 1, "train_s": round(train_s, 1),
      "compile_s": round(compile_s, 1),
      "esr_train": esr(y_train, train_t), "esr_val": esr(y_val, val_t),
      "within_lsb_train": within_lsb(y_train, train_t),
      "within_lsb_val": within_lsb(y_val, val_t),
      "db_max": db_max, "db_mean": db_mean,
      "poles": [f"{abs(p):.5f}@{np.angle(p) * SAMPLE_RATE / 2 / np.pi:.0f}Hz"
                for p in lam],
      "true_poles": [f"{abs(p):.5f}@{np.angle(p) * SAMPLE_RATE / 2 / np.pi:.0f}Hz"
                     for p in np.roots(a) if p.imag >= 0],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--effects", default=",".join(EFFECTS))
  parser.add_argument("--state_size", type=int, default=1)
  parser.add_argument("--steps", type=int, default=10000)
  parser.add_argument("--lr", type=float, default=0.1)
  parser.add_argument("--pole_lr_scale", type=float, default=1.)
  parser.add_argument("--final_lr_fraction", type=float, default=1e-3)
  parser.add_argument("--schedule", choices=("cosine", "exponential"),
                      default="exponential")
  parser.add_argument("--loss", choices=("esr", "mse"), default="esr")
  parser.add_argument("--segment", type=int, default=8192,
                      help="segment length (samples); 0 = the whole signal")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--warmup", type=int, default=1024,
                      help="leading samples of each segment left out of the loss")
  parser.add_argument("--backend", default="sequential")
  parser.add_argument("--no_normalize", action="store_true")
  parser.add_argument("--c_init_scale", type=float, default=1.,
                      help="multiplies the initial readout C")
  parser.add_argument("--r_min", type=float, default=0.9)
  parser.add_argument("--r_max", type=float, default=0.99999)
  parser.add_argument("--train_seconds", type=float, default=0.)
  parser.add_argument("--time_budget", type=float, default=280.)
  parser.add_argument("--log_every", type=int, default=0)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  train_x, val_x, source = load_inputs(args.train_seconds)
  print(f"data: {source}, train {len(train_x) / SAMPLE_RATE:.1f} s, "
        f"val {len(val_x) / SAMPLE_RATE:.1f} s; {vars(args)}", flush=True)
  for effect in args.effects.split(","):
    result = fit(effect, train_x, val_x, args, args.seed)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main()
