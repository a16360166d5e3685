"""Early stopping as an immutable value (a flax struct): `update` returns a
new one, so the loop's state stays a plain value that checkpoints hold."""

import math

import flax
import numpy as np


@flax.struct.dataclass
class EarlyStopping:
  """Early stopping as an immutable value: `update` returns a new one.

  An epoch improves when its value is below best * (1 - min_delta); training
  should stop after `patience` epochs in a row without an improvement.
  """
  best: float = math.inf
  best_epoch: int = -1
  bad_epochs: int = 0
  patience: int = flax.struct.field(pytree_node=False, default=100)
  min_delta: float = flax.struct.field(pytree_node=False, default=0.0)

  def update(self, value: float, epoch: int) -> "EarlyStopping":
    if value < self.best * (1.0 - self.min_delta):
      return self.replace(best=value, best_epoch=epoch, bad_epochs=0)
    return self.replace(bad_epochs=self.bad_epochs + 1)

  @property
  def improved(self) -> bool:
    return self.bad_epochs == 0

  @property
  def should_stop(self) -> bool:
    return self.bad_epochs >= self.patience

  def as_array(self) -> np.ndarray:
    """[best, best_epoch, bad_epochs], as the checkpoint stores it."""
    return np.array([self.best, self.best_epoch, self.bad_epochs], np.float64)

  def from_array(self, array) -> "EarlyStopping":
    best, best_epoch, bad_epochs = np.asarray(array).tolist()
    return self.replace(best=best, best_epoch=int(best_epoch),
                        bad_epochs=int(bad_epochs))
