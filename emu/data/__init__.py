"""emu.data: the thesis's synthetic recipes, voice clips and users' WAV pairs.

One job per module; every public name is re-exported here as `emu.data.X`:

  pairs     `DataError`, the `Pair` and `Dataset` containers, and
            `segments` and `windows`, which slice a pair for training.
  recipes   the thesis's synthetic audio (`recipe`, `SIZES`) and
            `thesis_dataset`, which puts it through an effect
            (`apply_effect`).
  knobs     knob datasets: `knob_grids`, `knob_pair`, `knob_dataset` and
            `group_by_knobs`.
  files     voice clips (`load_voice`, `DEFAULT_VOICE_GLOB`) and a user's
            recorded WAV pair (`load_pair`, `files_dataset`), checked.
  nam_layout  a NAM reamp pair (NAM's standard input v3 and its
            recording) read as NAM reads it: `nam_dataset`,
            `read_nam_pair`, and NAM's `calibrate_latency`,
            `replicate_esr` and `detect_version`.
  manifest  knob capture: a JSON manifest of recordings of one device
            at several knob settings (`read_manifest`, `knob_names`) as a
            knob Dataset (`manifest_dataset`), each read by `load_pair`.
  latency   `estimate_latency` and `find_latency` (by the test signal's
            first blip, else by correlation): how far a target lags its
            input.

Imports among them run one way: knobs uses recipes, recipes uses files,
nam_layout and manifest use files, files uses latency, and all but
latency use pairs (latency reads its default range from `emu.config`).
"""

# pylint: disable=g-importing-member
from emu.data.files import CLIP_LEVEL
from emu.data.files import DEFAULT_VOICE_GLOB
from emu.data.files import files_dataset
from emu.data.files import load_pair
from emu.data.files import load_voice
from emu.data.files import read_mono
from emu.data.files import SILENCE_PEAK
from emu.data.files import VOICE_GAP_SECONDS
from emu.data.files import VOICE_PEAK
from emu.data.knobs import group_by_knobs
from emu.data.knobs import KNOB_CLIP_SECONDS
from emu.data.knobs import knob_dataset
from emu.data.knobs import knob_grids
from emu.data.knobs import knob_pair
from emu.data.latency import estimate_latency
from emu.data.manifest import knob_names
from emu.data.manifest import manifest_dataset
from emu.data.manifest import read_manifest
from emu.data.nam_layout import calibrate_latency
from emu.data.nam_layout import detect_version
from emu.data.nam_layout import nam_dataset
from emu.data.nam_layout import read_nam_pair
from emu.data.nam_layout import replicate_esr
from emu.data.pairs import DataError
from emu.data.pairs import Dataset
from emu.data.pairs import Pair
from emu.data.pairs import segments
from emu.data.pairs import windows
from emu.data.recipes import apply_effect
from emu.data.recipes import FADE_SECONDS
from emu.data.recipes import recipe
from emu.data.recipes import SIZES
from emu.data.recipes import thesis_dataset
