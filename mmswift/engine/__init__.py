"""Runtime pieces: the hooks, the dataset check and the tools' lifecycle."""
from .hooks import (AtomicCheckpointHook, DeployHook, FeatureMapVisHook, LossGuardHook,
                    PreemptionHook, StepSeedHook)

__all__ = ['AtomicCheckpointHook', 'DeployHook', 'FeatureMapVisHook', 'LossGuardHook',
           'PreemptionHook', 'StepSeedHook']
