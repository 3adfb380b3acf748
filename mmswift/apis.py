"""Inference through mmdet's / mmseg's own inferencers, picked by the config."""
import os.path as osp
from typing import Any, Optional

from mmengine.config import Config

from .engine.launch import load_config


DEPLOY_MESSAGE = ('SwiftFormer backbone switched to its deploy form for inference (BatchNorms and '
                  'layer scales folded, fused inference kernels; same outputs within 1e-4); '
                  '--no-deploy keeps the training form')


def latest_test_metrics(work_dir: str) -> dict:
    """The metrics of the newest ``tools/test.py`` run into ``work_dir``: the
    ``<timestamp>/<timestamp>.json`` mmengine's test loop writes ({} if none)."""
    import glob
    import json
    for path in sorted(glob.glob(osp.join(work_dir, '*', '*.json')), key=osp.getmtime)[::-1]:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}


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


def check_checkpoint(path: str, cfg: Config, what: str) -> None:
    """Check a whole-model checkpoint before mmengine loads it: that it is a
    readable checkpoint (one-line error otherwise, :mod:`mmswift.fileio`)
    and, for a SwiftFormer config, one of the config's variant."""
    from .fileio import read_checkpoint
    from .models import SwiftFormer
    from .models.pretrained import check_checkpoint_variant
    model = cfg.get('model', {})
    model = model.get('module', model) if 'backbone' not in model else model  # --tta
    backbone = model.get('backbone', {})
    arch = backbone.get('arch')
    if str(backbone.get('type', '')).endswith('SwiftFormer') and isinstance(arch, str) \
            and arch.lower() in SwiftFormer.arch_settings:
        check_checkpoint_variant(path, arch.lower(), SwiftFormer.arch_settings, what=what)
    else:
        read_checkpoint(path, what=what, mmap=True)


def build_inferencer(config: str, checkpoint: Optional[str] = None,
                     device: str = 'cpu', deploy: bool = True) -> Any:
    """``DetInferencer`` for mmdet configs, ``MMSegInferencer`` for mmseg
    ones; with ``deploy`` the backbone runs in its deploy form."""
    cfg = load_config(config)
    if checkpoint is not None:
        check_checkpoint(checkpoint, cfg, 'CHECKPOINT')
    scope = cfg.get('default_scope', 'mmdet')
    from .compat import allowed_checkpoint_types
    with allowed_checkpoint_types():  # mmengine's torch.load of a Runner checkpoint
        if scope == 'mmseg':
            from mmseg.apis import MMSegInferencer
            inferencer = MMSegInferencer(model=config, weights=checkpoint, device=device)
        else:
            from mmdet.apis import DetInferencer
            inferencer = DetInferencer(model=config, weights=checkpoint, device=device,
                                       show_progress=False)
    from .models.kernels import check_feature_consumers
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
    from .compat import allowed_checkpoint_types
    with warnings.catch_warnings(), allowed_checkpoint_types():  # "checkpoint is None, ..."
        warnings.simplefilter('ignore', UserWarning)
        if cfg.get('default_scope', 'mmdet') == 'mmseg':
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
