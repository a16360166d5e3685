"""Writes emu's grey boxes (wiener, nss) as Faust programs, and builds them.

`export_faust(model, params, sample_rate)` (what `python -m emu.export
--format=faust OUT.dsp` writes) gives a Faust program that computes what
`emu.apply` computes, sample by sample from a zero state:

- each gated lru filter, u + g (Re(C h) + D u), as its complex modes
  written as the coupled real recursion of emu's own state,
  h = lambda h + b u (re, im: two `~` delays a mode), read out as
  Re(c h), plus d u, times the gate g;
- the wiener's compressor stage (emu.models.wiener.Dynamics) as its two
  one-pole followers (`~`, the attack or release coefficient chosen each
  sample by `select2`), its hinge curve of log10 env (softplus in the
  stable form jax computes, max(x, 0) + log1p(exp(-|x|))) and the gain
  10^s;
- the wiener's shaper as its closed form (tanh units and the bounded
  linear path);
- the nss core (emu.models.nss.Core) as one recursion of its states
  (`~`), its tanh units and readout.

The numbers written are those emu's float32 step uses (lambda, b with its
normalisation, the followers' coefficients, exp of the log gains: each
computed by emu's own jnp code in float32), each as the repr of its
float64 value, so a `-double` build computes emu's model in double
precision. What remains between the two is emu's float32 rounding (on 10
s of recorded voice, well under 1e-5: tests/test_faust.py). The residual
WaveNet and the non-grey-box families are refused, naming the format that
takes them.

`build` compiles a program into a command-line processor (faust with
`ARCHITECTURE`, then g++), `process` runs raw samples through it, and
`measure` times it on noise: the CPU cost the export reports.

Debian's `faust` (2.54 here) also builds it into plugins: `faust2lv2
-double OUT.dsp` (with lv2-dev and libboost-dev installed) writes the
bundle OUT.lv2, URI https://faustlv2.bitbucket.io/OUT. Hosted by lv2file
(lilv's lv2apply lacks the urid:map faust-lv2 requires), on 10 s of voice
it stays within 4e-6 of emu.apply for the wiener with its compressor
stage; built without -double (single precision, faust's default) it
differed by 1.5e-4 (the alone wiener 1.4e-5, the nss 1e-5): the
recursions then round differently from emu's float32.
"""

import math
import os
import shutil
import subprocess
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from emu.plugins import folds

FORMATS = ("faust",)
ExportError = folds.ExportError
INSTALL = "apt-get install faust g++"
BLOCK = 64  # samples per compute() call of the command-line processor

# A command-line processor: raw float64 samples on stdin, the model's
# output on stdout, in BLOCK-sample calls from a zero state; stderr gets
# the seconds compute() took. `faust -i -a` puts the class where
# <<includeclass>> stands; compiled with -DFAUSTFLOAT=double.
ARCHITECTURE = r"""
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "faust/gui/meta.h"
#include "faust/gui/UI.h"
#include "faust/dsp/dsp.h"

<<includeIntrinsic>>
<<includeclass>>

int main(int argc, char* argv[]) {
  int rate = argc > 1 ? atoi(argv[1]) : 44100;
  int block = argc > 2 ? atoi(argv[2]) : 64;
  std::vector<double> in;
  double buf[4096];
  size_t got;
  while ((got = fread(buf, sizeof(double), 4096, stdin)) > 0)
    in.insert(in.end(), buf, buf + got);
  std::vector<double> out(in.size());
  mydsp dsp;
  dsp.init(rate);
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < in.size(); i += block) {
    int n = (int)std::min<size_t>(block, in.size() - i);
    double* ins[1] = {&in[i]};
    double* outs[1] = {&out[i]};
    dsp.compute(n, ins, outs);
  }
  std::chrono::duration<double> took =
      std::chrono::steady_clock::now() - start;
  fwrite(out.data(), sizeof(double), out.size(), stdout);
  fprintf(stderr, "%.9f\n", took.count());
  return 0;
}
"""


# ------------------------------------------------------------ the model


