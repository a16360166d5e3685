"""Capturing a device: the front end before training.

`testsignal` writes the reamping signal a user plays through the device,
`datareport` measures the recording (latency, levels, noise floor,
repeatability) and `audition` trains candidate settings briefly and
continues the best.
"""

import emu

__getattr__ = emu.lazy_submodules(__name__, (
    "audition", "datareport", "repeat", "testsignal"))
