"""Stop training, clearly, when the loss or the weights stop being finite.

Without this an mmdet/mmseg run that diverges keeps going for hours, logs
``loss: nan`` and overwrites the good checkpoints with NaN weights.
"""
import math
from typing import Optional

import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop

from ...compat import apply_all
from ...errors import NonFiniteLossError
from ...registry import HOOKS
from ...fileio import find_resumable_checkpoint


def _where(runner) -> str:
    if isinstance(runner.train_loop, IterBasedTrainLoop):
        return f'iteration {runner.iter + 1}'
    return f'iteration {runner.iter + 1} (epoch {runner.epoch + 1})'


@HOOKS.register_module()
class LossGuardHook(Hook):
    """Raise ``NonFiniteLossError`` naming the iteration and the last good
    checkpoint when the loss becomes NaN/inf on any rank, and refuse to
    save a checkpoint whose weights are not finite.

    In distributed runs every rank checks the same all-reduced loss, so all
    stop together (no rank is left waiting in a collective), and the mean
    loss over ranks is logged as ``loss_all_ranks``: mmengine logs rank 0's
    loss only.

    Not a subclass of mmdet's ``CheckInvalidLossHook``, which would lend it
    nothing: that hook checks every ``interval`` (50) iterations, with an
    ``assert`` (gone under ``python -O``; its message is ``logger.info``'s
    None), on its own rank only (in DDP the other ranks wait in the next
    collective), leaves NaN weights free to overwrite checkpoints, does not
    name a checkpoint to resume from, and is registered in mmdet's scope (a
    seg config would name it ``mmdet.CheckInvalidLossHook``).
    """
    priority = 'ABOVE_NORMAL'  # before CheckpointHook / LoggerHook

    def __init__(self) -> None:
        apply_all()  # the Runner is built from an mmswift config: see mmswift.compat

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs or 'loss' not in outputs:
            return
        loss = torch.as_tensor(outputs['loss']).detach().float().mean().reshape(1)
        world_size = dist.get_world_size()
        if world_size > 1:
            dist.all_reduce(loss, op='sum')
            loss = loss / world_size
        value = float(loss.item())
        if world_size > 1:
            runner.message_hub.update_scalar('train/loss_all_ranks', value)
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f'loss became {value} at {_where(runner)}' +
                (' on at least one rank' if world_size > 1 else '') +
                f'; {self._last_good(runner)}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = [k for k, v in checkpoint.get('state_dict', {}).items()
               if torch.is_tensor(v) and v.is_floating_point()
               and not bool(torch.isfinite(v).all())]
        if bad:
            raise NonFiniteLossError(
                f'weights became non-finite at {_where(runner)} ({len(bad)} '
                f'tensors, e.g. {bad[0]}), so no checkpoint was written; '
                f'{self._last_good(runner)}')

    @staticmethod
    def _last_good(runner) -> str:
        last = find_resumable_checkpoint(runner.work_dir)
        fix = ('lower optim_wrapper.optimizer.lr, add '
               'optim_wrapper.clip_grad=dict(max_norm=...), or check the data')
        if last is None:
            return f'no checkpoint had been saved yet; {fix}, then train again'
        return f'last good checkpoint: {last}; {fix}, then train with --resume'
