"""`python -m emu.testsignal`: the test signal, whose home is emu.capture.testsignal."""

from emu import cli
from emu.capture import testsignal

cli.alias(__name__, testsignal)
