"""Models and inferencers built by mmdet's / mmseg's own APIs, picked by the
config."""
from typing import Any, Optional

from ..engine.launch import load_config
from ..task import task_of
from .checkpoint import check_checkpoint
from .deploy import switch_backbone_to_deploy


def build_inferencer(config: str, checkpoint: Optional[str] = None,
                     device: str = 'cpu', deploy: bool = True) -> Any:
    """``DetInferencer`` for mmdet configs, ``MMSegInferencer`` for mmseg
    ones; with ``deploy`` the backbone runs in its deploy form."""
    cfg = load_config(config)
    if checkpoint is not None:
        check_checkpoint(checkpoint, cfg, 'CHECKPOINT')
    task = task_of(cfg)
    from ..compat import allowed_checkpoint_types
    with allowed_checkpoint_types():  # mmengine's torch.load of a Runner checkpoint
        if task == 'seg':
            from mmseg.apis import MMSegInferencer
            inferencer = MMSegInferencer(model=config, weights=checkpoint, device=device)
        else:
            from mmdet.apis import DetInferencer
            inferencer = DetInferencer(model=config, weights=checkpoint, device=device,
                                       show_progress=False)
    from ..models.kernels import check_feature_consumers
    check_feature_consumers(inferencer.model)
    if deploy:
        switch_backbone_to_deploy(inferencer.model)
    return inferencer


def init_model(config: str, checkpoint: Optional[str] = None, device: str = 'cpu',
               cfg_options: Optional[dict] = None):
    """A detector or segmentor in eval mode, built by ``mmdet.apis.init_detector``
    or ``mmseg.apis.init_model`` as the config's scope says.

    With ``checkpoint`` (checked first, :func:`check_checkpoint`) its weights
    are loaded; without, the model gets its own random initialisation and the
    backbone's ``init_cfg`` checkpoint is not read. SyncBN becomes BN (one
    process). ``cfg_options`` are merged as ``--cfg-options`` would be; the
    config is at ``model.cfg``.
    """
    import warnings

    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.model.backbone.init_cfg = None
    cfg.model.pop('pretrained', None)
    if checkpoint is not None:
        check_checkpoint(checkpoint, cfg, 'CHECKPOINT')
    from ..compat import allowed_checkpoint_types
    with warnings.catch_warnings(), allowed_checkpoint_types():  # "checkpoint is None, ..."
        warnings.simplefilter('ignore', UserWarning)
        if task_of(cfg) == 'seg':
            from mmseg.apis import init_model as init_segmentor
            model = init_segmentor(cfg, checkpoint, device=device)
        else:
            from mmdet.apis import init_detector
            model = init_detector(cfg, checkpoint, device=device)
    model = revert_sync_batchnorm(model)
    if checkpoint is None:
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel('WARNING')  # init_weights logs every parameter at INFO
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    model.eval()  # not chained: some OpenMMLab train() overrides return None
    return model
