"""emu's models in real-time plugin formats, both ways.

`formats` writes and reads NAM's LSTM, RTNeural and GuitarML files,
`wavenet_formats` NAM's and RTNeural's WaveNets (`reading`: every
reader's checks, errors naming the file); `faust` writes the grey boxes
as Faust programs and builds them; `folds` rewrites a model
into an equal one a format can carry; `export` is the command
(`python -m emu.export`) that writes a run's file and reports what the
plugin will see. `playable` leaves a capture's model.nam at the end of its
run, exact or, for a model no format holds, `distill`ed into NAM's
WaveNet.
"""

import emu

__getattr__ = emu.lazy_submodules(__name__, (
    "distill", "export", "faust", "folds", "formats", "playable",
    "reading", "wavenet_formats"))
