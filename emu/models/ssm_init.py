"""A one-layer lru started from a least-squares fit of the training pair.

Gradient descent on a recursive filter's output error is not convex: from
some starts the one-mode lru of experiments/ssm.flags let its pole angle
fall to about 0 in the first epochs (a real pole, a first-order filter),
where the loss is nearly flat in the angle, and was still there when the
learning rate had decayed (val1 ESR ~1e-5 where the other seeds reached
1e-12). Fitting a filter to input/output data has a convex first step,
which this module takes before training (`LRU(data_init=True)`):

1. Equation error (`equation_error_fit`): the recursion t[n] = sum_k
   b_k x[n-k] - sum_k a_k t[n-k] by linear least squares on the training
   pair, of the lowest order up to 2N that fits as well as 2N does
   (`fit_denominator`), whose denominator's roots are the N modes' poles
   (`modes_from_poles`: one mode per complex pair, or per real root;
   unstable roots reflected inside the unit circle).
2. Output error given the poles (`fit_residues`): the output is linear in
   each mode's complex residue and in D, so a second least squares gives
   the residues and D that make the model's own output closest to the
   target for those poles.

The result is written in the model's own parameters (nu_log, theta_log,
B, C, D, `lru_params`), so training starts there and only polishes; on
the thesis HPF-440 task the start alone is at val1 ESR 1.1e-10
(benchmarks/README.md). The fit reads the training pair alone, never the
effect's coefficients.

The trainer calls it through emu.models.data_init, which leaves every
other model's initialisation alone.
"""

import math

import numpy as np
import scipy.signal

# The least |lambda| distance from 1 (emu.models.lru.NU_MIN) a pole keeps,
# and the smallest angle a real root's mode gets (a mode's angle is
# exp(theta_log) > 0): 1e-4 rad, 0.7 Hz at 44.1 kHz.
_NU_FLOOR = 2e-6
_THETA_FLOOR = 1e-4


def equation_error_fit(x, t, order):
  """(b [order + 1], a [order + 1] with a[0] = 1, residual energy) of the
  least-squares fit t[n] + sum_k a_k t[n-k] = sum_k b_k x[n-k], float64.

  x, t: [time] arrays, or lists of such runs (one per stretch of constant
  knob settings: no equation spans two runs).
  """
  if np.ndim(x[0]) == 0:
    x, t = [x], [t]
  blocks, rhs = [], []
  for x_run, t_run in zip(x, t):
    x_run = np.asarray(x_run, np.float64)
    t_run = np.asarray(t_run, np.float64)
    n = len(t_run)
    if n <= order:
      continue
    columns = [x_run[order - k:n - k] for k in range(order + 1)]
    columns += [-t_run[order - k:n - k] for k in range(1, order + 1)]
    blocks.append(np.stack(columns, axis=1))
    rhs.append(t_run[order:])
  rows = sum(len(r) for r in rhs)
  if rows <= 4 * order + 1:
    raise ValueError(f"data_init needs more than {4 * order + 1} training "
                     f"equations, got {rows}")
  solution, residual = _lstsq(np.concatenate(blocks), np.concatenate(rhs))
  b = solution[:order + 1]
  a = np.concatenate([[1.], solution[order + 1:]])
  return b, a, residual


def fit_denominator(x, t, max_order):
  """The denominator (a, a[0] = 1) of the lowest equation-error order up
  to `max_order` whose residual is within 1% of the highest order's, or
  within 1e-12 of the target's energy (float32 rounding, which more
  coefficients fit a little better): a biquad's pair of poles, not a
  fourth-order fit's two near-cancelling extra ones."""
  fits = [equation_error_fit(x, t, order)
          for order in range(1, max_order + 1)]
  energy = float(np.sum(np.square(np.asarray(t, np.float64))))
  tolerance = 1.01 * fits[-1][2] + 1e-12 * energy
  return next(a for _, a, residual in fits if residual <= tolerance)


def _lstsq(matrix, rhs):
  """(least-squares solution, residual energy), columns scaled to unit
  norm first (audio and its filtered copies differ in level)."""
  scale = np.linalg.norm(matrix, axis=0)
  scale[scale == 0] = 1.
  solution = np.linalg.lstsq(matrix / scale, rhs, rcond=None)[0]
  residual = float(np.sum((matrix / scale @ solution - rhs)**2))
  return solution / scale, residual