def _refuse(model):
  """ExportError naming why `model` has no Faust form, and the fix."""
  name = type(model).__name__
  if name not in ("Wiener", "NSS"):
    raise ExportError(
        f"a {name} does not export to faust, which takes emu's grey boxes "
        "(wiener, nss); export it with --format=nam (lstm, wavenet, "
        "nam_wavenet), --format=rtneural (lstm, gru, ungated wavenet) or "
        "--format=guitarml (lstm, gru)")
  if model.residual_channels:
    raise ExportError(
        f"this {name.lower()} has a residual WaveNet (residual_channels="
        f"{model.residual_channels}), which emu does not write as Faust "
        "(it writes the grey box's filters, compressor, shaper and nss "
        "core), and no other format takes a grey box. Retrain without it "
        "(--residual_channels=0; capture.flags' audition: --audition="
        "dynamics_width=0|8), play it with python -m emu.apply, or "
        "capture for NAM's plugin with --flagfile=experiments/"
        "capture_plugin.flags and --format=nam")


def _f32(a):
  """numpy float64 of emu's float32 values (exact)."""
  return np.asarray(a, np.float32).astype(np.float64)


def _num(v) -> str:
  """A float32 value as a Faust literal: its float64 repr (exact),
  negatives in parentheses."""
  v = float(v)
  if not math.isfinite(v):
    raise ExportError(
        f"the model holds a non-finite number ({v}): a diverged run; "
        "export another checkpoint (--checkpoint=best) or retrain")
  text = repr(v)
  return f"({text})" if text.startswith("-") else text


def _dot(terms) -> str:
  """'a*b + c*d ...' of (coefficient, signal) pairs, '0.0' if none."""
  return " + ".join(f"{_num(c)}*{s}" for c, s in terms) or "0.0"


def _filter(name, layer, gate):
  """Faust lines of a gated lru filter, u + g (sum of modes + d u)."""
  from emu.models import lru  # pylint: disable=g-import-not-at-top
  lam, b, c, d = (np.asarray(a) for a in lru.layer_coefficients(layer))
  modes = [
      f"mode({_num(l.real)}, {_num(l.imag)}, {_num(bk.real)}, "
      f"{_num(bk.imag)}, {_num(ck.real)}, {_num(ck.imag)})"
      for l, bk, ck in zip(lam, b[0], c[:, 0])]
  modes.append(f"*({_num(d[0, 0])})")
  return (f"{name} = _ <: (_, ((_ <: ({', '.join(modes)})) :> "
          f"*({_num(gate)}))) :> _;")


def _shaper(model, p):
  """The wiener's shaper, closed form."""
  span = _f32(jnp.exp(jnp.asarray(p["log_span"]))) if model.shaper_bounded \
      else None
  lin = (f"{_num(span)}*ma.tanh(u/{_num(span)})" if span is not None
         else "u")
  terms = [f"{_num(p['linear'])}*({lin})", _num(p["bias"])]
  if model.shaper_width:
    gains = _f32(jnp.exp(jnp.asarray(p["log_gain"])))
    terms += [f"{_num(a)}*ma.tanh({_num(w)}*(u - {_num(m)}))"
              for a, w, m in zip(_f32(p["out"]), gains, _f32(p["knee"]))]
  return "shaper(u) = " + "\n    + ".join(terms) + ";"


def _dynamics(model, p):
  """The wiener's compressor stage: followers, curve, gain 10^s."""
  from emu.models import wiener  # pylint: disable=g-import-not-at-top
  coef = _f32(jnp.exp(-1. / (jnp.exp(wiener.TAU_RATE * jnp.asarray(
      p["tau"])) * model.sample_rate)))
  gains = _f32(jnp.exp(jnp.asarray(p["log_gain"])))
  hinges = "".join(
      f"\n    + {_num(a)}*softplus({_num(w)}*(l - {_num(m)}))/{_num(w)}"
      for a, w, m in zip(_f32(p["out"]), gains, _f32(p["knee"])))
  return f"""\
// u 10^s: env follows |u| (attack while |u| > env), s follows the curve
// of log10 env (attack while the curve is below s).
compressor = _ <: (_, (abs : follow(>, {_num(coef[0])}, {_num(coef[1])})
    : curve : follow(<, {_num(coef[2])}, {_num(coef[3])}) : gain)) : *
with {{
  follow(rising, att, rel) = f ~ _
  with {{ f(prev, v) = v + select2(rising(v, prev), rel, att)*(prev - v); }};
  gain(s) = pow(10.0, s);
  softplus(x) = max(x, 0.0) + ma.log1p(exp(0.0 - abs(x)));
  curve(env) = {_num(p['slope'])}*l + {_num(p['offset'])}{hinges}
  with {{ l = log10(max(env, {_num(np.float32(wiener.LEVEL_FLOOR))})); }};
}};"""


