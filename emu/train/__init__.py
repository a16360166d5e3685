"""Training: the pure step, devices, batches and the loop (`fit`).

  step.py      TrainState, the optimizer, `make_train_step` (one model) and
               `make_ensemble_train_step` (E members in one program)
  parallel.py  the data mesh, placing states and batches, the CPU device
               policy
  batches.py   the Dataset a Config names and one epoch's batches
  stopping.py  EarlyStopping, a value
  loop.py      `fit(cfg, workdir)`: prepare -> init or restore -> epochs
               (run, validate, checkpoint) -> finish
  runlock.py   one run per folder: the lock file a run holds there

The run folder's files are `emu.workdir`'s; whole-signal inference is
`emu.stream.make_predict`. The names below stay importable as
`emu.train.X` for notebooks written against the flat module.
"""

# pylint: disable=g-importing-member,unused-import
from emu.metrics import esr
from emu.models import build_model
from emu.stream import as_batch
from emu.stream import make_predict
from emu.train.batches import build_dataset
from emu.train.batches import epoch_batches
from emu.train.batches import steps_per_epoch
from emu.train.stopping import EarlyStopping
from emu.train.loop import fit
from emu.train.loop import FitResult
from emu.train.parallel import data_mesh
from emu.train.parallel import replicate
from emu.train.parallel import shard_batch
from emu.train.parallel import shard_members
from emu.train.parallel import sync_each_step
from emu.train.step import create_train_state
from emu.train.step import ensemble_params
from emu.train.step import make_ensemble_train_step
from emu.train.step import make_optimizer
from emu.train.step import make_train_step
from emu.train.step import seq2seq_predict
from emu.train.step import TrainState
from emu.train.restore import load_params
from emu.workdir import sample_rate_of
from emu.workdir import WorkdirConflict
