"""Inference through mmdet's / mmseg's own inferencers, picked by the config."""
import os.path as osp
from typing import Any, Optional

from mmengine.config import Config


def build_inferencer(config: str, checkpoint: Optional[str] = None,
                     device: str = 'cpu') -> Any:
    """``DetInferencer`` for mmdet configs, ``MMSegInferencer`` for mmseg ones."""
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    scope = Config.fromfile(config).get('default_scope', 'mmdet')
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        return MMSegInferencer(model=config, weights=checkpoint, device=device)
    from mmdet.apis import DetInferencer
    return DetInferencer(model=config, weights=checkpoint, device=device,
                         show_progress=False)
