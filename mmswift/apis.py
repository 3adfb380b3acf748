"""Inference through mmdet's / mmseg's own inferencers, picked by the config."""
import os.path as osp
from typing import Any, Optional

from mmengine.config import Config

from .errors import CheckpointNotFoundError, ConfigNotFoundError


def build_inferencer(config: str, checkpoint: Optional[str] = None,
                     device: str = 'cpu') -> Any:
    """``DetInferencer`` for mmdet configs, ``MMSegInferencer`` for mmseg ones."""
    if not osp.isfile(config):
        raise ConfigNotFoundError(f'config file not found: {config}')
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise CheckpointNotFoundError(f'checkpoint not found: {checkpoint}')
    scope = Config.fromfile(config).get('default_scope', 'mmdet')
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        return MMSegInferencer(model=config, weights=checkpoint, device=device)
    from mmdet.apis import DetInferencer
    return DetInferencer(model=config, weights=checkpoint, device=device,
                         show_progress=False)


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
