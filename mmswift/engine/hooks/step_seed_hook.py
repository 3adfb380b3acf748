"""Random numbers that do not depend on whether a run was resumed.

mmengine seeds once at start-up and does not store random states in
checkpoints, so a resumed run draws different augmentations, RPN/RoI
samples and dropout masks than the run it continues. This hook re-seeds
python, numpy and torch from ``(seed, step)`` right before each batch is
fetched (the batches mmengine skips on resume are counted too). The
result: the same seed gives the same training, however often it was
interrupted.

Epoch loops get one more thing: mmengine resumes them at an epoch start,
so a checkpoint written mid-epoch (on preemption, ``PreemptionHook``)
would train the epoch's first batches twice. Here the resumed epoch skips
the batches the checkpoint already holds, as mmengine's iteration loop does.
"""
import random
from typing import Iterator

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop

from ...compat import apply_all, require_mmengine_internals
from ...registry import HOOKS


def seed_everything_for_step(seed: int, step: int, rank: int = 0) -> None:
    state = np.random.SeedSequence([seed % 2**32, step, rank]).generate_state(1)[0]
    random.seed(int(state))
    np.random.seed(int(state))
    torch.manual_seed(int(state))


class _SeedEachBatch:
    """Wraps an iteration loop's dataloader iterator; the k-th ``next``
    (skipped batches included) runs right after seeding for step k."""

    def __init__(self, batches: Iterator, seed: int, rank: int) -> None:
        self._batches, self._seed, self._rank, self._fetched = batches, seed, rank, 0

    def __iter__(self):
        return self

    def __next__(self):
        seed_everything_for_step(self._seed, self._fetched, self._rank)
        self._fetched += 1
        return next(self._batches)

    def __getattr__(self, name):  # e.g. ``_dataloader``, ``_epoch``
        return getattr(self._batches, name)


class _SeedEachEpochBatch:
    """Wraps an epoch loop's dataloader: the k-th batch of epoch e is fetched
    right after seeding for step ``e * len + k``; in the first epoch after a
    mid-epoch resume the batches up to ``runner.iter`` are fetched (for the
    same random draws) and skipped."""

    def __init__(self, dataloader, runner, seed: int, rank: int) -> None:
        self._dataloader, self._runner, self._seed, self._rank = dataloader, runner, seed, rank

    def __iter__(self):
        first = self._runner.epoch * len(self._dataloader)
        done = max(0, self._runner.iter - first)  # > 0 only after a mid-epoch resume
        batches = iter(self._dataloader)
        k = 0
        while True:  # to the end: batch samplers (mmdet's AspectRatio...) reset there
            seed_everything_for_step(self._seed, first + k, self._rank)
            try:
                batch = next(batches)
            except StopIteration:
                return
            if k >= done:
                yield batch
            k += 1

    def __len__(self) -> int:
        return len(self._dataloader)

    def __getattr__(self, name):  # sampler, batch_size, dataset...
        return getattr(self._dataloader, name)


@HOOKS.register_module()
class StepSeedHook(Hook):
    """Re-seed from (seed, step) so that a resumed run continues exactly.

    Ranks share the seed unless ``randomness.diff_rank_seed=True``, as in
    mmengine.
    """
    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        apply_all()  # the Runner is built from an mmswift config: see mmswift.compat
        require_mmengine_internals('StepSeedHook (runner._randomness_cfg)')

    def _seed_and_rank(self, runner):
        rank = get_rank() if runner._randomness_cfg.get('diff_rank_seed') else 0
        return runner.seed, rank

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _SeedEachBatch(
                loop.dataloader_iterator, *self._seed_and_rank(runner))
        elif not isinstance(loop.dataloader, _SeedEachEpochBatch):
            loop.dataloader = _SeedEachEpochBatch(loop.dataloader, runner,
                                                  *self._seed_and_rank(runner))
