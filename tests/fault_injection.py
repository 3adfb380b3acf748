"""Hooks that break a training run on purpose, for the hardening tests.
Configs import them with ``custom_imports`` (tests/ is on PYTHONPATH)."""
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def _first_param(runner) -> torch.nn.Parameter:
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    return next(model.backbone.parameters())


@HOOKS.register_module(force=True)
class PoisonWeightsHook(Hook):
    """Set one backbone weight to NaN at (1-based) iteration ``at``:
    ``before`` the step (the loss goes NaN) or ``after`` it (the weights are
    NaN when the checkpoint of that iteration is saved); on every rank, or
    on ``rank`` only."""
    priority = 'LOW'  # after LossGuardHook, before CheckpointHook

    def __init__(self, at: int, when: str = 'before', rank=None) -> None:
        self.at, self.when, self.rank = at, when, rank

    def _poison(self, runner):
        if runner.iter + 1 == self.at and self.rank in (None, get_rank()):
            with torch.no_grad():
                _first_param(runner).view(-1)[0] = float('nan')

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.when == 'before':
            self._poison(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.when == 'after':
            self._poison(runner)


@HOOKS.register_module(force=True)
class FailOnRankHook(Hook):
    """Raise on one rank only, at (1-based) iteration ``at``."""

    def __init__(self, rank: int, at: int) -> None:
        self.rank, self.at = rank, at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if get_rank() == self.rank and runner.iter + 1 == self.at:
            raise RuntimeError(f'injected failure on rank {self.rank} at iteration {self.at}')


@HOOKS.register_module(force=True)
class FullDiskHook(Hook):
    """From (1-based) iteration ``at`` on, every file write of mmswift's
    atomic writer fails with ``OSError(errno)``: ENOSPC / EIO while the data
    is flushed (after the temporary file has been written), EACCES when the
    temporary file is created (permission lost)."""
    priority = 'VERY_HIGH'

    def __init__(self, at: int, errno: int = 28) -> None:
        self.at, self.errno = at, errno

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 != self.at:
            return
        import errno
        import os
        import tempfile

        import mmswift.fileio as fileio

        def fail(*args, **kwargs):
            raise OSError(self.errno, os.strerror(self.errno))
        if self.errno == errno.EACCES:
            fileio.tempfile = _With(tempfile, mkstemp=fail)
        else:
            fileio.os = _With(os, fsync=fail)


class _With:
    """A module with some functions replaced."""

    def __init__(self, module, **replaced):
        self._module, self._replaced = module, replaced

    def __getattr__(self, name):
        return self._replaced.get(name) or getattr(self._module, name)


@HOOKS.register_module(force=True)
class FailDataOnRankHook(Hook):
    """Make one rank's dataloader raise at (1-based) iteration ``at``, as a
    corrupt file or a lost mount does in a worker."""
    priority = 'VERY_LOW'

    def __init__(self, rank: int, at: int) -> None:
        self.rank, self.at = rank, at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if get_rank() == self.rank and runner.iter + 2 == self.at:
            loop = runner.train_loop

            def broken():
                raise OSError(f'injected data loading failure on rank {self.rank} '
                              f'at iteration {self.at}')
                yield  # noqa: unreachable, makes this a generator
            loop.dataloader_iterator = broken()


@HOOKS.register_module(force=True)
class PidFileHook(Hook):
    """Each rank writes its pid to ``folder/rank<r>.pid`` when training starts."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def before_train(self, runner):
        import os
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, f'rank{get_rank()}.pid'), 'w') as f:
            f.write(str(os.getpid()))
