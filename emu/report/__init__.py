"""A trained run's report: what it scores, and the pages a person reads.

`evaluate` writes report.json, audio and plots (`plots`), and on emu's test
signal sets the device beside the model (`device_compare`); `speed` measures
streaming as a real-time host runs it; `run_page` makes report.html from
the pieces in `pages`; `listening_test` the blind rating page, whose
exports `ratings` tabulates.
"""

import emu

__getattr__ = emu.lazy_submodules(__name__, (
    "device_compare", "evaluate", "listening_test", "pages", "plots",
    "ratings", "run_page", "speed"))
