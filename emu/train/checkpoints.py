"""A run folder's orbax checkpoints: 'best' (params) and 'last' (the state).

jax and orbax are imported where checkpoints are read or written, so that
tools that only read a run's JSON files (report pages, ratings) start fast.
"""

import os
import shutil

from absl import logging

from emu import workdir as workdir_lib


def _orbax_record(record) -> bool:
  return "/orbax/" not in record.pathname or record.levelno >= 30


def _quiet_orbax():
  """Keeps orbax's per-save INFO lines out of the epoch log."""
  logger = logging.get_absl_logger()
  if _orbax_record not in logger.filters:
    logger.addFilter(_orbax_record)


class Checkpoints:
  """best/ and last/ under workdir/checkpoints, replaced atomically.

  A save goes to `<name>.new`, then swaps in, so an interrupted save never
  loses the previous checkpoint.

  Checkpoints are host-local: orbax runs for this process alone (no barrier
  with other processes). In a multi-host run only process 0 saves
  (`emu.workdir.writes_here`), arrays it holds whole (`emu.train.parallel.host_local`),
  and only process 0 restores; the training loop sends what it read to the
  others.
  """

  def __init__(self, workdir):
    _quiet_orbax()
    self.root = os.path.join(os.path.abspath(workdir),
                             workdir_lib.CHECKPOINTS)
    self._checkpointer = None

  @property
  def checkpointer(self):
    """orbax's StandardCheckpointer for this process alone, made at first
    use (a multi-host run's process index is known by then)."""
    if self._checkpointer is None:
      import jax  # pylint: disable=g-import-not-at-top
      import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
      options = ocp.options.MultiprocessingOptions()
      if jax.process_count() > 1:
        me = jax.process_index()
        options = ocp.options.MultiprocessingOptions(
            primary_host=me, active_processes={me})
      self._checkpointer = ocp.StandardCheckpointer(
          multiprocessing_options=options)
    return self._checkpointer

  def path(self, name):
    return os.path.join(self.root, name)

  def save(self, name, tree):
    """Saves `tree` as checkpoint `name`; on process 0 only (`emu.workdir.writes_here`).
    """
    if not workdir_lib.writes_here():
      return
    import jax  # pylint: disable=g-import-not-at-top
    if jax.process_count() > 1:
      # orbax refuses jax arrays on one device of a multi-host run (it
      # takes them for pmap's); this process's copies go as numpy.
      tree = jax.device_get(tree)
    final, new, old = (self.path(name) + s for s in ("", ".new", ".old"))
    shutil.rmtree(new, ignore_errors=True)
    with workdir_lib.writing(final):
      try:
        self.checkpointer.save(new, tree)
        self.checkpointer.wait_until_finished()
      except Exception as e:  # orbax may wrap a failed write in its own
        cause = _os_error_in(e)
        if cause is None or cause is e:
          raise
        raise cause from e
      if os.path.exists(final):
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
      os.rename(new, final)
    shutil.rmtree(old, ignore_errors=True)

  def exists(self, name) -> bool:
    return any(os.path.exists(self.path(name) + s) for s in ("", ".old"))

  def restore(self, name, target):
    """The checkpoint `name` (or its .old) as `target`'s shapes, every array
    on this process's first device, whatever devices saved it (a run
    trained with its members or batch split over 2 devices loads in a
    one-device process; the training loop places the arrays again)."""
    import jax  # pylint: disable=g-import-not-at-top
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
        target)
    for candidate in (self.path(name), self.path(name) + ".old"):
      if os.path.exists(candidate):
        return self.checkpointer.restore(candidate, target)
    return None


def _os_error_in(error: BaseException):
  """The OSError among `error`'s causes and contexts, or None."""
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, OSError):
      return error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return None
