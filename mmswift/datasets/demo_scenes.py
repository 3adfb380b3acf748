"""mmseg's ADE20K dataset class over the generated scenes, created on first use."""
from typing import Optional

from mmseg.datasets import ADE20KDataset

from mmswift.registry import DATASETS
from .scenes_ade import CLASSES, ensure_scenes_ade


@DATASETS.register_module()
class DemoScenesDataset(ADE20KDataset):
    """ADE20K-layout scenes (:mod:`mmswift.datasets.scenes_ade`), 6 classes.

    Label 0 is "other" and is ignored (``reduce_zero_label=True``), exactly
    as ADE20K's. If ``data_root`` holds no generated dataset, it is generated
    first with ``generate`` (keyword arguments of ``generate_scenes_ade``).
    """

    METAINFO = dict(
        classes=CLASSES,
        palette=[[70, 130, 180], [0, 80, 160], [60, 160, 60], [220, 200, 130],
                 [120, 120, 120], [170, 60, 40]])

    def __init__(self, *args, generate: Optional[dict] = None, **kwargs) -> None:
        ensure_scenes_ade(kwargs['data_root'], **(generate or {}))
        super().__init__(*args, **kwargs)
