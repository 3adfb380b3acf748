"""Which codebase a config is for, the one det/seg switch: mmswift's tools and
APIs hand a config to mmdet or to mmseg by its ``default_scope``."""
from typing import Any, Literal

from .errors import ConfigError

Task = Literal['det', 'seg']
_TASKS = {'mmdet': 'det', 'mmseg': 'seg'}


def task_of(cfg: Any) -> Task:
    """``'det'`` for an mmdet config, ``'seg'`` for an mmseg one (``cfg``: an
    mmengine ``Config``, or a model's ``.cfg``)."""
    scope = cfg.get('default_scope')
    if scope in _TASKS:
        return _TASKS[scope]  # type: ignore[return-value]
    name = getattr(cfg, 'filename', None) or 'the config'
    raise ConfigError(f"{name}: default_scope={scope!r}, but mmswift runs mmdet (detection) "
                      f"or mmseg (segmentation) configs; inherit from a config in configs/det/ "
                      f"or configs/seg/, or set default_scope = 'mmdet' or 'mmseg'")
