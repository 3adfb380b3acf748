"""Hooks that break a training run on purpose, for the hardening tests.
Configs import them with ``custom_imports`` (tests/ is on PYTHONPATH).

``HoldAtIterHook`` and ``PauseCheckpointWriteHook`` stop a job at a chosen
point and say so with a file, so that a test acts there (a signal, a kill,
a second job) whatever the machine's load: the test polls for the file the
job writes, then releases the job with ``<folder>/release``."""
import os
import time

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


POLL_S = 0.01
HOLD_TIMEOUT_S = 600  # a test that died without releasing must not leave the job hanging


def _tell(path: str, text: str) -> None:
    """Create ``path`` holding ``text`` by a rename: a poller never reads it half-written."""
    part = f'{path}.{os.getpid()}.part'
    with open(part, 'w') as f:
        f.write(text)
    os.replace(part, path)


def _wait_for_release(folder: str, timeout_s: float, while_waiting=None) -> None:
    release = os.path.join(folder, 'release')
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(release):
        if while_waiting is not None:
            while_waiting()
        if time.monotonic() > deadline:
            raise RuntimeError(f'held for {timeout_s} s and never released: no {release}')
        time.sleep(POLL_S)


@HOOKS.register_module(force=True)
class HoldAtIterHook(Hook):
    """After (1-based) iteration ``at``, on every rank or on ``rank`` only,
    write ``folder/held`` (the pid) and wait for ``folder/release``. While
    held, ``folder/signalled`` appears once the job's ``PreemptionHook`` has
    taken a signal, so a test releases only after the signal arrived.

    It runs in ``after_train_iter`` just before ``PreemptionHook`` (LOWEST):
    a signal taken while held is acted on at iteration ``at`` itself."""
    priority = 'VERY_LOW'

    def __init__(self, at: int, folder: str, rank=None, timeout_s: float = HOLD_TIMEOUT_S):
        self.at, self.folder, self.rank, self.timeout_s = at, folder, rank, timeout_s

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 != self.at or self.rank not in (None, get_rank()):
            return
        preemption = [h for h in runner.hooks if type(h).__name__ == 'PreemptionHook']
        signalled = os.path.join(self.folder, 'signalled')

        def report_signal():
            if not os.path.exists(signalled) and any(h.received for h in preemption):
                _tell(signalled, str(os.getpid()))
        os.makedirs(self.folder, exist_ok=True)
        _tell(os.path.join(self.folder, 'held'), str(os.getpid()))
        _wait_for_release(self.folder, self.timeout_s, report_signal)


class _HalfThenWait:
    """A file whose (single) ``write`` stops halfway until released."""

    def __init__(self, f, tmp: str, folder: str, timeout_s: float) -> None:
        self._f, self._tmp, self._folder, self._timeout_s = f, tmp, folder, timeout_s

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)

    def write(self, data) -> int:
        half = len(data) // 2
        self._f.write(data[:half])
        self._f.flush()
        os.fsync(self._f.fileno())  # the half-written file is on disk, as in a real kill
        _tell(os.path.join(self._folder, 'writing'), self._tmp)
        _wait_for_release(self._folder, self._timeout_s)
        return half + self._f.write(data[half:])


@HOOKS.register_module(force=True)
class PauseCheckpointWriteHook(Hook):
    """Stop mmswift's atomic writer halfway through the temporary file of
    the checkpoint ``name`` (e.g. ``iter_16.pth``): half its bytes written
    and flushed, it writes ``folder/writing`` (the temporary file's path)
    and waits for ``folder/release``, so a test kills the job while that
    checkpoint is provably being written. Other files are written as usual."""

    def __init__(self, name: str, folder: str, timeout_s: float = HOLD_TIMEOUT_S) -> None:
        self.name, self.folder, self.timeout_s = name, folder, timeout_s
        self._undo = None

    def before_train(self, runner):
        import tempfile

        import mmswift.fileio as fileio
        ours = {}  # fd -> temporary file of the chosen checkpoint

        def mkstemp(*args, **kwargs):
            fd, tmp = tempfile.mkstemp(*args, **kwargs)
            if kwargs.get('prefix') == f'.{self.name}.':
                ours[fd] = tmp
            return fd, tmp

        def fdopen(fd, *args, **kwargs):
            f = os.fdopen(fd, *args, **kwargs)
            if fd not in ours:
                return f
            os.makedirs(self.folder, exist_ok=True)
            return _HalfThenWait(f, ours.pop(fd), self.folder, self.timeout_s)
        self._undo = (fileio.tempfile, fileio.os)
        fileio.tempfile = _With(tempfile, mkstemp=mkstemp)
        fileio.os = _With(os, fdopen=fdopen)

    def after_train(self, runner):
        import mmswift.fileio as fileio
        if self._undo is not None:
            fileio.tempfile, fileio.os = self._undo
