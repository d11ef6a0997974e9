"""Training core: train state and step, data parallelism, checkpoints and the `fit` loop.

Any NNX model trains with a loss ``loss_fn(model, batch, *, key, train) -> (loss, aux)``::

    tx = make_optimizer("adam", 1e-3, clip_grad_norm=1.0)
    state = TrainState.create(model, tx, key=0)
    trainer = ShardedDataParallel(loss_fn, tx)        # or SingleDevice / PmapDataParallel / ...
    data = ArrayDataIterator({"x": x}, batch_size=64, seed=0)
    result = fit(trainer, state, data, steps=1000, out_dir="runs/a", checkpoint_every=100)
"""

# state.py, step.py (the train step)
from jaxlatent.training.state import TrainState as TrainState
from jaxlatent.training.state import as_typed_key as as_typed_key
from jaxlatent.training.step import MixedPrecision as MixedPrecision
from jaxlatent.training.step import make_eval_step as make_eval_step
from jaxlatent.training.step import make_optimizer as make_optimizer
from jaxlatent.training.step import make_train_step as make_train_step
from jaxlatent.training.step import set_axis_name as set_axis_name
from jaxlatent.training.step import sync_model_state as sync_model_state

# isort: split
# gan_state.py, gan_step.py (two models trained adversarially)
from jaxlatent.training.gan_state import GANTrainState as GANTrainState
from jaxlatent.training.gan_step import GANObjective as GANObjective

# isort: split
# parallel.py, distributed.py (data parallelism, multi-process)
from jaxlatent.training.distributed import initialize_distributed as initialize_distributed
from jaxlatent.training.distributed import is_primary as is_primary
from jaxlatent.training.parallel import DataParallel as DataParallel
from jaxlatent.training.parallel import PmapDataParallel as PmapDataParallel
from jaxlatent.training.parallel import ShardedDataParallel as ShardedDataParallel
from jaxlatent.training.parallel import ShardMapDataParallel as ShardMapDataParallel
from jaxlatent.training.parallel import SingleDevice as SingleDevice

# isort: split
# checkpoint.py, data.py, logs.py, loop.py
from jaxlatent.training.checkpoint import Checkpointer as Checkpointer
from jaxlatent.training.checkpoint import state_signature as state_signature
from jaxlatent.training.data import ArrayDataIterator as ArrayDataIterator
from jaxlatent.training.logs import JsonlMetrics as JsonlMetrics
from jaxlatent.training.logs import TensorBoardLog as TensorBoardLog
from jaxlatent.training.logs import read_jsonl as read_jsonl
from jaxlatent.training.loop import FitResult as FitResult
from jaxlatent.training.loop import fit as fit
from jaxlatent.training.loop import format_summary as format_summary
from jaxlatent.training.loop import prepare_out_dir as prepare_out_dir
