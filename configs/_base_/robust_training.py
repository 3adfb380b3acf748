# Robust training (mmswift.engine), shared by the det and seg configs: a clear
# stop when the loss becomes NaN/inf, random numbers re-seeded per step so
# that a resumed run continues exactly as an uninterrupted one, and a clean
# stop with a checkpoint on the scheduler's SIGTERM (exit status 3: requeue
# with --resume). Atomic checkpoint writes are each config's
# default_hooks.checkpoint.type='mmswift.AtomicCheckpointHook' (mmengine does
# not allow two bases to set default_hooks).
robust_training_hooks = [
    dict(type='mmswift.LossGuardHook'),
    dict(type='mmswift.StepSeedHook'),
    dict(type='mmswift.PreemptionHook', signals=['SIGTERM']),
]
custom_hooks = robust_training_hooks
