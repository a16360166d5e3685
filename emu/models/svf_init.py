"""A one-section svf started from least-squares fits of the training pair.

The svf counterpart of emu.models.ssm_init (`SVF(data_init=True)`). At
each knob setting of the training data the effect is a fixed biquad, so

1. per setting (the training samples whose knob channels hold one set of
   values, cut into runs where the knob is constant), the equation-error
   least squares of ssm_init gives a biquad (b, a), exactly for a
   noise-free biquad whatever the state it carries into a run;
2. `biquad_to_svf` writes it as the TPT SVF (cutoff g, damping k, the
   band-pass and low-pass mix M and D): the bilinear transform taken
   back to s = (1 / g) (1 - 1/z) / (1 + 1/z), the svf's own variable;
3. across the settings, log g, log k, M and D are fitted as the knob MLP
   (ssm.KnobFiLM) computes them: the layer's own parameters plus the
   linear path by least squares, and the tanh layer (its hidden units as
   initialised) by the least-norm fit of what the linear path leaves.

The fit reads the training pair alone; for a model without knob channels
step 3 is the single setting's values.
"""

import math

import numpy as np

from emu.models import ssm_init


def biquad_to_svf(b, a):
  """(g, k, M_bp, M_lp, D) of the TPT SVF section whose transfer function
  is b / a (z^-1 polynomials of 3 coefficients), floats.

  With w = (1 - 1/z) / (1 + 1/z), a(z) (1 + 1/z)^2 / (1 + 1/z)^2 is
  proportional to w^2 + c1 w + c0 = g^2 (s^2 + k s + 1) for s = w / g,
  and the numerator to beta2 w^2 + beta1 w + beta0, so H = D + (M_bp s +
  M_lp) / (s^2 + k s + 1). Poles outside the stable region (c0 or c1 <=
  0) are clipped to g, k > 0.
  """
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  to_w = lambda p: np.array([p[0] + p[1] + p[2], 2 * (p[0] - p[2]),
                             p[0] - p[1] + p[2]])  # w^0, w^1, w^2
  den, num = to_w(a), to_w(b)
  if abs(den[2]) < 1e-12:
    raise ValueError("data_init: the fitted filter has a pole at z = -1")
  (c0, c1, _), (beta0, beta1, beta2) = den / den[2], num / den[2]
  g = math.sqrt(max(c0, 1e-12))
  k = max(c1 / g, 1e-6)
  return g, k, beta1 / g - k * beta2, beta0 / g**2 - beta2, beta2


def _setting_runs(x):
  """{setting (tuple of knob values): [(start, stop), ...]} of the runs
  of samples whose knob channels x[:, 1:] are constant."""
  knobs = x[:, 1:]
  change = np.flatnonzero(np.any(knobs[1:] != knobs[:-1], axis=1)) + 1
  starts = np.concatenate([[0], change])
  stops = np.concatenate([change, [len(x)]])
  runs = {}
  for start, stop in zip(starts, stops):
    runs.setdefault(tuple(knobs[start].tolist()), []).append((start, stop))
  return runs


def _per_setting(x, t):
  """(knob values [S, K], SVF values [S, 5]: log g, log k, M_bp, M_lp, D)
  of each training setting's equation-error biquad."""
  runs = _setting_runs(x)
  settings, values = [], []
  for setting, spans in sorted(runs.items()):
    b, a, _ = ssm_init.equation_error_fit(
        [x[i:j, 0] for i, j in spans], [t[i:j] for i, j in spans], 2)
    g, k, m_bp, m_lp, d = biquad_to_svf(b, a)
    settings.append(setting)
    values.append([math.log(g), math.log(k), m_bp, m_lp, d])
  return np.asarray(settings, np.float64), np.asarray(values, np.float64)


def _knob_fit(model, settings, values, hidden_params):
  """(bias [5], linear [K, 5], out [hidden, 5]) with values ~ bias +
  settings @ linear + tanh(hidden layer) @ out / hidden, the KnobFiLM's
  own form: least squares, then least norm for the tanh layer."""
  design = np.concatenate([np.ones((len(settings), 1)), settings], axis=1)
  solution = np.linalg.lstsq(design, values, rcond=None)[0]
  bias, linear = solution[0], solution[1:]
  out = np.zeros((model.knob_hidden, values.shape[1]))
  if model.knob_hidden and hidden_params is not None:
    z = (2 * settings - 1) @ np.asarray(hidden_params["kernel"], np.float64)
    features = np.tanh(z + np.asarray(hidden_params["bias"], np.float64))
    out = np.linalg.lstsq(features / model.knob_hidden,
                          values - design @ solution, rcond=None)[0]
  return bias, linear, out


def fit_svf(model, x, t, layer):
  """layer_0's parameters of a one-section, one-layer svf fitted to
  (x, t): {name: float32 array}, with a 'film' entry (the knob MLP's
  kernels) for a conditioned model.

  Args:
    model: an emu.models.svf.SVF with num_layers == state_size == 1.
    x: [time] or [time, 1 + K] training input (audio, then knobs).
    t: [time] target.
    layer: the model's initial layer_0 parameters (the knob MLP's hidden
      layer is kept as initialised).
  """
  if model.num_layers != 1 or model.state_size != 1:
    raise ValueError("data_init needs a one-layer, one-section svf, got "
                     f"num_layers={model.num_layers}, "
                     f"state_size={model.state_size}")
  x = np.asarray(x, np.float64)
  x = x[:, None] if x.ndim == 1 else x
  t = np.asarray(t, np.float64).reshape(-1)
  if model.skip:
    t = t - x[:, 0]
  conditioned = "film" in layer
  if x.shape[1] > 1 and not conditioned:
    raise ValueError("data_init fits knobs that set the filter "
                     "(knob_hidden > 0); these knobs are signals")
  settings, values = _per_setting(x if conditioned else x[:, :1], t)
  if not conditioned:
    bias = values[0]
  else:
    bias, linear, out = _knob_fit(model, settings, values,
                                  layer["film"].get("hidden"))
  f32 = lambda v: np.asarray(v, np.float32)
  fitted = {"g_log": f32([bias[0]]), "damping_log": f32([bias[1]]),
            "B": f32([[1.]]), "M": f32(bias[2:4].reshape(2, 1, 1)),
            "D": f32([[bias[4]]])}
  if conditioned:
    # The film layout: g_log, damping_log, B_rho (0: B stays 1), M, D.
    widen = lambda w: np.insert(w, 2, 0., axis=1)
    fitted["film"] = {"linear": {"kernel": f32(widen(linear))}}
    if "out" in layer["film"]:
      # The hidden layer the tanh fit used (one member's, for an ensemble).
      fitted["film"]["out"] = {"kernel": f32(widen(out))}
      fitted["film"]["hidden"] = {
          k: f32(v) for k, v in layer["film"]["hidden"].items()}
  return fitted

