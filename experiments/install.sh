#!/usr/bin/env bash
# Installs emu from this checkout, and the recorded voice its runs validate on.
#
#   bash experiments/install.sh          # pip install -e '.[plots]'
#   bash experiments/install.sh test     # pip install -e '.[test]'
#
# Then, where apt can (root, or sudo without a password), Debian's alsa-utils:
# its spoken clips in /usr/share/sounds/alsa are val2, the thesis's second
# validation (recorded voice). Where it cannot, it says how; a run without
# them trains all the same and its last line says it has no val2.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q -e ".[${1:-plots}]"

# EMU_VOICE_FILE: another file to look for (tests/test_install.py).
VOICE=${EMU_VOICE_FILE:-/usr/share/sounds/alsa/Front_Center.wav}
[ -e "$VOICE" ] && exit 0
as_root=""
[ "$(id -u)" = 0 ] || as_root="sudo -n"
apt_get() { $as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get "$@"; }
if command -v apt-get >/dev/null && { [ -z "$as_root" ] ||
    sudo -n true 2>/dev/null; }; then
  echo "install: Debian's alsa-utils, for the recorded voice (val2)"
  (apt_get update -qq && apt_get install -y -qq alsa-utils >/dev/null) && exit 0
fi
echo "install: no recorded voice for val2 here; install Debian's alsa-utils" \
  "(sudo apt-get install alsa-utils) or pass --val2_files=YOUR_VOICE.wav"
