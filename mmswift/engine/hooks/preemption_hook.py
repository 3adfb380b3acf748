"""Stop cleanly when the scheduler says the job is about to be killed.

Slurm (``--signal``), Kubernetes and most batch systems send SIGTERM (or a
chosen signal) some time before they kill a job. Without a handler the
process dies at once and everything since the last checkpoint is lost.
"""
import signal
from typing import Optional, Sequence, Union

import torch
from mmengine import dist
from mmengine.hooks import Hook

from ...compat import apply_all
from ...errors import PreemptedError
from ...fileio import atomic_write
from ...registry import HOOKS


@HOOKS.register_module()
class PreemptionHook(Hook):
    """On one of ``signals``, finish the current iteration, write a complete
    checkpoint (atomically, ``iter_<N>.pth``, named by ``last_checkpoint``),
    and stop with :class:`PreemptedError` (exit status 3 from the tools), so a
    requeue script can tell a preemption from a crash. ``--resume`` then
    continues exactly, mid-epoch included (see ``StepSeedHook``).

    In multi-process runs a signal seen by any rank stops every rank at the
    same iteration: the flag is all-reduced after each iteration.

    Args:
        signals: signal names or numbers to handle; default SIGTERM.
    """

    priority = 'LOWEST'  # after the checkpoint and loss-guard hooks of the iteration

    def __init__(self, signals: Sequence[Union[str, int]] = ('SIGTERM', )) -> None:
        apply_all()  # the Runner is built from an mmswift config: see mmswift.compat
        self.signals = [getattr(signal, s) if isinstance(s, str) else signal.Signals(s)
                        for s in signals]
        self.received: Optional[int] = None
        self._previous = {}

    def _on_signal(self, signum, frame) -> None:
        self.received = signum

    def before_train(self, runner) -> None:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def after_train(self, runner) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _any_rank_received(self) -> Optional[int]:
        flag = torch.tensor([self.received or 0], dtype=torch.int64)
        if dist.get_world_size() > 1:
            dist.all_reduce(flag, op='max')
        return int(flag.item()) or None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        signum = self._any_rank_received()
        if signum is None:
            return
        step = runner.iter + 1
        filename = f'iter_{step}.pth'
        ckpt_hook = next((h for h in runner.hooks if type(h).__name__.endswith('CheckpointHook')),
                         None)
        out_dir = getattr(ckpt_hook, 'out_dir', None) or runner.work_dir
        backend_args = getattr(ckpt_hook, 'backend_args', None)
        # by_epoch=False: the meta holds the epoch in progress and the
        # iterations done, which is what a mid-epoch resume needs
        runner.save_checkpoint(out_dir, filename, by_epoch=False, backend_args=backend_args)
        path = f'{out_dir.rstrip("/")}/{filename}'
        if dist.is_main_process():
            atomic_write(path, f'{runner.work_dir}/last_checkpoint')
        name = signal.Signals(signum).name
        runner.logger.info(f'{name} received: wrote {path} after iteration {step}; stopping')
        raise PreemptedError(
            f'{name} received; finished iteration {step} and wrote the complete checkpoint '
            f'{path}; requeue the job with --resume to continue exactly from there')
