"""experiments/install.sh: pip, then the recorded voice (val2) where apt can.

Given stand-in pip, apt-get, id and sudo commands on PATH (they log their
arguments; nothing is installed), when the script runs as root, as a user
with password-free sudo, as one without, or on a machine that already has
the voice, then it calls what the platform allows and says the rest.
"""

import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "install.sh")


def _stub(folder, name, body):
  path = os.path.join(folder, name)
  with open(path, "w") as f:
    f.write("#!/bin/sh\n" + body + "\n")
  os.chmod(path, 0o755)


def _install(tmp_path, uid, sudo_ok, has_voice=False, extra=()):
  """Runs the script with stubs; (stdout, the stubs' log lines)."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  log = tmp_path / "log"
  for name in ("pip", "apt-get"):
    _stub(bin_dir, name, f'echo "{name} $*" >> {log}')
  _stub(bin_dir, "id", f"echo {uid}")
  # sudo -n: fails (a password would be needed) unless sudo_ok.
  _stub(bin_dir, "sudo", f'echo "sudo $*" >> {log}; '
        + ('shift; exec "$@"' if sudo_ok else "exit 1"))
  voice = tmp_path / "Front_Center.wav"
  if has_voice:
    voice.write_bytes(b"")
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
             EMU_VOICE_FILE=str(voice))
  result = subprocess.run(["bash", SCRIPT, *extra], env=env, text=True,
                          capture_output=True, timeout=60, check=True)
  lines = log.read_text().splitlines() if log.exists() else []
  return result.stdout, lines


def test_as_root_it_installs_alsa_utils(tmp_path):
  out, log = _install(tmp_path, uid=0, sudo_ok=False)
  assert log[0] == "pip install -q -e .[plots]"
  assert "apt-get install -y -qq alsa-utils" in log
  assert not any(line.startswith("sudo") for line in log)
  assert "alsa-utils" in out and "no recorded voice" not in out


def test_with_password_free_sudo_it_uses_sudo(tmp_path):
  _, log = _install(tmp_path, uid=1000, sudo_ok=True, extra=["test"])
  assert log[0] == "pip install -q -e .[test]"
  assert "apt-get install -y -qq alsa-utils" in log
  assert any(line.startswith("sudo -n env") for line in log)


@pytest.mark.parametrize("has_voice", [False, True])
def test_otherwise_it_says_how_or_does_nothing(tmp_path, has_voice):
  out, log = _install(tmp_path, uid=1000, sudo_ok=False,
                      has_voice=has_voice)
  assert not any(line.startswith("apt-get") for line in log)
  if has_voice:
    assert out == "" and log == ["pip install -q -e .[plots]"]
  else:
    assert "sudo apt-get install alsa-utils" in out
    assert "--val2_files" in out
