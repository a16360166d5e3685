"""`python -m emu.export`: the export command, whose home is emu.plugins.export."""

from emu import cli
from emu.plugins import export

cli.alias(__name__, export)
