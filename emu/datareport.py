"""`python -m emu.datareport`: the data report, whose home is emu.capture.datareport."""

from emu import cli
from emu.capture import datareport

cli.alias(__name__, datareport)