def _core(model, p):
  """The nss core: one recursion of its states, then its readout."""
  from emu.models import nss  # pylint: disable=g-import-not-at-top
  n, width = model.state_size, model.core_width
  w_in, bias = _f32(p["in"]), _f32(p["bias"])
  gain = _f32(jnp.exp(jnp.asarray(p["log_gain"])))
  k = _f32(jax.nn.sigmoid(jnp.asarray(p["step"])))
  mix, drive = _f32(p["state_mix"]), _f32(p["drive"])
  v_out, readout, out = _f32(p["hidden_out"]), _f32(p["readout"]), _f32(
      p["out"])
  s = [f"s{i}" for i in range(n)]
  m = [f"m{j}" for j in range(width)]
  span = _num(nss.STATE_SPAN)
  lines = [
      f"    m{j} = ma.tanh({_num(gain[j])}*({_dot(zip(w_in[:n, j], s))})"
      f" + {_num(gain[j])}*(u*{_num(w_in[n, j])} + {_num(bias[j])}))"
      f" - ma.tanh({_num(gain[j])}*{_num(bias[j])});" for j in range(width)]
  lines += [
      f"    n{i} = s{i} + {_num(k[i])}*(({_dot(zip(mix[:, i], s))}) - s{i}"
      f" + u*{_num(drive[i])} + ({_dot(zip(v_out[:, i], m))}));"
      for i in range(n)]
  lines.append(f"    v = ({_dot(zip(readout, s))}) + ({_dot(zip(out, m))});")
  news = ", ".join(f"{span}*ma.tanh(n{i}/{span})" for i in range(n))
  wires, cuts = ", ".join(["_"] * n), ", ".join(["!"] * n)
  return (f"// s' = S tanh((s + k (A s - s + B u + V m)) / S), v = c.s + w.m\n"
          f"core = _ <: (*({_num(p['direct'])}), (step ~ ({wires})"
          f" : ({cuts}, _))) :> _\n"
          f"with {{\n  step({', '.join(s)}, u) = ({news}, v)\n  with {{\n"
          + "\n".join(lines) + "\n  };\n};")


def describe(model) -> str:
  """The program's stages in one line (the export's architecture)."""
  name = type(model).__name__
  stages = [f"pre filter {model.pre_modes} mode(s)"] if model.pre_modes \
      else []
  if name == "Wiener":
    if model.dynamics_width:
      stages.append(f"compressor ({model.dynamics_width} hinges)")
    stages.append(f"shaper ({model.shaper_width} tanh units"
                  + (", bounded)" if model.shaper_bounded else ")"))
  else:
    stages.append(f"core ({model.state_size} states, {model.core_width} "
                  "tanh units)")
  if model.post_modes:
    stages.append(f"post filter {model.post_modes} mode(s)")
  return f"Faust program of the {name.lower()}: " + " -> ".join(stages)