def modes_from_poles(poles, count):
  """`count` complex mode poles (Im >= 0) from a real polynomial's roots.

  Each complex pair gives one mode (its upper root) and each real root one
  mode of angle _THETA_FLOOR; roots outside the unit circle are reflected
  in it. Beyond `count`, the poles nearest the unit circle are kept;
  short of it, the rest get radius 0.99 and angles log-spaced from 3e-3
  to 2.8 rad (20 Hz to 20 kHz at 44.1 kHz).
  """
  modes = []
  for p in np.asarray(poles, np.complex128):
    if abs(p) > 1:
      p = 1 / np.conj(p)
    if p.imag < -1e-9 * max(abs(p), 1e-30):
      continue  # the conjugate of an upper root
    radius = min(abs(p), math.exp(-_NU_FLOOR))
    angle = max(abs(np.angle(p)), _THETA_FLOOR)
    modes.append(radius * np.exp(1j * angle))
  modes.sort(key=lambda p: -abs(p))
  modes = modes[:count]
  spare = count - len(modes)
  if spare:
    angles = np.geomspace(3e-3, 2.8, spare)
    modes += list(0.99 * np.exp(1j * angles))
  return np.asarray(modes, np.complex128)


def fit_residues(x, t, lam):
  """(residues [N] complex, D) minimising |D x + sum Re(r_k s_k) - t|^2,
  s_k = x filtered by 1 / (1 - lam_k z^-1): the lru's output for poles
  `lam`, with the residue r = gamma B C. A mode standing for a real root
  (angle _THETA_FLOOR) gets a real residue, so that it stays a real pole
  instead of its nearly collinear imaginary part taking a huge weight."""
  x = np.asarray(x, np.float64)
  columns, where = [x], []
  for pole in lam:
    s = scipy.signal.lfilter([1.], [1., -pole], x.astype(np.complex128))
    where.append((len(columns), None))
    columns.append(s.real)
    if np.angle(pole) > 1.5 * _THETA_FLOOR:
      where[-1] = (where[-1][0], len(columns))
      columns.append(-s.imag)
  solution, _ = _lstsq(np.stack(columns, axis=1),
                       np.asarray(t, np.float64))
  residues = np.array([solution[re] + 1j * (0. if im is None else
                                            solution[im])
                       for re, im in where])
  return residues, solution[0]


def lru_params(lam, residues, d, normalize=True):
  """layer_0's lru parameters for poles `lam` [N], residues [N] (gamma B
  C) and D: {name: float32 array} of the lru's shapes for one input and
  one output. C is real and B carries the residue's angle; both have
  sqrt(|B C|)."""
  lam = np.asarray(lam, np.complex128)
  from emu.models import lru  # pylint: disable=g-import-not-at-top
  nu = np.maximum(-np.log(np.abs(lam)) - lru.NU_MIN, 1e-30)
  theta = np.maximum(np.angle(lam), _THETA_FLOOR)
  gamma = np.sqrt(-np.expm1(-2 * nu)) if normalize else np.ones_like(nu)
  product = np.asarray(residues, np.complex128) / gamma
  c = np.sqrt(np.abs(product))
  b = np.where(c > 0, product / np.where(c > 0, c, 1.), 0.)
  f32 = lambda v: np.asarray(v, np.float32)
  return {"nu_log": f32(np.log(nu)), "theta_log": f32(np.log(theta)),
          "B_re": f32(b.real[None]), "B_im": f32(b.imag[None]),
          "C_re": f32(c[:, None]), "C_im": f32(np.zeros_like(c)[:, None]),
          "D": f32([[d]])}


def fit_lru(model, x, t):
  """layer_0's parameters of a one-layer lru fitted to (x, t).

  Args:
    model: an emu.models.lru.LRU with num_layers == 1.
    x: [time] or [time, 1] training input; t: [time] target.

  Returns {name: float32 array}, as `lru_params`.

  Raises ValueError for a model or data it cannot fit: several layers, or
  knob channels (a time-varying filter).
  """
  x = np.asarray(x, np.float64)
  if x.ndim == 2:
    if x.shape[1] != 1:
      raise ValueError("data_init fits a time-invariant filter; the input "
                       f"has {x.shape[1]} channels (knobs)")
    x = x[:, 0]
  if model.num_layers != 1:
    raise ValueError("data_init needs a linear lru (num_layers == 1), got "
                     f"num_layers={model.num_layers}")
  t = np.asarray(t, np.float64).reshape(-1)
  if model.skip:
    t = t - x  # the skip adds the input; the layer fits the rest
  a = fit_denominator(x, t, 2 * model.state_size)
  lam = modes_from_poles(np.roots(a), model.state_size)
  residues, d = fit_residues(x, t, lam)
  return lru_params(lam, residues, d, model.normalize)
