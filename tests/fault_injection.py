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
    NaN when the checkpoint of that iteration is saved)."""
    priority = 'LOW'  # after LossGuardHook, before CheckpointHook

    def __init__(self, at: int, when: str = 'before') -> None:
        self.at, self.when = at, when

    def _poison(self, runner):
        if runner.iter + 1 == self.at:
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