def export_faust(model, params, sample_rate, metadata=None) -> dict:
  """{"dsp": the Faust program's text, "architecture": a line, "numbers":
  how many numbers it holds, "sample_rate": Hz} of a wiener or nss.

  Raises:
    ExportError: another family, a residual WaveNet, or a non-finite
      parameter (the message names the fix).
  """
  _refuse(model)
  p = folds.numpy_tree(params)
  name = type(model).__name__
  body, chain = [], []
  for which, modes in (("pre", model.pre_modes), ("post", model.post_modes)):
    if modes:
      body.append(_filter(which, p[which]["layer_0"], p[f"{which}_gate"]))
  if model.pre_modes:
    chain.append("pre")
  if name == "Wiener":
    if model.dynamics_width:
      body.append(_dynamics(model, p["dynamics"]))
      chain.append("compressor")
    body.append(_shaper(model, p["shaper"]))
    chain.append("shaper")
  else:
    body.append(_core(model, p["core"]))
    chain.append("core")
  if model.post_modes:
    chain.append("post")
  meta = {"name": f"emu {name.lower()}", "emu_sample_rate": str(sample_rate)}
  for key, value in (metadata or {}).items():
    if isinstance(value, dict):
      value = ", ".join(f"{k}={v}" for k, v in value.items())
    meta[key] = str(value)
  clean = lambda v: " ".join(str(v).replace('"', "'").replace(
      "\\", "/").split())  # one line, no quote or escape
  declares = "".join(f'declare {k} "{clean(v)}";\n' for k, v in meta.items())
  text = (
      f"// {describe(model)}.\n// Written by emu (emu.plugins.faust) from "
      f"a model trained at {sample_rate} Hz: run it at that rate.\n"
      f"{declares}import(\"stdfaust.lib\");\n\n"
      "// One complex mode of an lru filter: h = lambda h + b u, Re(c h).\n"
      "mode(lr, li, br, bi, cr, ci) = step ~ (_, _) : readout\n"
      "with {\n  step(hr, hi, u) = (lr*hr - li*hi + br*u, "
      "li*hr + lr*hi + bi*u);\n  readout(hr, hi) = cr*hr - ci*hi;\n};\n\n"
      + "\n\n".join(body) + f"\n\nprocess = {' : '.join(chain)};\n")
  return {"dsp": text, "architecture": describe(model),
          "numbers": sum(np.size(a) for a in jax.tree.leaves(p)),
          "sample_rate": sample_rate}


# ------------------------------------------------------------ building


def missing_tools():
  """None, or what is missing to build a Faust program here, naming the
  install command."""
  missing = [tool for tool in ("faust", "g++") if shutil.which(tool) is None]
  if missing:
    return (f"{' and '.join(missing)} not found; install them ({INSTALL} "
            "on Debian/Ubuntu)")
  return None


def _run(command, what):
  done = subprocess.run(command, capture_output=True, text=True, check=False)
  if done.returncode:
    raise RuntimeError(f"{what} failed ({' '.join(command)}):\n"
                       f"{done.stderr[-3000:]}")


def build(dsp_path, binary_path, double=True):
  """Compiles dsp_path into the command-line processor binary_path (faust
  [-double] with ARCHITECTURE, g++ -O3); RuntimeError naming what failed,
  or naming the install command if faust or g++ is missing."""
  missing = missing_tools()
  if missing:
    raise RuntimeError(f"cannot build {dsp_path}: {missing}")
  with tempfile.TemporaryDirectory(prefix="emu_faust_") as tmp:
    arch, cpp = os.path.join(tmp, "arch.cpp"), os.path.join(tmp, "dsp.cpp")
    with open(arch, "w") as f:
      f.write(ARCHITECTURE)
    _run(["faust", "-i", "-a", arch] + (["-double"] if double else [])
         + [dsp_path, "-o", cpp], "faust")
    _run(["g++", "-O3", "-std=c++11", "-DFAUSTFLOAT=double", cpp, "-o",
          binary_path], "g++")


def process(binary_path, x, sample_rate, block=BLOCK):
  """(output [time] float64, seconds compute() took) of samples x."""
  done = subprocess.run(
      [binary_path, str(int(sample_rate)), str(int(block))],
      input=np.ascontiguousarray(x, np.float64).tobytes(),
      capture_output=True, check=False)
  if done.returncode:
    raise RuntimeError(f"{binary_path} failed: {done.stderr[-2000:]!r}")
  return (np.frombuffer(done.stdout, np.float64),
          float(done.stderr.decode().split()[-1]))


def measure(dsp_path, sample_rate, seconds=10., runs=3, double=True):
  """The compiled program's CPU cost: {"rtf": seconds of audio per second
  of compute, "seconds": audio length} on `seconds` of noise (-20 dBFS
  RMS) in BLOCK-sample calls, the fastest of `runs`."""
  with tempfile.TemporaryDirectory(prefix="emu_faust_") as tmp:
    binary = os.path.join(tmp, "model")
    build(dsp_path, binary, double)
    x = 0.1 * np.random.default_rng(0).normal(
        size=int(seconds * sample_rate))
    took = min(process(binary, x, sample_rate)[1] for _ in range(runs))
  return {"rtf": seconds / max(took, 1e-9), "seconds": seconds,
          "double": double}
