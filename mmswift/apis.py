"""Inference through mmdet's / mmseg's own inferencers, picked by the config."""
import os.path as osp
from typing import Any, Optional

from mmengine.config import Config

from .errors import CheckpointNotFoundError, ConfigNotFoundError


DEPLOY_MESSAGE = ('SwiftFormer backbone switched to its deploy form for inference (BatchNorms and '
                  'layer scales folded, fused inference kernels; same outputs within 1e-4); '
                  '--no-deploy keeps the training form')


def switch_backbone_to_deploy(model: Any) -> bool:
    """Put ``model`` (a detector/segmentor, possibly wrapped, or a bare
    backbone) in eval mode with its SwiftFormer backbone in the deploy form,
    and log it. Returns whether there was one to switch."""
    from mmengine.logging import print_log
    from mmengine.model import is_model_wrapper
    model = model.module if is_model_wrapper(model) else model
    backbone = getattr(model, 'backbone', model)
    if not hasattr(backbone, 'switch_to_deploy'):
        return False
    model.eval()
    if not backbone.deploy:
        backbone.switch_to_deploy()
        print_log(DEPLOY_MESSAGE, logger='current')
    return True


def build_inferencer(config: str, checkpoint: Optional[str] = None,
                     device: str = 'cpu', deploy: bool = True) -> Any:
    """``DetInferencer`` for mmdet configs, ``MMSegInferencer`` for mmseg
    ones; with ``deploy`` the backbone runs in its deploy form."""
    if not osp.isfile(config):
        raise ConfigNotFoundError(f'config file not found: {config}')
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise CheckpointNotFoundError(f'checkpoint not found: {checkpoint}')
    scope = Config.fromfile(config).get('default_scope', 'mmdet')
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=config, weights=checkpoint, device=device)
    else:
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model=config, weights=checkpoint, device=device,
                                   show_progress=False)
    if deploy:
        switch_backbone_to_deploy(inferencer.model)
    return inferencer


def build_model_from_config(config: str, cfg_options: Optional[dict] = None):
    """A detector or segmentor from an mmdet/mmseg config, for inference-side
    tools: the backbone keeps its own random initialisation (no
    ``init_cfg`` checkpoint is read), SyncBN becomes BN (one process), and
    ``init_weights`` runs without logging every parameter; ``cfg_options``
    are merged as ``--cfg-options`` would. Returns
    ``(model, cfg)`` with the model in eval mode."""
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    if not osp.isfile(config):
        raise ConfigNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmdet.registry import MODELS
    cfg.model.backbone.init_cfg = None
    cfg.model.pop('pretrained', None)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every parameter at INFO
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    model.eval()  # not chained: some OpenMMLab train() overrides return None
    return model, cfg
