"""The switch from a trained model to its inference (deploy) form."""
from typing import Any

DEPLOY_MESSAGE = ('SwiftFormer backbone switched to its deploy form for inference (BatchNorms and '
                  'layer scales folded, fused inference kernels; same outputs within 1e-4); '
                  '--no-deploy keeps the training form')


def switch_backbone_to_deploy(model: Any, log: bool = True) -> bool:
    """Put ``model`` (a detector/segmentor, possibly wrapped, or a bare
    backbone) in eval mode with its SwiftFormer backbone in the deploy form,
    and log it. Returns whether there was one to switch."""
    from mmengine.logging import print_log
    from mmengine.model import BaseTTAModel, is_model_wrapper
    model = model.module if is_model_wrapper(model) else model
    model = model.module if isinstance(model, BaseTTAModel) else model  # --tta
    backbone = getattr(model, 'backbone', model)
    if not hasattr(backbone, 'switch_to_deploy'):
        return False
    model.eval()
    if not backbone.deploy:
        backbone.switch_to_deploy()
        if log:
            print_log(DEPLOY_MESSAGE, logger='current')
    return True
