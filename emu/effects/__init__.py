"""emu.effects: the target effects, as pure JAX functions.

Where each kind of effect lives:

  biquad     the RBJ audio-EQ-cookbook biquads (`highpass`, `lowpass`,
             `bandpass`, `peaking`, `low_shelf`, `high_shelf`, each with
             its `*_coefficients`), `frequency_response`, the filter
             `biquad`, and the named fixed effects `EFFECTS` / `effect`
             (the thesis target is 'hpf440') with `analytic_coefficients`.
  svf        filters whose knobs may move every sample, as state-variable
             filters: `highpass_knob`, `lowpass_knob`, `peaking_knob` and
             `biquad_tv`.
  nonlinear  distortions: `waveshaper` (static tanh) and `diode_clipper`
             (an RC low-pass clipped by diodes), with `dc_block` and the
             oversampling they share.
  dynamics   `compressor` and its gain computer `static_curve`.
  knobs      `Knob`, `KnobEffect`, and the registry of effects with knobs
             `KNOB_EFFECTS` / `knob_effect`.

Every knob argument is a scalar or a per-sample array [time], concrete or
traced, so a knob may turn while the signal plays.

Every public name of those modules is re-exported here, so
`from emu import effects; effects.highpass(...)` reaches all of them. The
function `biquad` takes the submodule's name as an attribute of this
package: reach the module itself with
`from emu.effects.biquad import ...` or
`importlib.import_module('emu.effects.biquad')`.
"""

from emu.effects.biquad import analytic_coefficients
from emu.effects.biquad import bandpass
from emu.effects.biquad import bandpass_coefficients
from emu.effects.biquad import biquad
from emu.effects.biquad import BUTTERWORTH_Q
from emu.effects.biquad import effect
from emu.effects.biquad import EFFECTS
from emu.effects.biquad import frequency_response
from emu.effects.biquad import high_shelf
from emu.effects.biquad import high_shelf_coefficients
from emu.effects.biquad import highpass
from emu.effects.biquad import highpass_coefficients
from emu.effects.biquad import low_shelf
from emu.effects.biquad import low_shelf_coefficients
from emu.effects.biquad import lowpass
from emu.effects.biquad import lowpass_coefficients
from emu.effects.biquad import peaking
from emu.effects.biquad import peaking_coefficients
from emu.effects.dynamics import compressor
from emu.effects.dynamics import LEVEL_FLOOR_DB
from emu.effects.dynamics import static_curve
from emu.effects.knobs import COMPRESSOR_RATIO
from emu.effects.knobs import DISTORTION_ASYMMETRY
from emu.effects.knobs import DISTORTION_OVERSAMPLE
from emu.effects.knobs import DISTORTION_TONE_HZ
from emu.effects.knobs import Knob
from emu.effects.knobs import knob_effect
from emu.effects.knobs import KNOB_EFFECTS
from emu.effects.knobs import KnobEffect
from emu.effects.knobs import PEAK_KNOB_Q
from emu.effects.nonlinear import DC_BLOCK_HZ
from emu.effects.nonlinear import dc_block
from emu.effects.nonlinear import DIODE_C_FARAD
from emu.effects.nonlinear import DIODE_IS_AMP
from emu.effects.nonlinear import DIODE_R_OHM
from emu.effects.nonlinear import DIODE_VT_VOLT
from emu.effects.nonlinear import diode_clipper
from emu.effects.nonlinear import waveshaper
from emu.effects.svf import biquad_tv
from emu.effects.svf import highpass_knob
from emu.effects.svf import lowpass_knob
from emu.effects.svf import peaking_knob

__all__ = [
    # biquad
    'BUTTERWORTH_Q', 'analytic_coefficients', 'bandpass',
    'bandpass_coefficients', 'biquad', 'effect', 'EFFECTS',
    'frequency_response', 'high_shelf', 'high_shelf_coefficients',
    'highpass', 'highpass_coefficients', 'low_shelf',
    'low_shelf_coefficients', 'lowpass', 'lowpass_coefficients', 'peaking',
    'peaking_coefficients',
    # svf
    'biquad_tv', 'highpass_knob', 'lowpass_knob', 'peaking_knob',
    # nonlinear
    'DC_BLOCK_HZ', 'dc_block', 'DIODE_C_FARAD', 'DIODE_IS_AMP',
    'DIODE_R_OHM', 'DIODE_VT_VOLT', 'diode_clipper', 'waveshaper',
    # dynamics
    'compressor', 'LEVEL_FLOOR_DB', 'static_curve',
    # knobs
    'COMPRESSOR_RATIO', 'DISTORTION_ASYMMETRY', 'DISTORTION_OVERSAMPLE',
    'DISTORTION_TONE_HZ', 'Knob', 'knob_effect', 'KNOB_EFFECTS',
    'KnobEffect', 'PEAK_KNOB_Q',
]
