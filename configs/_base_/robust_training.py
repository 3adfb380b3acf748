# Robust training (mmswift.engine), shared by the det and seg configs: a clear
# stop when the loss becomes NaN/inf, and random numbers re-seeded per step so
# that a resumed run continues exactly as an uninterrupted one. The third
# piece, atomic checkpoint writes, is each config's
# default_hooks.checkpoint.type='mmswift.AtomicCheckpointHook' (mmengine does
# not allow two bases to set default_hooks).
robust_training_hooks = [
    dict(type='mmswift.LossGuardHook'),
    dict(type='mmswift.StepSeedHook'),
]
custom_hooks = robust_training_hooks
