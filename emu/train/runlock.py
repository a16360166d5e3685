"""One run per folder at a time: the lock file a run holds in its folder.

  with runlock.held(workdir):   # WorkdirBusy at once if another run has it
    ...

The lock (`emu.workdir.LOCK`) is created atomically (O_CREAT | O_EXCL) and
holds the pid, host and start time of the process that runs there; it is
removed on every way out of the `with` (an error, Ctrl-C). A lock whose
process is gone (same host: killed, the machine restarted) is stale and
taken over. The lock is re-entrant within a process (`emu.pipeline.run`
holds it around `emu.train.fit`, which takes it when called alone).
Only a process that writes run folders (`workdir.writes_here`) takes it.
"""

import contextlib
import json
import os
import socket
import time

from absl import logging

from emu import workdir as workdir_lib

# (pid, real path) -> how many times this process holds that folder's lock.
_HELD = {}
# An unreadable lock (its writer stopped between creating and filling it)
# counts as stale after this many seconds.
_UNREADABLE_STALE_S = 10.0


class WorkdirBusy(ValueError):
  """Another process is running in the workdir."""


@contextlib.contextmanager
def held(workdir: str):
  """Holds workdir's lock for the `with` block (a no-op where this process
  writes no run folder); WorkdirBusy naming the folder and the process
  that holds it, at once, if another live process does."""
  if not workdir_lib.writes_here():
    yield
    return
  key = (os.getpid(), os.path.realpath(workdir))
  if key in _HELD:  # this process holds it already
    _HELD[key] += 1
    try:
      yield
    finally:
      _HELD[key] -= 1
    return
  workdir_lib.check_writable(workdir)
  made = _make_folders(workdir)
  lock = workdir_lib.path(workdir, workdir_lib.LOCK)
  try:
    mine = _acquire(workdir, lock)
  except BaseException:
    _remove_empty(made)
    raise
  _HELD[key] = 1
  try:
    yield
  finally:
    del _HELD[key]
    _release(lock, mine)
    _remove_empty(made)


def _make_folders(workdir: str) -> list:
  """Creates workdir (and the folders above it that are missing); the
  folders made, deepest first."""
  made, folder = [], os.path.abspath(workdir)
  while not os.path.exists(folder):
    made.append(folder)
    folder = os.path.dirname(folder)
  os.makedirs(workdir, exist_ok=True)
  return made


def _remove_empty(made: list):
  """Removes the folders `_make_folders` made where nothing was written."""
  for folder in made:
    try:
      os.rmdir(folder)
    except OSError:
      return  # not empty (or another process's now): keep it


def _acquire(workdir: str, lock: str) -> str:
  """Creates the lock file (taking over a stale one); its contents."""
  mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")})
  if _create(lock, mine):
    return mine
  # Taking over a stale lock: one process at a time (a lock on the folder),
  # so that two never both remove it and both create their own.
  with _folder_locked(workdir):
    holder = _holder(lock)  # None: its run has just ended
    if holder is not None and not _stale(holder, lock):
      raise _busy(workdir, lock, holder)
    if holder is not None:
      logging.warning("%s: taking over the lock of process %s, which is "
                      "gone", workdir, holder.get("pid"))
      os.remove(lock)
    if _create(lock, mine):
      return mine
    raise _busy(workdir, lock, _holder(lock))


def _create(lock: str, text: str) -> bool:
  """Whether this call created `lock` (False: it exists), holding text."""
  try:
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    f.write(text)
  return True


def _holder(lock: str):
  """The lock's {'pid', 'host', 'started'}, {} if unreadable, None if it
  is gone."""
  try:
    with open(lock) as f:
      holder = json.load(f)
    return holder if isinstance(holder, dict) else {}
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}


def _stale(holder: dict, lock: str) -> bool:
  """Whether the lock's process is gone (known only on its own host)."""
  if not holder:
    try:
      return time.time() - os.path.getmtime(lock) > _UNREADABLE_STALE_S
    except OSError:
      return False
  if holder.get("host") != socket.gethostname():
    return False
  pid = holder.get("pid")
  if pid == os.getpid():
    return True  # this process's own, left by a run it no longer runs
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return True
  except (PermissionError, TypeError, ValueError):
    return False  # alive under another user (or not a pid at all)
  return False


def _busy(workdir: str, lock: str, holder) -> WorkdirBusy:
  who = ("another process" if not holder else
         f"process {holder.get('pid')} on {holder.get('host')} (since "
         f"{holder.get('started')})")
  return WorkdirBusy(
      f"{workdir} is in use: {who} is running there; wait for it to end or "
      "stop it, or use another --workdir (if no such process runs, delete "
      f"{lock})")


@contextlib.contextmanager
def _folder_locked(workdir: str):
  """An exclusive flock on the folder itself where the OS has one."""
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:  # Windows: no flock
    yield
    return
  fd = os.open(workdir, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)  # releases the flock


def _release(lock: str, mine: str):
  """Removes the lock if it is still this process's."""
  try:
    with open(lock) as f:
      if f.read() != mine:
        return
    os.remove(lock)
  except OSError:
    pass
