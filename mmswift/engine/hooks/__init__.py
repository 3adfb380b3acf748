"""mmswift's hooks, one per module as in mmdet's ``engine/hooks``."""
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .deploy_hook import DeployHook
from .feature_map_vis_hook import FeatureMapVisHook
from .loss_guard_hook import LossGuardHook
from .preemption_hook import PreemptionHook
from .step_seed_hook import StepSeedHook

__all__ = ['AtomicCheckpointHook', 'DeployHook', 'FeatureMapVisHook', 'LossGuardHook',
           'PreemptionHook', 'StepSeedHook']
