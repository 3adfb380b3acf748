"""Runtime pieces: config handling for the tools, hooks, checkpoint I/O."""
from .checkpoint import (AtomicCheckpointHook, AtomicLocalBackend,
                         find_resumable_checkpoint)
from .deploy_hook import DeployHook
from .hooks import FeatureMapVisHook
from ..errors import NonFiniteLossError
from .loss_guard import LossGuardHook
from .seeding import StepSeedHook

__all__ = ['AtomicCheckpointHook', 'AtomicLocalBackend', 'DeployHook', 'FeatureMapVisHook',
           'LossGuardHook', 'NonFiniteLossError', 'StepSeedHook',
           'find_resumable_checkpoint']
