"""Test with the backbone's deploy form."""
from mmengine.hooks import Hook

from mmswift.registry import HOOKS


@HOOKS.register_module()
class DeployHook(Hook):
    """Switch the SwiftFormer backbone to its deploy form before testing.

    ``before_test`` runs after the Runner has loaded the checkpoint, so the
    folding uses the trained weights. ``tools/test.py`` adds this hook unless
    ``--no-deploy`` is given; validation during training is not touched.
    """

    priority = 'VERY_HIGH'

    def before_test(self, runner) -> None:
        from mmswift.apis import switch_backbone_to_deploy
        switch_backbone_to_deploy(runner.model)
