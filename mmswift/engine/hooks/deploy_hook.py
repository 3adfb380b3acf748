"""Test with the backbone's deploy form."""
from mmengine.hooks import Hook

from mmswift.compat import apply_all
from mmswift.registry import HOOKS


@HOOKS.register_module()
class DeployHook(Hook):
    """Switch the SwiftFormer backbone to its deploy form before testing.

    ``before_test_epoch`` runs after the Runner has loaded the checkpoint
    and, at this priority, after mmengine's ``EMAHook`` (NORMAL) has swapped
    the averaged weights in: the fold uses the weights that are tested. The
    EMA hook's copy is folded as well, so that its swap back after the test
    exchanges tensors of the same shapes. ``tools/test.py`` adds this hook
    unless ``--no-deploy`` is given; validation during training is not
    touched.
    """

    priority = 'BELOW_NORMAL'

    def __init__(self) -> None:
        apply_all()  # the Runner is built from an mmswift config: see mmswift.compat

    def before_test_epoch(self, runner) -> None:
        from mmengine.hooks import EMAHook

        from mmswift.apis import switch_backbone_to_deploy
        switch_backbone_to_deploy(runner.model)
        for hook in runner.hooks:
            if isinstance(hook, EMAHook) and hasattr(hook, 'ema_model'):
                switch_backbone_to_deploy(hook.ema_model.module, log=False)
